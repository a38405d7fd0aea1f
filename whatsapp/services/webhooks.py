"""The webhook inbox: store every request before acknowledging it, then process it asynchronously."""

import functools
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
    models,
    router,
    transaction,
)
from django.db.models import F, QuerySet
from django.utils import timezone

from core import metrics
from core.audit import audit_record
from core.bulk import bulk_update_rows
from core.correlation import correlation, get_correlation_id
from core.crypto import DecryptionError
from core.locks import commit_without_waiting_for_disk, lock_keys
from core.queueing import Wake
from core.storage import ObjectNotFound, StorageError
from whatsapp.models import Provider, WebhookEvent
from whatsapp.providers import backend_for
from whatsapp.providers.base import BodyUndecodable, WebhookRequest, storable_text
from whatsapp.providers.events import (
    InboundMessage,
    InvalidUpdate,
    NormalizedEvent,
    OutboundEcho,
    StatusUpdate,
    StoredWebhook,
    UnhandledEvent,
)
from whatsapp.services.archive_bundles import webhook_body, webhook_events_archive_request
from whatsapp.services.inbound import RetryLater, event_apply, message_lock_key, update_problem
from whatsapp.services.inbound_batch import applies_in_bulk, inbound_messages_apply

logger = logging.getLogger(__name__)

# Rejected (unverified) requests keep only a prefix of their body: enough to diagnose, too little to
# let anyone on the internet fill the database.
REJECTED_BODY_PREFIX_BYTES = 4096
MAX_RETRY_DELAY = timedelta(hours=6)
DELIVERY_ID_MAX = 128
# The largest size a row records (a refused request's declared Content-Length can be anything).
BODY_SIZE_MAX = 2**63 - 1
# Invalid updates listed on one event (Meta carries up to 1000 updates per request); the rest are counted.
INVALID_UPDATES_LISTED = 200

# The inbox is the queue: a stored row wakes the drain task, which claims what is pending (core.queueing.Wake).
# Due twice the interval ahead: the margin covers a worker whose clock runs a little ahead of the web host's.
inbox_wake = Wake("whatsapp.tasks.drain_webhook_inbox_task", interval=settings.WEBHOOK_WAKE_INTERVAL_SECONDS,
                  delay=2 * settings.WEBHOOK_WAKE_INTERVAL_SECONDS)

# Failures worth another attempt: the database unavailable or busy (lock and statement timeouts and
# deadlocks are OperationalErrors), a concurrent writer that won a race (IntegrityError: the next attempt
# finds its row), an update waiting for our own send to record its id (RetryLater), credentials waiting
# for their key, the archive storage out while the body is only there. Anything else, a data or
# programming error, fails the same way every time: the event fails at once, for a person to look at.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, IntegrityError, RetryLater,
                                                 DecryptionError)


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, StorageError):
        return not isinstance(exc, ObjectNotFound)
    return isinstance(exc, TRANSIENT_ERRORS)


