"""The webhook inbox: store every request before acknowledging it, then process it asynchronously."""

import hashlib
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.correlation import TASK_HEADER, get_correlation_id
from whatsapp.models import Provider, WebhookEvent
from whatsapp.providers import provider_for
from whatsapp.providers.base import WebhookRequest
from whatsapp.providers.events import NormalizedEvent, StoredWebhook, UnhandledEvent
from whatsapp.services.archive import webhook_body, webhook_event_archive_request
from whatsapp.services.audit import audit_record
from whatsapp.services.inbound import event_apply
from whatsapp.services.locks import commit_without_waiting_for_disk
from whatsapp.services.queueing import publish_on_commit

logger = logging.getLogger(__name__)

# Rejected (unverified) requests keep only a prefix of their body: enough to diagnose, too little to
# let anyone on the internet fill the database.
REJECTED_BODY_PREFIX_BYTES = 4096
MAX_RETRY_DELAY = timedelta(hours=6)
DELIVERY_ID_MAX = 128


def _retry_delay(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to 6 h: an acknowledged event is retried until it goes through."""
    return min(timedelta(seconds=30 * 2 ** max(attempts - 1, 0)), MAX_RETRY_DELAY)


def _delivery_id(provider: Provider | None, request: WebhookRequest) -> str:
    raw = provider_for(provider).delivery_id(request) if provider else ""
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
    stored_headers = provider_for(provider).stored_headers if provider else ()
    headers = {name: value for name, value in request.headers.items() if name in stored_headers}
    delivery_id = _delivery_id(provider, request) if accepted else ""
    body = request.body if accepted else request.body[:REJECTED_BODY_PREFIX_BYTES]
    now = timezone.now()
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider, kind=kind[:20], status=status, http_status=http_status,
                rejection_reason=reason[:255], signature_valid=signature_valid, body=body,
                body_size=len(request.body) if body_size is None else body_size,
                content_type=request.content_type[:100], headers=headers, delivery_id=delivery_id,
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
    from whatsapp.tasks import process_webhook_event_task

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
    A failure leaves the event `failed` with a due time for the next attempt; re-applying is harmless
    because messages and status reports are deduplicated.
    """
    with transaction.atomic():
        commit_without_waiting_for_disk()
        event = (WebhookEvent.objects.select_for_update(skip_locked=True, of=("self",))
                 .select_related("provider").filter(pk=event_id).first())
        if event is None:
            return None  # another worker holds it right now
        if event.status not in (WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED) or event.provider is None:
            return event
        event.attempts += 1
        errors = _apply_all(event)
        now = timezone.now()
        if errors:
            event.status = WebhookEvent.Status.FAILED
            event.last_error = "\n".join(errors)[:4000]
            event.next_attempt_at = now + _retry_delay(event.attempts)
            logger.warning("webhook event failed", extra={"webhook_event": event.pk, "errors": errors[:5]})
        else:
            event.status = WebhookEvent.Status.PROCESSED
            event.last_error = ""
            event.processed_at = now
            event.next_attempt_at = None
            webhook_event_archive_request(event)
        event.save(update_fields=["status", "attempts", "last_error", "event_count", "processed_at",
                                  "next_attempt_at", "unrouted_to", "notes", "message_ids", "archive_status",
                                  "archive_next_at"])
    logger.info("webhook event %s", event.status, extra={"webhook_event": event.pk, "events": event.event_count,
                                                         "attempts": event.attempts})
    return event


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
        allowed = candidate is not None and provider_for(receiver).may_route_to(candidate)
        cache[routed_to] = candidate if allowed else None
    return cache[routed_to]


def _stored(event: WebhookEvent) -> StoredWebhook:
    return StoredWebhook(body=webhook_body(event), headers=event.headers, content_type=event.content_type,
                         received_at=event.received_at)


def _apply_all(event: WebhookEvent) -> list[str]:
    try:
        events = provider_for(event.provider).parse_webhook(_stored(event))
    except Exception as exc:  # noqa: BLE001 - whatever the parser does, the event is kept and retried
        return [f"parse: {type(exc).__name__}: {exc}"]
    event.event_count = len(events)
    errors: list[str] = []
    unrouted: set[str] = set()
    notes: list[str] = []
    routes: dict[str, Provider | None] = {}
    contact_ids: set[int] = set()
    message_ids: list[str] = []
    for index, normalized in enumerate(events):
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
            errors.append(f"event {index} ({_describe(normalized)}): {type(exc).__name__}: {exc}")
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
    if unrouted:
        logger.warning("webhook event names numbers no provider has", extra={"webhook_event": event.pk,
                                                                             "unrouted_to": event.unrouted_to})
    return errors


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
