"""AI tasks: all on the `ai` queue (CELERY_TASK_ROUTES), so ingestion and sending never wait for a model."""

from celery import shared_task

from ai.services import pipeline, suggestions, summaries


@shared_task(bind=True, acks_late=True, max_retries=None)
def ai_process_message_task(self, message_id: int) -> None:
    outcome = pipeline.message_process(message_id)
    if outcome.countdown is not None:
        # Attempts are counted on the message's insight, not by Celery.
        raise self.retry(countdown=outcome.countdown)


@shared_task(acks_late=True)
def ai_suggestions_task(request_id: int) -> None:
    suggestions.suggestions_make(request_id)


@shared_task(acks_late=True)
def ai_summary_task(request_id: int) -> None:
    summaries.summary_make(request_id)


@shared_task
def ai_requeue_missed_task() -> int:
    return pipeline.missed_requeue()


@shared_task
def ai_summarize_idle_task() -> int:
    return summaries.idle_conversations_summarize()
