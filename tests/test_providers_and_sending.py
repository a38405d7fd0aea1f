"""The provider registry, provider set-up through the admin, and paused providers holding messages."""

import pytest
from django.urls import reverse

from contacts.models import Contact
from tests.conftest import json_body
from whatsapp.models import Message, Provider
from whatsapp.providers import DuplicateProviderKind, register, registered_kinds, sandbox
from whatsapp.providers.sandbox import SandboxBackend
from whatsapp.services.delivery import message_deliver
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_set_paused
from whatsapp.services.webhooks import webhook_event_process


def test_registry_knows_every_kind_and_refuses_a_duplicate():
    assert registered_kinds() == ["chatwoot", "meta", "sandbox", "twilio"]

    class AnotherSandbox(SandboxBackend):
        pass

    with pytest.raises(DuplicateProviderKind, match="'sandbox' is already registered"):
        register(AnotherSandbox)


@pytest.mark.django_db
def test_sandbox_added_in_admin_gets_its_secret_and_defaults(admin_client_logged):
    response = admin_client_logged.post(reverse("admin:whatsapp_provider_add"), {
        "kind": "sandbox", "name": "Admin sandbox", "is_active": "on", "rate_limit_per_second": "0",
        "verification_status": "unverified"})
    assert response.status_code == 302
    provider = Provider.objects.get(name="Admin sandbox")
    assert len(provider.credentials["webhook_secret"]) >= 32
    assert provider.phone_number == "+15550000000" and provider.rate_limit_per_second == 50


@pytest.mark.django_db
def test_paused_provider_holds_messages_until_resumed(sandbox_provider, post_sandbox, superuser,
                                                      django_capture_on_commit_callbacks):
    # The customer writes now (so the 24-hour window is open whatever the fixtures' dates).
    inbound = sandbox.inbound_body(from_phone="+15551230001", name="Ana", text="Where is my order?")
    webhook_event_process(json_body(post_sandbox(sandbox_provider, inbound))["event"])
    provider_set_paused(provider=sandbox_provider, paused=True, actor=superuser)
    first = message_send_text(provider=sandbox_provider, contact=Contact.objects.get(), text="one")
    second = message_send_text(provider=sandbox_provider, contact=Contact.objects.get(), text="two")
    assert message_deliver(first.pk).status == "queued"

    with django_capture_on_commit_callbacks() as callbacks:
        provider_set_paused(provider=sandbox_provider, paused=False, actor=superuser)
    # The first was held (out of the broker) and is handed back; the second's task is still queued.
    assert len(callbacks) == 1
    assert [message_deliver(m.pk).status for m in (first, second)] == ["sent", "sent"]
    assert Message.objects.get(pk=first.pk).provider_message_id.startswith("sbx-")


@pytest.mark.django_db
def test_api_keys_are_shown_once_stored_as_digests_and_revocable(admin_client_logged, superuser):
    from django.db import connection

    from core.models import ApiToken

    response = admin_client_logged.post(reverse("admin:whatsapp_apitoken_add"),
                                        {"user": superuser.pk, "name": "CRM"}, follow=True)
    page = response.content.decode()
    token = ApiToken.objects.get(name="CRM")
    key = page.split("API key for root: ")[1].split(" ")[0]
    assert key.startswith(token.prefix + ".")
    with connection.cursor() as cursor:
        cursor.execute("SELECT prefix, digest FROM whatsapp_apitoken")
        assert key not in str(cursor.fetchall())
    listing = admin_client_logged.get(reverse("admin:whatsapp_apitoken_changelist")).content.decode()
    assert key not in listing and token.prefix in listing

    assert admin_client_logged.get("/api/v1/providers/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    admin_client_logged.post(reverse("admin:whatsapp_apitoken_changelist"),
                             {"action": "revoke", "_selected_action": [token.pk]})
    from django.test import Client

    assert Client().get("/api/v1/providers/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


@pytest.mark.django_db
def test_health_names_the_failure_without_details(client, settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings.LOCAL_STORAGE_DIR = blocker / "sub"
    body = json_body(client.get("/health/"))
    assert body["checks"]["storage"]["status"] == "degraded"
    assert body["checks"]["storage"]["error"] == "NotADirectoryError"
    assert str(tmp_path) not in str(body)