def _retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to 6 h between the attempts of a transient failure."""
    return min(timedelta(seconds=30 * 2 ** max(attempts - 1, 0)), MAX_RETRY_DELAY)


def _delivery_id(provider: Provider | None, request: WebhookRequest) -> str:
    raw = backend_for(provider).delivery_id(request) if provider else ""
    if len(raw) > DELIVERY_ID_MAX:
        # Keep ids unique without storing arbitrary lengths.
        raw = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    return raw


def webhook_event_record(
    *,
    kind: str,
    provider: Provider | None,
    request: WebhookRequest,
    remote_addr: str | None,
    status: str = WebhookEvent.Status.PENDING,
    http_status: int = 200,
    reason: str = "",
    signature_valid: bool | None = None,
    body_size: int | None = None,
) -> tuple[WebhookEvent, bool]:
    """
    Store one webhook request. Returns (event, created); a redelivery the provider marked with the
    same delivery id returns the first event with its duplicate counter raised.
    """
    accepted = status == WebhookEvent.Status.PENDING
    stored_headers = backend_for(provider).stored_headers if provider else ()
    # Text columns get text PostgreSQL takes (no NUL): the row must be saved whatever the request held.
    headers = {name: storable_text(value) for name, value in request.headers.items() if name in stored_headers}
    delivery_id = storable_text(_delivery_id(provider, request)) if accepted else ""
    body = request.body if accepted else request.body[:REJECTED_BODY_PREFIX_BYTES]
    now = timezone.now()
    columns = {
        "provider_id": provider.pk if provider else None, "kind": storable_text(kind)[:20], "status": status,
        "http_status": http_status, "rejection_reason": storable_text(reason)[:255],
        "signature_valid": signature_valid, "body": body,
        "body_size": min(len(request.body) if body_size is None else max(body_size, 0), BODY_SIZE_MAX),
        "content_type": storable_text(request.content_type)[:100], "headers": headers, "delivery_id": delivery_id,
        "remote_addr": remote_addr, "correlation_id": get_correlation_id(), "received_at": now,
        "next_attempt_at": now if accepted else None,  # due at once: the drain claims it
    }
    event_id = _insert(columns)
    if event_id is None:  # a redelivery: the provider's delivery id is stored already
        event = WebhookEvent.objects.get(provider=provider, delivery_id=delivery_id)
        WebhookEvent.objects.filter(pk=event.pk).update(duplicate_count=F("duplicate_count") + 1)
        return event, False
    event = WebhookEvent(id=event_id, **columns)
    event._state.adding = False
    event.provider = provider
    if accepted:
        inbox_wake.soon()
    return event, True


def _insert(columns: dict[str, Any]) -> int | None:
    """
    One INSERT statement, the least that makes the 200 safe (no model save machinery, no transaction of
    its own: in autocommit the statement is its own). Columns not given take their field's default.
    None when the row's delivery id is stored already.
    """
    connection = connections[router.db_for_write(WebhookEvent)]
    names = tuple(columns)
    fields = _given_fields(names)
    values = [field.get_db_prep_save(columns[field.attname], connection) for field in fields]
    sql, defaults = _insert_sql(connection.alias, names, skip_stored_delivery=bool(columns["delivery_id"]))
    with connection.cursor() as cursor:
        cursor.execute(sql, values + defaults)
        row = cursor.fetchone()
    return row[0] if row else None


@functools.cache
def _given_fields(names: tuple[str, ...]) -> list[models.Field]:
    by_column = {field.attname: field for field in WebhookEvent._meta.concrete_fields}
    return [by_column[name] for name in names]


@functools.cache
def _insert_sql(alias: str, names: tuple[str, ...], *, skip_stored_delivery: bool) -> tuple[str, list[Any]]:
    """The statement and the values it binds besides the given ones: on PostgreSQL every column not given is
    written once as its default's literal, so that each request binds only what varies."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    given = _given_fields(names)
    rest = [field for field in WebhookEvent._meta.concrete_fields if not field.primary_key and field not in given]
    varying = [field.name for field in rest
               if field.has_default() and callable(field.default) and field.default not in (dict, list)]
    if varying:  # a default made per row (a uuid, a time) cannot be written once
        raise TypeError(f"WebhookEvent columns with a default made per row: {varying}")
    defaults = [field.get_db_prep_save(field.get_default(), connection) for field in rest]
    if connection.vendor == "postgresql":
        # The defaults are constants of our own models; compose_sql quotes them as the driver would.
        literals, bound = [connection.ops.compose_sql("%s", [value]).replace("%", "%%") for value in defaults], []
    else:
        literals, bound = ["%s"] * len(defaults), defaults
    columns = ", ".join(quote(field.column) for field in [*given, *rest])
    placeholders = ", ".join(["%s"] * len(given) + literals)
    conflict = ""
    if skip_stored_delivery:
        # The partial unique index on (provider, delivery_id) where delivery_id is not empty.
        conflict = f" ON CONFLICT (provider_id, delivery_id) WHERE NOT ({quote('delivery_id')} = '') DO NOTHING"
    # Names and literals from the model's own metadata; every value a request brings is a parameter.
    return (f"INSERT INTO {quote(WebhookEvent._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
            f"{conflict} RETURNING id"), bound


