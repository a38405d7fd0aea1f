"""
Meta WhatsApp Cloud API: webhook verification and parsing, media download through the Graph API.
Sending arrives with the outbound issue.

Webhook reference: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
One app posts the updates of all its numbers to one URL, up to 1000 updates per POST across entries
and changes; every update carries `metadata.phone_number_id`, which routes it to its provider row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    VerificationAnswer,
    WebhookRejected,
    WebhookRequest,
    as_dict,
    as_list,
    as_text,
    clean_json_bytes,
    constant_time_equals,
    fetch_media_bytes,
    hmac_sha256_hex,
    http_client,
    is_retryable_status,
    response_json,
)
from whatsapp.providers.events import (
    MEDIA_TYPES,
    ConnectionCheck,
    DownloadedMedia,
    Identity,
    IdentityKind,
    InboundMessage,
    MediaRef,
    MessageStatus,
    MessageType,
    NormalizedEvent,
    OutboundMessage,
    SendResult,
    StatusUpdate,
    StoredWebhook,
    TemplateStatus,
    TemplateStatusUpdate,
    UnhandledEvent,
)

if TYPE_CHECKING:
    from whatsapp.models import Provider as ProviderRow

SIGNATURE_HEADER = "X-Hub-Signature-256"
ACCESS_TOKEN = "access_token"
APP_SECRET = "app_secret"
VERIFY_TOKEN = "verify_token"

STATUS_MAP = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "played": MessageStatus.PLAYED,
    "failed": MessageStatus.FAILED,
}
# A legacy status Meta still sends for deleted messages; courier ignores it too.
IGNORED_STATUSES = frozenset({"deleted"})

# message_template_status_update `event` -> our template status. FLAGGED only warns that a pause may
# follow (the template stays sendable), so it changes no status and is recorded as the reason.
TEMPLATE_STATUS_MAP = {
    "APPROVED": TemplateStatus.APPROVED,
    "REINSTATED": TemplateStatus.APPROVED,
    "UNARCHIVED": TemplateStatus.APPROVED,
    "PENDING": TemplateStatus.PENDING,
    "REJECTED": TemplateStatus.REJECTED,
    "PAUSED": TemplateStatus.PAUSED,
    "DISABLED": TemplateStatus.DISABLED,
    "ARCHIVED": TemplateStatus.DISABLED,
    "DELETED": TemplateStatus.DISABLED,
    "PENDING_DELETION": TemplateStatus.DISABLED,
    "LIMIT_EXCEEDED": TemplateStatus.DISABLED,
    "LOCKED": TemplateStatus.DISABLED,
    "IN_APPEAL": TemplateStatus.IN_APPEAL,
}

MESSAGE_TYPE_MAP = {
    "text": MessageType.TEXT,
    "image": MessageType.IMAGE,
    "audio": MessageType.AUDIO,
    "voice": MessageType.AUDIO,
    "video": MessageType.VIDEO,
    "document": MessageType.DOCUMENT,
    "sticker": MessageType.STICKER,
    "location": MessageType.LOCATION,
    "contacts": MessageType.CONTACTS,
    "interactive": MessageType.INTERACTIVE_REPLY,
    "button": MessageType.BUTTON,
    "reaction": MessageType.REACTION,
    "order": MessageType.ORDER,
    "system": MessageType.SYSTEM,
    "unsupported": MessageType.UNSUPPORTED,
}


def _timestamp(value: Any, fallback: datetime) -> datetime:
    # Meta sends Unix seconds as a string.
    try:
        return datetime.fromtimestamp(int(str(value)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback


def _first_error(errors: Any) -> dict[str, Any]:
    errors = as_list(errors)
    return as_dict(errors[0]) if errors else {}


def _error_detail(error: dict[str, Any]) -> str:
    return as_text(as_dict(error.get("error_data")).get("details") or error.get("message"))


class MetaProvider(BaseProvider):
    kind = "meta"
    label = "Meta Cloud API"
    stored_headers = (SIGNATURE_HEADER.lower(),)
    # Cloud API default throughput per business number (messages/second); upgradable to 1000.
    default_rate_limit_per_second = 80
    # Media ids in webhooks stay downloadable for 7 days.
    media_lifetime = timedelta(days=7)
    options = (
        ProviderOption("phone_number_id", "Cloud API phone number id", target="external_id", required=True),
        ProviderOption("waba_id", "WhatsApp Business Account id", target="business_account_id", required=True),
        ProviderOption("phone_number", "The business phone number (E.164)", target="phone_number"),
        ProviderOption(ACCESS_TOKEN, "System user access token", target="credentials", required=True, secret=True),
        ProviderOption(APP_SECRET, "App secret (signs webhooks)", target="credentials", required=True, secret=True),
        ProviderOption(VERIFY_TOKEN, "Webhook verify token", target="credentials", required=True, secret=True),
    )

    # --- receiving -------------------------------------------------------------------------
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

    def may_route_to(self, other: ProviderRow) -> bool:
        # Numbers of the same Meta app share its app secret, which signed the update.
        secret = self.credential(APP_SECRET)
        return bool(secret) and constant_time_equals(secret, str(other.credentials.get(APP_SECRET, "")))

    def check_payload(self, payload: Any) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
            raise WebhookRejected(400, 'body must be a JSON object with an "entry" list')

    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        payload = clean_json_bytes(stored.body)
        events: list[NormalizedEvent] = []
        for entry in as_list(payload.get("entry")):
            entry = as_dict(entry)
            for change in as_list(entry.get("changes")):
                events.extend(self._parse_change(entry, as_dict(change), stored.received_at))
        return events

    def _parse_change(self, entry: dict, change: dict, received_at: datetime) -> list[NormalizedEvent]:
        field = as_text(change.get("field"))
        value = as_dict(change.get("value"))
        if field == "messages":
            return self._parse_messages_value(value, received_at)
        if field in ("message_template_status_update", "message_template_quality_update",
                     "template_category_update"):
            return [self._parse_template_update(field, entry, value, received_at)]
        return [UnhandledEvent(f"Meta webhook field {field!r} is not acted on", raw=change)]

    def _parse_messages_value(self, value: dict, received_at: datetime) -> list[NormalizedEvent]:
        routed_to = as_text(as_dict(value.get("metadata")).get("phone_number_id"))
        contacts = [as_dict(contact) for contact in as_list(value.get("contacts"))]
        events: list[NormalizedEvent] = []
        for message in as_list(value.get("messages")):
            events.append(self._parse_message(as_dict(message), contacts, routed_to, received_at))
        for status in as_list(value.get("statuses")):
            events.append(self._parse_status(as_dict(status), routed_to, received_at))
        for error in as_list(value.get("errors")):
            error = as_dict(error)
            events.append(UnhandledEvent(
                f"Meta reported error {error.get('code')}: {error.get('title')} ({_error_detail(error)})",
                routed_to=routed_to, raw=error))
        if not events:
            events.append(UnhandledEvent("Meta messages update with no messages, statuses or errors",
                                         routed_to=routed_to, raw=value))
        return events

    # --- inbound messages ------------------------------------------------------------------
    def _sender_identities(self, message: dict, contacts: list[dict]) -> tuple[tuple[Identity, ...], str]:
        sender = as_text(message.get("from"))
        sender_user_id = as_text(message.get("from_user_id"))
        contact = next((c for c in contacts if sender and c.get("wa_id") == sender), None)
        if contact is None:
            contact = next((c for c in contacts if sender_user_id and c.get("user_id") == sender_user_id), None)
        if contact is None and len(contacts) == 1:
            contact = contacts[0]
        contact = contact or {}
        profile = as_dict(contact.get("profile"))
        wa_id = as_text(contact.get("wa_id")) or sender
        identities = []
        # Since 2026 a sender may come with a business-scoped user id and no phone number at all.
        if wa_id:
            identities += [Identity(IdentityKind.PHONE, wa_id), Identity(IdentityKind.WHATSAPP_ID, wa_id)]
        if user_id := sender_user_id or as_text(contact.get("user_id")):
            identities.append(Identity(IdentityKind.BUSINESS_SCOPED_ID, user_id))
        if parent := as_text(contact.get("parent_user_id")):
            identities.append(Identity(IdentityKind.PARENT_BUSINESS_SCOPED_ID, parent))
        if username := as_text(profile.get("username")):
            identities.append(Identity(IdentityKind.USERNAME, username))
        return tuple(identities), as_text(profile.get("name"))

    def _parse_message(self, message: dict, contacts: list[dict], routed_to: str,
                       received_at: datetime) -> NormalizedEvent:
        message_id = as_text(message.get("id"))
        identities, profile_name = self._sender_identities(message, contacts)
        if not message_id or not identities:
            return UnhandledEvent("Meta message without an id or a sender", routed_to=routed_to, raw=message)
        wire_type = as_text(message.get("type"))
        message_type = MESSAGE_TYPE_MAP.get(wire_type, MessageType.UNSUPPORTED)
        body = as_dict(message.get(wire_type))
        text, content, media = self._content(wire_type, message_type, body, message)
        context = as_dict(message.get("context"))
        reply_to = as_text(context.get("id"))
        if message_type == MessageType.REACTION:
            reply_to = as_text(body.get("message_id"))
        if context.get("forwarded"):
            content["forwarded"] = True
        if context.get("frequently_forwarded"):
            content["frequently_forwarded"] = True
        if context.get("referred_product"):
            content["referred_product"] = context["referred_product"]
        if message.get("referral"):
            content["referral"] = message["referral"]
        if message.get("errors") and "errors" not in content:
            content["errors"] = message["errors"]
        if message_type == MessageType.SYSTEM and (new_wa_id := as_text(body.get("wa_id"))):
            # "user_changed_number": the same person now writes from a new number; link both to one contact.
            identities = (*identities, Identity(IdentityKind.PHONE, new_wa_id),
                          Identity(IdentityKind.WHATSAPP_ID, new_wa_id))
        return InboundMessage(
            provider_message_id=message_id,
            timestamp=_timestamp(message.get("timestamp"), received_at),
            identities=identities,
            profile_name=profile_name,
            message_type=message_type,
            text=text,
            content=content,
            media=media,
            reply_to_provider_message_id=reply_to,
            routed_to=routed_to,
            raw=message,
        )

    def _content(self, wire_type: str, message_type: str, body: dict,
                 message: dict) -> tuple[str, dict[str, Any], tuple[MediaRef, ...]]:
        if message_type == MessageType.TEXT:
            return as_text(body.get("body")), {}, ()
        if message_type in MEDIA_TYPES:
            ref = MediaRef(provider_media_id=as_text(body.get("id")), url=as_text(body.get("url")),
                           mime_type=as_text(body.get("mime_type")), sha256=as_text(body.get("sha256")),
                           filename=as_text(body.get("filename")), caption=as_text(body.get("caption")))
            content = {"voice": bool(body.get("voice") or wire_type == "voice"),
                       "animated": bool(body.get("animated"))}
            return ref.caption, {k: v for k, v in content.items() if v}, (ref,) if ref.provider_media_id else ()
        if message_type == MessageType.LOCATION:
            keys = ("latitude", "longitude", "name", "address", "url")
            return as_text(body.get("name")), {k: body[k] for k in keys if k in body}, ()
        if message_type == MessageType.CONTACTS:
            cards = as_list(message.get("contacts"))
            names = [as_text(as_dict(as_dict(card).get("name")).get("formatted_name")) for card in cards]
            return ", ".join(filter(None, names)), {"contacts": cards}, ()
        if message_type == MessageType.INTERACTIVE_REPLY:
            kind = as_text(body.get("type"))
            reply = as_dict(body.get(kind))
            content = {"kind": kind, "id": as_text(reply.get("id")), "title": as_text(reply.get("title"))}
            if kind == "list_reply":
                content["description"] = as_text(reply.get("description"))
            if kind == "nfm_reply":  # a WhatsApp Flow's answers, as a JSON string
                content.update(name=as_text(reply.get("name")), response_json=as_text(reply.get("response_json")))
                return as_text(reply.get("body")), content, ()
            return content["title"], content, ()
        if message_type == MessageType.BUTTON:
            title = as_text(body.get("text"))
            return title, {"payload": as_text(body.get("payload")), "title": title}, ()
        if message_type == MessageType.REACTION:
            emoji = as_text(body.get("emoji"))
            # An empty or missing emoji is Meta's way of saying the reaction was removed.
            return emoji, {"emoji": emoji, "removed": not emoji}, ()
        if message_type == MessageType.ORDER:
            return as_text(body.get("text")), {"order": body}, ()
        if message_type == MessageType.SYSTEM:
            return as_text(body.get("body")), {"system": body}, ()
        error = _first_error(message.get("errors"))
        content = {"unsupported_type": as_text(body.get("type")) or wire_type, "errors": as_list(message.get("errors"))}
        return as_text(error.get("title")), content, ()

    # --- statuses and templates ------------------------------------------------------------
    def _parse_status(self, status: dict, routed_to: str, received_at: datetime) -> NormalizedEvent:
        wire_status = as_text(status.get("status"))
        if not status.get("id") or wire_status in IGNORED_STATUSES:
            return UnhandledEvent(f"Meta status {wire_status!r} ignored", routed_to=routed_to, raw=status)
        error = _first_error(status.get("errors"))
        return StatusUpdate(
            provider_message_id=as_text(status["id"]),
            status=STATUS_MAP.get(wire_status, MessageStatus.UNKNOWN),
            timestamp=_timestamp(status.get("timestamp"), received_at),
            error_code=as_text(error.get("code")),
            error_title=as_text(error.get("title") or error.get("message")),
            error_detail=_error_detail(error),
            routed_to=routed_to,
            raw=status,
        )

    def _parse_template_update(self, field: str, entry: dict, value: dict, received_at: datetime) -> NormalizedEvent:
        event = as_text(value.get("event")).upper()
        status = TEMPLATE_STATUS_MAP.get(event, TemplateStatus.UNKNOWN) if field.endswith("status_update") else (
            TemplateStatus.UNKNOWN)
        rejection = as_dict(value.get("rejection_info"))
        other = as_dict(value.get("other_info"))
        reasons = [
            as_text(value.get("reason")) if as_text(value.get("reason")) not in ("", "NONE") else "",
            as_text(rejection.get("reason")),
            as_text(rejection.get("recommendation")),
            ": ".join(filter(None, [as_text(other.get("title")), as_text(other.get("description"))])),
            "flagged by Meta; a pause may follow" if event == "FLAGGED" else "",
        ]
        return TemplateStatusUpdate(
            provider_template_id=as_text(value.get("message_template_id")),
            name=as_text(value.get("message_template_name")),
            # Meta writes both en-US and en_US.
            language=as_text(value.get("message_template_language")).replace("-", "_"),
            status=status,
            reason=" — ".join(filter(None, reasons)),
            quality=as_text(value.get("new_quality_score")).lower(),
            category=as_text(value.get("new_category")).lower(),
            timestamp=_timestamp(entry.get("time"), received_at),
            routed_to="",
            raw=value,
        )

    # --- media -----------------------------------------------------------------------------
    def _graph_url(self, path: str) -> str:
        return f"{settings.META_GRAPH_BASE_URL}/{settings.META_GRAPH_API_VERSION}/{path.lstrip('/')}"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential(ACCESS_TOKEN)}"}

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media
        # The id resolves to a URL that lives about 5 minutes and needs the same bearer token, so each
        # attempt resolves afresh.
        with http_client() as client:
            try:
                response = client.get(self._graph_url(media.provider_media_id), headers=self._auth(),
                                      params={"phone_number_id": self.provider.external_id})
            except httpx.HTTPError as exc:
                raise ProviderError(f"resolving media id failed: {type(exc).__name__}: {exc}", code="network",
                                    retryable=True) from exc
            if response.status_code >= 400:
                error = as_dict(as_dict(response_json(response)).get("error"))
                raise ProviderError(
                    f"resolving media id answered HTTP {response.status_code}: {error.get('message', '')}".strip(),
                    code=as_text(error.get("code")) or f"http_{response.status_code}",
                    retryable=is_retryable_status(response.status_code))
            described = as_dict(response_json(response))
            url = as_text(described.get("url"))
            if not url:
                raise ProviderError("Meta's media description has no url", code="no_url", retryable=True)
            fetched = fetch_media_bytes(client, url, mime_type=as_text(described.get("mime_type")),
                                        headers=self._auth())
        return DownloadedMedia(content=fetched.content, mime_type=fetched.mime_type,
                               sha256=as_text(described.get("sha256")) or media.sha256)

    # --- sending ---------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SendResult:
        raise ProviderError("sending through Meta arrives with the outbound issue", code="not_implemented")

    def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(False, "the Meta connection test arrives with the outbound issue")


PROVIDER = MetaProvider
