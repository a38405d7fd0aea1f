"""
An inbound message's AI steps, in order: transcription (voice notes and audio, once the file is stored),
then classification of its text, caption or transcript, then the `message_understood` hook. Each step's
outcome is kept on the message's insight; a step that fails or is skipped says why and never holds up
the message, the steps after it, or anything else.

A retryable failure (timeout, 429, 5xx, an open circuit) returns the delay before the next attempt; the
task schedules it. After AI_MAX_ATTEMPTS the step is recorded as failed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Exists, Min, Q, QuerySet
from django.utils import timezone

from ai import guards
from ai.client import AiError, ai_configured
from ai.context import conversation_context, message_text
from ai.hooks import message_understood
from ai.models import Feature, MessageInsight, StepStatus
from ai.pricing import estimated_chat_cost
from ai.services.calls import CallScope, record_skip
from ai.services.classification import classify_text
from ai.services.transcription import transcribe_audio
from core.queueing import Wake, task_named
from whatsapp.models import Media, Message
from whatsapp.providers.events import MessageType
from whatsapp.services.archive import media_content

logger = logging.getLogger(__name__)

TRANSCRIBED_TYPES = {MessageType.AUDIO, MessageType.VIDEO}
FIRST_RETRY_SECONDS = 5.0
# A retry further away than this waits for the periodic drain (beat) instead of a task countdown: a broker
# holding a delayed task longer than its visibility timeout would hand it out twice.
COUNTDOWN_MAX_SECONDS = 30.0
CIRCUIT_OPEN = "circuit_open"
# Below the broker's visibility timeout, so a drain is seldom handed out twice, and far below CLAIM_SECONDS,
# so no claim lapses while its message waits in a batch.
DRAIN_BUDGET_SECONDS = 25.0
# One wake per process per half second, a second ahead (see core.queueing.Wake).
_drain_wake = Wake("ai.tasks.ai_drain_task", interval=0.5, delay=1.0)
# A step claimed by a worker that then died is taken over after this long.
CLAIM_SECONDS = 300


@dataclass
class StepOutcome:
    retry_in: float | None = None  # seconds until the next attempt; None: nothing left to do now
    waiting_for_media: bool = False


def drain_soon() -> None:
    """Wake the AI worker when the transaction commits: a burst of messages costs one publish."""
    _drain_wake.soon()


def needs_transcript(message: Message) -> bool:
    if message.message_type == MessageType.AUDIO:
        return True
    # A video's sound is written out only when it carries no caption to read instead.
    return message.message_type == MessageType.VIDEO and not (message.text or "").strip()


def on_inbound_message(message: Message) -> None:
    """Receiver of the core's inbound hook. A message with a file to transcribe waits for `on_media_stored`."""
    if not ai_configured() or needs_transcript(message):
        return
    drain_soon()


def on_media_stored(media: Media) -> None:
    message = media.message
    if ai_configured() and message.direction == Message.Direction.INBOUND and needs_transcript(message):
        drain_soon()


def _claim(message_id: int) -> MessageInsight | None:
    """The message's insight, held by this worker for CLAIM_SECONDS; None when another worker holds it."""
    now = timezone.now()
    until = now + timedelta(seconds=CLAIM_SECONDS)
    try:
        # The common case, a message seen for the first time: one insert, and the claim comes with it. (A
        # savepoint only inside a transaction: on its own the insert needs none to fail cleanly.)
        with transaction.atomic() if not transaction.get_autocommit() else contextlib.nullcontext():
            return MessageInsight.objects.create(message_id=message_id, claimed_until=until)
    except IntegrityError:
        pass
    unclaimed = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    if not MessageInsight.objects.filter(unclaimed, message_id=message_id).update(claimed_until=until):
        return None  # held by another worker, or no such message
    return MessageInsight.objects.get(message_id=message_id)


def _release(insight: MessageInsight) -> None:
    MessageInsight.objects.filter(pk=insight.pk).update(claimed_until=None)


