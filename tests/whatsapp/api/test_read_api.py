"""The read API: token auth, pagination, filters, and a schema generated without warnings."""

import io

import pytest
from django.core.management import call_command

from tests.conftest import fixture_bytes, json_body
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

ENDPOINTS = ["providers", "contacts", "conversations", "messages", "templates"]


@pytest.fixture
def data(sandbox_provider, post_sandbox):
    for name in ("inbound_text.json", "inbound_two_messages.json"):
        webhook_event_process(json_body(post_sandbox(sandbox_provider, fixture_bytes("sandbox", name)))["event"])
    return sandbox_provider


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_list_endpoints_are_paginated(api_client, data, endpoint):
    response = api_client.get(f"/api/v1/{endpoint}/")
    assert response.status_code == 200
    assert {"count", "next", "previous", "results"} <= set(response.json())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_anonymous_is_refused(client, endpoint):
    assert client.get(f"/api/v1/{endpoint}/").status_code == 401


def test_user_without_view_permission_is_refused(db, client):
    from django.contrib.auth import get_user_model

    from core.api_tokens import api_token_create

    user = get_user_model().objects.create_user("nobody", password="pw-123456-strong")
    _, key = api_token_create(user=user, name="no permissions")
    response = client.get("/api/v1/messages/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403


def test_filters_and_search(api_client, data):
    contacts = api_client.get("/api/v1/contacts/", {"search": "+15551230002"}).json()
    assert contacts["count"] == 1 and contacts["results"][0]["profile_name"] == "Ben Okafor"
    messages = api_client.get("/api/v1/messages/", {"direction": "inbound", "page_size": 2}).json()
    assert messages["count"] == 3 and len(messages["results"]) == 2 and messages["next"]
    conversation_id = contacts["results"][0]["id"]
    by_contact = api_client.get("/api/v1/conversations/", {"contact": conversation_id}).json()
    assert by_contact["count"] == 1 and by_contact["results"][0]["session_open_until"]


def test_provider_endpoint_never_shows_credentials(api_client, data):
    provider = api_client.get(f"/api/v1/providers/{data.pk}/").json()
    assert provider["webhook_url"].endswith(f"/webhooks/sandbox/{data.public_id}/")
    assert "credentials" not in provider
    assert data.credentials["webhook_secret"] not in str(provider)


def test_message_detail_shows_status_history(api_client, data, post_sandbox):
    from whatsapp.models import Conversation, Message

    outbound = Message.objects.create(provider=data, conversation=Conversation.objects.first(), direction="outbound",
                                      status="sent", provider_message_id="sbx-out-0001")
    webhook_event_process(json_body(post_sandbox(data, fixture_bytes("sandbox", "status_read_then_delivered.json")))
                          ["event"])
    detail = api_client.get(f"/api/v1/messages/{outbound.pk}/").json()
    assert detail["status"] == "read"
    history = [(entry["status"], entry["applied"]) for entry in detail["status_history"]]
    assert history == [("delivered", False), ("read", True)]  # in the order they happened


def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/messages/" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_schema_generates_without_warnings():
    out, err = io.StringIO(), io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=err)
    assert "openapi: 3" in out.getvalue()
    assert "Warning" not in err.getvalue()
