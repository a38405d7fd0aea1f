"""
The sandbox's simulated phone. It plays the part of the provider's servers: after a send it reports
sent, delivered and read to the provider's own webhook URL over HTTP, signed by the sandbox module, so
the demo exercises the same inbox and status pipeline as Meta, Twilio or Chatwoot.
"""

from whatsapp.models import Provider
from whatsapp.providers import backend_for
from whatsapp.providers.sandbox import status_body
from whatsapp.services.providers import provider_webhook_post


def signed_headers(provider: Provider, body: bytes) -> dict[str, str]:
    return backend_for(provider).signed_headers(body)


def report_status(provider_id: int, provider_message_id: str, status: str) -> None:
    provider = Provider.objects.get(pk=provider_id)
    body = status_body(provider_message_id, status)
    provider_webhook_post(provider, body, signed_headers(provider, body))
