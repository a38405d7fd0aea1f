"""
Sending, first half: one service (`message_send`) that the API, the admin and beat jobs call. It
checks the rules (send_rules), records the message as queued, and wakes its provider's sender on commit.
The sender's half (batches, rate limits, the provider calls, retries, dead letters) is `send_batches.py`
and `delivery.py`.

The messages table is the send queue: a queued message is due at `next_attempt_at`, and the sender
claims due messages itself. A wake is only a nudge, so a broker outage or a lost wake never loses a
message: the requeue job wakes the sender of every provider with an overdue message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from contacts.models import Contact
from contacts.services.identities import contact_resolve
from core.audit import audit_record
from core.bulk import bulk_insert_rows
from core.queueing import Wake, publish_on_commit, task_named
from templates_app.models import MessageTemplate
from templates_app.parameters import template_render
from whatsapp import hooks
from whatsapp.models import Media, Message, Provider, Session
from whatsapp.providers import backend_for
from whatsapp.providers.events import (
    MEDIA_TYPES,
    Identity,
    IdentityKind,
    MessageStatus,
    MessageType,
    SendResult,
)
from whatsapp.services import send_rules
from whatsapp.services.archive import media_store
from whatsapp.services.conversations import conversation_get_or_create, conversations_for_contacts
from whatsapp.services.responses import reply_record, reply_wait
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.sessions import session_current

logger = logging.getLogger(__name__)

# Waits longer than this stay in the database instead of the broker: a countdown longer than the
# broker's visibility timeout would be delivered twice.
BROKER_COUNTDOWN_MAX_SECONDS = 30.0
# A provider's sender (send_batches.provider_send_due) claims what is due; a wake only starts it. The claim
# takes replies ahead of bulk, so one wake serves both lanes.
send_wake = Wake("whatsapp.tasks.send_due_task", interval=0.1, delay=0.1)
# States in which a message is still ours to send.
PENDING_STATUSES = (MessageStatus.QUEUED, MessageStatus.SENDING)
# Why a queued message waits outside the broker until released (not until a due time of its own).
HOLD_PAUSED = "provider paused"
HOLD_INACTIVE = "provider inactive"
HOLD_CIRCUIT = "circuit open: provider failing"
RELEASABLE_HOLDS = (HOLD_PAUSED, HOLD_INACTIVE, HOLD_CIRCUIT)
# A message waiting for its recipient's slot holds that slot: when it comes back it does not ask again.
HOLD_PAIR_PACING = "per-recipient pacing (pair rate)"


def stopped_provider_hold(provider: Provider) -> str:
    """Why a stopped provider's messages are held: paused, else inactive."""
    return HOLD_PAUSED if provider.is_paused else HOLD_INACTIVE


# A message due for less than this is the business of the wake that was published for it.
SWEEP_GRACE_SECONDS = 2.0


class IdempotencyConflict(SendRefused):
    def __init__(self, key: str):
        super().__init__("idempotency_key_reused",
                         f"Idempotency-Key {key!r} was already used for a different request; use a new key")


@dataclass
class MediaInput:
    url: str = ""
    data: bytes | None = None
    filename: str = ""
    mime_type: str = ""
    caption: str = ""


@dataclass
class SendRequest:
    """One message to send, in our vocabulary (what the API, the admin form and beat jobs build)."""

    provider: Provider
    # The recipient: a contact, or a phone number (E.164) resolved to one inside the send's transaction,
    # so that a refused send to a number that never wrote leaves no contact behind.
    contact: Contact | None
    message_type: str
    to_phone: str = ""
    text: str = ""
    preview_url: bool = False
    media: MediaInput | None = None
    interactive: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    emoji: str = ""
    react_to: Message | None = None
    template: MessageTemplate | None = None
    template_variables: dict[str, Any] | None = None
    reply_to: Message | None = None
    lane: str = ""
    idempotency_key: str = ""
    fingerprint: str = ""
    actor: Any = None
    # Why the platform itself sends it (a Message.Purpose); empty for conversation messages.
    purpose: str = ""


