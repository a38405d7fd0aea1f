"""Applying normalized events to the database: messages, statuses, sessions."""

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from contacts.models import Contact, ContactIdentity
from contacts.services.identities import contact_resolve
from core.locks import lock_key
from core.queueing import publish_on_commit, task_named
from templates_app.models import MessageTemplate
from whatsapp import hooks
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, Provider, WebhookEvent
from whatsapp.providers import backend_for
from whatsapp.providers.events import (
    STATUS_RANK,
    ContactProfile,
    ConversationUpdate,
    Identity,
    InboundMessage,
    MediaRef,
    MessageStatus,
    MessageType,
    NormalizedEvent,
    OutboundEcho,
    StatusUpdate,
    TemplateStatusUpdate,
    UnhandledEvent,
)
from whatsapp.services.conversations import conversation_get_or_create
from whatsapp.services.lifecycle import customer_wrote, provider_state_apply
from whatsapp.services.responses import awaiting_reply_note, reply_record, reply_wait
from whatsapp.services.sessions import session_current, session_open_or_extend

logger = logging.getLogger(__name__)

STATUS_TIMESTAMP_FIELD = {
    MessageStatus.SENT: "sent_at",
    MessageStatus.DELIVERED: "delivered_at",
    MessageStatus.READ: "read_at",
    MessageStatus.PLAYED: "played_at",
    MessageStatus.FAILED: "failed_at",
}
# How long an echo of our own send may wait for the send task to record the provider's id.
ECHO_WAIT_FOR_SEND = timedelta(minutes=10)


class RetryLater(Exception):
    """An event that cannot be applied yet but will be (the webhook event is retried with backoff)."""


# Times a message may carry: the database holds more, but the session window is added to them (and local
# time taken), which must stay within what a datetime holds.
EARLIEST_TIME = datetime(1, 1, 2, tzinfo=UTC)
LATEST_TIME = datetime(9999, 1, 1, tzinfo=UTC)


# The column each normalized field is stored in (the same name on every event type that has it).
COLUMNS: dict[str, models.Field] = {
    "provider_message_id": Message._meta.get_field("provider_message_id"),
    "timestamp": Message._meta.get_field("received_at"),
    "message_type": Message._meta.get_field("message_type"),
    "conversation_ref": Conversation._meta.get_field("external_conversation_id"),
    "provider_template_id": MessageTemplate._meta.get_field("provider_template_id"),
}


IDENTITY_COLUMNS = ("kind", "value", "scope")
MEDIA_COLUMNS = ("provider_media_id", "size_bytes")


def _misfit(column: models.Field, value: Any) -> str:
    """Why `value` cannot be stored in `column` ("" when it can), read off the model field itself."""
    if value is None:
        return ""
    if isinstance(column, models.CharField):
        if not isinstance(value, str):
            return f"is a {type(value).__name__}, not text"
        if column.max_length and len(value) > column.max_length:
            return f"is {len(value)} characters long; at most {column.max_length} fit"
    elif isinstance(column, models.IntegerField):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"is a {type(value).__name__}, not a whole number"
        low, high = connection.ops.integer_field_range(column.get_internal_type())
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{value} is out of range"
    elif isinstance(column, models.DateTimeField):
        if not isinstance(value, datetime) or value.tzinfo is None:
            return f"is a {type(value).__name__}, not a time with its zone"
        if not EARLIEST_TIME <= value <= LATEST_TIME:
            return f"{value.isoformat()} is out of range"
    return ""


def update_problem(event: NormalizedEvent) -> str:
    """
    Why this update cannot be stored as it came ("" when it can): every field is checked against the
    model field that stores it, for every provider alike. Such an update is recorded as invalid on its
    webhook event, never cut short (a cut id would merge two messages) and never retried (it would fail
    the same way forever).
    """
    checks: list[tuple[str, models.Field, Any]] = [
        (name, column, getattr(event, name)) for name, column in COLUMNS.items() if hasattr(event, name)]
    for identity in getattr(event, "identities", ()):
        checks += [(f"identity {name}", ContactIdentity._meta.get_field(name), getattr(identity, name))
                   for name in IDENTITY_COLUMNS]
    for ref in getattr(event, "media", ()):
        checks += [(f"media {name}", Media._meta.get_field(name), getattr(ref, name)) for name in MEDIA_COLUMNS]
    for name, column, value in checks:
        if problem := _misfit(column, value):
            return f"{name.replace('_', ' ')} {problem}"
    if isinstance(event, InboundMessage | ContactProfile | ConversationUpdate) and not any(
            identity.value for identity in event.identities):
        # Each of these is about a person, found by an identity: with none, there is no one to apply it to.
        return "names no one (no identity to find the contact by)"
    return ""


