"""
Meta webhooks -> normalized events. One app posts the updates of all its numbers to one URL, up to 1000
updates per POST across entries and changes; every update carries `metadata.phone_number_id`, which routes
it to its provider row.

https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from whatsapp.providers.base import as_dict, as_list, as_text, parse_each
from whatsapp.providers.events import (
    MEDIA_TYPES,
    Identity,
    IdentityKind,
    InboundMessage,
    MediaRef,
    MessageStatus,
    MessageType,
    NormalizedEvent,
    StatusUpdate,
    TemplateStatus,
    TemplateStatusUpdate,
    UnhandledEvent,
)
from whatsapp.providers.meta.wire import IGNORED_STATUSES, MESSAGE_TYPE_MAP, STATUS_MAP, error_detail, first_error
from whatsapp.providers.whatsapp_templates import TEMPLATE_STATUS_MAP

TEMPLATE_FIELDS = ("message_template_status_update", "message_template_quality_update", "template_category_update")


def parse_payload(payload: Any, received_at: datetime) -> list[NormalizedEvent]:
    """Every update of one webhook body (a decoded JSON object with an "entry" list)."""
    events: list[NormalizedEvent] = []
    for entry in as_list(payload.get("entry")):
        entry = as_dict(entry)
        events.extend(parse_each(as_list(entry.get("changes")),
                                 lambda change, entry=entry: _parse_change(entry, as_dict(change), received_at)))
    return events


def _timestamp(value: Any, fallback: datetime) -> datetime:
    # Meta sends Unix seconds as a string.
    try:
        return datetime.fromtimestamp(int(str(value)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback


def _parse_change(entry: dict, change: dict, received_at: datetime) -> list[NormalizedEvent]:
    field = as_text(change.get("field"))
    value = as_dict(change.get("value"))
    if field == "messages":
        return _parse_messages_value(value, received_at)
    if field in TEMPLATE_FIELDS:
        return [_parse_template_update(field, entry, value, received_at)]
    return [UnhandledEvent(f"Meta webhook field {field!r} is not acted on", raw=change)]


def _parse_messages_value(value: dict, received_at: datetime) -> list[NormalizedEvent]:
    routed_to = as_text(as_dict(value.get("metadata")).get("phone_number_id"))
    contacts = [as_dict(contact) for contact in as_list(value.get("contacts"))]
    # Each message and status on its own: one unreadable update does not hold back the others.
    events = parse_each(as_list(value.get("messages")),
                        lambda message: _parse_message(as_dict(message), contacts, routed_to, received_at))
    events += parse_each(as_list(value.get("statuses")),
                         lambda status: _parse_status(as_dict(status), routed_to, received_at))
    for error in as_list(value.get("errors")):
        error = as_dict(error)
        events.append(UnhandledEvent(
            f"Meta reported error {error.get('code')}: {error.get('title')} ({error_detail(error)})",
            routed_to=routed_to, raw=error))
    if not events:
        events.append(UnhandledEvent("Meta messages update with no messages, statuses or errors",
                                     routed_to=routed_to, raw=value))
    return events


# --- inbound messages ---------------------------------------------------------------------------
def _sender_identities(message: dict, contacts: list[dict]) -> tuple[tuple[Identity, ...], str]:
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


def _parse_message(message: dict, contacts: list[dict], routed_to: str, received_at: datetime) -> NormalizedEvent:
    message_id = as_text(message.get("id"))
    identities, profile_name = _sender_identities(message, contacts)
    if not message_id or not identities:
        return UnhandledEvent("Meta message without an id or a sender", routed_to=routed_to, raw=message)
    wire_type = as_text(message.get("type"))
    message_type = MESSAGE_TYPE_MAP.get(wire_type, MessageType.UNSUPPORTED)
    body = as_dict(message.get(wire_type))
    text, content, media = _content(wire_type, message_type, body, message)
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


def _content(wire_type: str, message_type: str, body: dict,
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
    error = first_error(message.get("errors"))
    content = {"unsupported_type": as_text(body.get("type")) or wire_type, "errors": as_list(message.get("errors"))}
    return as_text(error.get("title")), content, ()


# --- statuses and templates -----------------------------------------------------------------------
def _parse_status(status: dict, routed_to: str, received_at: datetime) -> NormalizedEvent:
    wire_status = as_text(status.get("status"))
    if not status.get("id") or wire_status in IGNORED_STATUSES:
        return UnhandledEvent(f"Meta status {wire_status!r} ignored", routed_to=routed_to, raw=status)
    error = first_error(status.get("errors"))
    return StatusUpdate(
        provider_message_id=as_text(status["id"]),
        status=STATUS_MAP.get(wire_status, MessageStatus.UNKNOWN),
        timestamp=_timestamp(status.get("timestamp"), received_at),
        error_code=as_text(error.get("code")),
        error_title=as_text(error.get("title") or error.get("message")),
        error_detail=error_detail(error),
        routed_to=routed_to,
        # Meta echoes the biz_opaque_callback_data we sent with the message on its statuses.
        client_reference=as_text(status.get("biz_opaque_callback_data")),
        raw=status,
    )


def _parse_template_update(field: str, entry: dict, value: dict, received_at: datetime) -> NormalizedEvent:
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
