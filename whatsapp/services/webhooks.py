"""The webhook inbox: store every request before acknowledging it, then process it asynchronously."""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from core import metrics
from core.audit import audit_record
from core.correlation import TASK_HEADER, get_correlation_id
from core.crypto import DecryptionError
from core.locks import commit_without_waiting_for_disk
from core.queueing import publish_on_commit, task_named
from core.storage import ObjectNotFound, StorageError
from whatsapp.models import Provider, WebhookEvent
from whatsapp.providers import backend_for
from whatsapp.providers.base import BodyUndecodable, WebhookRequest, storable_text
from whatsapp.providers.events import InvalidUpdate, NormalizedEvent, StoredWebhook, UnhandledEvent
from whatsapp.services.archive import webhook_body, webhook_event_archive_request
from whatsapp.services.inbound import RetryLater, event_apply, update_problem

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
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider, kind=storable_text(kind)[:20], status=status, http_status=http_status,
                rejection_reason=storable_text(reason)[:255], signature_valid=signature_valid, body=body,
                body_size=min(len(request.body) if body_size is None else max(body_size, 0), BODY_SIZE_MAX),
                content_type=storable_text(request.content_type)[:100], headers=headers, delivery_id=delivery_id,
                remote_addr=remote_addr, correlation_id=get_correlation_id(),
                next_attempt_at=now + timedelta(seconds=settings.WEBHOOK_STALE_AFTER_SECONDS) if accepted else None,
            )
    except IntegrityError:
        event = WebhookEvent.objects.get(provider=provider, delivery_id=delivery_id)
        WebhookEvent.objects.filter(pk=event.pk).update(duplicate_count=F("duplicate_count") + 1)
        return event, False
    if accepted:
        webhook_event_enqueue(event)
    return event, True


def webhook_event_enqueue(event: WebhookEvent) -> None:
    process_webhook_event_task = task_named("whatsapp.tasks.process_webhook_event_task")

    # The task carries the correlation id of the request that brought the event, even when requeued.
    headers = {TASK_HEADER: event.correlation_id} if event.correlation_id else {}
    # A broker outage must not turn an acknowledged webhook into an error: the row stays pending and the
    # requeue beat job sends it once its next_attempt_at is due.
    publish_on_commit(lambda: process_webhook_event_task.apply_async((event.pk,), headers=headers),
                      what=f"webhook event {event.pk}")


def webhook_event_process(event_id: int) -> WebhookEvent | None:
    """
    Parse a stored event with its provider module and apply each normalized event in its own savepoint,
    so one bad update never holds back the others in the same request (Meta batches up to 1000).
    How an event ends: `processed` (updates that cannot be stored are listed in `invalid_updates`, the
    rest applied); `failed` with a due time after a transient failure, retried with backoff up to
    WEBHOOK_MAX_ATTEMPTS; `failed` with no due time (given up) after a permanent error or the last
    attempt, with the reason in `last_error`, until someone replays it. Re-applying is harmless because
    messages and status reports are deduplicated.
    """
    try:
        with transaction.atomic():
            commit_without_waiting_for_disk()
            event = (WebhookEvent.objects.select_for_update(skip_locked=True, of=("self",))
                     .select_related("provider").filter(pk=event_id).first())
            if event is None:
                return None  # another worker holds it right now
            if not _due_for_processing(event):
                return event
            event.attempts += 1
            outcome = _apply_all(event)
            _conclude(event, outcome)
            _save_outcome(event, ["status", "attempts", "last_error", "event_count", "processed_at",
                                  "next_attempt_at", "unrouted_to", "notes", "message_ids", "invalid_updates",
                                  "archive_status", "archive_next_at"])
    except Exception as exc:
        # The attempt's transaction is rolled back, its bookkeeping with it: record the attempt in a
        # transaction of its own, so it counts towards the limit and a person sees why.
        event = _attempt_failed(event_id, exc)
        if event is None:
            raise
    logger.info("webhook event %s", event.status, extra={"webhook_event": event.pk, "events": event.event_count,
                                                         "attempts": event.attempts})
    if event.status == WebhookEvent.Status.PROCESSED and event.processed_at:
        # Observed after the attempt's transaction: an attempt rolled back processed nothing.
        metrics.webhook_processed(event.provider.kind, event.provider_id,
                                  (event.processed_at - event.received_at).total_seconds())
    return event


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
    errors = outcome.transient + outcome.permanent
    if not errors:
        event.status = WebhookEvent.Status.PROCESSED
        event.last_error = ""
        event.processed_at = now
        event.next_attempt_at = None
        webhook_event_archive_request(event)
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


