"""Suggestions and summaries are asked for here and made by a worker (see `AiRequest`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ai import guards
from ai.client import ai_configured
from ai.models import AiRequest, Feature, StepStatus
from ai.redaction import Redaction, redact_all
from core.audit import audit_record
from core.queueing import publish_on_commit, task_named
from whatsapp.models import Conversation

FEATURE_OF = {AiRequest.Kind.SUGGESTIONS: Feature.SUGGESTIONS, AiRequest.Kind.SUMMARY: Feature.SUMMARY}
TASK_OF = {AiRequest.Kind.SUGGESTIONS: "ai.tasks.ai_suggestions_task",
           AiRequest.Kind.SUMMARY: "ai.tasks.ai_summary_task"}


PENDING_FOR_GOOD = timedelta(minutes=5)


class AiUnavailable(Exception):
    """The feature cannot run for this conversation; the message says why and what to do."""


def unavailable_reason(conversation: Conversation, kind: str) -> str:
    if not ai_configured():
        return "AI is off: set OPENAI_API_KEY (and OPENAI_BASE_URL for a self-hosted model) to turn it on"
    skip = guards.skip_for(FEATURE_OF[kind], conversation.provider, contact_id=conversation.contact_id)
    return skip.reason if skip else ""


@transaction.atomic
def ai_request_create(conversation: Conversation, kind: str, *, trigger: str, actor: Any = None) -> AiRequest:
    """Ask for suggestions or a summary; a request of that kind still pending is returned as it is."""
    reason = unavailable_reason(conversation, kind)
    if reason:
        raise AiUnavailable(reason)
    # A request pending for long lost its task (broker or worker gone): a new one replaces it.
    pending = AiRequest.objects.filter(conversation=conversation, kind=kind, status=StepStatus.PENDING,
                                       created_at__gte=timezone.now() - PENDING_FOR_GOOD).first()
    if pending is not None:
        return pending
    request = AiRequest.objects.create(conversation=conversation, kind=kind, trigger=trigger,
                                       created_by=actor if getattr(actor, "pk", None) else None)
    if trigger != "idle":
        audit_record(action=f"ai.{kind}.request", obj=conversation, actor=actor, after={"request": request.pk})
    publish_on_commit(lambda: task_named(TASK_OF[kind]).delay(request.pk), what=f"AI {kind} request {request.pk}")
    return request


def ai_request_start(request_id: int) -> AiRequest | None:
    """The request, taken by this worker; None when it is not pending or another worker took it (the broker
    may hand a task out twice)."""
    taken = AiRequest.objects.filter(pk=request_id, status=StepStatus.PENDING, started_at__isnull=True).update(
        started_at=timezone.now())
    return AiRequest.objects.select_related("conversation__provider").get(pk=request_id) if taken else None


def ai_request_begin(request_id: int) -> AiRequest | None:
    """A worker's start on a request: taken once (`ai_request_start`), and finished as skipped with the
    reason when its feature cannot run for the conversation. None when there is nothing to make."""
    request = ai_request_start(request_id)
    if request is None:
        return None
    reason = unavailable_reason(request.conversation, request.kind)
    if reason:
        ai_request_finish(request, StepStatus.SKIPPED, reason)
        return None
    return request


def redacted_context(lines: list[str], conversation: Conversation) -> tuple[list[str], Redaction]:
    """The conversation's lines as a suggestion or summary call sends them: redacted unless the provider
    switched redaction off."""
    if not guards.ai_settings_for(conversation.provider).redact_pii:
        return lines, Redaction(text="", replacements={})
    return redact_all(lines)


def ai_request_finish(request: AiRequest, status: str, error: str = "") -> None:
    request.status, request.error, request.finished_at = status, error[:500], timezone.now()
    request.save(update_fields=["status", "error", "finished_at"])
