"""
Twilio WhatsApp senders. Verification uses the twilio SDK's RequestValidator over the public URL
(rebuilt from PUBLIC_BASE_URL, because Twilio signs the URL it called, not the one behind our proxy).
Inbound messages and status callbacks arrive form-encoded on the same URL. Sending arrives with the
outbound issue.

https://www.twilio.com/docs/messaging/guides/webhook-request
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from whatsapp.providers.base import (
    BaseProvider,
    ProviderError,
    ProviderOption,
    WebhookRejected,
    WebhookRequest,
    fetch_media_bytes,
    http_client,
)
from whatsapp.providers.events import (
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
    UnhandledEvent,
)

SIGNATURE_HEADER = "X-Twilio-Signature"
AUTH_TOKEN = "auth_token"
CHANNEL_PREFIX = "whatsapp:"

# MessageStatus values of status callbacks (twilio-python's MessageInstance.Status). The early ones
# change nothing we have not recorded already; the status ranks keep them from moving anything back.
STATUS_MAP = {
    "queued": MessageStatus.QUEUED,
    "accepted": MessageStatus.QUEUED,
    "scheduled": MessageStatus.QUEUED,
    "sending": MessageStatus.SENDING,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "partially_delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
    "undelivered": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
INBOUND_STATUSES = frozenset({"received", "receiving"})

MEDIA_TYPE_BY_PREFIX = {"image/": MessageType.IMAGE, "audio/": MessageType.AUDIO, "video/": MessageType.VIDEO}


def _address(value: str) -> str:
    return value[len(CHANNEL_PREFIX):] if value.startswith(CHANNEL_PREFIX) else value


def _is_phone(value: str) -> bool:
    return value.startswith("+") and value[1:].isdigit()


def _flag(value: str) -> bool:
    return value.lower() == "true"


def _media_type(content_type: str) -> str:
    if content_type == "image/webp":
        return MessageType.STICKER  # WhatsApp stickers are WebP images
    for prefix, message_type in MEDIA_TYPE_BY_PREFIX.items():
        if content_type.startswith(prefix):
            return message_type
    return MessageType.DOCUMENT


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
        if not (request.form.get("MessageSid") or request.form.get("SmsSid")):
            raise WebhookRejected(400, "form has no MessageSid: not a Twilio message or status callback")

    def verify_webhook(self, request: WebhookRequest) -> None:
        token = self.credential(AUTH_TOKEN)
        if not token:
            raise WebhookRejected(403, "this provider has no auth token configured")
        received = request.header(SIGNATURE_HEADER)
        if not received:
            raise WebhookRejected(401, f"missing {SIGNATURE_HEADER} header")
        if not RequestValidator(token).validate(request.public_url, request.form, received):
            raise WebhookRejected(403, f"{SIGNATURE_HEADER} does not match the URL and parameters")

    def acknowledgement(self, receipt: dict[str, Any]) -> tuple[str, str]:
        # Twilio reads the answer to an inbound message as TwiML; an empty <Response/> sends no reply
        # (anything else is logged as error 12300 in Twilio's debugger).
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>', "text/xml"

    def delivery_id(self, request: WebhookRequest) -> str:
        return request.header("I-Twilio-Idempotency-Token")

    def parse_webhook(self, stored: StoredWebhook) -> list[NormalizedEvent]:
        form = dict(parse_qsl(stored.body.decode("utf-8", "replace").replace("\x00", ""), keep_blank_values=True))
        status = form.get("MessageStatus", "").lower()
        sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or ""
        if not sid:
            return [UnhandledEvent("Twilio request without a MessageSid", raw=form)]
        if status and status not in INBOUND_STATUSES:
            return [self._status(sid, status, form, stored.received_at)]
        return [self._inbound(sid, form, stored.received_at)]

    def _status(self, sid: str, status: str, form: dict[str, str], received_at: datetime) -> NormalizedEvent:
        # Status callbacks carry no time of their own: the time we received it is the best there is.
        return StatusUpdate(
            provider_message_id=sid,
            status=STATUS_MAP.get(status, MessageStatus.UNKNOWN),
            timestamp=received_at,
            error_code=form.get("ErrorCode", ""),
            error_title=form.get("ErrorMessage", ""),
            raw=form,
        )

    def _identities(self, form: dict[str, str]) -> tuple[Identity, ...]:
        sender = _address(form.get("From", ""))
        identities = []
        if _is_phone(sender):
            identities.append(Identity(IdentityKind.PHONE, sender))
        if wa_id := form.get("WaId", ""):
            identities += [Identity(IdentityKind.PHONE, wa_id), Identity(IdentityKind.WHATSAPP_ID, wa_id)]
        # 2026: From may be "whatsapp:<business-scoped id>" with the id also in ExternalUserId.
        external = _address(form.get("ExternalUserId", "")) or ("" if _is_phone(sender) else sender)
        if external:
            identities.append(Identity(IdentityKind.TWILIO_EXTERNAL_ID, external))
        if parent := _address(form.get("ParentExternalUserId", "")):
            identities.append(Identity(IdentityKind.PARENT_BUSINESS_SCOPED_ID, parent))
        if username := form.get("ProfileUsername") or form.get("Username"):
            identities.append(Identity(IdentityKind.USERNAME, username))
        return tuple(dict.fromkeys(identities))

    def _inbound(self, sid: str, form: dict[str, str], received_at: datetime) -> NormalizedEvent:
        identities = self._identities(form)
        if not identities:
            return UnhandledEvent("Twilio message without a sender", raw=form)
        media = self._media(form)
        message_type, content = self._type_and_content(form, media)
        if _flag(form.get("Forwarded", "")):
            content["forwarded"] = True
        if _flag(form.get("FrequentlyForwarded", "")):
            content["frequently_forwarded"] = True
        referral = {key[len("Referral"):]: value for key, value in form.items()
                    if key.startswith("Referral") and value and key != "ReferralNumMedia"}
        if referral:
            content["referral"] = referral
        caption = form.get("Body", "")
        return InboundMessage(
            provider_message_id=sid,
            timestamp=received_at,
            identities=identities,
            profile_name=form.get("ProfileName", ""),
            message_type=message_type,
            text=caption,
            content=content,
            media=tuple(MediaRef(url=ref.url, mime_type=ref.mime_type, caption=caption if i == 0 else "")
                        for i, ref in enumerate(media)),
            reply_to_provider_message_id=form.get("OriginalRepliedMessageSid", ""),
            raw=form,
        )

    def _media(self, form: dict[str, str]) -> list[MediaRef]:
        try:
            count = min(int(form.get("NumMedia") or 0), 10)
        except ValueError:
            count = 0
        return [MediaRef(url=form[f"MediaUrl{i}"], mime_type=form.get(f"MediaContentType{i}", ""))
                for i in range(count) if form.get(f"MediaUrl{i}")]

    def _type_and_content(self, form: dict[str, str], media: list[MediaRef]) -> tuple[str, dict]:
        wire_type = form.get("MessageType", "").lower()
        if form.get("ButtonPayload") or form.get("ButtonText"):
            content = {"id": form.get("ButtonPayload", ""), "title": form.get("ButtonText", "")}
            if wire_type == "interactive":
                return MessageType.INTERACTIVE_REPLY, {"kind": "button_reply", **content}
            return MessageType.BUTTON, {"payload": content["id"], "title": content["title"]}
        if form.get("Latitude") and form.get("Longitude"):
            content = {"latitude": _number(form["Latitude"]), "longitude": _number(form["Longitude"])}
            content.update({key.lower(): form[key] for key in ("Address", "Label") if form.get(key)})
            return MessageType.LOCATION, content
        if media:
            return _media_type(media[0].mime_type), {}
        if wire_type and wire_type not in ("text", "interactive"):
            return MessageType.UNSUPPORTED, {"unsupported_type": wire_type}
        return MessageType.TEXT, {}

    def download_media(self, media: MediaRef) -> DownloadedMedia:
        # Twilio serves media only with HTTP Basic auth and redirects to short-lived storage URLs.
        # https://www.twilio.com/docs/messaging/api/media-resource
        auth = (self.provider.business_account_id, self.credential(AUTH_TOKEN))
        with http_client() as client:
            return fetch_media_bytes(client, media.url, mime_type=media.mime_type, auth=auth)

    def send(self, message: OutboundMessage) -> SendResult:
        raise ProviderError("sending through Twilio arrives with the outbound issue", code="not_implemented")

    def check_connection(self) -> ConnectionCheck:
        return ConnectionCheck(False, "the Twilio connection test arrives with the outbound issue")


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


PROVIDER = TwilioProvider
