"""
Twilio webhooks -> normalized events. Inbound messages and status callbacks arrive form-encoded on the
same URL; a status callback carries a MessageStatus other than received.

https://www.twilio.com/docs/messaging/guides/webhook-request
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

import math
from datetime import datetime

from whatsapp.providers.events import (
    Identity,
    IdentityKind,
    InboundMessage,
    MediaRef,
    MessageStatus,
    MessageType,
    NormalizedEvent,
    StatusUpdate,
    UnhandledEvent,
)
from whatsapp.providers.twilio.wire import INBOUND_STATUSES, MEDIA_TYPE_BY_PREFIX, STATUS_MAP, address, is_phone


def parse_form(form: dict[str, str], received_at: datetime) -> NormalizedEvent:
    """One webhook's form (decoded): an inbound message or a status callback."""
    status = form.get("MessageStatus", "").lower()
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or ""
    if not sid:
        return UnhandledEvent("Twilio request without a MessageSid", raw=form)
    if status and status not in INBOUND_STATUSES:
        return _status(sid, status, form, received_at)
    return _inbound(sid, form, received_at)


def _flag(value: str) -> bool:
    return value.lower() == "true"


def _media_type(content_type: str) -> str:
    if content_type == "image/webp":
        return MessageType.STICKER  # WhatsApp stickers are WebP images
    for prefix, message_type in MEDIA_TYPE_BY_PREFIX.items():
        if content_type.startswith(prefix):
            return message_type
    return MessageType.DOCUMENT


def _number(value: str) -> float | str:
    try:
        number = float(value)
    except ValueError:
        return value
    # "nan", "inf" and "1e400" stay text: a JSON column cannot hold them as numbers.
    return number if math.isfinite(number) else value


def _status(sid: str, status: str, form: dict[str, str], received_at: datetime) -> NormalizedEvent:
    # Status callbacks carry no time of their own: the time we received it is the best there is.
    return StatusUpdate(
        provider_message_id=sid,
        status=STATUS_MAP.get(status, MessageStatus.UNKNOWN),
        timestamp=received_at,
        error_code=form.get("ErrorCode", ""),
        error_title=form.get("ErrorMessage", ""),
        raw=form,
    )


def _identities(form: dict[str, str]) -> tuple[Identity, ...]:
    sender = address(form.get("From", ""))
    identities = []
    if is_phone(sender):
        identities.append(Identity(IdentityKind.PHONE, sender))
    if wa_id := form.get("WaId", ""):
        identities += [Identity(IdentityKind.PHONE, wa_id), Identity(IdentityKind.WHATSAPP_ID, wa_id)]
    # 2026: From may be "whatsapp:<business-scoped id>" with the id also in ExternalUserId.
    external = address(form.get("ExternalUserId", "")) or ("" if is_phone(sender) else sender)
    if external:
        identities.append(Identity(IdentityKind.TWILIO_EXTERNAL_ID, external))
    if parent := address(form.get("ParentExternalUserId", "")):
        identities.append(Identity(IdentityKind.PARENT_BUSINESS_SCOPED_ID, parent))
    if username := form.get("ProfileUsername") or form.get("Username"):
        identities.append(Identity(IdentityKind.USERNAME, username))
    return tuple(dict.fromkeys(identities))


def _inbound(sid: str, form: dict[str, str], received_at: datetime) -> NormalizedEvent:
    identities = _identities(form)
    if not identities:
        return UnhandledEvent("Twilio message without a sender", raw=form)
    media = _media(form)
    message_type, content = _type_and_content(form, media)
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


def _media(form: dict[str, str]) -> list[MediaRef]:
    try:
        count = min(int(form.get("NumMedia") or 0), 10)
    except ValueError:
        count = 0
    return [MediaRef(url=form[f"MediaUrl{i}"], mime_type=form.get(f"MediaContentType{i}", ""))
            for i in range(count) if form.get(f"MediaUrl{i}")]


def _type_and_content(form: dict[str, str], media: list[MediaRef]) -> tuple[str, dict]:
    wire_type = form.get("MessageType", "").lower()
    if form.get("ListId") or form.get("ListTitle"):
        # A choice from a twilio/list-picker: the item's id (ours) and its text.
        # https://www.twilio.com/docs/content/twiliolist-picker
        content = {"kind": "list_reply", "id": form.get("ListId", ""), "title": form.get("ListTitle", "")}
        if form.get("ListDescription"):
            content["description"] = form["ListDescription"]
        return MessageType.INTERACTIVE_REPLY, content
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
