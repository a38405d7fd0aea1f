"""The inbox endpoint with the sandbox provider: store, acknowledge, and refuse bad input clearly.
(What every provider kind's endpoint does is in tests/whatsapp/providers/test_provider_contract.py.)"""

import pytest
from django.db import connection

from tests.conftest import fixture_bytes, free_port, json_body
from whatsapp.models import WebhookEvent
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db


def test_signed_event_is_stored_raw_and_acknowledged(sandbox_provider, post_sandbox):
    body = fixture_bytes("sandbox", "inbound_text.json")
    response = post_sandbox(sandbox_provider, body)
    assert response.status_code == 200
    event = WebhookEvent.objects.get(pk=json_body(response)["event"])
    assert bytes(event.body) == body
    assert event.status == "pending" and event.signature_valid is True
    assert "x-sandbox-signature" in event.headers
    assert response["X-Request-ID"] == event.correlation_id


@pytest.mark.parametrize(
    ("sign", "headers", "status", "reason"),
    [
        (False, {}, 401, "missing X-Sandbox-Signature"),
        (False, {"X-Sandbox-Signature": "sha256=" + "0" * 64}, 403, "does not match"),
    ],
)
def test_unsigned_or_wrongly_signed_is_rejected_and_recorded(sandbox_provider, post_sandbox, sign, headers, status,
                                                             reason):
    response = post_sandbox(sandbox_provider, fixture_bytes("sandbox", "inbound_text.json"), sign=sign,
                            headers=headers)
    assert response.status_code == status
    assert reason in json_body(response)["error"]
    event = WebhookEvent.objects.get()
    assert event.status == "rejected" and event.http_status == status and event.signature_valid is False


def test_malformed_json_gets_400_and_is_recorded(sandbox_provider, post_sandbox):
    response = post_sandbox(sandbox_provider, b'{"events": [')
    assert response.status_code == 400
    assert "not valid JSON" in json_body(response)["error"]
    assert WebhookEvent.objects.get().rejection_reason.startswith("body is not valid JSON")


def test_wrong_shape_gets_400(sandbox_provider, post_sandbox):
    response = post_sandbox(sandbox_provider, b'["not", "an", "object"]')
    assert response.status_code == 400
    assert "events" in json_body(response)["error"]


def test_oversized_body_gets_413(sandbox_provider, post_sandbox, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    response = post_sandbox(sandbox_provider, b'{"events": [], "pad": "' + b"x" * 2000 + b'"}')
    assert response.status_code == 413
    event = WebhookEvent.objects.get()
    assert event.status == "rejected" and event.http_status == 413 and bytes(event.body) == b""


def test_wrong_content_type_gets_415(sandbox_provider, post_sandbox):
    response = post_sandbox(sandbox_provider, b"events=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert WebhookEvent.objects.get().http_status == 415


def test_unknown_and_inactive_providers_get_404(sandbox_provider, post_sandbox, client):
    response = client.post("/webhooks/sandbox/00000000-0000-0000-0000-000000000000/", data=b"{}",
                           content_type="application/json")
    assert response.status_code == 404
    sandbox_provider.is_active = False
    sandbox_provider.save()
    assert post_sandbox(sandbox_provider, fixture_bytes("sandbox", "inbound_text.json")).status_code == 404
    assert WebhookEvent.objects.filter(http_status=404).count() == 2


def test_get_on_a_provider_without_handshake_is_405(sandbox_provider, client):
    response = client.get(f"/webhooks/sandbox/{sandbox_provider.public_id}/")
    assert response.status_code == 405


def test_database_outage_answers_503(transactional_db, client):
    provider = provider_create(kind="sandbox", name="Sandbox outage", options={})
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update({"HOST": "127.0.0.1", "PORT": str(free_port())})  # nothing listens there
    try:
        response = client.post(f"/webhooks/sandbox/{provider.public_id}/", data=b'{"events": []}',
                               content_type="application/json")
    finally:
        connection.close()
        connection.settings_dict.update(original)
    assert response.status_code == 503
    assert "retry" in json_body(response)["error"]