def _save_and_release(insight: MessageInsight) -> None:
    """Write the steps' outcomes back and let the message go, in one statement. An update, never an insert:
    a re-run may have deleted the row meanwhile, and this worker's stale results must not bring it back."""
    fields = {field.attname: getattr(insight, field.attname) for field in MessageInsight._meta.concrete_fields
              if field.attname not in ("id", "message_id", "created_at", "updated_at", "claimed_until")}
    MessageInsight.objects.filter(pk=insight.pk).update(**fields, updated_at=timezone.now(), claimed_until=None)


def _claim_batch(limit: int) -> list[MessageInsight]:
    """Up to `limit` pending messages' insights (made if missing), held by this worker: concurrent drains
    take different messages (SKIP LOCKED) instead of racing for the same ones."""
    candidates = list(pending_messages().values_list("pk", flat=True)[:limit])
    if not candidates:
        return []
    try:
        with transaction.atomic():
            MessageInsight.objects.bulk_create([MessageInsight(message_id=pk) for pk in candidates],
                                               ignore_conflicts=True)
    except IntegrityError:
        pass  # one of them was just deleted (an erasure): the others get their row from _claim later
    now = timezone.now()
    with transaction.atomic():
        rows = list(MessageInsight.objects.select_for_update(skip_locked=True)
                    .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), message_id__in=candidates)
                    .values_list("pk", flat=True))
        MessageInsight.objects.filter(pk__in=rows).update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
    return list(MessageInsight.objects.filter(pk__in=rows).order_by("message_id"))


def message_process(message_id: int, *, claimed: MessageInsight | None = None) -> StepOutcome:
    """Run a message's pending steps. `claimed`: its insight, already held by this worker."""
    # Claimed before it is read: a message read before another worker's last write would be stale.
    insight = claimed or _claim(message_id)
    if insight is None:
        return StepOutcome()
    if insight.next_attempt_at and insight.next_attempt_at > timezone.now() + timedelta(seconds=1):
        _release(insight)
        return StepOutcome()  # a copy of a task that is not due yet
    try:
        message = (Message.objects.select_related("provider__ai_settings", "conversation")
                   .filter(pk=message_id, direction=Message.Direction.INBOUND).first())
        if message is None:
            return StepOutcome()
        try:
            return _run_steps(message, insight)
        except (OperationalError, InterfaceError):
            raise  # the database is out: nothing can be recorded; the claim lapses and a later drain retries
        except Exception as exc:
            # A bug, a file the parser chokes on, the archive storage out: counted as a failed attempt of the
            # current step like an API error, so one bad message never stops the drain behind it.
            logger.exception("AI step raised", extra={"message_id": message_id})
            step = ("transcription" if needs_transcript(message)
                    and insight.transcription_status in ("", StepStatus.PENDING) else "classification")
            return _retry_or_fail(insight, step, AiError(f"unexpected error: {type(exc).__name__}",
                                                         code="unexpected_error", retryable=True))
    finally:
        _save_and_release(insight)


def _run_steps(message: Message, insight: MessageInsight) -> StepOutcome:
    ai_settings = guards.ai_settings_for(message.provider)
    if needs_transcript(message) and insight.transcription_status in ("", StepStatus.PENDING):
        outcome = _transcription_step(message, insight, ai_settings)
        if outcome.retry_in is not None or outcome.waiting_for_media:
            return outcome
    if insight.classification_status in ("", StepStatus.PENDING):
        outcome = _classification_step(message, insight, ai_settings)
        if outcome.retry_in is not None:
            return outcome
    if message.ai_processed_at is None:
        message.ai_processed_at = timezone.now()
        # One write for what the steps found and that they are over, unless a re-run deleted this insight
        # meanwhile (its own run writes the message then).
        written = Message.objects.filter(Exists(MessageInsight.objects.filter(pk=insight.pk)), pk=message.pk).update(
            transcript=message.transcript, intent=message.intent, sentiment=message.sentiment,
            language=message.language, ai_processed_at=message.ai_processed_at, updated_at=timezone.now())
        if written:
            message_understood.fire(message=message)
    return StepOutcome()


