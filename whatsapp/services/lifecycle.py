"""
A conversation's state: open, pending (waiting on the customer), snoozed until a time, resolved. Every change
says who made it (an operator, the customer, the provider's inbox, the platform) and when, is audited, and
for providers that keep a state of their own (Chatwoot) is pushed to them; a change they report is applied
here without being pushed back. Resolving records a Resolution (the round's first response and resolution
times) and may ask the customer how satisfied they were (services.satisfaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.audit import audit_record
from core.locks import lock_key
from core.queueing import publish_on_commit, task_named
from whatsapp.models import Conversation, Message, Resolution
from whatsapp.providers import backend_class_for, backend_for, registered_kinds
from whatsapp.providers.events import MessageType
from whatsapp.services.satisfaction import survey_answer_take, survey_just_answered, survey_offer

Status = Conversation.Status
# The messages that are a tap on a button or list row (a survey's answer).
TAPS = frozenset({MessageType.INTERACTIVE_REPLY, MessageType.BUTTON})
# A state change younger than this may still be on its way to the provider (its push task is queued).
PUSH_GRACE = timedelta(minutes=1)
# A state the provider keeps refusing (its conversation was deleted there) stops being pushed after this long.
PUSH_GIVE_UP = timedelta(days=1)


class Source:
    OPERATOR = "operator"
    CUSTOMER = "customer"
    PROVIDER = "provider"
    SYSTEM = "system"


class StatusRefused(ValueError):
    """A state change that cannot be made as asked (the reason reads as a sentence)."""


def _who(user) -> str:
    return user.get_username() if user is not None else ""


def _snapshot(conversation: Conversation) -> dict[str, Any]:
    until = conversation.snoozed_until
    return {"status": conversation.status, "snoozed_until": until.isoformat() if until else None}


def status_check(status: str, snoozed_until: datetime | None, *, now: datetime) -> None:
    if status not in Status.values:
        raise StatusRefused(f"status must be one of {', '.join(Status.values)}, not {status!r}")
    if status == Status.SNOOZED and (snoozed_until is None or snoozed_until <= now):
        raise StatusRefused("snoozing needs a time in the future to wake the conversation up")
    if status != Status.SNOOZED and snoozed_until is not None:
        raise StatusRefused("only a snoozed conversation has a time to wake up")


def snooze_time(text: str) -> datetime:
    """A time typed in a form (an ISO 8601 date-time; without a zone, in the platform's time zone)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise StatusRefused("give the time to wake the conversation up, as a date and time") from None
    return moment if moment.tzinfo else timezone.make_aware(moment)


@transaction.atomic
def conversation_set_status(conversation: Conversation, status: str, *, actor: Any = None,
                            source: str = Source.OPERATOR, snoozed_until: datetime | None = None,
                            at: datetime | None = None, only_if=None) -> bool:
    """Move the conversation to `status`. Returns whether anything changed. Raises StatusRefused. `only_if`:
    a test of the row as it is once locked (someone may have changed it since the caller looked)."""
    now = at or timezone.now()
    if source != Source.PROVIDER:
        status_check(status, snoozed_until, now=now)
    locked = Conversation.objects.select_for_update(no_key=True).select_related("provider").get(pk=conversation.pk)
    if locked.status == status and locked.snoozed_until == snoozed_until:
        return False
    if only_if is not None and not only_if(locked):
        return False
    before = _snapshot(locked)
    reopened = locked.status == Status.RESOLVED and status != Status.RESOLVED
    locked.status, locked.snoozed_until = status, snoozed_until if status == Status.SNOOZED else None
    locked.status_changed_at, locked.status_changed_by, locked.status_source = now, actor, source
    if reopened or locked.opened_at is None:
        locked.opened_at = now if reopened else _round_start(locked)
    fields = ["status", "snoozed_until", "status_changed_at", "status_changed_by", "status_source", "opened_at"]
    if status == Status.RESOLVED:
        locked.awaiting_reply_since = None  # nothing waits for a reply in a resolved conversation
        fields.append("awaiting_reply_since")
    if source == Source.PROVIDER:
        locked.external_state = status
        fields.append("external_state")
    locked.save(update_fields=fields)
    for name in fields:
        setattr(conversation, name, getattr(locked, name))
    audit_record(action="conversation.status", obj=locked, actor=actor, before=before,
                 after={**_snapshot(locked), "source": source, "by": _who(actor)})
    if status == Status.RESOLVED:
        survey_offer(_resolution_record(locked, actor=actor, at=now))
    if source not in (Source.PROVIDER, Source.CUSTOMER):
        _push_later(locked)
    return True


def _push_later(conversation: Conversation) -> None:
    """Tell the provider the conversation's state once the transaction commits (providers that keep one)."""
    if not _syncs(conversation):
        return
    conversation_id = conversation.pk
    publish_on_commit(lambda: task_named("whatsapp.tasks.conversation_status_push_task").delay(conversation_id),
                      what=f"state of conversation {conversation_id} to its provider")


@transaction.atomic
def conversations_set_status(conversations: Iterable[Conversation], status: str, *, actor: Any,
                             snoozed_until: datetime | None = None) -> int:
    """The same change on many conversations (bulk resolve), all or none; each is audited on its own. Returns
    how many changed."""
    status_check(status, snoozed_until, now=timezone.now())
    return sum(conversation_set_status(conversation, status, actor=actor, snoozed_until=snoozed_until)
               for conversation in conversations)


def _round_start(conversation: Conversation) -> datetime:
    """When the current round began, for a conversation that has no opened_at yet: its first customer message
    after the last resolution (or since it began)."""
    last = Resolution.objects.filter(conversation=conversation).order_by("-resolved_at").first()
    inbound = Message.objects.filter(conversation=conversation, direction=Message.Direction.INBOUND)
    if last is not None:
        inbound = inbound.filter(created_at__gt=last.resolved_at)
    first = inbound.order_by("created_at").values_list("created_at", flat=True).first()
    return first or conversation.created_at


def _resolution_record(conversation: Conversation, *, actor: Any, at: datetime) -> Resolution:
    opened = conversation.opened_at or _round_start(conversation)
    # A person's first answer in the round (automatic messages have no response time).
    first_answer = (Message.objects.filter(conversation=conversation, direction=Message.Direction.OUTBOUND,
                                           response_seconds__isnull=False, created_at__gte=opened)
                    .order_by("created_at").values_list("created_at", flat=True).first())
    return Resolution.objects.create(
        conversation=conversation, provider_id=conversation.provider_id, resolved_by=actor, opened_at=opened,
        resolved_at=at, resolution_seconds=max(0, int((at - opened).total_seconds())),
        first_response_seconds=max(0, int((first_answer - opened).total_seconds())) if first_answer else None)


def customer_wrote(conversation: Conversation, message: Message, *, at: datetime) -> None:
    """A customer message was stored (the caller holds the conversation's lock). An answer to the survey is
    taken as such; anything else opens a pending, snoozed or resolved conversation again, and a resolved one
    starts a new round."""
    if conversation.status == Status.OPEN:
        if conversation.opened_at is None:
            Conversation.objects.filter(pk=conversation.pk).update(opened_at=at)
            conversation.opened_at = at
        if message.message_type not in TAPS:  # only a tap can answer a survey in an open conversation
            return
    if survey_answer_take(message):
        if conversation.awaiting_reply_since == at:  # the answer alone made it wait: nobody needs to reply
            Conversation.objects.filter(pk=conversation.pk).update(awaiting_reply_since=None)
            conversation.awaiting_reply_since = None
        return
    if conversation.status != Status.OPEN:
        conversation_set_status(conversation, Status.OPEN, source=Source.CUSTOMER, at=at)


def needs_customer_check(conversation: Conversation, message_type: str) -> bool:
    """Whether customer_wrote has more to do for a message than note when the round opened."""
    return conversation.status != Status.OPEN or message_type in TAPS


def provider_state_apply(conversation: Conversation, state: str, *, changed_at: datetime | None = None) -> bool:
    """The provider's inbox changed the conversation's state (Chatwoot: open, pending, snoozed, resolved). A
    report older than our own last change is stale (webhooks arrive late and out of order) and left alone."""
    if state not in Status.values:
        return False
    if changed_at is not None and conversation.status_changed_at is not None and (
            changed_at < conversation.status_changed_at):
        return False
    Conversation.objects.filter(pk=conversation.pk).exclude(external_state=state).update(external_state=state)
    conversation.external_state = state
    if state == conversation.status:
        return False
    if state == Status.OPEN and conversation.status == Status.RESOLVED and survey_just_answered(conversation):
        # Chatwoot reopens on any incoming message, the survey's answer included: ours stays resolved, and
        # the provider is told so again.
        _push_later(conversation)
        return False
    # The provider keeps its own snooze time (or none: until the customer writes); ours only wakes on a message.
    return conversation_set_status(conversation, state, source=Source.PROVIDER)


def _syncs(conversation: Conversation) -> bool:
    return bool(conversation.external_conversation_id) and backend_for(conversation.provider).keeps_conversation_state


def status_push(conversation_id: int) -> str:
    """Tell the provider the conversation's state (the task's body). The push is idempotent, and a state the
    provider already has is not sent again."""
    with transaction.atomic():
        # One push of a conversation at a time: two pushes crossing on the wire could leave the older state
        # at the provider while we record the newer one as confirmed.
        lock_key("conversation-state-push", conversation_id)
        conversation = Conversation.objects.select_related("provider").filter(pk=conversation_id).first()
        if conversation is None or not _syncs(conversation):
            return "nothing to push"
        if conversation.external_state == conversation.status:
            return "already there"
        status, until = conversation.status, conversation.snoozed_until
        backend_for(conversation.provider).conversation_state_push(conversation.external_conversation_id, status,
                                                                   until)
        Conversation.objects.filter(pk=conversation.pk, status=status).update(external_state=status)
    return f"pushed {status}"


def lifecycle_tick(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Beat: wake snoozed conversations whose time came, and push states a provider missed (a broker outage, a
    refused call) once they are a minute old."""
    now = now or timezone.now()
    woken = 0
    due = Conversation.objects.filter(status=Status.SNOOZED, snoozed_until__lte=now).order_by("snoozed_until")
    for conversation in due[:limit]:
        woken += conversation_set_status(conversation, Status.OPEN, source=Source.SYSTEM, at=now, only_if=lambda row: (
            row.status == Status.SNOOZED and row.snoozed_until is not None and row.snoozed_until <= now))
    kinds = [kind for kind in registered_kinds() if backend_class_for(kind).keeps_conversation_state]
    missed = (Conversation.objects.filter(~Q(status=F("external_state")), provider__kind__in=kinds,
                                          status_changed_at__lt=now - PUSH_GRACE,
                                          status_changed_at__gte=now - PUSH_GIVE_UP)
              .exclude(external_conversation_id="").exclude(status_source__in=[Source.PROVIDER, Source.CUSTOMER])
              .values_list("pk", flat=True)[:limit])
    pushed = 0
    for conversation_id in missed:
        task_named("whatsapp.tasks.conversation_status_push_task").delay(conversation_id)
        pushed += 1
    return {"woken": woken, "pushed": pushed}