def _content(request: SendRequest, conversation) -> tuple[str, dict[str, Any]]:
    kind = request.message_type
    if kind == MessageType.TEXT:
        content = send_rules.text_content(request.text, request.preview_url)
        return content["text"], content
    if kind in MEDIA_TYPES:
        media = request.media or MediaInput()
        if not media.url and media.data is None:
            raise SendRefused("invalid_content", f"a {kind} message needs media_url or an uploaded file")
        content = send_rules.media_content(kind, url=media.url, caption=media.caption, filename=media.filename,
                                           mime_type=media.mime_type)
        return media.caption, content
    if kind == MessageType.INTERACTIVE:
        content = send_rules.interactive_content(request.interactive)
        return content["body"], content
    if kind == MessageType.LOCATION:
        content = send_rules.location_content(request.location)
        return content["name"] or content["address"], content
    if kind == MessageType.REACTION:
        content = send_rules.reaction_content(emoji=request.emoji, target=request.react_to,
                                              conversation=conversation)
        return content["emoji"], content
    if kind == MessageType.TEMPLATE:
        return "", {}
    raise SendRefused("unsupported_type", f"{kind!r} messages cannot be sent")


def _check_media_upload(media: MediaInput | None) -> None:
    if media is None or media.data is None:
        return
    if len(media.data) > settings.OUTBOUND_MEDIA_MAX_BYTES:
        raise SendRefused("media_too_large", f"the file is {len(media.data)} bytes; the limit is "
                          f"{settings.OUTBOUND_MEDIA_MAX_BYTES}")
    if not media.data:
        raise SendRefused("invalid_content", "the uploaded file is empty")


def request_fingerprint(fields: dict[str, Any]) -> str:
    """What makes two requests under one idempotency key "the same": their fields, in a stable form
    (model instances by primary key)."""
    canonical = {key: getattr(value, "pk", value) for key, value in fields.items()}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def _existing_for_key(request: SendRequest) -> Message | None:
    if not request.idempotency_key:
        return None
    existing = Message.objects.filter(idempotency_key=request.idempotency_key).first()
    if existing is not None and existing.request_fingerprint != request.fingerprint:
        raise IdempotencyConflict(request.idempotency_key.split(":", 1)[-1])
    return existing


@transaction.atomic
def message_send(request: SendRequest) -> tuple[Message, bool]:
    """
    Check and queue one message. Returns (message, created): with an idempotency key already used for
    the same request, the message made then and False. Raises SendRefused.
    """
    existing = _existing_for_key(request)
    if existing is not None:
        return existing, False
    provider, contact = request.provider, request.contact or _contact_for_phone(request)
    send_rules.check_provider_can_send(provider, request.message_type, reply=request.reply_to is not None)
    send_rules.check_consent(contact, request.purpose)
    send_rules.check_recipient(provider, contact)
    _check_media_upload(request.media)
    # A person's reply settles the conversation's wait: replies to one conversation take turns. A bulk send
    # (a campaign, a notification from another system) answers no one.
    answers = not request.purpose and request.lane != Message.Lane.BULK
    conversation = conversation_get_or_create(provider=provider, contact=contact, lock=answers)
    text, content = _content(request, conversation)
    send_rules.check_window(conversation, request.message_type)
    variables: dict[str, Any] = {}
    if request.message_type == MessageType.TEMPLATE:
        bound = send_rules.check_template(request.template, provider, request.template_variables)
        text, variables = template_render(request.template, bound), bound.as_variables()
        content = {"template": request.template.name, "language": request.template.language}
    if request.reply_to is not None and request.reply_to.conversation_id != conversation.pk:
        raise SendRefused("invalid_content", "reply_to must be a message of the same conversation")
    now = timezone.now()
    session = session_current(conversation, at=now)
    wait = reply_wait(conversation, session, at=now) if answers else None
    message = Message(
        provider=provider, conversation=conversation, session=session, direction=Message.Direction.OUTBOUND,
        message_type=request.message_type, text=text, content=content, reply_to=request.reply_to,
        template=request.template if request.message_type == MessageType.TEMPLATE else None,
        template_variables=variables, status=MessageStatus.QUEUED, queued_at=now, next_attempt_at=now,
        enqueued_at=now, lane=request.lane or (Message.Lane.REPLY if session else Message.Lane.BULK),
        idempotency_key=request.idempotency_key or None, request_fingerprint=request.fingerprint,
        created_by=request.actor if getattr(request.actor, "is_authenticated", False) else None,
        purpose=request.purpose, response_seconds=wait.seconds if wait else None,
        first_response=bool(wait and wait.first_in_window),
    )
    try:
        with transaction.atomic():
            message.save()
    except IntegrityError:
        # Two requests with the same key at once: the other one won; answer as a replay.
        existing = _existing_for_key(request)
        if existing is None:
            raise
        return existing, False
    _store_upload(message, request.media)
    message_enqueue(message)
    if answers:
        reply_record(conversation, session, wait, at=now)
    if not message.purpose:
        hooks.human_reply_recorded.fire(message=message)
    logger.info("message queued", extra={"message_id": message.pk, "provider_id": provider.pk,
                                         "message_type": message.message_type, "lane": message.lane})
    return message, True


