"""Applying normalized events to the database: messages, statuses, sessions."""

import logging

from django.db import IntegrityError, transaction
from django.db.models import F

from contacts.models import Contact
from contacts.services import contact_resolve
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, Provider, WebhookEvent
from whatsapp.providers.events import (
    STATUS_RANK,
    InboundMessage,
    MessageStatus,
    NormalizedEvent,
    StatusUpdate,
    TemplateStatusUpdate,
    UnhandledEvent,
)
from whatsapp.services.locks import lock_key
from whatsapp.services.sessions import session_open_or_extend

logger = logging.getLogger(__name__)

STATUS_TIMESTAMP_FIELD = {
    MessageStatus.SENT: "sent_at",
    MessageStatus.DELIVERED: "delivered_at",
    MessageStatus.READ: "read_at",
    MessageStatus.FAILED: "failed_at",
}


def conversation_get_or_create(*, provider: Provider, contact: Contact) -> Conversation:
    try:
        with transaction.atomic():
            conversation, _ = Conversation.objects.get_or_create(provider=provider, contact=contact)
    except IntegrityError:
        conversation = Conversation.objects.get(provider=provider, contact=contact)
    return conversation


@transaction.atomic
def inbound_message_apply(*, provider: Provider, event: InboundMessage) -> tuple[Message, bool]:
    """
    Store one inbound message with its contact, conversation and session. Returns (message, created);
    a redelivered message (same provider message id) changes nothing but its duplicate counter.
    """
    existing = Message.objects.filter(provider=provider, provider_message_id=event.provider_message_id).first()
    if existing:
        Message.objects.filter(pk=existing.pk).update(duplicate_count=F("duplicate_count") + 1)
        return existing, False

    contact = contact_resolve(provider=provider, identities=event.identities, profile_name=event.profile_name,
                              seen_at=event.timestamp)
    conversation = conversation_get_or_create(provider=provider, contact=contact)
    # Lock the conversation so concurrent messages of one contact open at most one session.
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    session = session_open_or_extend(conversation=conversation, inbound_at=event.timestamp)
    reply_to = None
    if event.reply_to_provider_message_id:
        reply_to = Message.objects.filter(provider=provider,
                                          provider_message_id=event.reply_to_provider_message_id).first()
    try:
        with transaction.atomic():
            message = Message.objects.create(
                provider=provider,
                conversation=conversation,
                session=session,
                direction=Message.Direction.INBOUND,
                message_type=event.message_type,
                text=event.text,
                content=event.content,
                provider_message_id=event.provider_message_id,
                reply_to=reply_to,
                status=MessageStatus.RECEIVED,
                received_at=event.timestamp,
            )
    except IntegrityError:
        # The same message arrived through a parallel delivery and won the insert.
        message = Message.objects.get(provider=provider, provider_message_id=event.provider_message_id)
        Message.objects.filter(pk=message.pk).update(duplicate_count=F("duplicate_count") + 1)
        return message, False
    for ref in event.media:
        Media.objects.create(message=message, provider_media_id=ref.provider_media_id, source_url=ref.url,
                             mime_type=ref.mime_type, sha256=ref.sha256, filename=ref.filename, caption=ref.caption)
    if conversation.last_message_at is None or event.timestamp > conversation.last_message_at:
        conversation.last_message_at = event.timestamp
        conversation.save(update_fields=["last_message_at"])
    return message, True


def status_is_forward(current: str, new: str) -> bool:
    """sent < delivered < read < played; failed applies unless the message already reached the user."""
    if new == MessageStatus.FAILED:
        return current not in (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED,
                               MessageStatus.FAILED)
    if new not in STATUS_RANK:
        return False
    if current == MessageStatus.FAILED:
        # A provider may report failed and then a later success (e.g. after its own retry).
        return True
    return STATUS_RANK[new] > STATUS_RANK.get(current, -1)


def _apply_status(message: Message, status_event: MessageStatusEvent) -> bool:
    new = status_event.status
    if not status_is_forward(message.status, new):
        return False
    fields = ["status", "updated_at"]
    message.status = new
    # Fill every step the report implies: a read report means it was also sent and delivered.
    for step in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ):
        if new != MessageStatus.FAILED and STATUS_RANK[step] <= STATUS_RANK.get(new, -1):
            field = STATUS_TIMESTAMP_FIELD[step]
            if getattr(message, field) is None:
                setattr(message, field, status_event.occurred_at)
                fields.append(field)
    if new == MessageStatus.FAILED:
        message.failed_at = status_event.occurred_at
        message.error_code = status_event.error_code
        message.error_detail = " ".join(filter(None, [status_event.error_title, status_event.error_detail]))
        fields += ["failed_at", "error_code", "error_detail"]
    message.save(update_fields=fields)
    return True


@transaction.atomic
def status_update_apply(*, provider: Provider, event: StatusUpdate,
                        webhook_event: WebhookEvent | None = None) -> MessageStatusEvent:
    """
    Record a status report and move the message forward if it is news. A redelivered report is the
    same row. A report for a message whose provider id is not recorded yet is kept and applied when
    the send records it; the key lock makes "record the id" and "look up the id" take turns.
    """
    lock_key("provider-message", provider.pk, event.provider_message_id)
    message = (Message.objects.select_for_update()
               .filter(provider=provider, provider_message_id=event.provider_message_id,
                       direction=Message.Direction.OUTBOUND).first())
    status_event, created = MessageStatusEvent.objects.get_or_create(
        provider=provider, provider_message_id=event.provider_message_id, status=event.status,
        occurred_at=event.timestamp,
        defaults={"message": message, "error_code": event.error_code, "error_title": event.error_title,
                  "error_detail": event.error_detail, "webhook_event": webhook_event, "raw": event.raw},
    )
    if created and message is not None and _apply_status(message, status_event):
        status_event.applied = True
        status_event.save(update_fields=["applied"])
    return status_event


def orphan_statuses_apply(message: Message) -> None:
    """Apply reports that arrived before the send recorded the provider's message id."""
    orphans = MessageStatusEvent.objects.filter(provider=message.provider, message__isnull=True,
                                                provider_message_id=message.provider_message_id)
    for status_event in orphans.order_by("occurred_at", "id"):
        status_event.message = message
        status_event.applied = _apply_status(message, status_event)
        status_event.save(update_fields=["message", "applied"])


def event_apply(*, provider: Provider, event: NormalizedEvent, webhook_event: WebhookEvent | None) -> None:
    if isinstance(event, InboundMessage):
        inbound_message_apply(provider=provider, event=event)
    elif isinstance(event, StatusUpdate):
        status_update_apply(provider=provider, event=event, webhook_event=webhook_event)
    elif isinstance(event, TemplateStatusUpdate):
        from templates_app.services import template_status_apply

        template_status_apply(provider=provider, event=event)
    elif isinstance(event, UnhandledEvent):
        logger.info("unhandled webhook event kept", extra={"reason": event.description,
                                                           "webhook_event": getattr(webhook_event, "pk", None)})
