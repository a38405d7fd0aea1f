"""API keys: scopes checked on every endpoint, expiry, last use, rotation with a grace period."""

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from core.api_tokens import api_token_create
from core.models import ApiToken
from tests.conftest import audit_actions, refused, user_with_perms

pytestmark = pytest.mark.django_db

# Operations that need a scope other than what their HTTP method implies.
SEND_OPERATIONS = {("POST", "/api/v1/messages/"), ("POST", "/api/v1/contacts/{id}/verify/"),
                   # A campaign's launch, resume and winner send messages to its audience.
                   ("POST", "/api/v1/campaigns/{id}/launch/"), ("POST", "/api/v1/campaigns/{id}/resume/"),
                   ("POST", "/api/v1/campaigns/{id}/send-winner/")}
READ_POSTS = {("POST", "/api/v1/templates/preview/")}
ANY_SCOPE_OPERATIONS = {("POST", "/api/v1/api-keys/rotate/")}


def expected_scope(method: str, path: str) -> str | None:
    if (method, path) in ANY_SCOPE_OPERATIONS:
        return None
    if (method, path) in SEND_OPERATIONS:
        return "send"
    if method == "GET" or (method, path) in READ_POSTS:
        return "read"
    return "manage"


def api_operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted((method.upper(), path) for path, operations in schema["paths"].items()
                  for method in operations if path.startswith("/api/v1/"))


def client_with(key: str, **extra) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def call(client: APIClient, method: str, path: str):
    url = re.sub(r"\{[^}]+\}", "999999", path)
    return getattr(client, method.lower())(url, data={}, format="json")


def test_every_endpoint_checks_the_key_scope(superuser):
    operations = api_operations()
    assert len(operations) > 60  # the whole API, not a corner of it
    keys = {scope: api_token_create(user=superuser, name=scope, scopes=[scope])[1]
            for scope in ("read", "send", "manage")}
    wrongly = []
    for method, path in operations:
        needed = expected_scope(method, path)
        for scope, key in keys.items():
            response = call(client_with(key), method, path)
            refused_for_scope = (response.status_code == 403
                                 and response.json().get("code") == "insufficient_scope")
            if refused_for_scope != (needed is not None and scope != needed):
                wrongly.append((method, path, scope, response.status_code, response.content[:120]))
    assert wrongly == []


def test_the_refusal_names_the_missing_scope(superuser):
    _, key = api_token_create(user=superuser, name="reader", scopes=["read"])
    body = refused(client_with(key).post("/api/v1/messages/", {}, format="json"), 403, "insufficient_scope")
    assert "'send'" in body["detail"] and "read" in body["detail"]


def test_a_key_without_scopes_reads_nothing(superuser):
    _, key = api_token_create(user=superuser, name="nothing", scopes=[])
    refused(client_with(key).get("/api/v1/contacts/"), 403, "insufficient_scope")


