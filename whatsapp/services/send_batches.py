"""
The sender: one provider's due messages in batches, the way the inbox drain takes webhook rows.

    claim (one transaction): the provider's due queued messages, replies first, each the earliest pending
    message of its conversation, locked with SKIP LOCKED so that senders on other workers and machines
    take others -> the rules again (delivery.send_admit_rules) -> consecutive slots of the number's
    limiter for the batch, as many as start within SEND_BATCH_HORIZON_SECONDS (the rest stay queued) ->
    the recipient's slot and the circuit breaker (delivery.send_admit_slots) -> all marked `sending`,
    commit
    -> requests built -> each call started at its own slot on a pool of threads that share one
    keep-alive HTTP client -> the provider's ids recorded together in one transaction (between two slots),
    errors one by one as for a single message (retry, fail, dead-letter, outcome unknown).

The next batch is claimed as soon as the last slot of the one before is started, so its slots follow
on without a gap while the calls before are still out. A call that could not start within half the
limiter's headroom of its slot (the worker was busy) gives the slot up and takes a later one: that is
what keeps every one-second window at the provider within the number's rate, however late a worker runs.

A sender keeps claiming until a claim comes back empty (after its last calls were recorded: they may
have been what the next message of a conversation waited for), or the number's slots within the horizon
all belong to another sender (which goes on), or SEND_DRAIN_SECONDS are spent (it hands over to a fresh
task, so that other providers get the worker). The requeue job wakes any provider whose messages wait
longer than a wake takes: a sender on a worker that died.

Exactly-once as for one message (delivery.py): the ids are committed before the task is acknowledged;
a worker that dies with calls out leaves their messages `sending`, and they go to the dead-letter view
as outcome unknown, never sent twice.
"""

from __future__ import annotations

import contextvars
import logging
import operator
import os
import queue
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import reduce

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from whatsapp.models import Message, Provider, SendAttempt
from whatsapp.providers import backend_for
from whatsapp.providers.events import MessageStatus, OutboundMessage
from whatsapp.services import rate_limits
from whatsapp.services.delivery import (
    CallOutcome,
    CallStart,
    attempts_start,
    call_begins,
    call_failed,
    interrupted_sends_settle,
    messages_admit_slots,
    number_rate,
    provider_call,
    request_or_error,
    send_admit_rules,
    sends_record,
)
from whatsapp.services.outbound import (
    HOLD_PAIR_PACING,
    PENDING_STATUSES,
    due_messages,
    messages_hold_while_paused,
    send_wake,
)
from whatsapp.services.send_rules import contacts_identities

logger = logging.getLogger(__name__)

# Results are recorded together once RECORD_ROWS are back or the oldest has waited RECORD_AFTER_SECONDS, and
# whenever no call is out.
RECORD_ROWS = 20
RECORD_AFTER_SECONDS = 0.1
# Longest wait for a result while nothing else is to be done (the loop then looks at the time again).
IDLE_WAIT_SECONDS = 0.05
# What a first claim expects to need between taking its slots and its first call.
INITIAL_LEAD_SECONDS = 0.01
# A call that cannot start within this share of SEND_RATE_HEADROOM (in seconds: 5 ms of the default 1 %) after
# its slot takes a later one; the rest of the headroom absorbs the call's own way to the provider.
LATE_SHARE_OF_HEADROOM = 0.5
# How far past this sender's own last slot the number's next free slot may be and still be its own (a round
# trip to the limiter and its clock).
OWN_SLOTS_MARGIN_SECONDS = 0.002
# A call that missed its slot this long after it was claimed goes back to the queue instead of taking another.
STALE_CALL_SECONDS = 10.0
# A call thread waiting for its slot gets the interpreter within this long of it, however busy the claiming
# thread is (Python's default, 5 ms, would be most of a slot's tolerance).
THREAD_SWITCH_SECONDS = 0.0005

# A call whose attempt was settled as never made (and queued again) before it could start: dropped.
REVOKED = CallOutcome(unexpected="revoked")

_pools: dict[int, ThreadPoolExecutor] = {}


def _call_pool() -> ThreadPoolExecutor:
    """The process's threads for provider calls (per process id: a forked worker must not inherit them)."""
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        sys.setswitchinterval(THREAD_SWITCH_SECONDS)
        pool = _pools[pid] = ThreadPoolExecutor(max_workers=settings.SEND_BATCH_CONCURRENCY,
                                                thread_name_prefix="send-call")
    return pool


