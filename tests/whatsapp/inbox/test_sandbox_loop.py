"""
The whole sandbox loop through a real Celery worker on Redis: send -> sent -> delivered -> read, with
the simulated phone's receipts arriving over HTTP at the live server's webhook endpoint.
"""

import json

import httpx
import pytest

from contacts.models import Contact
from tests.conftest import fixture_bytes, sandbox_fixture_now, wait_until
from whatsapp import sandbox_phone
from whatsapp.models import Message, MessageStatusEvent, WebhookEvent
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _post_inbound(provider, live_server, body: bytes, request_id: str = "") -> httpx.Response:
    headers = sandbox_phone.signed_headers(provider, body)
    if request_id:
        headers["X-Request-ID"] = request_id
    return httpx.post(f"{live_server.url}/webhooks/sandbox/{provider.public_id}/", content=body, headers=headers)


def test_send_then_sent_delivered_read(celery_worker, live_server):
    provider = provider_create(kind="sandbox", name="Loop sandbox", options={})
    assert _post_inbound(provider, live_server, sandbox_fixture_now("inbound_text.json")).status_code == 200
    wait_until(lambda: Message.objects.filter(direction="inbound").exists(), 30,
               message="the worker to process the inbound webhook")

    contact = Contact.objects.get()
    message = message_send_text(provider=provider, contact=contact, text="Your order ships today.")
    assert message.status == "queued"

    def reached_read():
        message.refresh_from_db()
        return message.status == "read"

    wait_until(reached_read, 60, message="the message to be read")
    assert message.provider_message_id.startswith("sbx-")
    assert message.sent_at and message.delivered_at and message.read_at
    assert message.sent_at <= message.delivered_at <= message.read_at
    reports = MessageStatusEvent.objects.filter(message=message).values_list("status", flat=True)
    assert sorted(reports) == ["delivered", "read", "sent"]
    assert WebhookEvent.objects.filter(status="processed").count() == 4  # one inbound + three receipts
    assert message.session is not None


def test_correlation_id_follows_a_webhook_into_its_task(celery_worker, live_server):
    provider = provider_create(kind="sandbox", name="Correlated sandbox", options={})
    response = _post_inbound(provider, live_server, fixture_bytes("sandbox", "inbound_text.json"),
                             request_id="corr-test-4711")
    assert response.headers["X-Request-ID"] == "corr-test-4711"
    event_id = response.json()["event"]
    wait_until(lambda: WebhookEvent.objects.get(pk=event_id).status == "processed", 30,
               message="processing")

    def processed_line():
        for line in celery_worker.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"webhook_event": {event_id}' in line:
                entry = json.loads(line)
                if entry["message"] == "webhook event processed":
                    return entry
        return None

    entry = wait_until(processed_line, 10, message="the worker's JSON log line")
    assert entry["correlation_id"] == "corr-test-4711"