def _scope(feature: str, message: Message, insight: MessageInsight) -> CallScope:
    return CallScope(feature, provider=message.provider, message=message, conversation=message.conversation,
                     attempt=insight.attempts + 1, final_attempt=insight.attempts + 1 >= settings.AI_MAX_ATTEMPTS)


def _retry_or_fail(insight: MessageInsight, step: str, error: AiError) -> StepOutcome:
    if error.code == CIRCUIT_OPEN:
        # Nothing was tried: the step waits for the circuit and keeps its attempts.
        insight.next_attempt_at = timezone.now() + timedelta(seconds=error.retry_after or FIRST_RETRY_SECONDS)
        return StepOutcome(retry_in=error.retry_after)
    insight.attempts += 1
    if error.retryable and insight.attempts < settings.AI_MAX_ATTEMPTS:
        delay = error.retry_after
        if delay is None:
            delay = FIRST_RETRY_SECONDS * 2 ** (insight.attempts - 1)
        insight.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        return StepOutcome(retry_in=delay)
    setattr(insight, f"{step}_status", StepStatus.FAILED)
    setattr(insight, f"{step}_error", str(error)[:500])
    insight.attempts, insight.next_attempt_at = 0, None
    logger.warning("AI step failed", extra={"message_id": insight.message_id, "step": step, "code": error.code})
    return StepOutcome()


def _skip(insight: MessageInsight, step: str, reason: str) -> None:
    setattr(insight, f"{step}_status", StepStatus.SKIPPED)
    setattr(insight, f"{step}_error", reason[:500])


def _transcription_step(message: Message, insight: MessageInsight, ai_settings) -> StepOutcome:
    scope = _scope(Feature.TRANSCRIPTION, message, insight)
    skip = guards.skip_for(Feature.TRANSCRIPTION, message.provider, contact_id=message.conversation.contact_id,
                           ai_settings=ai_settings)
    if skip:
        record_skip(scope, skip)
        _skip(insight, "transcription", skip.reason)
        return StepOutcome()
    media = message.media.order_by("pk").first()
    if media is None or media.state in (Media.State.FAILED, Media.State.EXPIRED):
        _skip(insight, "transcription", "the audio file could not be downloaded")
        return StepOutcome()
    if media.state != Media.State.FETCHED:
        return StepOutcome(waiting_for_media=True)  # its download's success enqueues this message again
    try:
        result = transcribe_audio(media_content(media), mime_type=media.mime_type, scope=scope)
    except AiError as error:
        return _retry_or_fail(insight, "transcription", error)
    insight.transcription_status, insight.transcription_error = StepStatus.DONE, ""
    insight.attempts, insight.next_attempt_at = 0, None
    insight.transcript_language = result.language
    insight.audio_seconds = result.duration_seconds
    insight.transcription_model, insight.transcription_cost = result.model, result.cost
    message.transcript = result.text
    message.language = result.language or message.language
    # Saved now, not with the classification: the transcript is worth keeping if what follows fails.
    message.save(update_fields=["transcript", "language", "updated_at"])
    return StepOutcome()


def _classification_step(message: Message, insight: MessageInsight, ai_settings) -> StepOutcome:
    scope = _scope(Feature.CLASSIFICATION, message, insight)
    text = message_text(message)
    if not text:
        _skip(insight, "classification", "no text, caption or transcript")
        return StepOutcome()
    context = [line.render() for line in conversation_context(message.conversation, before=message)]
    estimate = estimated_chat_cost(settings.OPENAI_MODEL, prompt_chars=len(text) + sum(map(len, context)) + 1500,
                                   max_output_tokens=400)
    skip = guards.skip_for(Feature.CLASSIFICATION, message.provider, contact_id=message.conversation.contact_id,
                           estimate=estimate, ai_settings=ai_settings)
    if skip:
        record_skip(scope, skip)
        _skip(insight, "classification", skip.reason)
        return StepOutcome()
    try:
        result = classify_text(text, context=context, redact_pii=ai_settings.redact_pii, scope=scope)
    except AiError as error:
        return _retry_or_fail(insight, "classification", error)
    insight.classification_status, insight.classification_error = StepStatus.DONE, ""
    insight.attempts, insight.next_attempt_at = 0, None
    insight.intent, insight.sentiment, insight.sentiment_score = result.intent, result.sentiment, result.sentiment_score
    insight.language, insight.urgency, insight.extracted = result.language, result.urgency, result.fields
    insight.classification_model, insight.prompt_version = result.model, result.prompt_version
    message.intent, message.sentiment = result.intent, result.sentiment
    message.language = result.language or message.language  # saved when the steps are over
    return StepOutcome()