def provider_send_due(provider_id: int, *, redelivered: bool = False) -> int:
    """The send task's body: send what is due for one provider. Returns how many were sent.

    `redelivered`: the broker gave the task again because the worker that had it died, perhaps with calls
    out; once no call of theirs can still be running, a sender settles them (outcome unknown)."""
    settle_in = interrupted_sends_settle(provider_id)
    if redelivered and settle_in is not None:
        send_wake.later(provider_id, countdown=max(settle_in, 0) + 1)
    return _Sender(provider_id).run()


@dataclass
class _Slotted:
    """A message marked `sending`, to be called at its slot (a monotonic time)."""

    at: float
    message: Message
    attempt: SendAttempt
    request: OutboundMessage
    claimed_at: float = field(default_factory=time.monotonic)


class _Sender:
    """
    One task's sending for one provider. This thread claims and records; each claimed call goes to the pool
    at once, and its thread waits for the call's slot, so that the claim of the next batch (taken `lead`
    before the last slot) and the recording of the last one never hold a call back.
    """

    def __init__(self, provider_id: int) -> None:
        self.provider_id = provider_id
        self.provider: Provider | None = None
        self.backend = None
        self.slot_interval = 0.0
        self.horizon = settings.SEND_BATCH_HORIZON_SECONDS
        # (call, its outcome), or None for a call that missed its slot and was not made.
        self.results: queue.SimpleQueue[tuple[_Slotted, CallOutcome | None]] = queue.SimpleQueue()
        self.finished: list[tuple[_Slotted, CallOutcome]] = []
        self.finished_since = 0.0
        self.late: list[_Slotted] = []
        self.in_flight = 0
        self.last_slot_at = float("-inf")
        self.next_claim_at = float("-inf")
        # The end of the last run of slots this sender took (the limiter's next free slot, as it then was).
        self.reserved_until = float("-inf")
        self.claiming = True
        self.cancelled = False
        self.claim_after_record = False
        self.sent = 0
        self.claims = 0
        self.late_calls = 0
        self.stopped_by = "nothing due"
        # How long a claim takes from taking its slots to its calls being ready (measured on the previous
        # claim): its slots start no sooner, and the next claim starts that long before the last slot.
        self.lead = INITIAL_LEAD_SECONDS

    # --- the loop --------------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        deadline = started + settings.SEND_DRAIN_SECONDS
        try:
            while True:
                self._collect(timeout=0)
                if self.claiming and time.monotonic() >= self.next_claim_at:
                    if time.monotonic() >= deadline:
                        self._hand_over()
                    else:
                        self._claim()
                if self.late:
                    self._slot_again()
                if self.finished and self._record_fits():
                    self._record()
                if not (self.claiming or self.in_flight or self.finished or self.late):
                    break
                self._collect(timeout=self._idle_time())
        finally:
            self._wind_down()
        logger.debug("sender stopped", extra={"provider_id": self.provider_id, "sent": self.sent,
                                              "claims": self.claims, "late_calls": self.late_calls,
                                              "seconds": round(time.monotonic() - started, 3),
                                              "stopped_by": self.stopped_by})
        return self.sent

    def _hand_over(self) -> None:
        """The time budget is spent: a fresh task takes over at once (its claims skip what this one holds)."""
        self.claiming, self.stopped_by = False, "time budget"
        send_wake.now(self.provider_id)

    def _wind_down(self) -> None:
        """However the loop ended (an error included): calls not started yet are not made, the ones out are
        waited for, and whatever came back is recorded, so that nothing the provider accepted is left
        `sending`."""
        self.cancelled = True
        while self.in_flight:
            self._collect(timeout=IDLE_WAIT_SECONDS)
        if self.late:
            _give_back([item.message for item in self.late])
            self.late = []
        self._record()

    def _idle_time(self) -> float:
        if self.claiming:
            return min(max(self.next_claim_at - time.monotonic(), 0.0), IDLE_WAIT_SECONDS)
        return IDLE_WAIT_SECONDS

    def _record_fits(self) -> bool:
        return (not self.in_flight or len(self.finished) >= RECORD_ROWS
                or time.monotonic() - self.finished_since >= RECORD_AFTER_SECONDS)

    # --- claiming -------------------------------------------------------------------------------------

    def _claim(self) -> None:
        self.claims += 1
        with transaction.atomic():
            self.provider = provider = Provider.objects.filter(pk=self.provider_id).first()
            if provider is None:
                self.claiming = False
                return
            self.backend = backend_for(provider)
            self.slot_interval = rate_limits.number_slot_interval(number_rate(provider))
            # A slow number (a few messages a second) still gets a slot or two per claim.
            self.horizon = max(settings.SEND_BATCH_HORIZON_SECONDS, 2 * self.slot_interval)
            if provider.is_paused or not provider.is_active:
                # Every due message waits for the resume, not only the first of each conversation.
                messages_hold_while_paused(provider)
                self.claiming = False
                return
            if self._horizon_taken():
                return
            rows = _claimable(provider, self._batch_size())
            if not rows:
                self._stop_claiming("nothing due")
                return
            rows = [message for message in rows if send_admit_rules(message, in_order=True)]
            if not rows:
                return
            slots, reserved_at = self._number_slots(len(rows), lead=self.lead)
            if not slots.count:
                self._horizon_taken(free_in=slots.wait)
                return
            rows = rows[:slots.count]
            identities = contacts_identities([message.conversation.contact_id for message in rows])
            admitted_ids = {message.pk for message in messages_admit_slots(rows, identities)}
            admitted = [(index, message) for index, message in enumerate(rows) if message.pk in admitted_ids]
            attempts = attempts_start([message for _index, message in admitted])
        for (index, message), attempt in zip(admitted, attempts, strict=True):
            request = request_or_error(message, attempt, identities[message.conversation.contact_id])
            if request is not None:
                self.last_slot_at = self._slot_at(reserved_at + slots.offset(index))
                self._start(_Slotted(self.last_slot_at, message, attempt, request))
        self.lead = min(max((time.monotonic() - reserved_at) * 1.25, 0.002), self.horizon / 3)
        # The next claim is due `lead` before the run's last slot as the limiter placed it, so that its run
        # follows on without a gap.
        self.next_claim_at = reserved_at + slots.offset(slots.count - 1) - self.lead

    def _slot_at(self, at: float) -> float:
        """A slot's time here, never closer to this sender's previous slot than the number's spacing: the
        limiter spaced them, but each run of slots is placed on this clock from a round trip to Redis, whose
        time varies."""
        return max(at, self.last_slot_at + self.slot_interval)

    def _horizon_taken(self, free_in: float | None = None) -> bool:
        """Whether the number's slots within the horizon all belong to other senders (looked up before the
        claim's query, which costs more): they go on claiming, so this one stops. Slots this sender took
        itself (calls that missed theirs) do not count."""
        now = time.monotonic()
        if free_in is None:
            free_in = rate_limits.limiter().free_in(rate_limits.number_key(self.provider_id))
        if free_in + self.lead <= self.horizon or now + free_in <= self.reserved_until + OWN_SLOTS_MARGIN_SECONDS:
            return False
        self._stop_claiming("slots taken")
        return True

    def _stop_claiming(self, why: str) -> None:
        # Calls still out may be what a conversation's next message waits for: claim once more when they are
        # all back and recorded.
        if self.in_flight or self.finished or self.late:
            self.claim_after_record = True
        self.claiming, self.stopped_by = False, why

    def _batch_size(self) -> int:
        return max(1, min(settings.SEND_BATCH_SIZE, int(self.horizon / self.slot_interval) + 1))

    def _number_slots(self, count: int, lead: float = 0.0) -> tuple[rate_limits.SlotRun, float]:
        """A run of the number's slots, and when (on this clock) its offsets count from: the middle of the
        round trip, when the limiter most likely read its own clock."""
        before = time.monotonic()
        slots = rate_limits.limiter().reserve_run(rate_limits.number_key(self.provider_id), self.slot_interval,
                                                  self.horizon, count, lead=lead)
        reserved_at = (before + time.monotonic()) / 2
        if slots.count:
            self.reserved_until = max(self.reserved_until, reserved_at + slots.offset(slots.count))
        return slots, reserved_at

    # --- calling --------------------------------------------------------------------------------------

    def _start(self, item: _Slotted) -> None:
        if not self.backend.sends_on_threads:
            self._finish(item, self._call_at_slot(item))
            return
        self.in_flight += 1
        # The call's thread logs under the task's correlation id.
        _call_pool().submit(contextvars.copy_context().run, self._call, item)

    def _call(self, item: _Slotted) -> None:
        outcome = None
        try:
            outcome = self._call_at_slot(item)
        finally:
            self.results.put((item, outcome))

    def _call_at_slot(self, item: _Slotted) -> CallOutcome | None:
        """Wait for the slot, then call; None, without calling, when the call could not start within a share of
        the limiter's headroom of its slot (a late call next to an on-time one could put one more call in a
        second than the number allows), or when the sender is winding down."""
        wait = item.at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if self.cancelled or time.monotonic() - item.at > settings.SEND_RATE_HEADROOM * LATE_SHARE_OF_HEADROOM:
            return None
        started = call_begins(item.message)
        if started is CallStart.REVOKED:
            return REVOKED
        if started is CallStart.UNMARKED:
            return None
        return provider_call(self.backend, item.request)

    def _slot_again(self) -> None:
        """Calls that missed their slot take new ones after every slot taken so far, or go back to the queue."""
        late, self.late = self.late, []
        self.late_calls += len(late)
        # A call that has waited this long might be settled as interrupted by another sender: back to the queue.
        now = time.monotonic()
        stale = [item for item in late if now - item.claimed_at > STALE_CALL_SECONDS]
        late = [item for item in late if now - item.claimed_at <= STALE_CALL_SECONDS]
        if late:
            slots, reserved_at = self._number_slots(len(late))
            for index, item in enumerate(late[:slots.count]):
                item.at = self._slot_at(reserved_at + slots.offset(index))
                self.last_slot_at = item.at
                self._start(item)
            stale += late[slots.count:]
        if stale:
            _give_back([item.message for item in stale])
            self.claiming = True  # they are due again: whoever claims next takes them

    def _collect(self, timeout: float) -> None:
        """Take the results that are back, waiting up to `timeout` for the first."""
        try:
            while True:
                item, outcome = self.results.get(timeout=timeout) if timeout > 0 else self.results.get_nowait()
                self.in_flight -= 1
                self._finish(item, outcome)
                timeout = 0
        except queue.Empty:
            return

    def _finish(self, item: _Slotted, outcome: CallOutcome | None) -> None:
        if outcome is REVOKED:
            return  # queued again by whoever settled it: no longer this sender's
        if outcome is None:
            self.late.append(item)
            return
        if not self.finished:
            self.finished_since = time.monotonic()
        self.finished.append((item, outcome))

    # --- recording ------------------------------------------------------------------------------------

    def _record(self) -> None:
        done, self.finished = self.finished, []
        if not done:
            return
        sent = [(item.message, item.attempt, outcome) for item, outcome in done if outcome.result is not None]
        try:
            sends_record(self.provider, sent)
        except Exception:
            # One row the batch cannot write (or a lock conflict): each on its own, so the others are kept.
            logger.warning("sends could not be recorded together; recording them one by one", exc_info=True,
                           extra={"provider_id": self.provider_id, "messages": len(sent)})
            for one in sent:
                _settled_alone(lambda one=one: sends_record(self.provider, [one]), one[0], one[2])
        self.sent += len(sent)
        for item, outcome in done:
            if outcome.result is None:
                _settled_alone(lambda item=item, outcome=outcome: call_failed(item.message, item.attempt, outcome),
                               item.message, outcome)
        if self.claim_after_record and not self.in_flight:
            self.claim_after_record, self.claiming = False, True