def _contact_and_conversation(*, provider: Provider, identities: Iterable[Identity], profile_name: str,
                              seen_at: datetime | None, conversation_ref: str, lock: bool = False) -> Conversation:
    contact = contact_resolve(provider=provider, identities=identities, profile_name=profile_name, seen_at=seen_at)
    return conversation_get_or_create(provider=provider, contact=contact, external_id=conversation_ref, lock=lock)


def _media_create(*, provider: Provider, message: Message, refs: Iterable[MediaRef]) -> None:
    lifetime = backend_for(provider).media_lifetime
    for ref in refs:
        media = Media.objects.create(
            message=message, provider_media_id=ref.provider_media_id, source_url=ref.url[:2000],
            mime_type=ref.mime_type[:100], sha256=ref.sha256[:64], filename=ref.filename[:255], caption=ref.caption,
            size_bytes=ref.size_bytes, next_attempt_at=timezone.now(),
            expires_at=(message.received_at + lifetime) if lifetime and message.received_at else None,
        )
        media_enqueue(media.pk)


def media_enqueue(media_id: int) -> None:
    download_media_task = task_named("whatsapp.tasks.download_media_task")

    # With the broker down the row stays pending and the retry beat job picks it up.
    publish_on_commit(lambda: download_media_task.delay(media_id), what=f"media {media_id}")


def message_lock_key(provider: Provider, provider_message_id: str) -> tuple[object, ...]:
    """The advisory lock under which a provider message id is looked up and recorded (core.locks)."""
    return ("provider-message", provider.pk, provider_message_id)


def quoted_content(event: InboundMessage) -> dict:
    # The quoted message may be one we never stored (sent before this platform): keep its id anyway.
    if event.reply_to_provider_message_id:
        return {**event.content, "quoted_message_id": event.reply_to_provider_message_id}
    return event.content


def _offered_choices(message: Message) -> list[dict]:
    """The buttons and list rows an outbound interactive message offered ({"id", "title"} each)."""
    choices = [choice for choice in message.content.get("buttons") or [] if isinstance(choice, dict)]
    for section in message.content.get("sections") or []:
        choices += [row for row in (section.get("rows") or []) if isinstance(row, dict)]
    return choices


def _type_and_content(provider: Provider, conversation: Conversation, event: InboundMessage) -> tuple[str, dict]:
    """
    Where a provider passes button replies on as bare titles, a text equal to one of the choices our
    last interactive message offered is that choice, with its id.
    """
    content = quoted_content(event)
    if not (backend_for(provider).button_replies_by_title and event.message_type == MessageType.TEXT and event.text):
        return event.message_type, content
    offer = (Message.objects.filter(conversation=conversation, direction=Message.Direction.OUTBOUND,
                                    message_type=MessageType.INTERACTIVE).order_by("-created_at").first())
    for choice in _offered_choices(offer) if offer else []:
        if str(choice.get("title", "")).strip().casefold() == event.text.strip().casefold():
            return MessageType.INTERACTIVE_REPLY, {**content, "kind": "button_reply", "id": str(choice.get("id", "")),
                                                   "title": str(choice.get("title", "")), "matched_by": "title",
                                                   "offer_message_id": offer.pk}
    return event.message_type, content


# savepoint=False: the caller already gives each event its own savepoint.
@transaction.atomic(savepoint=False)
def inbound_message_apply(*, provider: Provider, event: InboundMessage) -> tuple[Message, bool]:
    """
    Store one inbound message with its contact, conversation and session. Returns (message, created);
    a redelivered message (same provider message id) changes nothing but its duplicate counter.
    """
    # Two deliveries of one message take turns here, so the second always sees the first's row.
    lock_key(*message_lock_key(provider, event.provider_message_id))
    updated = Message.objects.filter(provider=provider, provider_message_id=event.provider_message_id).update(
        duplicate_count=F("duplicate_count") + 1)
    if updated:
        return Message.objects.get(provider=provider, provider_message_id=event.provider_message_id), False

    # The conversation stays locked so concurrent messages of one contact open at most one session.
    conversation = _contact_and_conversation(provider=provider, identities=event.identities,
                                             profile_name=event.profile_name, seen_at=event.timestamp,
                                             conversation_ref=event.conversation_ref, lock=True)
    session = session_open_or_extend(conversation=conversation, inbound_at=event.timestamp)
    reply_to = None
    if event.reply_to_provider_message_id:
        reply_to = Message.objects.filter(provider=provider,
                                          provider_message_id=event.reply_to_provider_message_id).first()
    message_type, content = _type_and_content(provider, conversation, event)
    message = Message.objects.create(
        provider=provider,
        conversation=conversation,
        session=session,
        direction=Message.Direction.INBOUND,
        message_type=message_type,
        text=event.text,
        content=content,
        provider_message_id=event.provider_message_id,
        reply_to=reply_to,
        status=MessageStatus.RECEIVED,
        received_at=event.timestamp,
    )
    _media_create(provider=provider, message=message, refs=event.media)
    changed = awaiting_reply_note(conversation, at=event.timestamp)
    if conversation.last_message_at is None or event.timestamp > conversation.last_message_at:
        conversation.last_message_at = event.timestamp
        changed.append("last_message_at")
    if changed:
        conversation.save(update_fields=changed)
    customer_wrote(conversation, message, at=event.timestamp)
    hooks.inbound_message_saved.fire(message=message)
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


