"""
The sandbox's simulated phone. It plays the part of the provider's servers: after a send it reports
sent, delivered and read to the provider's own webhook URL over HTTP, signed like a real provider
would, so the demo exercises the same inbox and status pipeline as Meta, Twilio or Chatwoot.
"""

import json
import time
import uuid

import httpx
from django.conf import settings
from django.db import transaction

from whatsapp.models import Provider
from whatsapp.providers.sandbox import SIGNATURE_HEADER, WEBHOOK_SECRET, sign
from whatsapp.services.providers import provider_webhook_url

RECEIPT_SEQUENCE = ("sent", "delivered", "read")


def schedule_receipts(provider_id: int, provider_message_id: str) -> None:
    from whatsapp.tasks import sandbox_report_status_task

    delay = settings.SANDBOX_STATUS_DELAY_SECONDS
    for step, status in enumerate(RECEIPT_SEQUENCE):
        transaction.on_commit(
            lambda status=status, step=step: sandbox_report_status_task.apply_async(
                (provider_id, provider_message_id, status), countdown=delay * step
            ),
            robust=True,
        )


def status_payload(provider_message_id: str, status: str) -> bytes:
    event = {"type": "status", "message_id": provider_message_id, "status": status, "timestamp": time.time()}
    return json.dumps({"events": [event]}).encode()


def inbound_payload(*, from_phone: str, text: str, name: str = "", message_id: str = "") -> bytes:
    event = {"type": "message", "id": message_id or f"sbx-in-{uuid.uuid4().hex}", "from": from_phone,
             "name": name, "text": text, "timestamp": time.time()}
    return json.dumps({"events": [event]}).encode()


def signed_headers(provider: Provider, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(provider.credentials[WEBHOOK_SECRET], body)}


def post_to_webhook(provider: Provider, body: bytes) -> httpx.Response:
    response = httpx.post(provider_webhook_url(provider), content=body, headers=signed_headers(provider, body),
                          timeout=10)
    response.raise_for_status()
    return response


def report_status(provider_id: int, provider_message_id: str, status: str) -> None:
    provider = Provider.objects.get(pk=provider_id)
    post_to_webhook(provider, status_payload(provider_message_id, status))