def _save_outcome(event: WebhookEvent, fields: list[str]) -> None:
    for name in ("last_error", "notes", "unrouted_to", "message_ids"):
        # Error texts quote the update (an id holding a NUL): the row must be saved whatever it quotes.
        setattr(event, name, storable_text(getattr(event, name)))
    event.last_error = event.last_error[:4000]
    event.save(update_fields=fields)


def _attempt_failed(event_id: int, exc: Exception) -> WebhookEvent | None:
    """Record an attempt whose own transaction failed; None when the row is not ours to record."""
    reason = f"the attempt failed: {type(exc).__name__}: {exc}"
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.select_for_update(skip_locked=True).filter(pk=event_id).first()
            if event is None or not _due_for_processing(event):
                return None
            event.attempts += 1
            outcome = _Outcome(transient=[reason]) if _is_transient(exc) else _Outcome(permanent=[reason])
            _conclude(event, outcome)
            event.status = WebhookEvent.Status.FAILED  # nothing of this attempt was applied
            _save_outcome(event, ["status", "attempts", "last_error", "next_attempt_at"])
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


def _apply_all(event: WebhookEvent) -> _Outcome:
    outcome = _Outcome()
    try:
        events = backend_for(event.provider).parse_webhook(_stored(event))
    except Exception as exc:  # noqa: BLE001 - whatever the parser does, the event is kept with the reason
        reason = str(exc) if isinstance(exc, BodyUndecodable) else f"{type(exc).__name__}: {exc}"
        (outcome.transient if _is_transient(exc) else outcome.permanent).append(f"parse: {reason}")
        return outcome
    event.event_count = len(events)
    unrouted: set[str] = set()
    notes: list[str] = []
    invalid: list[dict[str, Any]] = []
    routes: dict[str, Provider | None] = {}
    contact_ids: set[int] = set()
    message_ids: list[str] = []
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
        try:
            with transaction.atomic():
                contact_id = event_apply(provider=target, event=normalized, webhook_event=event)
        except Exception as exc:  # noqa: BLE001 - one bad update must not block the rest
            error = f"update {index} ({_describe(normalized)}): {type(exc).__name__}: {exc}"
            (outcome.transient if _is_transient(exc) else outcome.permanent).append(error)
            continue
        if contact_id:
            contact_ids.add(contact_id)
        if getattr(normalized, "provider_message_id", ""):
            message_ids.append(normalized.provider_message_id)
    # Whose data the body carried: its archive bucket and what an erasure of that person removes.
    event.contacts.add(*contact_ids)
    event.message_ids = _joined(message_ids, 1000)
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
    return outcome


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
                                                    next_attempt_at=timezone.now())
    audit_record(action="webhook_event.replay", obj=event, actor=actor, before={"status": event.status})
    webhook_event_enqueue(event)


def webhook_events_requeue_due(*, limit: int = 500) -> int:
    """
    Hand due events back to the workers: pending ones whose task was lost (broker down, worker died)
    and failed ones whose backoff has passed. Oldest first; each is given a new due time so a busy
    queue is not flooded with copies.
    """
    now = timezone.now()
    with transaction.atomic():
        due = list(
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED], provider__isnull=False,
                    next_attempt_at__lte=now)
            .order_by("received_at")[:limit]
        )
        for event in due:
            event.next_attempt_at = now + max(_retry_delay(event.attempts),
                                              timedelta(seconds=settings.WEBHOOK_STALE_AFTER_SECONDS))
            event.save(update_fields=["next_attempt_at"])
            webhook_event_enqueue(event)
    return len(due)


def webhook_events_prune_rejected(*, older_than_days: int | None = None) -> int:
    days = settings.WEBHOOK_REJECTED_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = WebhookEvent.objects.filter(status=WebhookEvent.Status.REJECTED, received_at__lt=cutoff).delete()
    return deleted
