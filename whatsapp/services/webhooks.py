"""The webhook inbox: store every request before acknowledging it, then process it asynchronously."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.correlation import get_correlation_id
from whatsapp.models import Provider, WebhookEvent
from whatsapp.providers import provider_for
from whatsapp.providers.base import WebhookRequest
from whatsapp.services.inbound import events_apply

logger = logging.getLogger(__name__)

MAX_PROCESSING_ATTEMPTS = 10


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
    keep_body: bool = True,
) -> tuple[WebhookEvent, bool]:
    """
    Store one webhook request. Returns (event, created); a redelivery the provider marked with the
    same delivery id returns the first event with its duplicate counter raised.
    """
    stored_headers = provider_for(provider).stored_headers if provider else ()
    headers = {name: value for name, value in request.headers.items() if name in stored_headers}
    delivery_id = provider_for(provider).delivery_id(request) if provider and status == "pending" else ""
    body = request.body if keep_body else b""
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                provider=provider, kind=kind[:20], status=status, http_status=http_status,
                rejection_reason=reason[:255], signature_valid=signature_valid, body=body,
                body_size=len(request.body), content_type=request.content_type[:100], headers=headers,
                delivery_id=delivery_id[:128], remote_addr=remote_addr, correlation_id=get_correlation_id(),
            )
    except IntegrityError:
        event = WebhookEvent.objects.get(provider=provider, delivery_id=delivery_id)
        WebhookEvent.objects.filter(pk=event.pk).update(duplicate_count=event.duplicate_count + 1)
        return event, False
    if status == WebhookEvent.Status.PENDING:
        webhook_event_enqueue(event.pk)
    return event, True


def webhook_event_enqueue(event_id: int) -> None:
    from whatsapp.tasks import process_webhook_event_task

    # robust: a broker outage must not turn an acknowledged webhook into an error; the row stays
    # pending and the requeue beat job picks it up.
    transaction.on_commit(lambda: process_webhook_event_task.delay(event_id), robust=True)


def webhook_event_process(event_id: int) -> WebhookEvent:
    """Parse a stored event with its provider module and apply the result in one transaction."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update(of=("self",)).select_related("provider").get(pk=event_id)
        if event.status not in (WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED) or event.provider is None:
            return event
        event.attempts += 1
        try:
            with transaction.atomic():
                provider = provider_for(event.provider)
                events = provider.parse_webhook(bytes(event.body), event.headers, event.content_type)
                events_apply(provider=event.provider, events=events, webhook_event=event)
        except Exception as exc:  # noqa: BLE001 - whatever fails, the event is kept and retried
            logger.warning("webhook event processing failed", extra={"webhook_event": event.pk, "error": repr(exc)})
            event.status = WebhookEvent.Status.FAILED
            event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        else:
            event.status = WebhookEvent.Status.PROCESSED
            event.event_count = len(events)
            event.last_error = ""
            event.processed_at = timezone.now()
        event.save(update_fields=["status", "attempts", "last_error", "event_count", "processed_at"])
    logger.info("webhook event %s", event.status, extra={"webhook_event": event.pk, "events": event.event_count,
                                                         "attempts": event.attempts})
    return event


def webhook_event_replay(*, event: WebhookEvent) -> None:
    """Admin replay: run a stored event through processing again (dedup keeps this harmless)."""
    WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.PENDING, last_error="")
    webhook_event_enqueue(event.pk)


def webhook_events_requeue_stale() -> int:
    """Re-enqueue events left pending (broker down, worker died) or failed with attempts left."""
    cutoff = timezone.now() - timedelta(seconds=settings.WEBHOOK_STALE_AFTER_SECONDS)
    stale = WebhookEvent.objects.filter(
        status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED],
        attempts__lt=MAX_PROCESSING_ATTEMPTS, received_at__lt=cutoff, provider__isnull=False,
    ).values_list("pk", flat=True)[:500]
    ids = list(stale)
    with transaction.atomic():
        for event_id in ids:
            webhook_event_enqueue(event_id)
    return len(ids)