def messages_rerun(messages: Iterable[Message]) -> int:
    """Re-run the AI on the inbound ones among `messages` (it reads inbound messages only); how many."""
    inbound = [message for message in messages if message.direction == Message.Direction.INBOUND]
    for message in inbound:
        message_rerun(message)
    return len(inbound)


def message_rerun(message: Message) -> None:
    """Forget what the AI made of a message and run its steps again (the admin's re-run action)."""
    MessageInsight.objects.filter(message=message).delete()
    # Due now whatever the message's age (the drain otherwise looks at recent messages only).
    MessageInsight.objects.create(message=message, next_attempt_at=timezone.now())
    Message.objects.filter(pk=message.pk).update(intent="", sentiment="", ai_processed_at=None,
                                                 transcript="" if needs_transcript(message) else message.transcript)
    drain_soon()


def pending_messages(*, within: timedelta = timedelta(hours=6)) -> QuerySet[Message]:
    """Inbound messages of the last hours whose AI steps are not over and may run now: not held by a
    worker, not waiting for a retry's due time, not waiting for their file."""
    now = timezone.now()
    unclaimed = Q(insight__claimed_until__isnull=True) | Q(insight__claimed_until__lt=now)
    due = Q(insight__next_attempt_at__isnull=True) | Q(insight__next_attempt_at__lte=now)
    recent_or_scheduled = Q(created_at__gte=now - within) | Q(insight__next_attempt_at__isnull=False)
    return (Message.objects.filter(recent_or_scheduled, direction=Message.Direction.INBOUND,
                                   ai_processed_at__isnull=True)
            .filter(unclaimed, due)
            # A file still downloading: its storing wakes the drain. A failed one is taken (its step says so).
            .exclude(message_type__in=TRANSCRIBED_TYPES, media__state=Media.State.PENDING)
            .order_by("pk"))


def ai_drain(*, batch: int = 20, time_budget: float = DRAIN_BUDGET_SECONDS) -> int:
    """The AI worker's loop: run the steps of every pending message, oldest first, until none is left or
    the time budget is spent (then another drain is queued, so one task never runs for long). A retry due
    within the countdown limit queues a drain for its time."""
    if not ai_configured():
        return 0
    started, seen = time.monotonic(), set()
    while time.monotonic() - started < time_budget:
        claimed = _claim_batch(batch)
        for insight in claimed:
            if insight.message_id in seen:
                _release(insight)  # done once in this drain already; the next drain looks again
        claimed = [insight for insight in claimed if insight.message_id not in seen]
        if not claimed:
            break
        for position, insight in enumerate(claimed):
            if time.monotonic() - started >= time_budget:
                for left in claimed[position:]:
                    _release(left)
                break
            seen.add(insight.message_id)
            message_process(insight.message_id, claimed=insight)
    else:
        task_named("ai.tasks.ai_drain_task").delay()
        return len(seen)
    _drain_when_next_retry_is_due()
    return len(seen)


def _drain_when_next_retry_is_due() -> None:
    now = timezone.now()
    soonest = (MessageInsight.objects.filter(next_attempt_at__gt=now,
                                             next_attempt_at__lte=now + timedelta(seconds=COUNTDOWN_MAX_SECONDS),
                                             message__ai_processed_at__isnull=True)
               .aggregate(soonest=Min("next_attempt_at"))["soonest"])
    if soonest is not None:
        task_named("ai.tasks.ai_drain_task").apply_async(countdown=(soonest - now).total_seconds() + 0.1)
