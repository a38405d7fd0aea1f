"""
Meta WhatsApp Cloud API. Verification is here now; parsing and sending arrive with the inbound and
outbound issues. Until then a verified POST is stored and its processing fails with a clear error, so
it is kept and re-run once the parser lands: nothing acknowledged is lost.
"""

from __future__ import annotations

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    VerificationAnswer,
    WebhookRejected,
    WebhookRequest,
    constant_time_equals,
    hmac_sha256_hex,
)
from whatsapp.providers.events import ConnectionCheck, NormalizedEvent, OutboundMessage, SendResult

SIGNATURE_HEADER = "X-Hub-Signature-256"
ACCESS_TOKEN = "access_token"
APP_SECRET = "app_secret"
VERIFY_TOKEN = "verify_token"


class MetaProvider(BaseProvider):
    kind = "meta"
    label = "Meta Cloud API"
    stored_headers = (SIGNATURE_HEADER.lower(),)
    # Cloud API default throughput per business number (messages/second); upgradable to 1000.
    default_rate_limit_per_second = 80
    options = (
        ProviderOption("phone_number_id", "Cloud API phone number id", target="external_id", required=True),
        ProviderOption("waba_id", "WhatsApp Business Account id", target="business_account_id", required=True),
        ProviderOption("phone_number", "The business phone number (E.164)", target="phone_number"),
        ProviderOption(ACCESS_TOKEN, "System user access token", target="credentials", required=True, secret=True),
        ProviderOption(APP_SECRET, "App secret (signs webhooks)", target="credentials", required=True, secret=True),
        ProviderOption(VERIFY_TOKEN, "Webhook verify token", target="credentials", required=True, secret=True),
    )

    def answer_verification(self, request: WebhookRequest) -> VerificationAnswer:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/create-webhook-endpoint
        expected = self.credential(VERIFY_TOKEN)
        if request.query.get("hub.mode") != "subscribe":
            raise WebhookRejected(400, "hub.mode must be 'subscribe'")
        if not expected or not constant_time_equals(request.query.get("hub.verify_token", ""), expected):
            raise WebhookRejected(403, "hub.verify_token does not match")
        return VerificationAnswer(200, request.query.get("hub.challenge", ""))

    def verify_webhook(self, request: WebhookRequest) -> None:
        secret = self.credential(APP_SECRET)
        if not secret:
            raise WebhookRejected(403, "this provider has no app secret configured")
        received = request.header(SIGNATURE_HEADER)
        if not received:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} header")
        if not constant_time_equals(received, "sha256=" + hmac_sha256_hex(secret, request.body)):
            raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the body")

    def parse_webhook(self, body: bytes, headers: dict[str, str], content_type: str) -> list[NormalizedEvent]:
        raise NotImplementedError("parsing Meta webhooks arrives with the inbound issue")

    def send(self, message: OutboundMessage) -> SendResult:
        raise ProviderError("sending through Meta arrives with the outbound issue", code="not_implemented")

    def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(False, "the Meta connection test arrives with the outbound issue")


PROVIDER = MetaProvider
