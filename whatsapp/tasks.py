"""Celery tasks: thin wrappers that take ids and call services."""

import httpx
from celery import shared_task

from whatsapp.models import WebhookEvent


@shared_task(bind=True, max_retries=5)
def process_webhook_event_task(self, event_id: int) -> str:
    from whatsapp.services.webhooks import MAX_PROCESSING_ATTEMPTS, webhook_event_process

    event = webhook_event_process(event_id)
    if event.status == WebhookEvent.Status.FAILED and event.attempts < MAX_PROCESSING_ATTEMPTS:
        # Backoff stays well under the broker's visibility timeout; the beat job covers longer waits.
        raise self.retry(countdown=min(2 ** event.attempts, 30))
    return event.status


@shared_task
def requeue_stale_webhook_events_task() -> int:
    from whatsapp.services.webhooks import webhook_events_requeue_stale

    return webhook_events_requeue_stale()


@shared_task
def close_expired_sessions_task() -> int:
    from whatsapp.services.sessions import sessions_close_expired

    return sessions_close_expired()


@shared_task
def send_message_task(message_id: int) -> str:
    from whatsapp.services.outbound import message_deliver

    return message_deliver(message_id).status


@shared_task(autoretry_for=(httpx.HTTPError,), retry_backoff=1, retry_backoff_max=20, max_retries=8)
def sandbox_report_status_task(provider_id: int, provider_message_id: str, status: str) -> None:
    from whatsapp.sandbox_phone import report_status

    report_status(provider_id, provider_message_id, status)