def webhook_event_process(event_id: int, *, claimed: bool = False) -> WebhookEvent | None:
    """
    Parse a stored event with its provider module and apply each normalized event in its own savepoint,
    so one bad update never holds back the others in the same request (Meta batches up to 1000).
    How an event ends: `processed` (updates that cannot be stored are listed in `invalid_updates`, the
    rest applied); `failed` with a due time after a transient failure, retried with backoff up to
    WEBHOOK_MAX_ATTEMPTS; `failed` with no due time (given up) after a permanent error or the last
    attempt, with the reason in `last_error`, until someone replays it. Re-applying is harmless because
    messages and status reports are deduplicated. `claimed`: a drain's claim already counted this attempt.
    """
    try:
        with transaction.atomic():
            commit_without_waiting_for_disk()
            rows = WebhookEvent.objects.select_related("provider").filter(pk=event_id)
            # A drain holds its claim (the lease), so it waits for a lock; anyone else skips a held row.
            event = (rows.select_for_update(of=("self",)) if claimed
                     else rows.select_for_update(skip_locked=True, of=("self",))).first()
            if event is None:
                return None  # another worker holds it right now
            if not _due_for_processing(event):
                return event
            if not claimed:
                event.attempts += 1
            outcome = _apply_rows([event], routes={})[0]
            _conclude(event, outcome)
            webhook_events_archive_request([event])
            _clean_outcome(event)
            event.save(update_fields=OUTCOME_FIELDS)
            event.contacts.add(*event.carried_contacts)
    except Exception as exc:
        # The attempt's transaction is rolled back, its bookkeeping with it: record the attempt in a
        # transaction of its own, so it counts towards the limit and a person sees why.
        event = _attempt_failed(event_id, exc, claimed=claimed)
        if event is None:
            raise
    _observe(event)
    return event


def _observe(event: WebhookEvent) -> None:
    """Logged and measured after the attempt's transaction: an attempt rolled back processed nothing."""
    with correlation(event.correlation_id):
        logger.info("webhook event %s", event.status,
                    extra={"webhook_event": event.pk, "events": event.event_count, "attempts": event.attempts})
    if event.status == WebhookEvent.Status.PROCESSED and event.processed_at:
        metrics.webhook_processed(event.provider.kind, event.provider_id,
                                  (event.processed_at - event.received_at).total_seconds())


def _due_for_processing(event: WebhookEvent) -> bool:
    if event.provider is None or event.status not in (WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED):
        return False
    # A failed event with no due time was given up: only a replay brings it back.
    return not (event.status == WebhookEvent.Status.FAILED and event.next_attempt_at is None)


@dataclass
class _Outcome:
    transient: list[str] = field(default_factory=list)
    permanent: list[str] = field(default_factory=list)


def _conclude(event: WebhookEvent, outcome: _Outcome) -> None:
    now = timezone.now()
    event.claimed_at = None
    errors = outcome.transient + outcome.permanent
    if not errors:
        event.status = WebhookEvent.Status.PROCESSED
        event.last_error = ""
        event.processed_at = now
        event.next_attempt_at = None
        return
    event.status = WebhookEvent.Status.FAILED
    if outcome.transient and event.attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        event.last_error = "\n".join(errors)
        event.next_attempt_at = now + _retry_delay(event.attempts)
        logger.warning("webhook event failed; retrying", extra={"webhook_event": event.pk, "errors": errors[:5],
                                                                 "attempts": event.attempts})
        return
    why = (f"gave up after {event.attempts} attempt(s)" if outcome.transient
           else "failed with an error that would fail again; replay it once the cause is fixed")
    event.last_error = f"{why}:\n" + "\n".join(errors)
    event.next_attempt_at = None
    # Logged once, when it is given up (not at every attempt).
    logger.error("webhook event given up", extra={"webhook_event": event.pk, "errors": errors[:5],
                                                   "attempts": event.attempts})


# What an attempt writes back to its row.
OUTCOME_FIELDS = ["status", "attempts", "last_error", "event_count", "processed_at", "next_attempt_at",
                  "claimed_at", "unrouted_to", "notes", "message_ids", "invalid_updates", "archive_status",
                  "archive_next_at"]