@dataclass
class BulkSend:
    """One message of a bulk send (a campaign's batch), already checked by the caller: its recipient may be
    messaged, its template is approved and `template_variables` bound (templates_app.parameters.template_bind).
    The sender checks consent, window and template again when it sends."""

    contact_id: int
    message_type: str
    text: str
    template: MessageTemplate | None = None
    template_variables: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)


def messages_queue_bulk(provider: Provider, sends: list[BulkSend], *, purpose: str, actor: Any = None,
                        wake: bool = True) -> list[Message]:
    """
    Queue many messages in the bulk lane in a few statements (conversations made where missing, one insert for
    the messages) and wake the sender on commit. Replies to open conversations still go first: the sender
    claims the reply lane before the bulk lane. Returns the messages, in the order of `sends`.

    `wake=False`: the caller knows a sender is at work on the number's queue (it tops up a backlog that is not
    empty); a sender woken for every top-up would only contend with it. Should that sender be gone, the requeue
    job wakes one for the overdue messages.
    """
    if not sends:
        return []
    conversations = conversations_for_contacts(provider, [send.contact_id for send in sends], lock=False)
    now = timezone.now()
    open_sessions = {session.conversation_id: session for session in Session.objects.filter(
        conversation__in=conversations.values(), state=Session.State.OPEN, expires_at__gt=now)}
    user = actor if getattr(actor, "is_authenticated", False) else None
    messages = []
    for send in sends:
        conversation = conversations[send.contact_id]
        is_template = send.message_type == MessageType.TEMPLATE
        messages.append(Message(
            provider=provider, conversation=conversation, session=open_sessions.get(conversation.pk),
            direction=Message.Direction.OUTBOUND, message_type=send.message_type, text=send.text,
            content=send.content or ({"template": send.template.name, "language": send.template.language}
                                     if is_template else {"text": send.text, "preview_url": False}),
            template=send.template if is_template else None, template_variables=send.template_variables,
            status=MessageStatus.QUEUED, queued_at=now, next_attempt_at=now, enqueued_at=now,
            lane=Message.Lane.BULK, purpose=purpose, created_by=user))
    bulk_insert_rows(messages)
    if wake:
        send_wake.soon(provider.pk)
    return messages


def _contact_for_phone(request: SendRequest) -> Contact:
    if not request.to_phone:
        raise SendRefused("invalid_recipient", "give the recipient as a contact or a phone number")
    return contact_resolve(provider=request.provider, identities=[Identity(IdentityKind.PHONE, request.to_phone)])


def message_send_text(*, provider: Provider, contact: Contact, text: str, actor: Any = None) -> Message:
    return message_send(SendRequest(provider=provider, contact=contact, message_type=MessageType.TEXT, text=text,
                                    actor=actor))[0]


def _store_upload(message: Message, media: MediaInput | None) -> None:
    """An uploaded file is kept in the archive (in the database while the storage is out) and served to
    providers that fetch links (see outbound_media_url)."""
    if media is None or media.data is None:
        return
    mime_type = media.mime_type or mimetypes.guess_type(media.filename)[0] or "application/octet-stream"
    filename = media.filename or f"file{mimetypes.guess_extension(mime_type) or ''}"
    stored = Media.objects.create(message=message, mime_type=mime_type, filename=filename[:255],
                                  caption=media.caption, sha256=hashlib.sha256(media.data).hexdigest(),
                                  size_bytes=len(media.data), state=Media.State.FETCHED, fetched_at=timezone.now(),
                                  public_token=secrets.token_urlsafe(32))
    media_store(stored, media.data)
    stored.save()
    message.content = {**message.content, "mime_type": mime_type, "filename": filename[:240]}
    message.save(update_fields=["content", "updated_at"])


