"""
Chatwoot inboxes. Verification: `X-Chatwoot-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<raw body>">`
with `X-Chatwoot-Timestamp` inside a tolerance window, so a captured request cannot be replayed later.
Parsing and sending arrive with the inbound and outbound issues.
"""

from __future__ import annotations

import time

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
    constant_time_equals,
    hmac_sha256_hex,
)
from whatsapp.providers.events import ConnectionCheck, NormalizedEvent, OutboundMessage, SendResult

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
DELIVERY_HEADER = "X-Chatwoot-Delivery"
API_TOKEN = "api_token"
WEBHOOK_SECRET = "webhook_secret"
TIMESTAMP_TOLERANCE_SECONDS = 300


class ChatwootProvider(BaseProvider):
    kind = "chatwoot"
    label = "Chatwoot"
    stored_headers = (SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower(), DELIVERY_HEADER.lower())
    options = (
        ProviderOption("base_url", "Chatwoot base URL, e.g. https://chat.example.com", target="config",
                       required=True),
        ProviderOption("account_id", "Chatwoot account id", target="business_account_id", required=True),
        ProviderOption("inbox_id", "Chatwoot inbox id", target="external_id", required=True),
        ProviderOption(API_TOKEN, "API access token of an agent or bot", target="credentials", required=True,
                       secret=True),
        ProviderOption(WEBHOOK_SECRET, "Webhook signing secret", target="credentials", secret=True),
        ProviderOption("phone_number", "The inbox's WhatsApp number (E.164)", target="phone_number"),
    )

    def verify_webhook(self, request: WebhookRequest) -> None:
        secret = self.credential(WEBHOOK_SECRET)
        if not secret:
            raise WebhookRejected(403, "this provider has no webhook secret configured")
        received = request.header(SIGNATURE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if not received or not timestamp:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
        try:
            age = abs(time.time() - int(timestamp))
        except ValueError:
            raise WebhookRejected(401, f"{TIMESTAMP_HEADER} is not a Unix timestamp") from None
        if age > TIMESTAMP_TOLERANCE_SECONDS:
            raise WebhookRejected(403, f"{TIMESTAMP_HEADER} is outside the {TIMESTAMP_TOLERANCE_SECONDS} s window")
        expected = "sha256=" + hmac_sha256_hex(secret, timestamp.encode() + b"." + request.body)
        if not constant_time_equals(received, expected):
            raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the body")

    def delivery_id(self, request: WebhookRequest) -> str:
        return request.header(DELIVERY_HEADER)

    def parse_webhook(self, body: bytes, headers: dict[str, str], content_type: str) -> list[NormalizedEvent]:
        raise NotImplementedError("parsing Chatwoot webhooks arrives with the inbound issue")

    def send(self, message: OutboundMessage) -> SendResult:
        raise ProviderError("sending through Chatwoot arrives with the outbound issue", code="not_implemented")

    def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(False, "the Chatwoot connection test arrives with the outbound issue")


PROVIDER = ChatwootProvider
