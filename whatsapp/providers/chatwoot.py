"""
Chatwoot inboxes. Verification: `X-Chatwoot-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<raw body>">`
with `X-Chatwoot-Timestamp` inside a tolerance window, so a captured request cannot be replayed later;
`X-Chatwoot-Delivery` is stable across Chatwoot's own retries and deduplicates. Chatwoot signs account
webhooks since 4.12 and API-inbox webhooks since 4.13; for older versions a provider may opt in to a
secret token in the URL instead (only when it has no signing secret).

Chatwoot echoes every message of the inbox, ours included, and sends private notes too: only incoming,
non-private messages become inbound messages; outgoing ones are echoes (matched to what we sent).
Sending arrives with the outbound issue.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from django.utils.dateparse import parse_datetime

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
    as_dict,
    as_text,
    clean_json_bytes,
    constant_time_equals,
    fetch_media_bytes,
    hmac_sha256_hex,
    http_client,
)
from whatsapp.providers.events import (
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
    OutboundMessage,
    SendResult,
    StatusUpdate,
    StoredWebhook,
    UnhandledEvent,
)

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


def _time(value: Any, fallback: datetime) -> datetime:
    # webhook_data gives ISO-8601 strings; the nested push format gives Unix seconds.
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _message_type(value: Any) -> str:
    return PUSH_MESSAGE_TYPES.get(value, "") if isinstance(value, int) else as_text(value)


class ChatwootProvider(BaseProvider):
    kind = "chatwoot"
    label = "Chatwoot"
    stored_headers = (SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower(), DELIVERY_HEADER.lower())
    # Chatwoot passes a WhatsApp button or list reply on as its title only (the id is dropped in
    # app/services/whatsapp/incoming_message_service_helpers.rb).
    button_replies_by_title = True
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
        payload = clean_json_bytes(stored.body)
        event = as_text(payload.get("event"))
        if event in ("message_created", "message_updated"):
            return [self._parse_message_event(event, payload, stored.received_at)]
        if event in CONVERSATION_EVENTS:
            return [self._parse_conversation(payload)]
        if event in CONTACT_EVENTS:
            return [ContactProfile(identities=self._contact_identities(payload),
                                   profile_name=as_text(payload.get("name")), raw=payload)]
        return [UnhandledEvent(f"Chatwoot event {event!r} is not acted on", raw=payload)]

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
        attachments = [as_dict(item) for item in message.get("attachments") or []]
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
        for nested in conversation.get("messages") or []:
            # webhook_data has no status; the conversation's latest message (push format) does.
            if as_dict(nested).get("id") == message.get("id"):
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
        url = urljoin(self.config_value("base_url").rstrip("/") + "/", media.url)
        with http_client() as client:
            return fetch_media_bytes(client, url, mime_type=media.mime_type)

    def send(self, message: OutboundMessage) -> SendResult:
        raise ProviderError("sending through Chatwoot arrives with the outbound issue", code="not_implemented")

    def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(False, "the Chatwoot connection test arrives with the outbound issue")


PROVIDER = ChatwootProvider
