"""
Sending an internally approved template to its provider, and recording what the provider decides.

The approval commits first with a due time (next_submission_at); the submission task runs after the
commit, and a beat job hands back any due submission whose task was lost (broker down, worker killed).
A refused submission keeps the template approved internally with the provider's reason in
`submission_error`; a transient failure is retried with backoff up to SUBMISSION_MAX_ATTEMPTS.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import audit_record
from core.queueing import publish_on_commit, task_named
from templates_app.models import MessageTemplate
from templates_app.selectors import versions_of
from templates_app.services.errors import TemplateWorkflowError
from whatsapp.providers import backend_for
from whatsapp.providers.base import ProviderError
from whatsapp.providers.events import TemplateDefinition, TemplateStatus

logger = logging.getLogger(__name__)

SUBMISSION_MAX_ATTEMPTS = 8
# A task that has not finished this long after it was due is taken as lost and handed out again.
SUBMISSION_STALE_AFTER = timedelta(minutes=2)


def template_submission_schedule(template: MessageTemplate, *, delay: timedelta = timedelta(0)) -> None:
    """Make the submission due (inside the caller's transaction) and enqueue it after the commit."""
    template_submit_task = task_named("templates_app.tasks.template_submit_task")

    template.next_submission_at = timezone.now() + delay
    template.save(update_fields=["next_submission_at", "updated_at"])
    if not delay:
        publish_on_commit(lambda: template_submit_task.delay(template.pk), what=f"template {template.pk} submission")


@transaction.atomic
def template_resubmit(template: MessageTemplate, *, actor: Any) -> MessageTemplate:
    """Try again now, e.g. after fixing the provider's credentials (attempts start over)."""
    template = MessageTemplate.objects.select_for_update().get(pk=template.pk)
    if template.status != TemplateStatus.INTERNALLY_APPROVED:
        raise TemplateWorkflowError(f"{template} is {template.get_status_display().lower()}; only a template "
                                    "approved internally is sent to the provider", code="wrong_status")
    template.submission_attempts = 0
    template.save(update_fields=["submission_attempts", "updated_at"])
    audit_record(action="template.resubmitted", obj=template, actor=actor,
                 before={"submission_error": template.submission_error})
    template_submission_schedule(template)
    return template


def template_definition(template: MessageTemplate) -> TemplateDefinition:
    return TemplateDefinition(
        name=template.name, language=template.language, category=template.category,
        parameter_format=template.parameter_format, components=list(template.components or []),
        examples=dict(template.examples or {}), version=template.version)


def template_submit(template_id: int) -> str:
    """
    The submission task's body. Marks the template submitted (only one worker can), calls the provider
    outside any transaction, then records the answer. Returns what happened, for the task's result.
    """
    claimed = MessageTemplate.objects.filter(pk=template_id, status=TemplateStatus.INTERNALLY_APPROVED).update(
        status=TemplateStatus.SUBMITTED, sent_to_provider_at=timezone.now(), updated_at=timezone.now())
    if not claimed:
        return "not due"
    template = MessageTemplate.objects.select_related("provider").get(pk=template_id)
    definition = template_definition(template)
    # Kept before the call: a sync finds the template by this name if the provider's answer is lost.
    template.provider_template_name = definition.remote_name
    template.save(update_fields=["provider_template_name"])
    audit_record(action="template.sent_to_provider", obj=template, actor_label="submission task",
                 before={"status": TemplateStatus.INTERNALLY_APPROVED}, after={"status": template.status})
    try:
        submission = backend_for(template.provider).submit_template(definition)
    except ProviderError as exc:
        return _submission_failed(template, exc)
    MessageTemplate.objects.filter(pk=template.pk).update(next_submission_at=None, submission_error="",
                                                          submission_attempts=template.submission_attempts + 1)
    # A status webhook may have overtaken the answer (Meta reports soon after creating): it wins.
    overtaken = not MessageTemplate.objects.filter(pk=template.pk, status=TemplateStatus.SUBMITTED).exists()
    template_provider_status_set(template, "" if overtaken else submission.status,
                                 provider_template_id=submission.provider_template_id, reason=submission.reason,
                                 actor_label=f"{template.provider.kind} submission")
    return submission.status


def _submission_failed(template: MessageTemplate, exc: ProviderError) -> str:
    attempts = template.submission_attempts + 1
    again = exc.retryable and attempts < SUBMISSION_MAX_ATTEMPTS
    # Backoff 1, 2, 4 ... minutes, at most an hour (or when the provider said).
    delay = timedelta(seconds=exc.retry_after or min(60 * 2 ** (attempts - 1), 3600))
    error = str(exc) + ("" if again else (" (gave up after retrying; use 'submit to the provider again')"
                                          if exc.retryable else ""))
    # Only while still submitted: a timeout may hide a creation that a webhook or the sync reported since.
    reverted = MessageTemplate.objects.filter(pk=template.pk, status=TemplateStatus.SUBMITTED).update(
        status=TemplateStatus.INTERNALLY_APPROVED, submission_error=error, submission_attempts=attempts,
        next_submission_at=timezone.now() + delay if again else None, updated_at=timezone.now())
    if not reverted:
        return f"overtaken: {exc.code}"
    audit_record(action="template.submission_failed", obj=template, actor_label=f"{template.provider.kind} submission",
                 before={"status": TemplateStatus.SUBMITTED},
                 after={"status": TemplateStatus.INTERNALLY_APPROVED, "error": error, "code": exc.code,
                        "retry": again})
    logger.warning("template submission failed", extra={"template": template.pk, "error_code": exc.code,
                                                         "retry": again})
    return f"failed: {exc.code}"


def templates_submit_due() -> int:
    """Hand back submissions that are due and not running (their task was lost, or a retry is due)."""
    template_submit_task = task_named("templates_app.tasks.template_submit_task")

    now = timezone.now()
    # A first submission is enqueued on commit: it is only handed back once it looks lost. A retry has
    # no task waiting: it is handed out when due.
    lost = Q(submission_attempts=0, next_submission_at__lte=now - SUBMISSION_STALE_AFTER)
    retry = Q(submission_attempts__gt=0, next_submission_at__lte=now)
    due = list(MessageTemplate.objects.filter(lost | retry, status=TemplateStatus.INTERNALLY_APPROVED)
               .values_list("pk", flat=True)[:100])
    for pk in due:
        template_submit_task.delay(pk)
    return len(due)


@transaction.atomic
def template_provider_status_set(template: MessageTemplate, status: str, *, actor_label: str,
                                 provider_template_id: str = "", reason: str = "", recommendation: str = "",
                                 quality: str = "", category: str = "",
                                 unless_changed_since: datetime | None = None) -> bool:
    """
    Record the provider's word on a template (from a submission answer, a status webhook or the sync
    job). `unless_changed_since`: the time the word was read (the sync's listing); a template whose
    status changed after it (a webhook meanwhile) keeps its newer status, and only a missing provider id
    is taken. Approval supersedes the earlier approved (or paused) versions: a successor takes over only
    once approved. Returns whether anything changed.
    """
    template = MessageTemplate.objects.select_for_update().get(pk=template.pk)
    before = {"status": template.status, "quality": template.quality, "category": template.category,
              "reason": template.rejection_reason}
    if unless_changed_since and template.provider_status_at and template.provider_status_at > unless_changed_since:
        status = reason = recommendation = quality = category = ""
    changes: dict[str, Any] = {}
    # A superseded version stays superseded: Twilio keeps an old version's Content approved, and the
    # sync must not bring it back beside its successor.
    if status and status not in (TemplateStatus.UNKNOWN, template.status) and (
            template.status != TemplateStatus.SUPERSEDED):
        changes.update(status=status, provider_status_at=timezone.now())
        if template.status in (TemplateStatus.INTERNALLY_APPROVED, TemplateStatus.SUBMITTED):
            # The provider has it (a lost answer adopted by the sync): nothing left to submit.
            changes.update(next_submission_at=None, submission_error="")
        if status == TemplateStatus.APPROVED:
            changes["approved_at"] = timezone.now()
        if status in (TemplateStatus.APPROVED, TemplateStatus.PENDING):
            changes.update(rejection_reason="", provider_recommendation="")
    if provider_template_id and not template.provider_template_id:
        changes["provider_template_id"] = provider_template_id
    if reason and reason != template.rejection_reason:
        changes["rejection_reason"] = reason
    if recommendation and recommendation != template.provider_recommendation:
        changes["provider_recommendation"] = recommendation
    if quality and quality != template.quality:
        changes["quality"] = quality
    if category in MessageTemplate.Category.values and category != template.category:
        changes["category"] = category
    if not changes:
        return False
    for name, value in changes.items():
        setattr(template, name, value)
    template.save(update_fields=[*changes, "updated_at"])
    audit_record(action="template.provider_update", obj=template, actor_label=actor_label, before=before,
                 after={"status": template.status, "quality": template.quality, "category": template.category,
                        "reason": template.rejection_reason, "recommendation": template.provider_recommendation})
    if changes.get("status") == TemplateStatus.APPROVED:
        _supersede_earlier_versions(template, actor_label)
    return True


def _supersede_earlier_versions(template: MessageTemplate, actor_label: str) -> None:
    earlier = versions_of(template).filter(version__lt=template.version,
                                           status__in=(TemplateStatus.APPROVED, TemplateStatus.PAUSED))
    for old in earlier.select_for_update(of=("self",)):
        before = {"status": old.status}
        old.status = TemplateStatus.SUPERSEDED
        old.save(update_fields=["status", "updated_at"])
        audit_record(action="template.superseded", obj=old, actor_label=actor_label, before=before,
                     after={"status": old.status, "by_version": template.version})
