"""
Meta WhatsApp Cloud API: webhook verification and parsing, media download through the Graph API, and
sending (`POST /<phone_number_id>/messages`, one call per message, after an upload of the file when we
hold bytes rather than a public link).

Webhook reference: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
One app posts the updates of all its numbers to one URL, up to 1000 updates per POST across entries
and changes; every update carries `metadata.phone_number_id`, which routes it to its provider row.
"""

from __future__ import annotations

import mimetypes
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
    constant_time_equals,
    hmac_sha256_hex,
    http_client,
    is_retryable_status,
    json_body_decode,
    parse_each,
    pooled_http_client,
    response_json,
    retry_after_seconds,
    url_host,
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
    OutboundMedia,
    OutboundMessage,
    OutboundTemplate,
    RemoteTemplate,
    SendResult,
    StatusUpdate,
    StoredWebhook,
    TemplateDefinition,
    TemplateManagement,
    TemplateParameter,
    TemplateStatus,
    TemplateStatusUpdate,
    TemplateSubmission,
    UnhandledEvent,
)
from whatsapp.providers.safe_fetch import fetch_media
from whatsapp.providers.whatsapp_templates import (
    MEDIA_HEADER_FORMATS,
    TEMPLATE_STATUS_MAP,
    header_format,
    remote_template,
    to_whatsapp_components,
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

# --- sending: error classes -----------------------------------------------------------------
# https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
# Meta pushing back on our rate (app, WABA, number, spam and pair-rate limits): retried later, and not
# held against the provider's health. courier classes these the same way (handlers/meta/whatsapp/api.go).
THROTTLED_CODES = frozenset({"4", "80007", "130429", "131048", "131056", "133016"})
# Transient trouble on Meta's side (unknown error, service unavailable, media fetch, maintenance).
RETRYABLE_CODES = frozenset({"131000", "131016", "131053", "131057"})
# Codes that trying again never fixes, whatever the HTTP status they come with.
PERMANENT_CODES = frozenset({
    "0", "3", "10", "100", "190", "200", "368", "130472", "131008", "131009", "131021", "131026", "131031",
    "131047", "131049", "131050", "131064", "132000", "132001", "132005", "132007", "132012", "132015",
    "132016",
})
# What the error means for us and what to do about it, appended to Meta's own wording.
ERROR_ADVICE = {
    "0": "the access token is invalid or revoked; issue a new system user token",
    "3": "the app lacks a capability or permission for this call",
    "4": "the app's API call rate limit was reached; retrying later",
    "10": "the token lacks a permission (whatsapp_business_messaging); fix the system user's permissions",
    "100": "Meta refused a parameter of the request; check what was sent",
    "190": "the access token has expired; issue a new system user token",
    "200": "the token has no access to this WhatsApp Business Account; assign the asset to the system user",
    "368": "the business account is restricted for policy violations; see WhatsApp Manager",
    "80007": "the business account's rate limit was reached; retrying later",
    "130429": "the number's message throughput was reached; retrying later",
    "130472": "the customer is part of a Meta marketing experiment; the message was not sent",
    "131000": "Meta reported an unknown error; retrying",
    "131008": "a required parameter is missing",
    "131009": "a parameter value is invalid (for a reaction: the target is older than 30 days, deleted, "
              "or itself a reaction)",
    "131016": "Meta's service is temporarily unavailable; retrying",
    "131021": "the recipient is the business number itself",
    "131026": "the message is undeliverable: the number is not on WhatsApp, has not accepted the terms, "
              "or uses an old app version",
    "131031": "the business account is locked; see WhatsApp Manager",
    "131047": "more than 24 hours since the customer last wrote; send an approved template instead",
    "131048": "Meta's spam rate limit was reached (after blocks or spam reports); slow down and pause campaigns",
    "131049": "Meta held back this marketing message to keep engagement healthy; wait at least 24 hours",
    "131050": "the customer stopped marketing messages from this business; do not resend",
    "131053": "Meta could not fetch or read the media (check the link and the MIME type); retrying",
    "131056": "too many messages to this customer in a short time (pair rate); retrying later",
    "131057": "the business number is in maintenance; retrying",
    "131064": "the messaging limit was reached after template-classification violations",
    "132000": "the number of template parameters does not match the template's variables",
    "132001": "the template does not exist in this language or is not approved",
    "132005": "the template text with its variables filled in is too long",
    "132007": "the template's content breaks a format-character policy",
    "132012": "a template parameter does not have the format the template expects",
    "132015": "the template is paused for low quality; edit it or use another",
    "132016": "the template is permanently disabled; create a new one",
    "133016": "too many registration attempts for this number; retrying later",
}

# Templates: what a listing asks for, per page (Meta's maximum page size varies; 100 is accepted), and a
# bound on pages (a portfolio holds at most 6,000 templates).
TEMPLATE_FIELDS = "id,name,language,status,category,components,parameter_format,quality_score,rejected_reason"
TEMPLATE_PAGE_SIZE = 100
TEMPLATE_MAX_PAGES = 200

# Meta takes a caption on these media kinds only, and a filename on documents only.
CAPTIONED_MEDIA = frozenset({MessageType.IMAGE, MessageType.VIDEO, MessageType.DOCUMENT})
# A template button's variable goes in a differently named parameter per button kind.
BUTTON_PARAMETER_TYPES = {"quick_reply": "payload", "url": "text", "copy_code": "coupon_code"}


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


def _send_error_class(code: str, status: int) -> tuple[bool, bool]:
    """(retryable, throttled) for an error Meta answered; a known code decides before the HTTP status."""
    if code in THROTTLED_CODES:
        return True, True
    if code in RETRYABLE_CODES:
        return True, False
    if code in PERMANENT_CODES:
        return False, False
    if status == 429:
        return True, True
    return is_retryable_status(status), False


def _error_title(error: dict[str, Any]) -> str:
    # Meta's message reads "(#131047) Re-engagement message": the part after the code is the title.
    message = as_text(error.get("message"))
    if message.startswith("(#") and ") " in message:
        message = message.split(") ", 1)[1]
    return as_text(error.get("error_user_title")) or message


def _phone_address(value: str) -> str:
    # Meta wants "+" and the country code; without "+" it would prepend the business number's country code.
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/send-messages
    digits = value.strip().removeprefix("+")
    return "+" + digits if digits.isdigit() else ""


class MetaProvider(BaseProvider):
    redacted_credential = ACCESS_TOKEN
    kind = "meta"
    label = "Meta Cloud API"
    stored_headers = (SIGNATURE_HEADER.lower(),)
    # Cloud API default throughput per business number (messages/second); Meta upgrades busy numbers to
    # 1000. https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput
    default_rate_limit_per_second = 80
    max_rate_limit_per_second = 1000
    sendable_types = frozenset({MessageType.TEXT, MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO,
                                MessageType.DOCUMENT, MessageType.STICKER, MessageType.LOCATION,
                                MessageType.INTERACTIVE, MessageType.REACTION, MessageType.TEMPLATE})
    supports_reply_context = True
    # Pair rate: about one message every 6 s to one user; bursts borrow from later quota and then fail
    # with 131056. https://developers.facebook.com/documentation/business-messaging/whatsapp/messaging-limits
    pair_interval_seconds = 6.0
    # 131026 "Message undeliverable": the number is not on WhatsApp, has not accepted the terms, or
    # blocked the business (Meta does not say which, on purpose).
    # https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
    consent_error_codes = {"131026": "undeliverable: not on WhatsApp or blocked the business"}
    # Media ids in webhooks stay downloadable for 7 days.
    media_lifetime = timedelta(days=7)
    # The Graph API answers a media id with a short-lived URL on Meta's lookaside host, e.g.
    # https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=...
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media
    media_hosts = ("lookaside.fbsbx.com", "graph.facebook.com")
    # Templates are created here and submitted to the WhatsApp Business Account.
    template_management = TemplateManagement.SUBMIT
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
        payload = json_body_decode(stored.body)
        events: list[NormalizedEvent] = []
        for entry in as_list(payload.get("entry")):
            entry = as_dict(entry)
            events.extend(parse_each(as_list(entry.get("changes")),
                                     lambda change, entry=entry: self._parse_change(entry, as_dict(change),
                                                                                    stored.received_at)))
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
        # Each message and status on its own: one unreadable update does not hold back the others.
        events = parse_each(as_list(value.get("messages")),
                            lambda message: self._parse_message(as_dict(message), contacts, routed_to, received_at))
        events += parse_each(as_list(value.get("statuses")),
                             lambda status: self._parse_status(as_dict(status), routed_to, received_at))
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
            # Meta echoes the biz_opaque_callback_data we sent with the message on its statuses.
            client_reference=as_text(status.get("biz_opaque_callback_data")),
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
            # What Meta advises changing, kept apart from the reason so that each shows on its own.
            recommendation=as_text(rejection.get("recommendation")),
            quality=as_text(value.get("new_quality_score")).lower(),
            category=as_text(value.get("new_category")).lower(),
            timestamp=_timestamp(entry.get("time"), received_at),
            routed_to="",
            raw=value,
        )

    # --- media -----------------------------------------------------------------------------
    def _graph_url(self, path: str) -> str:
        return f"{settings.META_GRAPH_BASE_URL}/{settings.META_GRAPH_API_VERSION}/{path.lstrip('/')}"

    def media_download_hosts(self) -> tuple[str, ...]:
        return (*self.media_hosts, url_host(settings.META_GRAPH_BASE_URL))

    def rest_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential(ACCESS_TOKEN)}"}

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media
        # The id resolves to a URL that lives about 5 minutes and needs the same bearer token, so each
        # attempt resolves afresh.
        with http_client() as client:
            try:
                response = client.get(self._graph_url(media.provider_media_id), headers=self.rest_headers(),
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
        # The token goes to that URL only; a redirect elsewhere is followed without it. The configured Graph
        # host (a proxy, a test server) may be on a private network.
        fetched = fetch_media(url, allowed_hosts=self.media_download_hosts(), source=self.label,
                              mime_type=as_text(described.get("mime_type")), headers=self.rest_headers(),
                              trusted_hosts=(url_host(settings.META_GRAPH_BASE_URL),))
        return DownloadedMedia(content=fetched.content, mime_type=fetched.mime_type,
                               sha256=as_text(described.get("sha256")) or media.sha256)

    # --- sending ---------------------------------------------------------------------------
    def recipient_address(self, to: tuple[Identity, ...]) -> str:
        for kind in (IdentityKind.PHONE, IdentityKind.WHATSAPP_ID):
            for identity in to:
                if identity.kind == kind and (address := _phone_address(identity.value)):
                    return address
        # A business-scoped user id alone is not sendable yet: Meta's send reference documents only phone
        # numbers for "to", so such a contact waits until a phone number is known.
        return ""

    def send(self, message: OutboundMessage) -> SendResult:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/send-messages
        to = self.recipient_address(message.to)
        if not to:
            raise ProviderError("the contact has no phone number or WhatsApp id Meta can send to",
                                code="no_address", title="No address")
        wire_type = message.message_type
        client = pooled_http_client()
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                                "type": wire_type, wire_type: self._type_payload(client, message)}
        if message.client_reference:
            body["biz_opaque_callback_data"] = message.client_reference
        # A reaction names its target inside the reaction; Meta refuses a context on it.
        if message.reply_to_provider_message_id and wire_type != MessageType.REACTION:
            body["context"] = {"message_id": message.reply_to_provider_message_id}
        response = self.rest_call(client, "POST", self._graph_url(f"{self.provider.external_id}/messages"),
                              action="the message", json=body)
        payload = as_dict(response_json(response))
        sent = as_dict(next(iter(as_list(payload.get("messages"))), None))
        if not as_text(sent.get("id")):
            # Meta may well have accepted the message: sending it again could deliver it twice.
            raise ProviderError(f"Meta answered HTTP {response.status_code} without a message id; the message "
                                "may have been accepted, so it is not sent again", code="bad_response",
                                title="No message id", http_status=response.status_code, raw=payload)
        return SendResult(provider_message_id=as_text(sent["id"]), raw=payload)

    def check_connection(self) -> ConnectionCheck:
        fields = "display_phone_number,verified_name,quality_rating,throughput"
        try:
            with http_client() as client:
                response = self.rest_call(client, "GET", self._graph_url(self.provider.external_id),
                                      action="the phone number lookup", params={"fields": fields})
        except ProviderError as exc:
            return ConnectionCheck(False, str(exc))
        number = as_dict(response_json(response))
        parts = [as_text(number.get("display_phone_number")), as_text(number.get("verified_name")),
                 f"quality {as_text(number.get('quality_rating')) or 'unknown'}",
                 f"throughput {as_text(as_dict(number.get('throughput')).get('level')) or 'unknown'}"]
        return ConnectionCheck(True, ", ".join(part for part in parts if part))

    def _type_payload(self, client: httpx.Client, message: OutboundMessage) -> dict[str, Any]:
        content = message.content
        kind = message.message_type
        if kind == MessageType.TEXT:
            return {"body": message.text or as_text(content.get("text")),
                    "preview_url": bool(content.get("preview_url"))}
        if kind in MEDIA_TYPES:
            if message.media is None:
                raise ProviderError(f"a {kind} message needs a file", code="invalid_message")
            return self._media_object(client, message.media, kind, content)
        if kind == MessageType.INTERACTIVE:
            return _interactive(content, message.text)
        if kind == MessageType.LOCATION:
            location = {"latitude": content.get("latitude"), "longitude": content.get("longitude")}
            location.update({key: content[key] for key in ("name", "address") if content.get(key)})
            return location
        if kind == MessageType.REACTION:
            # An empty emoji removes an earlier reaction.
            return {"message_id": as_text(content.get("target")), "emoji": as_text(content.get("emoji"))}
        if kind == MessageType.TEMPLATE:
            if message.template is None:
                raise ProviderError("a template message needs its template", code="invalid_message")
            return self._template(client, message.template)
        raise ProviderError(f"Meta sending does not handle {kind!r} messages", code="unsupported_type")

    def _media_object(self, client: httpx.Client, media: OutboundMedia, kind: str,
                      content: dict[str, Any] | None = None) -> dict[str, Any]:
        content = content or {}
        if media.data:
            # An uploaded file goes to Meta itself rather than by our link: Meta need not reach our server.
            result: dict[str, Any] = {"id": self._upload(client, media)}
        elif media.url:
            # Meta caches a link for about 10 minutes.
            result = {"link": media.url}
        else:
            raise ProviderError(f"the {kind} has neither a link nor a file", code="invalid_message")
        caption = media.caption or as_text(content.get("caption"))
        if caption and kind in CAPTIONED_MEDIA:
            result["caption"] = caption
        filename = media.filename or as_text(content.get("filename"))
        if filename and kind == MessageType.DOCUMENT:
            result["filename"] = filename
        return result

    def _upload(self, client: httpx.Client, media: OutboundMedia) -> str:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/business-phone-numbers/media
        # Meta checks the declared type against the file (a mismatch gives 131053).
        mime_type = media.mime_type or mimetypes.guess_type(media.filename)[0] or "application/octet-stream"
        filename = media.filename or f"{media.kind}{mimetypes.guess_extension(mime_type) or ''}"
        response = self.rest_call(client, "POST", self._graph_url(f"{self.provider.external_id}/media"),
                              action="the media upload", data={"messaging_product": "whatsapp", "type": mime_type},
                              files={"file": (filename, media.data or b"", mime_type)})
        media_id = as_text(as_dict(response_json(response)).get("id"))
        if not media_id:
            # Nothing was sent yet, so trying again is safe.
            raise ProviderError("Meta's media upload answered without an id", code="bad_response",
                                title="No media id", retryable=True, http_status=response.status_code)
        return media_id

    def _template(self, client: httpx.Client, template: OutboundTemplate) -> dict[str, Any]:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-messages
        def text_parameter(parameter: TemplateParameter) -> dict[str, str]:
            result = {"type": "text", "text": parameter.value}
            if template.named_parameters:
                result["parameter_name"] = parameter.name
            return result

        components: list[dict[str, Any]] = []
        if template.header_media is not None:
            kind = template.header_media.kind
            media = self._media_object(client, template.header_media, kind)
            media.pop("caption", None)
            components.append({"type": "header", "parameters": [{"type": kind, kind: media}]})
        elif template.header:
            components.append({"type": "header", "parameters": [text_parameter(p) for p in template.header]})
        if template.body:
            components.append({"type": "body", "parameters": [text_parameter(p) for p in template.body]})
        for button in sorted(template.buttons, key=lambda b: b.index):
            parameter_type = BUTTON_PARAMETER_TYPES.get(button.sub_type, "text")
            components.append({"type": "button", "sub_type": button.sub_type, "index": str(button.index),
                               "parameters": [{"type": parameter_type, parameter_type: button.value}]})
        result: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
        if components:
            result["components"] = components
        return result

    # --- templates -------------------------------------------------------------------------
    def template_problems(self, template: TemplateDefinition) -> dict[str, list[str]]:
        try:
            self._check_submittable(template)
        except ProviderError as exc:
            return {"header": [str(exc)]}
        return {}

    def _check_submittable(self, template: TemplateDefinition) -> None:
        if header_format(template.components) in MEDIA_HEADER_FORMATS:
            # Meta reviews a media header against a sample uploaded through its Resumable Upload API, which
            # is keyed by the Meta app's id (not among this provider's settings) and gives a handle only for
            # template review. https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/template-media/
            raise ProviderError(
                "templates with an image, video or document header cannot be submitted to Meta from here yet: "
                "Meta needs a sample file uploaded through its Resumable Upload API. Create this template in "
                "WhatsApp Manager instead; the next template sync imports it", code="template_unsupported",
                title="Media header not supported")

    def submit_template(self, template: TemplateDefinition) -> TemplateSubmission:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/overview
        self._check_submittable(template)
        components = to_whatsapp_components(template.components, template.examples, template.parameter_format)
        with http_client() as client:
            response = self.rest_call(client, "POST", self._graph_url(f"{self._waba_id()}/message_templates"),
                                      action="the template submission", json={
                                          "name": template.remote_name, "language": template.language,
                                          "category": template.category.upper(),
                                          "parameter_format": template.parameter_format.upper(),
                                          "components": components})
        payload = as_dict(response_json(response))
        template_id = as_text(payload.get("id"))
        if not template_id:
            raise ProviderError("Meta accepted the template without giving its id; look it up with a template sync",
                                code="bad_response", title="No template id", raw=payload)
        # Meta answers PENDING, or APPROVED at once for some utility templates.
        status = TEMPLATE_STATUS_MAP.get(as_text(payload.get("status")).upper(), TemplateStatus.PENDING)
        return TemplateSubmission(provider_template_id=template_id, status=status, raw=payload)

    def list_templates(self) -> list[RemoteTemplate]:
        # Paged by cursors; the last page has no paging.next (its cursors.after may still be set).
        # https://developers.facebook.com/docs/graph-api/results
        base = {"fields": TEMPLATE_FIELDS, "limit": TEMPLATE_PAGE_SIZE}
        url, params = self._graph_url(f"{self._waba_id()}/message_templates"), dict(base)
        templates: list[RemoteTemplate] = []
        seen_cursors: set[str] = set()
        with http_client() as client:
            for _ in range(TEMPLATE_MAX_PAGES):
                response = self.rest_call(client, "GET", url, action="the template list", params=params)
                payload = as_dict(response_json(response))
                templates += [remote_template(as_dict(item)) for item in as_list(payload.get("data"))]
                paging = as_dict(payload.get("paging"))
                after = as_text(as_dict(paging.get("cursors")).get("after"))
                if not as_text(paging.get("next")) or after in seen_cursors:
                    return templates
                if after:
                    seen_cursors.add(after)
                    params = {**base, "after": after}
                else:
                    url, params = as_text(paging["next"]), None
        raise ProviderError(f"Meta's template list has more than {TEMPLATE_MAX_PAGES} pages; stopped reading",
                            code="too_many_pages", title="Template list too long")

    def _waba_id(self) -> str:
        if not self.provider.business_account_id:
            raise ProviderError("this provider has no WhatsApp Business Account id (templates belong to it)",
                                code="not_configured", title="No WABA id")
        return self.provider.business_account_id

    def answered_error(self, response: httpx.Response, action: str) -> ProviderError:
        # https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes
        # Branch on the code, never on the wording; error_data.details says what happened in this case.
        payload = response_json(response)
        error = as_dict(as_dict(payload).get("error"))
        status = response.status_code
        code = as_text(error.get("code")) or f"http_{status}"
        title = _error_title(error) or response.reason_phrase
        retryable, throttled = _send_error_class(code, status)
        details = as_text(as_dict(error.get("error_data")).get("details"))
        # Template calls explain a refusal in error_user_msg (e.g. which rule the template breaks).
        user_message = as_text(error.get("error_user_msg"))
        parts = [f"Meta refused {action} (HTTP {status}, error {code}: {title})",
                 details.rstrip(".") if details != title else "",
                 user_message.rstrip(".") if user_message not in (title, details) else "", ERROR_ADVICE.get(code, "")]
        reason = ". ".join(part for part in parts if part)
        return ProviderError(self.redact(reason), code=code, title=title, retryable=retryable,
                             throttled=throttled, http_status=status, raw=payload or response.text[:2000],
                             retry_after=retry_after_seconds(response.headers.get("retry-after")))