def _backfill_step_time(message: Message, status_event: MessageStatusEvent) -> None:
    """A late report for a step already implied (delivered after read) still gives that step its own time."""
    field = STATUS_TIMESTAMP_FIELD.get(status_event.status)
    if status_event.status == MessageStatus.FAILED or field is None:
        return
    current = getattr(message, field)
    if current is None or status_event.occurred_at < current:
        setattr(message, field, status_event.occurred_at)
        message.save(update_fields=[field, "updated_at"])


def _apply_status(message: Message, status_event: MessageStatusEvent) -> bool:
    new = status_event.status
    if not status_is_forward(message.status, new):
        if message.status != MessageStatus.FAILED:
            _backfill_step_time(message, status_event)
        return False
    fields = ["status", "updated_at"]
    message.status = new
    # Fill every step the report implies: a read report means it was also sent and delivered.
    for step in (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED):
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
    elif message.error_code or message.error_detail:
        # The provider says it went out: an earlier error (a send whose outcome was unknown, a failure the
        # provider then retried itself) no longer describes the message; its history keeps it.
        message.error_code = message.error_title = message.error_detail = ""
        fields += ["error_code", "error_title", "error_detail"]
    message.save(update_fields=fields)
    if new == MessageStatus.FAILED:
        hooks.status_failed_reported.fire(message=message)
    return True


@transaction.atomic(savepoint=False)
def status_update_apply(*, provider: Provider, event: StatusUpdate,
                        webhook_event: WebhookEvent | None = None) -> MessageStatusEvent:
    """
    Record a status report and move the message forward if it is news. A redelivered report is the
    same row. A report for a message whose provider id is not recorded yet is kept and applied when
    the send records it; the key lock makes "record the id" and "look up the id" take turns.
    """
    lock_key(*message_lock_key(provider, event.provider_message_id))
    message = (Message.objects.select_for_update()
               .filter(provider=provider, provider_message_id=event.provider_message_id,
                       direction=Message.Direction.OUTBOUND).first())
    if message is None:
        message = _unrecorded_send(provider, event)
    status_event, created = MessageStatusEvent.objects.get_or_create(
        provider=provider, provider_message_id=event.provider_message_id, status=event.status,
        occurred_at=event.timestamp,
        defaults={"message": message, "error_code": event.error_code[:32], "error_title": event.error_title[:255],
                  "error_detail": event.error_detail, "webhook_event": webhook_event, "raw": event.raw},
    )
    if created and message is not None and _apply_status(message, status_event):
        status_event.applied = True
        status_event.save(update_fields=["applied"])
    return status_event


def _unrecorded_send(provider: Provider, event: StatusUpdate) -> Message | None:
    """
    A report naming our own reference for a send whose provider id we never recorded (the worker
    stopped between the provider's answer and our commit): the report settles what happened to it.
    """
    message = _our_send(provider, event.client_reference)
    if message is None or message.provider_message_id or message.status not in (MessageStatus.SENDING,
                                                                                 MessageStatus.DEAD_LETTER):
        return None
    message.provider_message_id = event.provider_message_id
    message.save(update_fields=["provider_message_id", "updated_at"])
    orphan_statuses_apply(message)
    return message


def orphan_statuses_apply(message: Message) -> None:
    """Apply reports that arrived before the send recorded the provider's message id."""
    orphans = MessageStatusEvent.objects.filter(provider=message.provider, message__isnull=True,
                                                provider_message_id=message.provider_message_id)
    for status_event in orphans.order_by("occurred_at", "id"):
        status_event.message = message
        status_event.applied = _apply_status(message, status_event)
        status_event.save(update_fields=["message", "applied"])
        if status_event.webhook_event_id:
            # The body that carried the report is now known to hold this contact's data (archive, erasure).
            WebhookEvent.contacts.through.objects.get_or_create(webhookevent_id=status_event.webhook_event_id,
                                                                contact_id=message.conversation.contact_id)