def _clean_outcome(event: WebhookEvent) -> None:
    for name in ("last_error", "notes", "unrouted_to", "message_ids"):
        # Error texts quote the update (an id holding a NUL): the row must be saved whatever it quotes.
        setattr(event, name, storable_text(getattr(event, name)))
    event.last_error = event.last_error[:4000]


def _attempt_failed(event_id: int, exc: Exception, *, claimed: bool = False) -> WebhookEvent | None:
    """Record an attempt whose own transaction failed; None when the row is not ours to record."""
    reason = f"the attempt failed: {type(exc).__name__}: {exc}"
    try:
        with transaction.atomic():
            rows = WebhookEvent.objects.filter(pk=event_id)
            event = (rows.select_for_update() if claimed else rows.select_for_update(skip_locked=True)).first()
            if event is None or not _due_for_processing(event):
                return None
            if not claimed:
                event.attempts += 1
            outcome = _Outcome(transient=[reason]) if _is_transient(exc) else _Outcome(permanent=[reason])
            _conclude(event, outcome)
            event.status = WebhookEvent.Status.FAILED  # nothing of this attempt was applied
            _clean_outcome(event)
            event.save(update_fields=["status", "attempts", "last_error", "next_attempt_at", "claimed_at"])
            return event
    except (OperationalError, InterfaceError):
        # The database itself is out: the row keeps its due time and the requeue job brings it back.
        logger.exception("could not record a failed webhook attempt", extra={"webhook_event": event_id})
        return None
    except DatabaseError as refused:
        # The row refuses even this outcome: it ends failed with what can be said, never pending forever.
        with transaction.atomic():
            WebhookEvent.objects.filter(pk=event_id).update(
                status=WebhookEvent.Status.FAILED, attempts=F("attempts") + 1, next_attempt_at=None,
                last_error=f"the outcome of an attempt could not be recorded ({type(refused).__name__}); replay it "
                           f"once the cause is fixed")
        logger.exception("webhook event given up: its outcome could not be recorded",
                         extra={"webhook_event": event_id})
        return WebhookEvent.objects.filter(pk=event_id).first()


def provider_route(receiver: Provider, routed_to: str, cache: dict[str, Provider | None]) -> Provider | None:
    """
    The provider an update is for. One Meta app posts every number's updates to one URL, so an update
    names its number and goes to the active provider of the same kind that has it; None when none does.
    """
    if not routed_to or routed_to == receiver.external_id:
        return receiver
    if routed_to not in cache:
        candidate = Provider.objects.filter(kind=receiver.kind, external_id=routed_to, is_active=True).first()
        # Never across signing secrets: that would let one tenant write into another's provider.
        allowed = candidate is not None and backend_for(receiver).may_route_to(candidate)
        cache[routed_to] = candidate if allowed else None
    return cache[routed_to]


def _stored(event: WebhookEvent) -> StoredWebhook:
    return StoredWebhook(body=webhook_body(event), headers=event.headers, content_type=event.content_type,
                         received_at=event.received_at)


@dataclass
class _Update:
    """One normalized update of a row, on its way to being applied."""

    row: WebhookEvent
    outcome: _Outcome
    index: int
    normalized: NormalizedEvent
    target: Provider
    contact_id: int | None = None
    applied: bool = False


def _apply_rows(events: list[WebhookEvent], *, routes: dict[str, Provider | None]) -> list[_Outcome]:
    """
    Apply the rows' updates, in the rows' order. Each row's outcome is returned and its bookkeeping set on it
    (whose data it carried is left in `event.carried_contacts`, written by the caller).
    """
    outcomes = [_Outcome() for _ in events]
    updates = []
    for event, outcome in zip(events, outcomes, strict=True):
        with correlation(event.correlation_id):
            updates += _parsed(event, outcome, routes)
    # Reports and echoes about our sends lock their message ids (inbound.message_lock_key) until the batch
    # commits; taken here all at once in a fixed order, as a sender recording many ids takes them, so that the
    # two never wait for each other in a cycle.
    lock_keys([message_lock_key(update.target, update.normalized.provider_message_id) for update in updates
               if isinstance(update.normalized, StatusUpdate | OutboundEcho)])
    _apply_updates(updates)
    applied: dict[int, list[_Update]] = {}
    for update in updates:
        if update.applied:
            applied.setdefault(id(update.row), []).append(update)
    for event in events:
        done = applied.get(id(event), [])
        event.carried_contacts = {update.contact_id for update in done if update.contact_id}
        event.message_ids = _joined([message_id for update in done
                                     if (message_id := getattr(update.normalized, "provider_message_id", ""))], 1000)
    return outcomes