def _settled_alone(settle, message: Message, outcome: CallOutcome) -> None:
    """Record one call's outcome; if even that fails, say so with what the provider answered (the message
    stays `sending` and is settled as an outcome unknown: a person can match it by the provider's id)."""
    try:
        settle()
    except Exception:
        logger.exception("a send's outcome could not be recorded", extra={
            "message_id": message.pk, "provider_message_id": outcome.result.provider_message_id if outcome.result
            else "", "error_code": outcome.error.code if outcome.error else ""})


def _claimable(provider: Provider, limit: int) -> list[Message]:
    """Up to `limit` due messages of the provider, locked: replies first, then bulk, oldest first in each
    lane, and only the earliest pending message of each conversation (messages go out in order)."""
    # Exactly the columns and condition of message_pending_order_idx (only outbound messages are ever queued or
    # sending): one probe of that index per row, whatever the planner's statistics say.
    earlier = Message.objects.filter(conversation_id=OuterRef("conversation_id"), status__in=PENDING_STATUSES,
                                     pk__lt=OuterRef("pk"))
    due = (due_messages(provider).select_for_update(of=("self",), skip_locked=True)
           .select_related("conversation__contact", "session")
           .filter(~Exists(earlier)).order_by("next_attempt_at", "pk"))
    rows = list(due.filter(lane=Message.Lane.REPLY)[:limit])
    if len(rows) < limit:
        rows += due.filter(lane=Message.Lane.BULK)[:limit - len(rows)]
    for message in rows:
        message.provider = provider  # one instance: the circuit breaker's state is shared by the batch
    return rows


def _give_back(messages: list[Message]) -> None:
    """Messages marked `sending` that got no slot after all: queued again, due now, the attempt not counted
    (it was never made, nor logged). Each keeps the recipient's slot it took (pair rate): asking again would
    make it wait for its own."""
    if not messages:
        return
    # Only the attempts this sender claimed: a message settled meanwhile may be another sender's claim now.
    claimed = reduce(operator.or_, (Q(pk=message.pk, attempts=message.attempts) for message in messages))
    Message.objects.filter(claimed, status=MessageStatus.SENDING).update(
        status=MessageStatus.QUEUED, attempts=F("attempts") - 1, next_attempt_at=timezone.now(),
        hold_reason=HOLD_PAIR_PACING, updated_at=timezone.now())