def outbound_media_url(media: Media) -> str:
    return f"{settings.PUBLIC_BASE_URL}/media/out/{media.public_token}/"


# --- waking the sender --------------------------------------------------------------------------

def message_enqueue(message: Message, *, countdown: float = 0) -> None:
    """Wake the sender of the (queued) message's provider when the transaction commits: at once, or
    `countdown` seconds later, when the message is due."""
    if countdown > 0:
        send_wake.later(message.provider_id, countdown=countdown)
    else:
        send_wake.soon(message.provider_id)


def message_check_later(message: Message, *, countdown: float) -> None:
    """A `sending` message whose call may still be running: the send task looks at it again later and
    decides whether its worker died (see delivery.message_deliver)."""
    message_id = message.pk
    publish_on_commit(lambda: task_named("whatsapp.tasks.send_message_task").apply_async(
        (message_id,), countdown=countdown or None), what=f"message {message_id}")


def message_schedule(message: Message, *, delay: float, reason: str) -> None:
    """Try the (queued) message again after `delay` seconds: a wake in the broker for short waits, the
    requeue job for long ones. The caller saves nothing itself."""
    now = timezone.now()
    message.next_attempt_at = now + timedelta(seconds=delay)
    message.hold_reason = reason[:255]
    in_broker = delay <= BROKER_COUNTDOWN_MAX_SECONDS
    message.enqueued_at = now if in_broker else None
    message.save(update_fields=["status", "next_attempt_at", "hold_reason", "enqueued_at", "updated_at"])
    if in_broker:
        message_enqueue(message, countdown=delay)


def message_hold(message: Message, *, reason: str, until=None) -> None:
    """Keep a message queued, out of the sender's reach, until released (pause) or due (circuit cooldown)."""
    message.next_attempt_at = until
    message.hold_reason = reason[:255]
    message.enqueued_at = None
    message.save(update_fields=["next_attempt_at", "hold_reason", "enqueued_at", "updated_at"])


def due_messages(provider: Provider):
    """The provider's queued messages that are due now."""
    return Message.objects.filter(provider=provider, status=MessageStatus.QUEUED,
                                  direction=Message.Direction.OUTBOUND, next_attempt_at__lte=timezone.now())


def messages_hold_while_paused(provider: Provider) -> int:
    """Hold every due message of a paused (or inactive) provider, in one statement that itself checks the
    pause: a resume committed meanwhile has released them, and they must not be held again."""
    reason = stopped_provider_hold(provider)
    stopped = Q(provider__is_paused=True) if provider.is_paused else Q(provider__is_active=False)
    return (due_messages(provider).filter(stopped)
            .update(next_attempt_at=None, hold_reason=reason, enqueued_at=None, updated_at=timezone.now()))


def messages_release_held(*, provider: Provider) -> int:
    """Hand the messages a pause or an open circuit held back to the sender, in their order (messages
    waiting out a retry backoff keep their due time)."""
    now = timezone.now()
    released = (Message.objects.filter(provider=provider, direction=Message.Direction.OUTBOUND,
                                       status=MessageStatus.QUEUED, enqueued_at__isnull=True,
                                       hold_reason__in=RELEASABLE_HOLDS)
                .update(enqueued_at=now, next_attempt_at=now, hold_reason="", updated_at=now))
    if released:
        send_wake.now(provider.pk)
    return released


def providers_with_overdue_messages(now) -> list[int]:
    """Providers (sending now) with a queued message due for longer than a wake takes to start the sender."""
    overdue = Message.objects.filter(provider=OuterRef("pk"), status=MessageStatus.QUEUED,
                                     next_attempt_at__lte=now - timedelta(seconds=SWEEP_GRACE_SECONDS))
    return list(Provider.objects.filter(Exists(overdue), is_paused=False, is_active=True)
                .values_list("pk", flat=True))