def _parsed(event: WebhookEvent, outcome: _Outcome, routes: dict[str, Provider | None]) -> list[_Update]:
    """Parse a row and check each update: the ones to apply, with the row's notes, unrouted numbers and
    invalid updates set on it."""
    event.carried_contacts, event.message_ids = set(), ""
    try:
        events = backend_for(event.provider).parse_webhook(_stored(event))
    except Exception as exc:  # noqa: BLE001 - whatever the parser does, the event is kept with the reason
        reason = str(exc) if isinstance(exc, BodyUndecodable) else f"{type(exc).__name__}: {exc}"
        (outcome.transient if _is_transient(exc) else outcome.permanent).append(f"parse: {reason}")
        return []
    event.event_count = len(events)
    unrouted: set[str] = set()
    notes: list[str] = []
    invalid: list[dict[str, Any]] = []
    updates: list[_Update] = []
    for index, normalized in enumerate(events):
        problem = normalized.reason if isinstance(normalized, InvalidUpdate) else update_problem(normalized)
        if problem:
            invalid.append({"update": index, "kind": type(normalized).__name__, "reason": storable_text(problem)[:500]})
            continue
        target = provider_route(event.provider, normalized.routed_to, routes)
        if target is None:
            unrouted.add(normalized.routed_to)
            continue
        if isinstance(normalized, UnhandledEvent):
            notes.append(normalized.description)
        updates.append(_Update(event, outcome, index, normalized, target))
    event.unrouted_to = " ".join(sorted(unrouted))[:255]
    event.notes = "\n".join(notes)[:4000]
    if len(invalid) > INVALID_UPDATES_LISTED:
        invalid = [*invalid[:INVALID_UPDATES_LISTED], {"more": len(invalid) - INVALID_UPDATES_LISTED}]
    event.invalid_updates = invalid
    if invalid:
        logger.warning("webhook event carries updates that cannot be stored",
                       extra={"webhook_event": event.pk, "invalid_updates": invalid[:5]})
    if unrouted:
        logger.warning("webhook event names numbers no provider has", extra={"webhook_event": event.pk,
                                                                             "unrouted_to": event.unrouted_to})
    return updates


def _apply_updates(updates: list[_Update]) -> None:
    """
    In order, except that within a run of plain inbound messages and status reports the messages are
    stored many at a time (inbound_batch) before the reports are applied: the two touch different rows
    (customers' messages, our sends). Anything else (echoes, profiles, thread updates) ends a run.
    """
    run: list[_Update] = []
    for update in updates:
        if isinstance(update.normalized, StatusUpdate) or applies_in_bulk(update.target, update.normalized):
            run.append(update)
            continue
        _apply_run(run)
        run = []
        _apply_one(update)
    _apply_run(run)


def _apply_run(run: list[_Update]) -> None:
    by_provider: dict[int, list[_Update]] = {}
    for update in run:
        if isinstance(update.normalized, InboundMessage):
            by_provider.setdefault(update.target.pk, []).append(update)
    for group in by_provider.values():
        if len(group) == 1:
            _apply_one(group[0])
            continue
        try:
            with transaction.atomic():
                contact_ids = inbound_messages_apply(
                    provider=group[0].target, events=[update.normalized for update in group],
                    correlation_ids=[update.row.correlation_id for update in group])
        except Exception:
            logger.info("inbound messages could not be stored together; storing them one by one", exc_info=True,
                        extra={"messages": len(group)})
            for update in group:
                _apply_one(update)
            continue
        for update, contact_id in zip(group, contact_ids, strict=True):
            update.contact_id, update.applied = contact_id, True
    for update in run:
        if isinstance(update.normalized, StatusUpdate):
            _apply_one(update)


