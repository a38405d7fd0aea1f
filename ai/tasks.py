"""AI tasks: all on the `ai` queue (CELERY_TASK_ROUTES), so ingestion and sending never wait for a model."""

from celery import shared_task

from ai.services import pipeline, suggestions, summaries


@shared_task(acks_late=True)
def ai_drain_task() -> int:
    """Woken by new messages (at most twice a second per ingesting process) and by beat every minute."""
    return pipeline.ai_drain()


@shared_task(acks_late=True)
def ai_suggestions_task(request_id: int) -> None:
    suggestions.suggestions_make(request_id)


@shared_task(acks_late=True)
def ai_summary_task(request_id: int) -> None:
    summaries.summary_make(request_id)


@shared_task
def ai_summarize_idle_task() -> int:
    return summaries.idle_conversations_summarize()
