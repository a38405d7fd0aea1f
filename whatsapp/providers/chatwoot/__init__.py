"""
Chatwoot inboxes. Verification: `X-Chatwoot-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<raw body>">`
with `X-Chatwoot-Timestamp` inside a tolerance window, so a captured request cannot be replayed later;
`X-Chatwoot-Delivery` is stable across Chatwoot's own retries and deduplicates. Chatwoot signs account
webhooks since 4.12 and API-inbox webhooks since 4.13; for older versions a provider may opt in to a
secret token in the URL instead (only when it has no signing secret).

Chatwoot echoes every message of the inbox, ours included, and sends private notes too: only incoming,
non-private messages become inbound messages; outgoing ones are echoes (matched to what we sent).

Sending posts into an existing conversation (`/api/v1/accounts/<account>/conversations/<display id>/messages`,
header `api_access_token`): JSON for text, buttons and templates, multipart/form-data for files. Chatwoot
then hands the message to WhatsApp on its own, and reports the outcome as a `message_updated` event.

The package: `wire` (names, event tables, error advice), `parsing` (webhooks -> events), `sending` (message
bodies); this module is the backend, which makes the calls.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx

from whatsapp.providers.base import (
    ProviderBackend,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
    as_dict,
    as_list,
    as_text,
    constant_time_equals,
    hmac_sha256_hex,
    http_client,
    is_retryable_status,
    json_body_decode,
    parse_each,
    response_json,
    retry_after_seconds,
    url_host,
)
from whatsapp.providers.chatwoot.parsing import parse_payload
from whatsapp.providers.chatwoot.sending import json_body, multipart
from whatsapp.providers.chatwoot.wire import (
    API_TOKEN,
    DELIVERY_HEADER,
    ERROR_ADVICE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TIMESTAMP_TOLERANCE_SECONDS,
    URL_TOKEN,
    WEBHOOK_SECRET,
    error_message,
)
from whatsapp.providers.events import (
    MEDIA_TYPES,
    ConnectionCheck,
    DownloadedMedia,
    Identity,
    IdentityKind,
    MediaRef,
    MessageType,
    NormalizedEvent,
    OutboundMessage,
    RemoteTemplate,
    SendResult,
    StoredWebhook,
    TemplateManagement,
)
from whatsapp.providers.safe_fetch import DownloadRefused, fetch_media
from whatsapp.providers.whatsapp_templates import remote_template

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow

__all__ = ["PROVIDER", "ChatwootBackend"]


class ChatwootBackend(ProviderBackend):
    redacted_credential = API_TOKEN
    kind = "chatwoot"
    label = "Chatwoot"
    display_label = "Chatwoot"
    stored_headers = (SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower(), DELIVERY_HEADER.lower())
    # Chatwoot passes a WhatsApp button or list reply on as its title only (the id is dropped in
    # app/services/whatsapp/incoming_message_service_helpers.rb).
    button_replies_by_title = True
    # Files go as attachments; Chatwoot has no location, sticker or reaction sending through its API.
    sendable_types = frozenset({MessageType.TEXT, MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO,
                                MessageType.DOCUMENT, MessageType.INTERACTIVE, MessageType.TEMPLATE})
    supports_reply_context = True
    # Chatwoot passes the channel's error on as "<code>: <title>": Meta's codes for a Cloud API inbox,
    # Twilio's for a Twilio one.
    consent_error_codes = {"131026": "undeliverable: not on WhatsApp or blocked the business",
                           "63014": "blocked the business", "63024": "invalid recipient: not on WhatsApp",
                           "63003": "not a WhatsApp user or inactive"}
    marketing_cap_error_codes = frozenset({"131049", "63049"})
    not_on_whatsapp_error_codes = frozenset({"131026", "63024", "63003"})
    # Chatwoot queues sends without pacing them, and WhatsApp behind it still enforces its pair rate
    # (about one message every 6 s to one user).
    pair_interval_seconds = 6.0
    # A Chatwoot conversation is open, pending, snoozed or resolved; ours follows it both ways.
    keeps_conversation_state = True
    # The inbox's templates are made in Meta's WhatsApp Manager and synced by Chatwoot: imported for reference.
    template_management = TemplateManagement.IMPORT
    # Templates live in each inbox (synced there from its own WABA), not in the Chatwoot account.
    templates_shared_by_account = False
    # Attachments are ActiveStorage redirects on the installation's own host (base_url) to its storage
    # service: the disk service (the same host) or a cloud store, whose hosts are these; another store
    # (an S3-compatible one) is named in the provider's media_storage_hosts.
    # https://github.com/chatwoot/chatwoot/blob/develop/config/storage.yml
    media_hosts = ("*.amazonaws.com", "storage.googleapis.com", "*.blob.core.windows.net")
    options = (
        ProviderOption("base_url", "Chatwoot base URL, e.g. https://chat.example.com", target="config",
                       required=True),
        ProviderOption("account_id", "Chatwoot account id", target="business_account_id", required=True),
        ProviderOption("inbox_id", "Chatwoot inbox id", target="external_id", required=True),
        ProviderOption(API_TOKEN, "API access token of an agent or bot", target="credentials", required=True,
                       secret=True),
        ProviderOption(WEBHOOK_SECRET, "Webhook signing secret (Chatwoot 4.12 and newer)", target="credentials",
                       secret=True),
        ProviderOption(URL_TOKEN, "Only for Chatwoot versions that sign nothing and only without a signing secret: "
                       "a secret token that must be in the webhook URL", target="credentials", secret=True),
        ProviderOption("phone_number", "The inbox's WhatsApp number (E.164)", target="phone_number"),
        ProviderOption("media_storage_hosts", "Only when Chatwoot stores files outside its own host, Amazon S3, "
                       "Google Cloud Storage and Azure (e.g. an S3-compatible store): the host names attachment "
                       "downloads redirect to, comma-separated", target="config"),
    )

    def may_route_to(self, other: ProviderRow) -> bool:
        # An account webhook covers every inbox of one Chatwoot account, under one secret.
        same_account = (other.config.get("base_url", "").rstrip("/") == self.config_value("base_url").rstrip("/")
                        and other.business_account_id == self.provider.business_account_id)
        secret = self.credential(WEBHOOK_SECRET)
        return same_account and bool(secret) and constant_time_equals(
            secret, str(other.credentials.get(WEBHOOK_SECRET, "")))

    def webhook_query(self) -> dict[str, str]:
        if self.credential(URL_TOKEN) and not self.credential(WEBHOOK_SECRET):
            return {"token": self.credential(URL_TOKEN)}
        return {}

    def verify_webhook(self, request: WebhookRequest) -> None:
        secret = self.credential(WEBHOOK_SECRET)
        if not secret and self.credential(URL_TOKEN):
            self._verify_url_token(request)
            return
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

    def _verify_url_token(self, request: WebhookRequest) -> None:
        received = request.query.get("token", "")
        if not received:
            raise WebhookRejected(401, "missing token in the webhook URL")
        if not constant_time_equals(received, self.credential(URL_TOKEN)):
            raise WebhookRejected(403, "the URL token does not match")

    def delivery_id(self, request: WebhookRequest) -> str:
        return request.header(DELIVERY_HEADER)

    def check_payload(self, payload: Any) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
            raise WebhookRejected(400, 'body must be a JSON object with an "event" name')

    # --- parsing ---------------------------------------------------------------------------
    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        return parse_each([json_body_decode(stored.body)],
                          lambda payload: parse_payload(payload, stored.received_at, self._scope))

    def _scope(self) -> str:
        # Contact ids are only unique inside one Chatwoot installation and account.
        return f"{urlsplit(self.config_value('base_url')).netloc}/{self.provider.business_account_id}"[:64]

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # data_url is an ActiveStorage redirect (its signed id is the credential) to a short-lived URL.
        base_url = self.config_value("base_url")
        try:
            url = urljoin(base_url.rstrip("/") + "/", media.url)
        except ValueError as exc:  # e.g. "http://[x": urllib takes it for a broken IPv6 address
            raise DownloadRefused(f"refused to download {media.url[:200]}: not a valid URL ({exc})") from exc
        # The installation's own host may be on a private network: the operator named it in base_url.
        return fetch_media(url, allowed_hosts=self.media_download_hosts(), source=self.label,
                           mime_type=media.mime_type, trusted_hosts=(url_host(base_url),))

    def media_download_hosts(self) -> tuple[str, ...]:
        extra = [host.strip() for host in self.config_value("media_storage_hosts").split(",") if host.strip()]
        return (url_host(self.config_value("base_url")), *self.media_hosts, *extra)

    # --- sending ---------------------------------------------------------------------------
    def recipient_address(self, to: tuple[Identity, ...]) -> str:
        # Chatwoot sends into a conversation, not to an address: this only tells whether the contact is
        # one Chatwoot knows (a contact id of this installation and account), or at least has a number.
        for identity in to:
            if identity.kind == IdentityKind.CHATWOOT_CONTACT_ID and identity.scope in ("", self._scope()):
                return identity.value
        return next((identity.value for identity in to if identity.kind == IdentityKind.PHONE), "")

    def send(self, message: OutboundMessage) -> SendResult:
        # https://developers.chatwoot.com/api-reference/messages/create-new-message
        if not message.conversation_ref:
            raise ProviderError("Chatwoot sends only into an existing conversation: the contact must have written "
                                "to this inbox first", code="no_conversation", title="No conversation")
        url = self._api_url(f"conversations/{message.conversation_ref}/messages")
        with http_client() as client:
            if message.message_type in MEDIA_TYPES:
                response = self.rest_call(client, "POST", url, action="the message", **multipart(message, self.label))
            else:
                response = self.rest_call(client, "POST", url, action="the message", json=json_body(message))
        payload = as_dict(response_json(response))
        if payload.get("id") is None:
            # Chatwoot may have created the message: sending it again could deliver it twice.
            raise ProviderError(f"Chatwoot answered HTTP {response.status_code} without a message id; the message "
                                "may have been accepted, so it is not sent again", code="bad_response",
                                title="No message id", http_status=response.status_code, raw=payload)
        return SendResult(provider_message_id=as_text(payload["id"]), raw=payload)

    def conversation_state_push(self, conversation_ref: str, state: str, snoozed_until: datetime | None) -> None:
        # https://developers.chatwoot.com/api-reference/conversations/toggle-status: open, pending, snoozed or
        # resolved; snoozed_until in Unix seconds (without it, until the contact writes).
        body: dict[str, Any] = {"status": state}
        if state == "snoozed" and snoozed_until is not None:
            body["snoozed_until"] = int(snoozed_until.timestamp())
        with http_client() as client:
            self.rest_call(client, "POST", self._api_url(f"conversations/{conversation_ref}/toggle_status"),
                           action="the conversation's status", json=body)

    def check_connection(self) -> ConnectionCheck:
        try:
            with http_client() as client:
                response = self.rest_call(client, "GET", self._api_url(f"inboxes/{self.provider.external_id}"),
                                      action="the inbox lookup")
        except ProviderError as exc:
            return ConnectionCheck(False, str(exc))
        inbox = as_dict(response_json(response))
        return ConnectionCheck(True, f"inbox {as_text(inbox.get('name')) or self.provider.external_id} "
                                     f"({as_text(inbox.get('channel_type')) or 'unknown channel'})")

    def list_templates(self) -> list[RemoteTemplate]:
        # A WhatsApp Cloud inbox carries the templates Chatwoot last synced from Meta (every 3 hours, or on
        # its "sync templates" action) as `message_templates`, in Meta's own shape; other channels have none.
        # https://developers.chatwoot.com/api-reference/inboxes/get-an-inbox
        with http_client() as client:
            response = self.rest_call(client, "GET", self._api_url(f"inboxes/{self.provider.external_id}"),
                                      action="the inbox lookup")
        inbox = as_dict(response_json(response))
        return [remote_template(as_dict(item)) for item in as_list(inbox.get("message_templates"))]

    def _api_url(self, path: str) -> str:
        base = self.config_value("base_url").rstrip("/")
        return f"{base}/api/v1/accounts/{self.provider.business_account_id}/{path}"

    def rest_headers(self) -> dict[str, str]:
        return {"api_access_token": self.credential(API_TOKEN)}

    def answered_error(self, response: httpx.Response, action: str) -> ProviderError:
        status = response.status_code
        payload = response_json(response)
        title = error_message(payload) or response.reason_phrase
        throttled = status == 429  # Rack::Attack's limit (3000 requests a minute per IP by default)
        parts = [f"Chatwoot refused {action} (HTTP {status}: {title})", ERROR_ADVICE.get(status, "")]
        return ProviderError(self.redact(". ".join(part for part in parts if part)), code=f"http_{status}",
                             title=title, retryable=is_retryable_status(status), throttled=throttled,
                             http_status=status, raw=payload or response.text[:2000],
                             retry_after=retry_after_seconds(response.headers.get("retry-after")))


PROVIDER = ChatwootBackend