def _apply_one(update: _Update) -> None:
    try:
        # What it logs and enqueues carries its request's correlation id.
        with correlation(update.row.correlation_id), transaction.atomic():
            update.contact_id = event_apply(provider=update.target, event=update.normalized, webhook_event=update.row)
    except Exception as exc:  # noqa: BLE001 - one bad update must not block the rest
        error = f"update {update.index} ({_describe(update.normalized)}): {type(exc).__name__}: {exc}"
        (update.outcome.transient if _is_transient(exc) else update.outcome.permanent).append(error)
        return
    update.applied = True


def _joined(values: list[str], limit: int) -> str:
    joined = ""
    for value in dict.fromkeys(values):
        if len(joined) + len(value) + 1 > limit:
            break
        joined = f"{joined} {value}".strip()
    return joined


def _describe(normalized: NormalizedEvent) -> str:
    ident = getattr(normalized, "provider_message_id", "") or getattr(normalized, "name", "")
    return f"{type(normalized).__name__} {ident[:60]}".strip()


def webhook_events_replay_unrouted(*, provider: Provider) -> int:
    """Replay the flagged events that named this provider's number before it existed."""
    if not provider.external_id:
        return 0
    flagged = WebhookEvent.objects.filter(kind=provider.kind, unrouted_to__contains=provider.external_id)
    count = 0
    for event in flagged:
        if provider.external_id in event.unrouted_to.split():
            webhook_event_replay(event=event, actor=None)
            count += 1
    return count


def webhook_event_replay(*, event: WebhookEvent, actor: Any = None) -> None:
    """Admin replay: run a stored event through processing again (dedup keeps this harmless)."""
    WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.PENDING, last_error="", attempts=0,
                                                    next_attempt_at=timezone.now(), claimed_at=None)
    audit_record(action="webhook_event.replay", obj=event, actor=actor, before={"status": event.status})
    inbox_wake.now()


def webhook_events_requeue_due() -> int:
    """
    The sweep (beat, every minute): wake the drain when rows are waiting, whether a wake was lost (broker
    down, a worker killed mid-batch) or a failed event's backoff has passed. Returns how many are due.
    """
    due = _claimable(timezone.now()).count()
    if due:
        inbox_wake.now()
    return due


def _claimable(now) -> QuerySet[WebhookEvent]:
    # Pending rows are due when stored; a claim or a failure moves the due time on. The inbox index holds
    # only pending and failed rows, so claiming stays cheap however many were processed.
    return WebhookEvent.objects.filter(status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED],
                                       next_attempt_at__lte=now, provider__isnull=False)


def webhook_inbox_drain(*, batch_size: int | None = None, seconds: float | None = None) -> int:
    """
    Claim due inbox rows in batches and apply each batch in one transaction, oldest first. A claim is a
    lease: it counts the attempt and makes the rows due again only WEBHOOK_STALE_AFTER_SECONDS later, in a
    short transaction of its own (FOR UPDATE SKIP LOCKED: any number of drains on any number of machines
    take disjoint batches). A drain killed mid-batch loses nothing (its transaction rolls back and the
    rows come back when the lease ends), and the rows it held come back one at a time, so a row that
    kills its worker is given up after WEBHOOK_MAX_ATTEMPTS instead of taking its batch down with it.
    Runs until the inbox is empty or `seconds` have passed, then wakes a fresh drain if rows remain.
    Returns the number of rows it claimed.
    """
    batch_size = batch_size or settings.WEBHOOK_DRAIN_BATCH
    deadline = time.monotonic() + (settings.WEBHOOK_DRAIN_SECONDS if seconds is None else seconds)
    done = 0
    while True:
        claimed, more = _claim(batch_size)
        fresh = [event_id for event_id, earlier_claims in claimed if not earlier_claims]
        again = [event_id for event_id, earlier_claims in claimed if earlier_claims]
        if fresh:
            _drain_batch(fresh)
        for event_id in again:
            _drain_again(event_id)
        done += len(claimed)
        if not more:
            return done
        if time.monotonic() >= deadline:
            inbox_wake.now()  # a full batch came back: more are waiting, for a fresh task
            return done


