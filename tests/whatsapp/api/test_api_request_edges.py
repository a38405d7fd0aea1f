"""
What the API does with requests at the edges: date-time filters with any UTC offset, bodies too large to
read, both spellings of the API key's header, and the messages of one contact (by id or by phone).
"""

import json
import logging
from urllib.parse import quote

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from contacts.models import Contact
from core.api_tokens import api_token_create
from tests.conftest import token_client, user_with_perms
from whatsapp.services.outbound import message_send_text

pytestmark = pytest.mark.django_db

ANA_PHONE = "+15551230001"

# Every date-time filter of the API, explicit or generated from filterset_fields.
DATETIME_FILTERS = [
    ("contacts", "last_seen_at__gte"),
    ("contacts/unmapped", "last_seen_at__lte"),
    ("conversations", "last_message_at__gte"),
    ("conversations", "last_message_at__lte"),
    ("messages", "created_at__gte"),
    ("messages", "created_at__lte"),
]


@pytest.fixture
def ana(say) -> Contact:
    return say(ANA_PHONE, "Hi! Is my order #1042 on its way?", name="Ana Souza")


# --- date-time filters -----------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "name"), DATETIME_FILTERS)
@pytest.mark.parametrize("offset", ["+16:00", "-16:00", "+20:01", "+23:59"])
def test_a_utc_offset_the_database_cannot_hold_is_refused(api_client, endpoint, name, offset):
    response = api_client.get(f"/api/v1/{endpoint}/?{name}={quote(f'2024-01-01T00:00:00{offset}')}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_request"
    assert f"UTC offset {offset} is out of range" in body["errors"][name][0]


@pytest.mark.parametrize(("endpoint", "name"), DATETIME_FILTERS)
@pytest.mark.parametrize("value", ["2024-01-01T00:00:00+15:59", "2024-01-01T00:00:00-15:59", "2024-01-01T00:00:00Z",
                                   "2024-01-01T00:00:00", "0001-01-01T00:00:00+10:00", "9999-12-31T23:59:59-10:00"])
def test_any_offset_below_sixteen_hours_filters(api_client, endpoint, name, value):
    assert api_client.get(f"/api/v1/{endpoint}/", {name: value}).status_code == 200


def test_datetime_filters_filter(api_client, ana):
    assert api_client.get("/api/v1/contacts/", {"last_seen_at__gte": "2000-01-01T09:00:00+15:00"}).json()[
        "count"] == 1
    assert api_client.get("/api/v1/contacts/", {"last_seen_at__lte": "2000-01-01T00:00:00-15:00"}).json()[
        "count"] == 0


# --- bodies too large ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v1/messages/", "/api/v1/templates/", "/api/v1/contact-mappings/",
                                  "/api/v1/templates/preview/"])
def test_a_body_over_the_limit_is_a_413_in_json_without_an_error_logged(api_client, path, caplog):
    body = b"x" * (20 * 1024 * 1024)
    with caplog.at_level(logging.INFO):
        response = api_client.post(path, data=body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    refusal = response.json()
    assert refusal["code"] == "request_too_large" and "larger than" in refusal["detail"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_is_refused_with_411_not_read_as_empty(live_server, superuser):
    key = api_token_create(user=superuser, name="chunked")[1]
    body = json.dumps({"to": ANA_PHONE, "text": "hello"}).encode()
    response = httpx.post(f"{live_server.url}/api/v1/messages/", content=iter([body]),
                          headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 411
    assert response.json()["code"] == "length_required"


def test_an_upload_over_the_media_limit_is_refused(api_client, ana, settings):
    settings.OUTBOUND_MEDIA_MAX_BYTES = 1024
    upload = SimpleUploadedFile("big.pdf", b"%PDF-" + b"0" * 4096, content_type="application/pdf")
    response = api_client.post("/api/v1/messages/", {"contact": ana.pk, "type": "document", "file": upload},
                               format="multipart")
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["code"]


# --- Authorization: Bearer -------------------------------------------------------------------------

def test_an_api_key_is_accepted_as_a_bearer_token(superuser):
    _, key = api_token_create(user=superuser, name="bearer")
    client = Client()
    for keyword in ("Bearer", "bearer", "Token"):
        assert client.get("/api/v1/messages/", HTTP_AUTHORIZATION=f"{keyword} {key}").status_code == 200
    refused = client.get("/api/v1/messages/", HTTP_AUTHORIZATION="Bearer not-a-key")
    assert refused.status_code == 401 and refused.json()["code"] == "authentication_failed"
    assert client.get("/api/v1/messages/", HTTP_AUTHORIZATION="Bearer").status_code == 401
    assert client.get("/api/v1/messages/", HTTP_AUTHORIZATION=f"Basic {key}").status_code == 401


def test_the_schema_names_both_keywords(client):
    schema = client.get("/api/schema/?format=json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "description": schemes["bearerAuth"][
        "description"]}
    assert schemes["tokenAuth"]["type"] == "apiKey" and "Token" in schemes["tokenAuth"]["description"]
    security = schema["paths"]["/api/v1/messages/"]["get"]["security"]
    assert {"tokenAuth": []} in security and {"bearerAuth": []} in security


# --- the messages of a contact ---------------------------------------------------------------------

@pytest.fixture
def two_contacts(say, sandbox_provider):
    ana = say(ANA_PHONE, "Hi! Is my order #1042 on its way?", name="Ana Souza")
    say(ANA_PHONE, "And can I change the address?", name="Ana Souza")
    ben = say("+15551230002", "Hello, a table for Friday?", name="Ben Okafor")
    message_send_text(provider=sandbox_provider, contact=ana, text="It ships today.")
    return ana, ben


def test_messages_filter_by_contact_and_phone(two_contacts):
    ana, ben = two_contacts
    client = token_client(user_with_perms("reader", "whatsapp.view_message"))
    by_id = client.get("/api/v1/messages/", {"contact": ana.pk}).json()
    assert by_id["count"] == 3
    assert {row["contact"] for row in by_id["results"]} == {ana.pk}
    for spelling in ("+1 (555) 123-0001", "15551230001", ANA_PHONE):
        assert client.get("/api/v1/messages/", {"phone": spelling}).json()["count"] == 3, spelling
    assert client.get("/api/v1/messages/", {"phone": "+15551230002"}).json()["count"] == 1
    assert client.get("/api/v1/messages/", {"contact": ben.pk, "direction": "outbound"}).json()["count"] == 0


def test_messages_filter_refuses_what_cannot_be_a_contact(two_contacts, api_client):
    assert api_client.get("/api/v1/messages/", {"phone": "+19995550000"}).json()["count"] == 0
    for params in ({"contact": 999999}, {"contact": "abc"}, {"phone": "no digits"}):
        response = api_client.get("/api/v1/messages/", params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid_request"


def test_a_message_shows_its_contact(two_contacts, api_client):
    ana, _ = two_contacts
    rows = api_client.get("/api/v1/messages/", {"contact": ana.pk}).json()["results"]
    assert {(row["contact"], row["contact_name"]) for row in rows} == {(ana.pk, "Ana Souza")}
    detail = api_client.get(f"/api/v1/messages/{rows[0]['id']}/").json()
    assert detail["contact"] == ana.pk and detail["contact_name"] == "Ana Souza"