def test_an_expired_key_is_refused_and_an_unexpired_one_works(superuser):
    token, key = api_token_create(user=superuser, name="short", scopes=["read"],
                                  expires_at=timezone.now() + timedelta(minutes=5))
    assert client_with(key).get("/api/v1/contacts/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = refused(client_with(key).get("/api/v1/contacts/"), 401, "authentication_failed")
    assert "expired" in body["detail"]


def test_new_keys_expire_after_the_default_lifetime(superuser, settings):
    settings.API_KEY_DEFAULT_LIFETIME_DAYS = 30
    token, _ = api_token_create(user=superuser, name="default")
    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    settings.API_KEY_DEFAULT_LIFETIME_DAYS = 0
    assert api_token_create(user=superuser, name="forever")[0].expires_at is None


def test_last_use_time_and_client_address_are_kept(superuser, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    token, key = api_token_create(user=superuser, name="tracked", scopes=["read"])
    client = client_with(key, HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9")
    assert client.get("/api/v1/contacts/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_from == "203.0.113.9"  # the address the one trusted proxy saw, not the client's claim
    assert timezone.now() - token.last_used_at < timedelta(seconds=30)
    listed = client.get("/api/v1/api-keys/").json()["results"]
    assert [(key["prefix"], key["last_used_from"]) for key in listed] == [(token.prefix, "203.0.113.9")]


def test_rotation_through_the_api_keeps_the_old_key_for_the_grace_period(superuser, settings):
    settings.API_KEY_ROTATION_GRACE_HOURS = 24
    old, old_key = api_token_create(user=superuser, name="crm", scopes=["read", "send"])
    response = client_with(old_key).post("/api/v1/api-keys/rotate/")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["scopes"]) == ("crm", ["read", "send"])
    new_key = body["key"]
    assert client_with(new_key).get("/api/v1/contacts/").status_code == 200
    assert client_with(old_key).get("/api/v1/contacts/").status_code == 200  # no outage while clients switch
    old.refresh_from_db()
    assert old.replaced_by.prefix == body["prefix"]
    assert abs(old.expires_at - (timezone.now() + timedelta(hours=24))) < timedelta(minutes=1)
    assert ("api_token.rotate", "root") in audit_actions(old)
    # A key rotates once: its replacement is the one to rotate next.
    refused(client_with(old_key).post("/api/v1/api-keys/rotate/"), 409, "already_rotated")
    # When the grace period is over the old key stops working.
    ApiToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused(client_with(old_key).get("/api/v1/contacts/"), 401, "authentication_failed")
    assert client_with(new_key).get("/api/v1/contacts/").status_code == 200


def test_rotation_needs_an_api_key(admin_client_logged):
    response = admin_client_logged.post("/api/v1/api-keys/rotate/")
    assert response.status_code == 409 and response.json()["code"] == "not_an_api_key"


def test_the_admin_makes_a_scoped_expiring_key_and_rotates_it(admin_client_logged, superuser):
    expiry = timezone.localtime() + timedelta(days=10)
    response = admin_client_logged.post(reverse("admin:whatsapp_apitoken_add"), {
        "user": superuser.pk, "name": "Reporting", "scopes": ["read"],
        "expires_at_0": expiry.strftime("%Y-%m-%d"), "expires_at_1": expiry.strftime("%H:%M:%S")}, follow=True)
    token = ApiToken.objects.get(name="Reporting")
    assert token.scopes == ["read"] and token.expires_at.date() == expiry.date()
    key = re.search(r"API key for root: (\S+) \(copy it now", response.content.decode()).group(1)
    assert client_with(key).get("/api/v1/contacts/").status_code == 200
    refused(client_with(key).post("/api/v1/messages/", {}, format="json"), 403, "insufficient_scope")

    response = admin_client_logged.post(reverse("admin:whatsapp_apitoken_changelist"),
                                        {"action": "rotate", "_selected_action": [token.pk]}, follow=True)
    new_key = re.search(r"New API key for Reporting \S+ \(root\): (\S+) \(copy", response.content.decode()).group(1)
    token.refresh_from_db()
    assert token.replaced_by.scopes == ["read"] and token.is_active
    assert client_with(new_key).get("/api/v1/contacts/").status_code == 200
    listing = admin_client_logged.get(reverse("admin:whatsapp_apitoken_changelist")).content.decode()
    assert "Scopes" in listing and "Last used from" in listing
    assert "rotated, works until" in listing and "active until" in listing


def test_the_command_makes_a_key_with_the_scopes_asked_for(superuser, capsys):
    call_command("create_api_token", "root", "--name", "reports", "--scope", "read", "--expires-in-days", "7")
    key = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(name="reports")
    assert token.scopes == ["read"]
    assert abs(token.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert client_with(key).get("/api/v1/contacts/").status_code == 200


def test_rotating_in_the_admin_takes_the_permission_to_make_keys(superuser):
    viewer = user_with_perms("viewer", "whatsapp.view_apitoken")
    maker = user_with_perms("maker", "whatsapp.view_apitoken", "whatsapp.add_apitoken")
    for user in (viewer, maker):
        user.is_staff = True
        user.save()
    token, _ = api_token_create(user=maker, name="theirs")
    changelist = reverse("admin:whatsapp_apitoken_changelist")
    viewer_client, maker_client = Client(), Client()
    viewer_client.force_login(viewer)
    maker_client.force_login(maker)
    assert 'value="rotate"' not in viewer_client.get(changelist).content.decode()
    response = viewer_client.post(changelist, {"action": "rotate", "_selected_action": [token.pk]}, follow=True)
    token.refresh_from_db()
    assert token.replaced_by is None and "New API key" not in response.content.decode()
    assert 'value="rotate"' in maker_client.get(changelist).content.decode()


def test_only_a_superuser_gives_out_keys_that_act_as_a_superuser(superuser):
    maker = user_with_perms("maker", "whatsapp.view_apitoken", "whatsapp.add_apitoken")
    maker.is_staff = True
    maker.save()
    client = Client()
    client.force_login(maker)
    response = client.post(reverse("admin:whatsapp_apitoken_add"),
                           {"user": superuser.pk, "name": "escalate", "scopes": ["read"]})
    assert response.status_code == 200 and not ApiToken.objects.filter(name="escalate").exists()
    token, _ = api_token_create(user=superuser, name="root's")
    response = client.post(reverse("admin:whatsapp_apitoken_changelist"),
                           {"action": "rotate", "_selected_action": [token.pk]}, follow=True)
    token.refresh_from_db()
    assert token.replaced_by is None and "only a superuser" in response.content.decode()