def _claim(batch_size: int) -> tuple[list[tuple[int, bool]], bool]:
    """
    Lease up to batch_size due rows, and no more than WEBHOOK_DRAIN_BATCH_BYTES of bodies (one Meta request
    carries up to 1000 updates: a batch stays a short transaction). Returns (id, whether an earlier claim
    of it never concluded) for each, and whether more may be due.
    """
    now = timezone.now()
    with transaction.atomic():
        rows = list(_claimable(now).select_for_update(skip_locked=True).order_by("received_at", "id")
                    .values_list("pk", "claimed_at", "body_size")[:batch_size])
        kept, size = [], 0
        for pk, claimed_at, body_size in rows:
            if kept and size + body_size > settings.WEBHOOK_DRAIN_BATCH_BYTES:
                break  # the rest stay due, for the next claim
            kept.append((pk, claimed_at is not None))
            size += body_size
        WebhookEvent.objects.filter(pk__in=[pk for pk, _ in kept]).update(
            attempts=F("attempts") + 1, claimed_at=now,
            next_attempt_at=now + timedelta(seconds=settings.WEBHOOK_STALE_AFTER_SECONDS))
    return kept, len(rows) == batch_size or len(kept) < len(rows)


def _drain_again(event_id: int) -> None:
    """A row whose earlier claim never concluded (its worker died with it): alone, and not forever."""
    stopped = WebhookEvent.objects.filter(pk=event_id, attempts__gt=settings.WEBHOOK_MAX_ATTEMPTS).update(
        status=WebhookEvent.Status.FAILED, next_attempt_at=None, claimed_at=None,
        last_error=f"given up: its processing stopped {settings.WEBHOOK_MAX_ATTEMPTS} times without finishing (a "
                   f"worker killed or out of memory while applying it); replay it once the cause is fixed")
    if stopped:
        logger.error("webhook event given up: its processing never finished", extra={"webhook_event": event_id})
        return
    logger.warning("webhook event claimed before and never concluded; applying it alone",
                   extra={"webhook_event": event_id})
    webhook_event_process(event_id, claimed=True)


def _drain_batch(ids: list[int]) -> None:
    try:
        with transaction.atomic():
            commit_without_waiting_for_disk()
            events = list(WebhookEvent.objects.select_for_update()
                          .filter(pk__in=ids, status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED])
                          .order_by("received_at", "id"))
            # Each provider read (and its credentials decrypted) once per batch, not once per row.
            providers = Provider.objects.in_bulk({event.provider_id for event in events})
            events = [event for event in events if event.provider_id in providers]
            for event in events:
                event.provider = providers[event.provider_id]
            _apply_batch(events)
    except Exception:
        # The batch's transaction failed as a whole: one row at a time, so that one bad row never holds
        # back the rest (each attempt records its own failure).
        logger.warning("inbox batch failed; applying its rows one at a time", exc_info=True,
                       extra={"webhook_events": len(ids)})
        for event_id in ids:
            webhook_event_process(event_id, claimed=True)
        return
    for event in events:
        _observe(event)


def _apply_batch(events: list[WebhookEvent]) -> None:
    outcomes = _apply_rows(events, routes={})
    for event, outcome in zip(events, outcomes, strict=True):
        with correlation(event.correlation_id):
            _conclude(event, outcome)
    webhook_events_archive_request(events)
    for event in events:
        _clean_outcome(event)
    bulk_update_rows(events, OUTCOME_FIELDS)
    WebhookEvent.contacts.through.objects.bulk_create(
        [WebhookEvent.contacts.through(webhookevent_id=event.pk, contact_id=contact_id)
         for event in events for contact_id in event.carried_contacts], ignore_conflicts=True)


def webhook_events_prune_rejected(*, older_than_days: int | None = None) -> int:
    days = settings.WEBHOOK_REJECTED_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = WebhookEvent.objects.filter(status=WebhookEvent.Status.REJECTED, received_at__lt=cutoff).delete()
    return deleted