def _interactive(content: dict[str, Any], fallback_text: str) -> dict[str, Any]:
    # Reply buttons: at most 3, titles up to 20 characters. A list: at most 10 rows in all.
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-reply-buttons-messages
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/interactive-list-messages
    result: dict[str, Any] = {"body": {"text": as_text(content.get("body")) or fallback_text}}
    if header := as_text(content.get("header")):
        result["header"] = {"type": "text", "text": header}
    if footer := as_text(content.get("footer")):
        result["footer"] = {"text": footer}
    if buttons := as_list(content.get("buttons")):
        result["type"] = "button"
        result["action"] = {"buttons": [
            {"type": "reply", "reply": {"id": as_text(as_dict(b).get("id")), "title": as_text(as_dict(b).get("title"))}}
            for b in buttons]}
        return result
    result["type"] = "list"
    result["action"] = {"button": as_text(content.get("button")),
                        "sections": [_list_section(as_dict(section)) for section in as_list(content.get("sections"))]}
    return result


def _list_section(section: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for row in as_list(section.get("rows")):
        row = as_dict(row)
        item = {"id": as_text(row.get("id")), "title": as_text(row.get("title"))}
        if description := as_text(row.get("description")):
            item["description"] = description
        rows.append(item)
    # A section title is required only when there are several sections.
    return {"title": as_text(section["title"]), "rows": rows} if section.get("title") else {"rows": rows}


PROVIDER = MetaProvider
