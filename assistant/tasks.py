"""The assistant's tasks: on the `ai` queue (CELERY_TASK_ROUTES), beside the other calls that wait on a model."""

from celery import shared_task

from assistant.services import drafting, engine, proactive


@shared_task(bind=True, acks_late=True, max_retries=120)
def assistant_turn_task(self, message_id: int) -> None:
    try:
        engine.turn_run(message_id)
    except engine.ConversationBusy as busy:
        # Another worker is on this conversation's turns and usually takes this one too; if the retries run
        # out, the beat sweep picks up what is still queued.
        raise self.retry(countdown=0.5, exc=busy) from None


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
