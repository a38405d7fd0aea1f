"""
The sandbox's simulated phone. It plays the part of the provider's servers: after a send it reports
sent, delivered and read to the provider's own webhook URL over HTTP, signed by the sandbox module, so
the demo exercises the same inbox and status pipeline as Meta, Twilio or Chatwoot.
"""

from django.conf import settings
from django.db import transaction

from whatsapp.models import Provider
from whatsapp.providers import provider_for
from whatsapp.providers.sandbox import status_body
from whatsapp.services.providers import provider_webhook_post

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


def signed_headers(provider: Provider, body: bytes) -> dict[str, str]:
    return provider_for(provider).signed_headers(body)


def report_status(provider_id: int, provider_message_id: str, status: str) -> None:
    provider = Provider.objects.get(pk=provider_id)
    body = status_body(provider_message_id, status)
    provider_webhook_post(provider, body, signed_headers(provider, body))
