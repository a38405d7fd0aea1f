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
"""

from __future__ import annotations

import json
import mimetypes
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx
from django.utils.dateparse import parse_datetime

from whatsapp.providers.base import (
    BaseProvider,
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
from whatsapp.providers.events import (
    MEDIA_TYPES,
    ConnectionCheck,
    ContactProfile,
    ConversationUpdate,
    DownloadedMedia,
    Identity,
    IdentityKind,
    InboundMessage,
    MediaRef,
    MessageStatus,
    MessageType,
    NormalizedEvent,
    OutboundEcho,
    OutboundMedia,
    OutboundMessage,
    OutboundTemplate,
    RemoteTemplate,
    SendResult,
    StatusUpdate,
    StoredWebhook,
    TemplateManagement,
    UnhandledEvent,
)
from whatsapp.providers.safe_fetch import DOWNLOAD_REFUSED, DownloadRefused, fetch_media
from whatsapp.providers.whatsapp_templates import remote_template

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow

SIGNATURE_HEADER = "X-Chatwoot-Signature"
TIMESTAMP_HEADER = "X-Chatwoot-Timestamp"
DELIVERY_HEADER = "X-Chatwoot-Delivery"
API_TOKEN = "api_token"
WEBHOOK_SECRET = "webhook_secret"
URL_TOKEN = "url_token"
TIMESTAMP_TOLERANCE_SECONDS = 300

ATTACHMENT_TYPES = {
    "image": MessageType.IMAGE,
    "audio": MessageType.AUDIO,
    "video": MessageType.VIDEO,
    "file": MessageType.DOCUMENT,
    "location": MessageType.LOCATION,
    "contact": MessageType.CONTACTS,
}
STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}
CONVERSATION_EVENTS = frozenset({"conversation_created", "conversation_status_changed", "conversation_updated"})
CONTACT_EVENTS = frozenset({"contact_created", "contact_updated"})
# Nested (push-format) messages give message_type as an integer.
PUSH_MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}
# What an HTTP error from Chatwoot's REST API means for us.
ERROR_ADVICE = {
    401: "the API token is wrong or revoked; set the access token of an agent or bot of this account",
    403: "the API token has no access to this account or inbox; use a token of an agent or bot of the inbox",
    404: "the account, inbox or conversation does not exist in Chatwoot",
    422: "Chatwoot refused the message content",
    429: "Chatwoot's request rate limit was reached; retrying later",
}


def _time(value: Any, fallback: datetime) -> datetime:
    # webhook_data gives ISO-8601 strings; the nested push format gives Unix seconds.
    # A time that does not read as one (2**70, a 13th month, a +99:00 offset) is the time we received it,
    # as for the other providers.
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, tz=UTC)
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except (ValueError, OverflowError, OSError):
        return fallback
    if parsed is None:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _message_type(value: Any) -> str:
    return PUSH_MESSAGE_TYPES.get(value, "") if isinstance(value, int) else as_text(value)


class ChatwootProvider(BaseProvider):
    redacted_credential = API_TOKEN
    kind = "chatwoot"
    label = "Chatwoot"
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
    # Chatwoot queues sends without pacing them, and WhatsApp behind it still enforces its pair rate
    # (about one message every 6 s to one user).
    pair_interval_seconds = 6.0
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
        return parse_each([json_body_decode(stored.body)], lambda payload: self._parse_payload(payload, stored))

    def _parse_payload(self, payload: dict, stored: StoredWebhook) -> NormalizedEvent:
        event = as_text(payload.get("event"))
        if event in ("message_created", "message_updated"):
            return self._parse_message_event(event, payload, stored.received_at)
        if event in CONVERSATION_EVENTS:
            return self._parse_conversation(payload)
        if event in CONTACT_EVENTS:
            return ContactProfile(identities=self._contact_identities(payload),
                                  profile_name=as_text(payload.get("name")), raw=payload)
        return UnhandledEvent(f"Chatwoot event {event!r} is not acted on", raw=payload)

    def _scope(self) -> str:
        # Contact ids are only unique inside one Chatwoot installation and account.
        return f"{urlsplit(self.config_value('base_url')).netloc}/{self.provider.business_account_id}"[:64]

    def _contact_identities(self, contact: dict, source_id: str = "") -> tuple[Identity, ...]:
        identities = []
        if contact.get("id") is not None:
            identities.append(Identity(IdentityKind.CHATWOOT_CONTACT_ID, as_text(contact["id"]), self._scope()))
        if phone := as_text(contact.get("phone_number")):
            identities.append(Identity(IdentityKind.PHONE, phone))
        if email := as_text(contact.get("email")):
            identities.append(Identity(IdentityKind.EMAIL, email))
        # The contact inbox's source id: wa_id digits (Cloud channel) or whatsapp:+E164 / whatsapp:<BSUID> (Twilio).
        address = source_id.removeprefix("whatsapp:")
        if address.isdigit():
            identities += [Identity(IdentityKind.PHONE, address), Identity(IdentityKind.WHATSAPP_ID, address)]
        elif address.startswith("+") and address[1:].isdigit():
            identities.append(Identity(IdentityKind.PHONE, address))
        elif address:
            identities.append(Identity(IdentityKind.BUSINESS_SCOPED_ID, address))
        return tuple(dict.fromkeys(identities))

    def _parse_message_event(self, event: str, message: dict, received_at: datetime) -> NormalizedEvent:
        conversation = as_dict(message.get("conversation"))
        inbox_id = as_dict(message.get("inbox")).get("id", conversation.get("inbox_id"))
        # Account webhooks carry every inbox of the account: each event goes to the provider of its inbox.
        routed_to = as_text(inbox_id)
        direction = _message_type(message.get("message_type"))
        if message.get("private"):
            return UnhandledEvent("Chatwoot private note (never a customer message)", routed_to=routed_to,
                                  raw=message)
        if message.get("id") is None or direction not in ("incoming", "outgoing", "template"):
            return UnhandledEvent(f"Chatwoot {direction or 'unknown'} message is not acted on", routed_to=routed_to,
                                  raw=message)
        if event == "message_updated":
            if direction == "incoming":
                return UnhandledEvent("Chatwoot update of an incoming message (edit or delete) kept",
                                      routed_to=routed_to, raw=message)
            return self._parse_outgoing_update(message, conversation, routed_to, received_at)
        sender = as_dict(message.get("sender"))
        contact = sender if direction == "incoming" else as_dict(as_dict(conversation.get("meta")).get("sender"))
        source_id = as_text(as_dict(conversation.get("contact_inbox")).get("source_id"))
        identities = self._contact_identities(contact, source_id)
        message_type, content, media = self._content(message)
        common = {
            "provider_message_id": as_text(message["id"]),
            "timestamp": _time(message.get("created_at"), received_at),
            "identities": identities,
            "message_type": message_type,
            "text": as_text(message.get("content")),
            "content": content,
            "conversation_ref": as_text(conversation.get("id")),
            "routed_to": routed_to,
            "raw": message,
        }
        if direction == "incoming":
            attributes = as_dict(message.get("content_attributes"))
            return InboundMessage(**common, profile_name=as_text(sender.get("name")), media=media,
                                  reply_to_provider_message_id=as_text(attributes.get("in_reply_to")))
        attributes = as_dict(message.get("content_attributes"))
        return OutboundEcho(**common, client_reference=as_text(message.get("echo_id") or attributes.get("echo_id")),
                            sender_label=f"{sender.get('type') or 'user'}: {as_text(sender.get('name'))}".strip())

    def _content(self, message: dict) -> tuple[str, dict[str, Any], tuple[MediaRef, ...]]:
        attachments = [as_dict(item) for item in as_list(message.get("attachments"))]
        content: dict[str, Any] = {"content_type": as_text(message.get("content_type"))}
        if message.get("content_type") == "sticker" and attachments:
            message_type = MessageType.STICKER
        elif attachments:
            message_type = ATTACHMENT_TYPES.get(as_text(attachments[0].get("file_type")), MessageType.UNSUPPORTED)
        else:
            message_type = MessageType.TEXT
        media = []
        for attachment in attachments:
            if attachment.get("file_type") == "location":
                content.update(latitude=attachment.get("coordinates_lat"), longitude=attachment.get("coordinates_long"),
                               name=as_text(attachment.get("fallback_title")))
            elif attachment.get("data_url"):
                media.append(MediaRef(
                    provider_media_id=as_text(attachment.get("id")), url=as_text(attachment["data_url"]),
                    mime_type=as_text(attachment.get("content_type")),
                    filename=f"attachment-{attachment.get('id')}.{attachment['extension']}"
                    if attachment.get("extension") else "",
                    size_bytes=attachment.get("file_size") if isinstance(attachment.get("file_size"), int) else None))
                if attachment.get("transcribed_text"):
                    content["provider_transcript"] = as_text(attachment["transcribed_text"])
        if message_type == MessageType.UNSUPPORTED:
            content["unsupported_type"] = as_text(attachments[0].get("file_type"))
        return message_type, content, tuple(media)

    def _parse_outgoing_update(self, message: dict, conversation: dict, routed_to: str,
                               received_at: datetime) -> NormalizedEvent:
        attributes = as_dict(message.get("content_attributes"))
        error = as_text(attributes.get("external_error"))
        status = as_text(message.get("status"))
        for nested in as_list(conversation.get("messages")):
            # webhook_data has no status; the conversation's latest message (push format) does.
            nested = as_dict(nested)
            if nested.get("id") == message.get("id"):
                status = status or as_text(nested.get("status"))
        if error:
            # Usually "<code>: <title>" (e.g. "131047: Re-engagement message"), sometimes a sentence.
            code, separator, title = error.partition(":")
            if not (separator and code.strip().isalnum() and len(code.strip()) <= 32):
                code, title = "", error
            status, code, title = MessageStatus.FAILED, code.strip(), title.strip()
        else:
            status = STATUS_MAP.get(status) or (MessageStatus.SENT if message.get("source_id") else "")
            code = title = ""
        if not status:
            return UnhandledEvent("Chatwoot update of an outgoing message without a status", routed_to=routed_to,
                                  raw=message)
        return StatusUpdate(provider_message_id=as_text(message["id"]), status=status,
                            timestamp=_time(message.get("updated_at"), received_at), error_code=code,
                            error_title=title, routed_to=routed_to, raw=message)

    def _parse_conversation(self, conversation: dict) -> NormalizedEvent:
        meta = as_dict(conversation.get("meta"))
        sender = as_dict(meta.get("sender"))
        source_id = as_text(as_dict(conversation.get("contact_inbox")).get("source_id"))
        return ConversationUpdate(identities=self._contact_identities(sender, source_id),
                                  conversation_ref=as_text(conversation.get("id")),
                                  state=as_text(conversation.get("status")),
                                  profile_name=as_text(sender.get("name")),
                                  routed_to=as_text(conversation.get("inbox_id")), raw=conversation)

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
                response = self.rest_call(client, "POST", url, action="the message", **self._multipart(message))
            else:
                response = self.rest_call(client, "POST", url, action="the message", json=self._json_body(message))
        payload = as_dict(response_json(response))
        if payload.get("id") is None:
            # Chatwoot may have created the message: sending it again could deliver it twice.
            raise ProviderError(f"Chatwoot answered HTTP {response.status_code} without a message id; the message "
                                "may have been accepted, so it is not sent again", code="bad_response",
                                title="No message id", http_status=response.status_code, raw=payload)
        return SendResult(provider_message_id=as_text(payload["id"]), raw=payload)

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

    def _json_body(self, message: OutboundMessage) -> dict[str, Any]:
        body: dict[str, Any] = {"content": message.text or as_text(message.content.get("text")),
                                "message_type": "outgoing", "private": False}
        attributes: dict[str, Any] = {}
        if message.message_type == MessageType.INTERACTIVE:
            # Chatwoot turns input_select items into WhatsApp reply buttons (up to 3) or a list; it allows
            # only the keys title and value (app/models/concerns/content_attributes_validator.rb).
            body["content"] = as_text(message.content.get("body")) or message.text
            body["content_type"] = "input_select"
            attributes["items"] = _select_items(message.content)
        elif message.message_type == MessageType.TEMPLATE:
            if message.template is None:
                raise ProviderError("a template message needs its template", code="invalid_message")
            body["content"] = message.template.rendered_text or message.text
            body["template_params"] = _template_params(message.template)
        elif message.message_type != MessageType.TEXT:
            raise ProviderError(f"Chatwoot sending does not handle {message.message_type!r} messages",
                                code="unsupported_type")
        if in_reply_to := _reply_to(message):
            attributes["in_reply_to"] = in_reply_to
        if attributes:
            body["content_attributes"] = attributes
        if message.client_reference:
            body["echo_id"] = message.client_reference
        return body

    def _multipart(self, message: OutboundMessage) -> dict[str, Any]:
        """A file goes as multipart/form-data with attachments[] (Chatwoot takes no link to fetch)."""
        media = message.media
        if media is None:
            raise ProviderError(f"a {message.message_type} message needs a file", code="invalid_message")
        content, mime_type = self._media_bytes(media)
        mime_type = media.mime_type or mime_type or "application/octet-stream"
        filename = media.filename or f"{media.kind}{mimetypes.guess_extension(mime_type) or ''}"
        # No "private" field: Rails reads the form string "false" as true.
        data = {"content": media.caption or as_text(message.content.get("caption")), "message_type": "outgoing"}
        if message.client_reference:
            data["echo_id"] = message.client_reference
        if in_reply_to := _reply_to(message):
            # Chatwoot's MessageBuilder parses content_attributes given as a JSON string.
            data["content_attributes"] = json.dumps({"in_reply_to": in_reply_to})
        return {"data": data, "files": {"attachments[]": (filename, content, mime_type)}}

    def _media_bytes(self, media: OutboundMedia) -> tuple[bytes, str]:
        if media.data:
            return media.data, media.mime_type
        if not media.url:
            raise ProviderError(f"the {media.kind} has neither a file nor a link", code="invalid_message")
        try:
            # A link someone gave us: any host, but only at a public address, even on base_url's host (no
            # trusted_hosts: whoever may send a message would otherwise reach the private network).
            fetched = fetch_media(media.url, allowed_hosts=None, source=self.label, mime_type=media.mime_type)
        except ProviderError as exc:
            # The file will not get smaller, nor a refused address become allowed; anything else about
            # fetching it may pass on a later try.
            raise ProviderError(f"could not download the file to attach: {exc}", code=exc.code or "media_fetch",
                                title="Media download failed",
                                retryable=exc.code not in ("too_large", DOWNLOAD_REFUSED)) from exc
        return fetched.content, fetched.mime_type

    def rest_headers(self) -> dict[str, str]:
        return {"api_access_token": self.credential(API_TOKEN)}

    def answered_error(self, response: httpx.Response, action: str) -> ProviderError:
        status = response.status_code
        payload = response_json(response)
        title = _error_message(payload) or response.reason_phrase
        throttled = status == 429  # Rack::Attack's limit (3000 requests a minute per IP by default)
        parts = [f"Chatwoot refused {action} (HTTP {status}: {title})", ERROR_ADVICE.get(status, "")]
        return ProviderError(self.redact(". ".join(part for part in parts if part)), code=f"http_{status}",
                             title=title, retryable=is_retryable_status(status), throttled=throttled,
                             http_status=status, raw=payload or response.text[:2000],
                             retry_after=retry_after_seconds(response.headers.get("retry-after")))



def _reply_to(message: OutboundMessage) -> int | None:
    # Chatwoot quotes a message by its own numeric id (it finds the WhatsApp id to quote itself).
    target = message.reply_to_provider_message_id
    return int(target) if target.isdigit() else None


def _select_items(content: dict[str, Any]) -> list[dict[str, str]]:
    choices = as_list(content.get("buttons")) or [
        row for section in as_list(content.get("sections")) for row in as_list(as_dict(section).get("rows"))]
    return [{"title": as_text(as_dict(choice).get("title")), "value": as_text(as_dict(choice).get("id"))}
            for choice in choices]


def _template_params(template: OutboundTemplate) -> dict[str, Any]:
    # Chatwoot finds the approved template by name and language among those it synced from Meta and
    # builds the components itself (app/services/whatsapp/template_processor_service.rb).
    processed: dict[str, Any] = {"body": {parameter.name: parameter.value for parameter in template.body}}
    if template.header_media is not None:
        if not template.header_media.url:
            raise ProviderError("Chatwoot needs a public URL for a template's header media; this one has none",
                                code="media_url_required", title="Media URL required")
        processed["header"] = {"media_url": template.header_media.url, "media_type": template.header_media.kind}
    elif template.header:
        processed["header"] = {parameter.name: parameter.value for parameter in template.header}
    if template.buttons:
        # Chatwoot takes a button's position in this list as its index; gaps stay empty (and are skipped).
        buttons: list[dict[str, str]] = [{} for _ in range(max(button.index for button in template.buttons) + 1)]
        for button in template.buttons:
            buttons[button.index] = {"type": button.sub_type, "parameter": button.value}
        processed["buttons"] = buttons
    return {"name": template.name, "category": template.category.upper(), "language": template.language,
            "processed_params": processed}


def _error_message(payload: Any) -> str:
    # Chatwoot answers {"error": "..."}, {"errors": [...]} or {"message": "..."} depending on the controller.
    payload = as_dict(payload)
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(as_text(item) for item in errors)
    return as_text(payload.get("error") or payload.get("message") or errors or "")


PROVIDER = ChatwootProvider