def _our_send(provider: Provider, client_reference: str) -> Message | None:
    """Our outbound message a provider's echo or report names by the reference we gave it (locked)."""
    if not client_reference.isdigit():
        return None
    return (Message.objects.select_for_update()
            .filter(pk=int(client_reference), provider=provider, direction=Message.Direction.OUTBOUND).first())


@transaction.atomic(savepoint=False)
def outbound_echo_apply(*, provider: Provider, event: OutboundEcho) -> Message:
    """
    A message sent from the business side, reported back by the provider. Our own sends are matched
    (by the provider's id once the send recorded it, or by our reference), so they are never stored
    twice; a message an agent wrote in the provider's own UI is stored as outbound, already sent.
    Neither is ever treated as customer input, so nothing can answer it (no loops).
    """
    lock_key(*message_lock_key(provider, event.provider_message_id))
    existing = Message.objects.filter(provider=provider, provider_message_id=event.provider_message_id).first()
    if existing:
        Message.objects.filter(pk=existing.pk).update(duplicate_count=F("duplicate_count") + 1)
        return existing
    ours = _our_send(provider, event.client_reference)
    if ours is not None and not ours.provider_message_id:
        ours.provider_message_id = event.provider_message_id
        ours.save(update_fields=["provider_message_id", "updated_at"])
        orphan_statuses_apply(ours)
        return ours
    conversation = _contact_and_conversation(provider=provider, identities=event.identities, profile_name="",
                                             seen_at=None, conversation_ref=event.conversation_ref,
                                             lock=event.sent_by_person)
    in_flight = Message.objects.filter(
        conversation=conversation, direction=Message.Direction.OUTBOUND, status=MessageStatus.SENDING,
        provider_message_id__isnull=True, updated_at__gte=timezone.now() - ECHO_WAIT_FOR_SEND,
    )
    if in_flight.exists():
        # Our send task has the provider's answer but has not recorded its id yet: try again shortly
        # rather than store our own message a second time.
        raise RetryLater("echo of a send whose provider id is not recorded yet")
    session = session_current(conversation, at=event.timestamp)
    wait = reply_wait(conversation, session, at=event.timestamp) if event.sent_by_person else None
    message = Message.objects.create(
        provider=provider, conversation=conversation, direction=Message.Direction.OUTBOUND,
        message_type=event.message_type, text=event.text,
        content={**event.content, "sent_from_provider": True, "sender": event.sender_label},
        provider_message_id=event.provider_message_id, status=MessageStatus.SENT, sent_at=event.timestamp,
        session=session, response_seconds=wait.seconds if wait else None,
        first_response=bool(wait and wait.first_in_window),
    )
    if event.sent_by_person:
        reply_record(conversation, session, wait, at=event.timestamp)
        hooks.human_reply_recorded.fire(message=message)
    return message


def contact_profile_apply(*, provider: Provider, event: ContactProfile) -> Contact:
    return contact_resolve(provider=provider, identities=event.identities, profile_name=event.profile_name)


def conversation_update_apply(*, provider: Provider, event: ConversationUpdate) -> Conversation:
    conversation = _contact_and_conversation(provider=provider, identities=event.identities,
                                             profile_name=event.profile_name, seen_at=None,
                                             conversation_ref=event.conversation_ref)
    if event.state:
        provider_state_apply(conversation, event.state[:20], changed_at=event.changed_at)
    return conversation


def event_apply(*, provider: Provider, event: NormalizedEvent, webhook_event: WebhookEvent | None) -> int | None:
    """Apply one normalized event; returns the id of the contact whose data it carried, if any."""
    if isinstance(event, InboundMessage):
        return inbound_message_apply(provider=provider, event=event)[0].conversation.contact_id
    if isinstance(event, OutboundEcho):
        return outbound_echo_apply(provider=provider, event=event).conversation.contact_id
    if isinstance(event, ContactProfile):
        return contact_profile_apply(provider=provider, event=event).pk
    if isinstance(event, ConversationUpdate):
        return conversation_update_apply(provider=provider, event=event).contact_id
    if isinstance(event, StatusUpdate):
        status_event = status_update_apply(provider=provider, event=event, webhook_event=webhook_event)
        return status_event.message.conversation.contact_id if status_event.message_id else None
    if isinstance(event, TemplateStatusUpdate):
        hooks.template_status_reported.fire(provider=provider, event=event)
    elif isinstance(event, UnhandledEvent):
        logger.info("unhandled webhook event kept", extra={"reason": event.description,
                                                           "webhook_event": getattr(webhook_event, "pk", None)})
    return None
