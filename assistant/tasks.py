"""The assistant's tasks: on the `ai` queue (CELERY_TASK_ROUTES), beside the other calls that wait on a model."""

from celery import shared_task

from assistant.services import drafting, engine, proactive


@shared_task(acks_late=True)
def assistant_turn_task(message_id: int) -> None:
    engine.turn_run(message_id)


@shared_task(acks_late=True)
def content_draft_task(request_id: int) -> None:
    drafting.draft_make(request_id)


@shared_task
def retry_waiting_turns_task() -> int:
    """Beat, every minute: messages that waited for the AI (down, over budget) are handled once it is back."""
    return engine.waiting_turns_retry()


@shared_task
def proactive_task() -> int:
    """Beat, every minute: reminders that are due, and daily and weekly summaries at each user's local time."""
    return proactive.proactive_run()
