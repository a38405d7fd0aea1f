"""Celery tasks: thin wrappers that take ids and call services."""

import httpx
from celery import shared_task

from whatsapp.providers.base import ProviderError
from whatsapp.sandbox_phone import report_status
from whatsapp.services.archive import media_archive
from whatsapp.services.archive_bundles import (
    bundle_rewrite,
    webhook_bodies_bundle,
    webhook_bodies_bundle_due,
    webhook_bodies_prune,
)
from whatsapp.services.archive_jobs import archives_requeue_due, storage_deletion_run
from whatsapp.services.delivery import message_deliver
from whatsapp.services.lifecycle import lifecycle_tick, status_push
from whatsapp.services.media import media_download, media_requeue_due
from whatsapp.services.outbound import messages_requeue_due
from whatsapp.services.providers import provider_simulated_webhook_post
from whatsapp.services.send_batches import provider_send_due
from whatsapp.services.sessions import sessions_close_expired
from whatsapp.services.webhooks import (
    webhook_event_process,
    webhook_events_prune_rejected,
    webhook_events_requeue_due,
    webhook_inbox_drain,
)


@shared_task
def process_webhook_event_task(event_id: int) -> str:
    # One row on its own (the drain below takes them in batches). No Celery-level retry: a failed event
    # gets a due time in the database and the sweep wakes the drain for it (backoff up to hours, longer
    # than a broker's visibility timeout allows for countdowns).
    event = webhook_event_process(event_id)
    return event.status if event else "busy"


@shared_task
def requeue_due_webhook_events_task() -> int:
    return webhook_events_requeue_due()


@shared_task
def prune_rejected_webhook_events_task() -> int:
    return webhook_events_prune_rejected()


@shared_task
def download_media_task(media_id: int) -> str:
    media = media_download(media_id)
    return media.state if media else "missing"


@shared_task
def requeue_due_media_downloads_task() -> int:
    return media_requeue_due()


@shared_task
def close_expired_sessions_task() -> int:
    return sessions_close_expired()


@shared_task(bind=True, max_retries=6)
def conversation_status_push_task(self, conversation_id: int) -> str:
    try:
        return status_push(conversation_id)
    except ProviderError as error:
        if not error.retryable:
            raise
        raise self.retry(countdown=min(300, 5 * 2 ** self.request.retries)) from error


@shared_task
def conversations_lifecycle_task() -> dict:
    return lifecycle_tick()


@shared_task(bind=True)
def send_due_task(self, provider_id: int) -> int:
    # The provider's sender: the messages table is the queue (services/send_batches.py). Acknowledged late
    # (CELERY_TASK_ACKS_LATE): the provider's ids are committed before the ack.
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    return provider_send_due(provider_id, redelivered=redelivered)


@shared_task
def send_message_task(message_id: int, pair_reserved: bool = False) -> str:
    # One message on its own: a send found `sending` (did its worker die?), and tasks queued before the
    # sender took over. Acknowledged late: the provider's id is committed before the ack.
    message = message_deliver(message_id, pair_reserved=pair_reserved)
    return message.status if message else "missing"


@shared_task
def requeue_due_messages_task() -> int:
    return messages_requeue_due()


@shared_task(autoretry_for=(httpx.HTTPError,), retry_backoff=1, retry_backoff_max=20, max_retries=8)
def sandbox_report_status_task(provider_id: int, provider_message_id: str, status: str) -> None:
    report_status(provider_id, provider_message_id, status)


class WebhookServerError(Exception):
    """The web server answered 5xx: it may answer the same post next time."""


# Network errors and 5xx answers are retried; a 4xx (a host not allowed, a signature refused) would be
# refused again.
@shared_task(autoretry_for=(httpx.TransportError, WebhookServerError), retry_backoff=1, retry_backoff_max=20,
             max_retries=8)
def simulate_inbound_task(provider_id: int, body: str, headers: dict[str, str]) -> int:
    try:
        return provider_simulated_webhook_post(provider_id, body, headers)
    except httpx.HTTPStatusError as exc:
        if exc.response.is_server_error:
            raise WebhookServerError(str(exc)) from exc
        raise


# --- The archive: each attempt is a task; the database row is the retry schedule (see services/archive.py) ---

@shared_task
def bundle_webhook_bodies_task(event_ids: list[int] | None = None) -> int:
    """The beat job (no ids: every body whose hour has closed) or "archive now" (these events)."""
    if event_ids:
        return webhook_bodies_bundle(event_ids=event_ids, limit=len(event_ids)).bodies
    return webhook_bodies_bundle_due().bodies


@shared_task
def rewrite_archive_bundle_task(bundle_id: int) -> bool:
    return bundle_rewrite(bundle_id)


@shared_task
def archive_webhook_event_task(event_id: int) -> int:
    # Sent by earlier versions for each body; bodies are bundled by the hour now, by the beat job.
    return 0


@shared_task
def archive_media_task(media_id: int) -> str:
    media = media_archive(media_id)
    return media.archive_status if media else "missing"


@shared_task
def requeue_due_archives_task() -> int:
    return archives_requeue_due()


@shared_task
def run_storage_deletion_task(deletion_id: int) -> bool:
    return storage_deletion_run(deletion_id)


@shared_task
def prune_archived_webhook_bodies_task() -> int:
    return webhook_bodies_prune()


@shared_task
def archive_webhook_events_task(event_ids: list[int]) -> int:
    # Sent by earlier versions after each drain batch; bodies are bundled by the hour now, by the beat job.
    return 0


# --- The inbox is the queue: a drain claims due rows in batches (see services/webhooks.py) ---

@shared_task
def drain_webhook_inbox_task() -> int:
    return webhook_inbox_drain()
