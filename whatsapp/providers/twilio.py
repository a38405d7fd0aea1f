"""
Twilio WhatsApp senders. Verification uses the twilio SDK's RequestValidator over the public URL
(rebuilt from PUBLIC_BASE_URL, because Twilio signs the URL it called, not the one behind our proxy).
Parsing and sending arrive with the inbound and outbound issues.
"""

from __future__ import annotations

from twilio.request_validator import RequestValidator

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
)
from whatsapp.providers.events import ConnectionCheck, NormalizedEvent, OutboundMessage, SendResult

SIGNATURE_HEADER = "X-Twilio-Signature"
AUTH_TOKEN = "auth_token"


class TwilioProvider(BaseProvider):
    kind = "twilio"
    label = "Twilio"
    accepted_content_types = ("application/x-www-form-urlencoded",)
    stored_headers = (SIGNATURE_HEADER.lower(), "i-twilio-idempotency-token")
    default_rate_limit_per_second = 10
    options = (
        ProviderOption("account_sid", "Account SID (AC...)", target="business_account_id", required=True),
        ProviderOption(AUTH_TOKEN, "Auth token", target="credentials", required=True, secret=True),
        ProviderOption("phone_number", "The WhatsApp sender number (E.164)", target="phone_number", required=True),
    )

    def check_body(self, request: WebhookRequest) -> None:
        if not request.form:
            raise WebhookRejected(400, "body must be a non-empty form")

    def verify_webhook(self, request: WebhookRequest) -> None:
        token = self.credential(AUTH_TOKEN)
        if not token:
            raise WebhookRejected(403, "this provider has no auth token configured")
        received = request.header(SIGNATURE_HEADER)
        if not received:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} header")
        if not RequestValidator(token).validate(request.public_url, request.form, received):
            raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the URL and parameters")

    def delivery_id(self, request: WebhookRequest) -> str:
        return request.header("I-Twilio-Idempotency-Token")

    def parse_webhook(self, body: bytes, headers: dict[str, str], content_type: str) -> list[NormalizedEvent]:
        raise NotImplementedError("parsing Twilio webhooks arrives with the inbound issue")

    def send(self, message: OutboundMessage) -> SendResult:
        raise ProviderError("sending through Twilio arrives with the outbound issue", code="not_implemented")

    def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(False, "the Twilio connection test arrives with the outbound issue")


PROVIDER = TwilioProvider
