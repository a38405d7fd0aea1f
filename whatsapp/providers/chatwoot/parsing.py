"""
Chatwoot webhooks -> normalized events. Chatwoot echoes every message of the inbox, ours included, and
sends private notes too: only incoming, non-private messages become inbound messages; outgoing ones are
echoes (matched to what we sent), and their updates report the outcome of a send.

Contact ids are only unique inside one Chatwoot installation and account: the parser is given the
provider's scope (a function, read only when a contact is met).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from whatsapp.providers.base import as_dict, as_list, as_text
from whatsapp.providers.chatwoot.wire import (
    ATTACHMENT_TYPES,
    CONTACT_EVENTS,
    CONVERSATION_EVENTS,
    PUSH_MESSAGE_TYPES,
    STATUS_MAP,
)
from whatsapp.providers.events import (
    ContactProfile,
    ConversationUpdate,
    Identity,
    IdentityKind,
    InboundMessage,
    MediaRef,
    MessageStatus,
    MessageType,
    NormalizedEvent,
    OutboundEcho,
    StatusUpdate,
    UnhandledEvent,
)

#: The scope of this provider's contact ids ("<host>/<account id>").
Scope = Callable[[], str]


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


def parse_payload(payload: dict, received_at: datetime, scope: Scope) -> NormalizedEvent:
    """The one event of a webhook body (a decoded JSON object with an "event" name)."""
    event = as_text(payload.get("event"))
    if event in ("message_created", "message_updated"):
        return _parse_message_event(event, payload, received_at, scope)
    if event in CONVERSATION_EVENTS:
        return _parse_conversation(payload, scope)
    if event in CONTACT_EVENTS:
        return ContactProfile(identities=_contact_identities(payload, scope),
                              profile_name=as_text(payload.get("name")), raw=payload)
    return UnhandledEvent(f"Chatwoot event {event!r} is not acted on", raw=payload)

def _contact_identities(contact: dict, scope: Scope, source_id: str = "") -> tuple[Identity, ...]:
    identities = []
    if contact.get("id") is not None:
        identities.append(Identity(IdentityKind.CHATWOOT_CONTACT_ID, as_text(contact["id"]), scope()))
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

def _parse_message_event(event: str, message: dict, received_at: datetime, scope: Scope) -> NormalizedEvent:
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
        return _parse_outgoing_update(message, conversation, routed_to, received_at)
    sender = as_dict(message.get("sender"))
    contact = sender if direction == "incoming" else as_dict(as_dict(conversation.get("meta")).get("sender"))
    source_id = as_text(as_dict(conversation.get("contact_inbox")).get("source_id"))
    identities = _contact_identities(contact, scope, source_id)
    message_type, content, media = _content(message)
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
    # Chatwoot's own messages (greeting, out-of-office, CSAT: message_type "template") and an agent bot's are
    # not a person taking over. https://www.chatwoot.com/developers/api/#tag/Messages
    by_person = direction == "outgoing" and (as_text(sender.get("type")) or "user") == "user"
    return OutboundEcho(**common, client_reference=as_text(message.get("echo_id") or attributes.get("echo_id")),
                        sender_label=f"{sender.get('type') or 'user'}: {as_text(sender.get('name'))}".strip(),
                        sent_by_person=by_person)

def _content(message: dict) -> tuple[str, dict[str, Any], tuple[MediaRef, ...]]:
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

def _parse_outgoing_update(message: dict, conversation: dict, routed_to: str,
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

def _parse_conversation(conversation: dict, scope: Scope) -> NormalizedEvent:
    meta = as_dict(conversation.get("meta"))
    sender = as_dict(meta.get("sender"))
    source_id = as_text(as_dict(conversation.get("contact_inbox")).get("source_id"))
    return ConversationUpdate(identities=_contact_identities(sender, scope, source_id),
                              conversation_ref=as_text(conversation.get("id")),
                              state=as_text(conversation.get("status")),
                              profile_name=as_text(sender.get("name")),
                              routed_to=as_text(conversation.get("inbox_id")), raw=conversation,
                              changed_at=_time(conversation.get("updated_at"), None))
