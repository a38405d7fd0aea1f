"""
Sending, second half: what happens to one queued message, and the pieces the sender's batches
(send_batches.py) share with it.

    lock the row -> still ours? (queued) -> provider paused or inactive: hold -> rules again (consent,
    window, template: time has passed since it was queued) -> an earlier message of the conversation
    still pending: wait for it (order) -> per-recipient slot (pair rate) -> circuit breaker -> mark
    `sending` and commit -> build the request -> per-number slot (rate), waited for in-process ->
    provider call -> record the provider's id and the send-log row, or retry with backoff, or fail, or
    dead-letter.

Exactly-once towards the provider, as far as it can be had: the task is acknowledged late (after this
returns), and the provider's id is committed before that (a batch commits its ids together, when its
calls are back). A task delivered again finds the message
`sent` and does nothing. The one window left is between the provider accepting the call and our commit
of its id (milliseconds, plus the HTTP response's way back): if the worker dies there, the message is
found `sending` with no id, and since the provider may have it, it is NOT sent again; it goes to the
dead-letter view as "outcome unknown" for a person to check, unless the provider's own report (Meta
echoes our reference in biz_opaque_callback_data, Chatwoot its echo_id) settles it first.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from core import metrics
from core.bulk import bulk_update_rows
from core.correlation import get_correlation_id
from core.locks import lock_keys
from whatsapp import hooks
from whatsapp.models import Message, MessageStatusEvent, Provider, SendAttempt, Session
from whatsapp.providers import backend_for
from whatsapp.providers.base import ProviderBackend, ProviderError
from whatsapp.providers.events import (
    MEDIA_TYPES,
    Identity,
    MessageStatus,
    MessageType,
    OutboundMedia,
    OutboundMessage,
    OutboundTemplate,
    SendResult,
    TemplateButtonParameter,
    TemplateParameter,
)
from whatsapp.services import circuit, rate_limits, send_rules
from whatsapp.services.archive import media_content
from whatsapp.services.inbound import message_lock_key, orphan_statuses_apply
from whatsapp.services.outbound import (
    BROKER_COUNTDOWN_MAX_SECONDS,
    HOLD_CIRCUIT,
    HOLD_PAIR_PACING,
    PENDING_STATUSES,
    message_check_later,
    message_hold,
    message_schedule,
    messages_release_held,
    outbound_media_url,
    stopped_provider_hold,
)
from whatsapp.services.providers import provider_webhook_url
from whatsapp.services.send_rules import SendRefused

logger = logging.getLogger(__name__)

# The longest a worker waits in-process for its number's slot; beyond that it gives the slot back.
NUMBER_SLOT_MAX_WAIT_SECONDS = 1.0
# How soon a message waiting for an earlier one of its conversation looks again.
ORDER_POLL_SECONDS = 0.2
OUTCOME_UNKNOWN = "send_outcome_unknown"


def in_flight_window() -> timedelta:
    """How long a `sending` message may be another worker's live call (its HTTP timeout, twice, and some)."""
    return timedelta(seconds=settings.PROVIDER_HTTP_TIMEOUT_SECONDS * 2 + 5)


# Marks of claimed and started calls: they outlive any settling of an interrupted send (its sweep runs every few
# seconds); a mark that expired first leaves the send an outcome unknown, as without marks.
CALL_MARK_TTL_SECONDS = 24 * 3600


class CallStart(enum.Enum):
    GO = "go"
    # Someone settled the message as never called and queued it again: this worker must not call.
    REVOKED = "revoked"
    # The mark could not be written: no call now (it would be taken for one never made).
    UNMARKED = "unmarked"


def _claim_token(message: Message) -> str:
    """One claim of a message: its id, attempt and the moment it was marked `sending` (attempts_start sets
    updated_at), unique even where ids are reused (a database restored, a test database made again)."""
    return f"{message.pk}:{message.attempts}:{int(message.updated_at.timestamp() * 1_000_000)}"