def messages_requeue_due(*, limit: int = 2000) -> int:
    """
    The beat job's half of "never lost": wakes the sender of every provider with an overdue message (a
    lost wake, a backoff too long for the broker, a circuit's cooldown over), and has the send task look
    at sends whose worker vanished mid-call (it decides what happened). Returns how many it woke.
    """
    now = timezone.now()
    providers = providers_with_overdue_messages(now)
    for provider_id in providers:
        send_wake.now(provider_id)
    stale = now - timedelta(seconds=settings.SEND_STALE_AFTER_SECONDS)
    interrupted = list(Message.objects.filter(status=MessageStatus.SENDING, updated_at__lt=stale)
                       .only("pk")[:limit])
    for message in interrupted:
        message_check_later(message, countdown=0)
    return len(providers) + len(interrupted)


# --- the dead-letter view's actions --------------------------------------------------------------

@transaction.atomic
def message_retry(*, message: Message, actor: Any = None) -> bool:
    """Queue a dead-lettered (or failed) outbound message again, with a fresh count of attempts."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    if message.direction != Message.Direction.OUTBOUND or message.status not in (
            MessageStatus.DEAD_LETTER, MessageStatus.FAILED) or message.provider_message_id:
        return False
    before = {"status": message.status, "error_code": message.error_code, "attempts": message.attempts}
    now = timezone.now()
    message.status = MessageStatus.QUEUED
    message.attempts = 0
    message.error_code = message.error_title = message.error_detail = message.hold_reason = ""
    message.failed_at = message.dead_lettered_at = None
    message.next_attempt_at = message.enqueued_at = now
    message.save()
    audit_record(action="message.retry", obj=message, actor=actor, before=before, after={"status": "queued"})
    message_enqueue(message)
    return True


@transaction.atomic
def message_discard(*, message: Message, actor: Any = None) -> bool:
    """Give up on a dead-lettered message: it becomes failed, with who discarded it."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    if message.status != MessageStatus.DEAD_LETTER:
        return False
    before = {"status": message.status, "error_code": message.error_code}
    message.status = MessageStatus.FAILED
    message.failed_at = timezone.now()
    message.error_detail = f"{message.error_detail} (discarded from the dead-letter view)".strip()
    message.save(update_fields=["status", "failed_at", "error_detail", "updated_at"])
    audit_record(action="message.discard", obj=message, actor=actor, before=before, after={"status": "failed"})
    return True


def message_status_history(message: Message) -> list[dict[str, Any]]:
    """What happened to a message, oldest first: queued, each send attempt, then the provider's reports."""
    history: list[dict[str, Any]] = []
    if message.queued_at:
        history.append({"status": MessageStatus.QUEUED, "at": message.queued_at, "source": "platform"})
    for attempt in message.send_attempts.all():
        history.append({"status": "attempt", "at": attempt.started_at, "source": "platform",
                        "attempt": attempt.number, "outcome": attempt.outcome, "error_code": attempt.error_code,
                        "error_title": attempt.error_title, "detail": attempt.error_detail,
                        "retry_at": attempt.retry_at})
    for report in message.status_events.all():
        history.append({"status": report.status, "at": report.occurred_at, "source": "provider",
                        "applied": report.applied, "error_code": report.error_code,
                        "error_title": report.error_title})
    if message.dead_lettered_at:
        history.append({"status": MessageStatus.DEAD_LETTER, "at": message.dead_lettered_at, "source": "platform",
                        "error_code": message.error_code})
    return sorted(history, key=lambda item: item["at"])



# --- SMS ----------------------------------------------------------------------------------------------

def sms_send(provider: Provider, to_phone: str, text: str) -> SendResult:
    """A plain SMS through a provider that sends them (a campaign's fallback). Not a conversation message: it
    is recorded by the caller. Raises SendRefused when the provider cannot, ProviderError when the call fails."""
    backend = backend_for(provider)
    if not backend.sends_sms:
        raise SendRefused("sms_unsupported", f"{provider.get_kind_display()} cannot send SMS")
    if not provider.is_active:
        raise SendRefused("provider_inactive", f"provider {provider.name} is inactive")
    result = backend.send_sms(to_phone, text)
    logger.info("sms sent", extra={"provider_id": provider.pk, "provider_message_id": result.provider_message_id})
    return result