def calls_claimed(messages: list[Message]) -> None:
    """Remember that these messages' current attempts were claimed. With call_begins, it tells a send whose
    worker died before its call (sent again: the provider never saw it) from one that died during the call
    (outcome unknown)."""
    rate_limits.limiter().marks_set([f"claimed:{_claim_token(message)}" for message in messages],
                                    CALL_MARK_TTL_SECONDS)


def call_begins(message: Message) -> CallStart:
    """Mark the attempt's call as started, just before it is made, unless the attempt was settled as never called
    meanwhile (the same key, set first by whichever comes first: never both)."""
    try:
        first = rate_limits.limiter().mark_first(f"called:{_claim_token(message)}", CALL_MARK_TTL_SECONDS)
    except Exception:
        logger.warning("a call could not be marked as started; it waits", exc_info=True,
                       extra={"message_id": message.pk})
        return CallStart.UNMARKED
    if not first:
        logger.warning("a claimed call was settled as never made meanwhile; not made",
                       extra={"message_id": message.pk, "attempt": message.attempts})
        return CallStart.REVOKED
    return CallStart.GO


def _never_called(message: Message) -> bool:
    """Whether the message's current attempt was claimed and its call never started, and if so, fence it: the
    call mark is taken here, so a worker still alive (only slow) finds it taken and does not call. A lost store
    says nothing, and the send stays an outcome unknown."""
    try:
        limiter, token = rate_limits.limiter(), _claim_token(message)
        return limiter.marks_get([f"claimed:{token}"])[0] and limiter.mark_first(f"called:{token}",
                                                                                 CALL_MARK_TTL_SECONDS)
    except Exception:
        logger.warning("call marks unreadable", exc_info=True, extra={"message_id": message.pk})
        return False


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, of which a random half is kept
    ("equal jitter", so workers retrying together spread out). A provider's Retry-After is a minimum."""
    ceiling = min(settings.SEND_RETRY_MAX_SECONDS, settings.SEND_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security
    return max(delay, retry_after or 0.0)


def message_deliver(message_id: int, *, pair_reserved: bool = False) -> Message:
    """One message on its own (the sender takes them in batches, send_batches.py): what the send task
    runs for a message found `sending`. Safe to run twice for one message, and at any time."""
    with transaction.atomic():
        # Only what every send needs is joined (the template and a quoted message load on use): on the
        # send path, building SQL costs more than running it.
        message = (Message.objects.select_for_update(of=("self",))
                   .select_related("provider", "conversation__contact", "session")
                   .filter(pk=message_id).order_by())
        message = next(iter(message), None)
        if message is None or message.direction != Message.Direction.OUTBOUND:
            return message
        if message.status == MessageStatus.SENDING:
            return _interrupted(message)
        if message.status != MessageStatus.QUEUED:
            return message
        identities = send_rules.contact_identities(message.conversation.contact)
        if not send_admit(message, identities, pair_reserved=pair_reserved):
            return message
        attempt = attempts_start([message])[0]
    request = request_or_error(message, attempt, identities)
    if request is None:
        return message
    # The number's slot is taken last, just before the call, so that the time between the slot and the
    # provider's clock is only the request's own way there (the limiter's headroom covers that).
    slot = _number_slot(message.provider)
    if not slot.admitted:
        return _back_to_queue(message, slot.wait)
    if slot.wait > 0:
        time.sleep(slot.wait)
    started = call_begins(message)
    if started is CallStart.REVOKED:
        return message
    if started is CallStart.UNMARKED:
        return _back_to_queue(message, 1.0)
    outcome = provider_call(backend_for(message.provider), request)
    if outcome.result is None:
        return call_failed(message, attempt, outcome)
    sends_record(message.provider, [(message, attempt, outcome)])
    return message


def send_admit(message: Message, identities: tuple[Identity, ...], *, pair_reserved: bool = False) -> bool:
    """Every check before the call but the number's rate. False when the message was held, deferred or
    failed instead (already saved)."""
    return send_admit_rules(message) and send_admit_slots(message, identities, pair_reserved=pair_reserved)


def send_admit_rules(message: Message, *, in_order: bool = False) -> bool:
    """The provider still sends, the rules still allow the message, and it is its conversation's turn
    (`in_order`: the caller made sure no earlier message of the conversation is pending)."""
    provider = message.provider
    if provider.is_paused or not provider.is_active:
        message_hold(message, reason=stopped_provider_hold(provider))
        return False
    try:
        _recheck_rules(message)
    except SendRefused as refusal:
        _fail(message, code=refusal.code, title="refused before sending", detail=refusal.reason)
        return False
    except Exception as exc:  # noqa: BLE001 - logged there; a message the checks crash on fails alone
        message_check_failed(message, exc)
        return False
    earlier = None if in_order else _earlier_pending(message)
    if earlier is not None:
        message_schedule(message, delay=earlier, reason="waiting for an earlier message of this conversation")
        return False
    return True


def message_check_failed(message: Message, exc: Exception) -> None:
    """The checks before sending raised on this message (its data, not a rule): it fails, with the reason.
    Called from an `except` block (the traceback is logged)."""
    logger.exception("a queued message could not be checked", extra={"message_id": message.pk})
    _fail(message, code="check_failed", title="could not be checked before sending",
          detail=f"{type(exc).__name__}: {exc}")


def send_admit_slots(message: Message, identities: tuple[Identity, ...], *, pair_reserved: bool = False) -> bool:
    """The recipient's slot (pair rate) and the provider's circuit breaker."""
    return bool(messages_admit_slots([message], {message.conversation.contact_id: identities},
                                     pair_reserved=pair_reserved))


def messages_admit_slots(messages: list[Message], identities: dict[int, tuple[Identity, ...]], *,
                         pair_reserved: bool = False) -> list[Message]:
    """send_admit_slots for many messages (`identities` by contact id), the recipients' slots taken in one
    round trip to the limiter. Returns the admitted ones; the others were deferred, held or failed."""
    pairs = [message for message in messages
             if not (pair_reserved or message.hold_reason == HOLD_PAIR_PACING)]
    waiting = _pair_slots(pairs, identities)
    admitted = []
    for message in messages:
        if message.pk in waiting:
            continue
        if not circuit.circuit_admits(message.provider):
            message_hold(message, reason=HOLD_CIRCUIT, until=circuit.circuit_retry_at(message.provider))
            continue
        admitted.append(message)
    return admitted


def _pair_slots(messages: list[Message], identities: dict[int, tuple[Identity, ...]]) -> set[int]:
    """Take each recipient's next slot (WhatsApp's pair rate). A message whose slot is not now waits for it
    holding it (HOLD_PAIR_PACING); one without an address fails. Returns the ids of both."""
    keyed, settled = [], set()
    for message in messages:
        provider = message.provider
        interval = (settings.SEND_PAIR_INTERVAL_SECONDS if settings.SEND_PAIR_INTERVAL_SECONDS is not None
                    else backend_for(provider).pair_interval_seconds)
        if interval <= 0:
            continue
        try:
            address = send_rules.check_recipient(provider, message.conversation.contact,
                                                 identities[message.conversation.contact_id])
        except SendRefused as refusal:
            _fail(message, code=refusal.code, title="refused before sending", detail=refusal.reason)
            settled.add(message.pk)
            continue
        except Exception as exc:  # noqa: BLE001 - logged there; one bad row must not stop the batch
            message_check_failed(message, exc)
            settled.add(message.pk)
            continue
        keyed.append((message, rate_limits.recipient_key(provider.pk, address), interval))
    slots = rate_limits.limiter().reserve_each([(key, interval) for _m, key, interval in keyed], max_wait=86400)
    for (message, _key, _interval), slot in zip(keyed, slots, strict=True):
        if slot.wait > 0.05:
            message_schedule(message, delay=slot.wait, reason=HOLD_PAIR_PACING)
            settled.add(message.pk)
    return settled


def number_rate(provider) -> float:
    """The number's messages per second: its own setting within its kind's bounds."""
    provider_class = backend_for(provider)
    return min(provider.rate_limit_per_second or provider_class.default_rate_limit_per_second,
               provider_class.max_rate_limit_per_second)


def _number_slot(provider) -> rate_limits.Reservation:
    return rate_limits.limiter().reserve(rate_limits.number_key(provider.pk),
                                         rate_limits.number_slot_interval(number_rate(provider)),
                                         max_wait=NUMBER_SLOT_MAX_WAIT_SECONDS)


def _back_to_queue(message: Message, wait: float) -> Message:
    """The number is saturated beyond what a worker waits for in-process: give the attempt back (it was
    never logged)."""
    attempt = message.attempts
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.status != MessageStatus.SENDING or message.attempts != attempt:
            return message  # settled meanwhile (queued again, claimed by another sender)
        message.status = MessageStatus.QUEUED
        message.attempts -= 1
        message.save(update_fields=["attempts"])
        # It keeps the recipient's slot it took (pair rate): asking again would make it wait for its own.
        message_schedule(message, delay=wait, reason=HOLD_PAIR_PACING)
    return message


def _recheck_rules(message: Message) -> None:
    """Time passed since the message was queued (a hold, a backoff): consent, window and template again."""
    send_rules.check_consent(message.conversation.contact, message.purpose)
    session = message.session
    # The session it was queued in is still open: no need to look the window up again.
    if not (session and session.state == Session.State.OPEN and session.expires_at > timezone.now()):
        send_rules.check_window(message.conversation, message.message_type)
    if message.message_type == MessageType.TEMPLATE:
        send_rules.check_template(message.template, message.provider, message.template_variables,
                                   already_queued=True)


def _earlier_pending(message: Message) -> float | None:
    """Seconds to wait when an earlier message of the same conversation is not sent yet (order)."""
    earlier = list(Message.objects.filter(conversation_id=message.conversation_id,
                                          direction=Message.Direction.OUTBOUND, status__in=PENDING_STATUSES,
                                          pk__lt=message.pk)
                   .order_by("-pk").values_list("next_attempt_at", flat=True)[:1])
    if not earlier:
        return None
    due_in = (earlier[0] - timezone.now()).total_seconds() if earlier[0] else 0
    return min(max(due_in, ORDER_POLL_SECONDS), 30.0)


def attempts_start(messages: list[Message]) -> list[SendAttempt]:
    """Mark the messages `sending`, in one statement. Each one's send-log row is written with the outcome
    (one write, not two); until then `updated_at` says when the call began."""
    now = timezone.now()
    for message in messages:
        message.status = MessageStatus.SENDING
        message.attempts += 1
        message.hold_reason = ""
        message.updated_at = message.enqueued_at = now
    bulk_update_rows(messages, ["status", "attempts", "hold_reason", "updated_at", "enqueued_at"])
    calls_claimed(messages)
    correlation_id = get_correlation_id()
    return [SendAttempt(message=message, number=message.attempts, started_at=now, correlation_id=correlation_id)
            for message in messages]


def _log_attempt(attempt: SendAttempt, outcome: str, error: ProviderError | None = None, **fields) -> None:
    _attempt_finish(attempt, outcome, error, **fields)
    attempt.save(force_insert=True)


def _attempt_finish(attempt: SendAttempt, outcome: str, error: ProviderError | None = None, **fields) -> None:
    attempt.outcome, attempt.finished_at = outcome, timezone.now()
    if error is not None:
        attempt.error_code, attempt.error_title = error.code[:32], error.title[:255]
        attempt.error_detail, attempt.http_status = str(error), error.http_status
    for name, value in fields.items():
        setattr(attempt, name, value)


def request_or_error(message: Message, attempt: SendAttempt,
                     identities: tuple[Identity, ...]) -> OutboundMessage | None:
    """The provider's request for a message marked `sending`; None when it could not be built (the
    message then waits for a retry)."""
    try:
        return outbound_request(message, identities)
    except Exception as exc:
        # Nothing reached the provider (e.g. the stored upload could not be read): try again later. Marked
        # throttled so that the provider's circuit breaker does not count a failure of ours.
        logger.exception("could not prepare the send", extra={"message_id": message.pk})
        _after_error(message, attempt, ProviderError(f"could not prepare the message: {exc}",
                                                     code="prepare_failed", retryable=True, throttled=True))
        return None


@dataclass(frozen=True)
class CallOutcome:
    """What one provider call came to: the provider's answer, its refusal, or something else."""

    result: SendResult | None = None
    error: ProviderError | None = None
    unexpected: str = ""
    seconds: float = 0.0


def provider_call(backend: ProviderBackend, request: OutboundMessage) -> CallOutcome:
    """The provider call alone: no database, so that several run at once on threads."""
    started = time.monotonic()
    try:
        result = backend.send(request)
    except ProviderError as error:
        return CallOutcome(error=error, seconds=time.monotonic() - started)
    except Exception as exc:
        logger.exception("send raised unexpectedly", extra={"message_id": request.client_reference})
        return CallOutcome(unexpected=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started)
    return CallOutcome(result=result, seconds=time.monotonic() - started)


def call_failed(message: Message, attempt: SendAttempt, outcome: CallOutcome) -> Message:
    """A call that did not come back with the provider's id: retry, fail, dead-letter, or (not a provider
    answer we understand: the call may have reached the provider) outcome unknown, never sent again."""
    provider = message.provider
    log = {"message_id": message.pk, "provider_id": provider.pk, "attempt": attempt.number}
    if outcome.error is not None:
        error = outcome.error
        metrics.send_call(provider.kind, provider.pk, "provider_error", outcome.seconds)
        logger.warning("send failed", extra={**log, "error_code": error.code, "retryable": error.retryable})
        return _after_error(message, attempt, error)
    metrics.send_call(provider.kind, provider.pk, "unexpected_error", outcome.seconds)
    return _outcome_unknown(message, attempt, outcome.unexpected)


def sends_record(provider: Provider, sent: list[tuple[Message, SendAttempt, CallOutcome]]) -> None:
    """Record the provider's ids of calls that succeeded, in one transaction whatever their number: the
    messages become `sent` (unless a provider report settled one first), their send-log rows are written,
    and reports that arrived before the id was known are applied."""
    if not sent:
        return
    now = timezone.now()
    by_id = {message.pk: (message, attempt, outcome.result) for message, attempt, outcome in sent}
    with transaction.atomic():
        # Status reports that name these ids wait for the locks, then find the ids recorded.
        lock_keys([message_lock_key(provider, result.provider_message_id) for _m, _a, result in by_id.values()])
        still_sending = set(Message.objects.select_for_update().filter(pk__in=by_id, status=MessageStatus.SENDING)
                            .values_list("pk", flat=True))
        for message_id, (message, attempt, result) in by_id.items():
            message.provider_message_id = result.provider_message_id
            if message_id in still_sending:
                message.status, message.sent_at, message.next_attempt_at = MessageStatus.SENT, now, None
                message.updated_at = now
                message.error_code = message.error_title = message.error_detail = ""
            _attempt_finish(attempt, SendAttempt.Outcome.SENT)
        bulk_update_rows([m for m, _a, _r in by_id.values() if m.pk in still_sending],
                         ["provider_message_id", "status", "sent_at", "error_code", "error_title", "error_detail",
                          "next_attempt_at", "updated_at"])
        for message_id in by_id.keys() - still_sending:
            # A provider report got here first and moved it on (it named our reference): keep its status.
            Message.objects.filter(pk=message_id).update(provider_message_id=by_id[message_id][2].provider_message_id,
                                                         updated_at=now)
        SendAttempt.objects.bulk_create([attempt for _m, attempt, _r in by_id.values()])
        _orphan_reports_apply(provider, [message for message, _a, _r in by_id.values()])
        if circuit.circuit_record_success(provider):
            messages_release_held(provider=provider)
    for message, _attempt, outcome in sent:
        metrics.send_call(provider.kind, provider.pk, "sent", outcome.seconds)
        logger.info("message sent", extra={"message_id": message.pk, "provider_id": provider.pk,
                                           "provider_message_id": message.provider_message_id})
        if message.queued_at:
            metrics.send_queued_to_sent(provider.kind, provider.pk, message.lane,
                                        (now - message.queued_at).total_seconds())


def _orphan_reports_apply(provider: Provider, messages: list[Message]) -> None:
    """Reports that named these ids before they were recorded (one query to find out whether any did)."""
    named = set(MessageStatusEvent.objects.filter(
        provider=provider, message__isnull=True,
        provider_message_id__in=[message.provider_message_id for message in messages])
        .values_list("provider_message_id", flat=True))
    for message in messages:
        if message.provider_message_id in named:
            orphan_statuses_apply(message)


def _after_error(message: Message, attempt: SendAttempt, error: ProviderError) -> Message:
    detail = str(error)
    with transaction.atomic():
        message = Message.objects.select_for_update().select_related("provider").get(pk=message.pk)
        if message.status != MessageStatus.SENDING:
            return message  # settled meanwhile (a provider report linked it)
        message.error_code, message.error_title, message.error_detail = error.code[:32], error.title[:255], detail
        if not error.retryable:
            _fail(message, code=error.code, title=error.title, detail=detail)
            hooks.send_failed.fire(message=message, error_code=error.code)
            _log_attempt(attempt, SendAttempt.Outcome.FAILED, error)
            return message
        circuit_opened = (not error.throttled) and circuit.circuit_record_failure(message.provider, detail)
        if message.attempts >= settings.SEND_MAX_ATTEMPTS:
            _dead_letter(message, f"gave up after {message.attempts} attempts: {detail}")
            _log_attempt(attempt, SendAttempt.Outcome.DEAD_LETTER, error)
            return message
        delay = retry_delay(message.attempts, error.retry_after)
        message.status = MessageStatus.QUEUED
        if circuit_opened:
            message.save(update_fields=["status", "error_code", "error_title", "error_detail", "updated_at"])
            message_hold(message, reason=HOLD_CIRCUIT, until=circuit.circuit_retry_at(message.provider))
        else:
            message_schedule(message, delay=delay, reason=f"retry after {error.code or 'error'}")
            message.save(update_fields=["error_code", "error_title", "error_detail"])
        _log_attempt(attempt, SendAttempt.Outcome.RETRY, error, retry_at=message.next_attempt_at)
    return message


def _fail(message: Message, *, code: str, title: str, detail: str) -> None:
    message.status = MessageStatus.FAILED
    message.failed_at = timezone.now()
    message.error_code, message.error_title, message.error_detail = code[:32], title[:255], detail
    message.next_attempt_at = None
    message.hold_reason = ""
    message.save(update_fields=["status", "failed_at", "error_code", "error_title", "error_detail",
                                "next_attempt_at", "hold_reason", "updated_at"])


def _dead_letter(message: Message, detail: str) -> None:
    message.status = MessageStatus.DEAD_LETTER
    message.dead_lettered_at = timezone.now()
    message.error_detail = detail
    message.next_attempt_at = None
    message.save(update_fields=["status", "dead_lettered_at", "error_code", "error_title", "error_detail",
                                "next_attempt_at", "updated_at"])


def _outcome_unknown(message: Message, attempt: SendAttempt | None, detail: str) -> Message:
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.status != MessageStatus.SENDING:
            return message
        message.error_code, message.error_title = OUTCOME_UNKNOWN, "send outcome unknown"
        _dead_letter(message, "the send was interrupted after it may have reached the provider, so it was not "
                              f"sent again; check with the provider, then retry or discard ({detail})")
        attempt = attempt or SendAttempt(message=message, number=message.attempts, started_at=message.updated_at)
        _log_attempt(attempt, SendAttempt.Outcome.UNKNOWN, error_code=OUTCOME_UNKNOWN, error_detail=detail)
    return message


def interrupted_sends_settle(provider_id: int) -> float | None:
    """Settle the provider's sends found `sending` for longer than any call can take (their worker died
    mid-call): outcome unknown. Returns in how many seconds the oldest one still `sending` would be such a
    send (None when there is none)."""
    cutoff = timezone.now() - in_flight_window()
    sending = Message.objects.filter(provider_id=provider_id, status=MessageStatus.SENDING)
    for message_id in sending.filter(updated_at__lt=cutoff).values_list("pk", flat=True)[:100]:
        message_deliver(message_id)
    oldest = sending.aggregate(oldest=Min("updated_at"))["oldest"]
    return (oldest - cutoff).total_seconds() if oldest else None


def _interrupted(message: Message) -> Message:
    """A task found its message `sending`: another worker's live call, or one whose worker died."""
    # `updated_at` is when it was marked `sending`, right before the call.
    began = message.updated_at
    if began > timezone.now() - in_flight_window():
        # Possibly still another worker's live call: look again once no call could still be running.
        remaining = (began + in_flight_window() - timezone.now()).total_seconds()
        message_check_later(message, countdown=min(remaining + 1, BROKER_COUNTDOWN_MAX_SECONDS))
        return message
    if _never_called(message):
        return _requeue_uncalled(message)
    logger.warning("send interrupted; outcome unknown", extra={"message_id": message.pk})
    return _outcome_unknown(message, None, "the worker stopped during the provider call")


def _requeue_uncalled(message: Message) -> Message:
    """The worker died (or stalled) after claiming the message and before its call: the provider never saw it, so
    it is queued again. The attempt stays counted: its number is fenced (call_begins refuses it)."""
    logger.warning("send interrupted before its call; queued again", extra={"message_id": message.pk})
    message.status = MessageStatus.QUEUED
    message_schedule(message, delay=0, reason="its worker stopped before calling the provider")
    return message


# --- from a message row to the provider's request -------------------------------------------------

def _template_request(message: Message) -> OutboundTemplate:
    template = message.template
    bound = send_rules.check_template(template, message.provider, message.template_variables, already_queued=True)
    header_media = (OutboundMedia(kind=bound.header_media_kind, url=bound.header_media_url)
                    if bound.header_media_url else None)
    return OutboundTemplate(
        name=template.provider_template_name or template.name, language=template.language,
        category=template.category,
        provider_template_id=template.provider_template_id,
        named_parameters=template.parameter_format == template.ParameterFormat.NAMED,
        header=tuple(TemplateParameter(name, value) for name, value in bound.header), header_media=header_media,
        body=tuple(TemplateParameter(name, value) for name, value in bound.body),
        buttons=tuple(TemplateButtonParameter(index, sub_type, value) for index, sub_type, value in bound.buttons),
        rendered_text=message.text,
    )


def _media_request(message: Message) -> OutboundMedia:
    content = message.content
    upload = message.media.filter(public_token__isnull=False).first()
    data = media_content(upload) if upload else None
    url = outbound_media_url(upload) if upload else content.get("url", "")
    return OutboundMedia(kind=message.message_type, url=url, data=data, filename=content.get("filename", ""),
                         mime_type=content.get("mime_type", ""),
                         caption=content.get("caption", ""))


def outbound_request(message: Message, identities: tuple[Identity, ...] | None = None) -> OutboundMessage:
    conversation = message.conversation
    if identities is None:
        identities = send_rules.contact_identities(conversation.contact)
    return OutboundMessage(
        to=identities, message_type=message.message_type,
        text=message.text, content=message.content,
        reply_to_provider_message_id=(message.reply_to.provider_message_id or "") if message.reply_to else "",
        client_reference=str(message.pk),
        media=_media_request(message) if message.message_type in MEDIA_TYPES else None,
        template=_template_request(message) if message.message_type == MessageType.TEMPLATE else None,
        conversation_ref=conversation.external_conversation_id,
        status_callback_url=_status_callback_url(message),
    )


def _status_callback_url(message: Message) -> str:
    return provider_webhook_url(message.provider)

