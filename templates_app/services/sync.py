"""
Keeping our templates in step with the provider's: status webhooks (template_status_apply) and the sync
job (templates_sync), which also imports templates created on the provider's side and reconciles
submissions whose outcome was never recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from core.access import scoped
from core.audit import audit_record
from core.locks import lock_key, try_session_lock
from templates_app.models import MessageTemplate
from templates_app.selectors import AT_PROVIDER, template_account, templates_for
from templates_app.services.provider_submission import template_provider_status_set, template_submission_schedule
from whatsapp.models import Provider
from whatsapp.providers import backend_class_for, backend_for
from whatsapp.providers.base import ProviderError
from whatsapp.providers.events import RemoteTemplate, TemplateManagement, TemplateStatus, TemplateStatusUpdate

logger = logging.getLogger(__name__)

# A submission still marked "submitted" this long after it went out lost its answer (a worker died
# mid-call); when the provider does not list it either, it goes back to be submitted again.
SUBMISSION_ANSWER_LOST_AFTER = timedelta(minutes=10)


def _at_provider(provider: Provider):
    return templates_for(provider).filter(status__in=AT_PROVIDER)


def _find(provider: Provider, provider_template_id: str, name: str, language: str) -> MessageTemplate | None:
    """The version a provider's report is about: the newest one the provider has seen, by the provider's
    id first, else by name and language. A version whose submission timed out (back to internally
    approved, its provider name kept) counts: the provider may have created it after all."""
    candidates = templates_for(provider).filter(
        Q(status__in=AT_PROVIDER) | Q(status=TemplateStatus.INTERNALLY_APPROVED) & ~Q(provider_template_name=""),
    ).order_by("-version")
    if provider_template_id:
        found = candidates.filter(provider_template_id=provider_template_id).first()
        if found is not None:
            return found
    if not name:
        return None
    return candidates.filter(Q(provider_template_name=name) | Q(name=name, provider_template_name=""),
                             language=language).first()


def template_status_apply(*, provider: Provider, event: TemplateStatusUpdate) -> int:
    """Record a status webhook's verdict (status, reason, quality, category) on the version it is about.
    Returns how many templates it updated."""
    template = _find(provider, event.provider_template_id, event.name, event.language)
    if template is None:
        return 0
    changed = template_provider_status_set(
        template, event.status, provider_template_id=event.provider_template_id, reason=event.reason,
        recommendation=event.recommendation, quality=event.quality, category=event.category,
        actor_label=f"{provider.kind} webhook")
    return int(changed)


@dataclass
class SyncReport:
    provider: str
    imported: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: str = ""
    # Why it was skipped: "busy" (another run holds the account's lock) or "unsupported" (no templates).
    skip_code: str = ""
    error: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.imported or self.updated or self.requeued)

    def summary(self) -> str:
        if self.skipped:
            return f"{self.provider}: skipped ({self.skipped})"
        if self.error:
            return f"{self.provider}: failed ({self.error})"
        parts = [f"{len(self.imported)} imported", f"{len(self.updated)} updated", f"{self.unchanged} unchanged"]
        parts += [f"{len(items)} {label}" for items, label in (
            (self.missing, "not listed by the provider"), (self.conflicts, "name conflicts"),
            (self.requeued, "submissions to send again"), (self.failed, "could not be recorded")) if items]
        return f"{self.provider}: " + ", ".join(parts)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "summary": self.summary()}


def templates_sync(provider: Provider, *, actor: object = None) -> SyncReport:
    """
    Read every template the provider holds and bring ours in line. Only one sync per business account
    runs at a time (a session-level advisory lock): a second one returns at once, marked skipped, without
    calling the provider. No transaction is open while the provider is called; each listed template is
    recorded in a transaction of its own, so one failure does not undo the others, and a report newer
    than the listing (a webhook meanwhile) is not overwritten.
    """
    report = SyncReport(provider=str(provider))
    provider_class = backend_class_for(provider.kind)
    if provider_class.template_management == TemplateManagement.NONE:
        report.skipped, report.skip_code = f"{provider_class.label} has no WhatsApp templates", "unsupported"
        return report
    with try_session_lock("templates-sync", *template_account(provider)) as locked:
        if not locked:
            report.skipped, report.skip_code = "another sync of this business account is running", "busy"
            return report
        listed_at = timezone.now()
        try:
            remote = backend_for(provider).list_templates()
        except ProviderError as exc:
            report.error = str(exc)
        else:
            _reconcile(provider, remote, report, listed_at)
        # A scheduled run that changed nothing leaves no trace (it runs every few minutes).
        if actor is not None or report.changed or report.error:
            audit_record(action="templates.synced", obj=provider, actor=actor,
                         actor_label="" if actor else "template sync job", after=report.as_dict())
    logger.info("templates synced", extra={"provider": provider.pk, "summary": report.summary()})
    return report


def _reconcile(provider: Provider, remote: list[RemoteTemplate], report: SyncReport, listed_at) -> None:
    seen: set[int] = set()
    for item in remote:
        try:
            with transaction.atomic():
                _reconcile_one(provider, item, report, listed_at, seen)
        except DatabaseError as exc:
            report.failed.append(f"{item.name} [{item.language}]: {type(exc).__name__}")
            logger.warning("template sync could not record a template", exc_info=True,
                           extra={"provider": provider.pk, "template": item.name})
    with transaction.atomic():
        _after_listing(provider, seen, timezone.now(), report)


def _reconcile_one(provider: Provider, item: RemoteTemplate, report: SyncReport, listed_at, seen: set[int]) -> None:
    lock_key("template", *template_account(provider), item.name, item.language)
    template = _find(provider, item.provider_template_id, item.name, item.language)
    if template is None:
        imports = backend_class_for(provider.kind).template_management == TemplateManagement.IMPORT
        imported = _import_or_conflict(provider, item, imports, report)
        if imported is not None:
            seen.add(imported.pk)
        return
    seen.add(template.pk)
    changed = template_provider_status_set(
        template, item.status, provider_template_id=item.provider_template_id, reason=item.reason,
        recommendation=item.recommendation, quality=item.quality, category=item.category,
        unless_changed_since=listed_at, actor_label=f"{provider.kind} sync")
    if template.managed_elsewhere:
        changed = _mirror_content(template, item) or changed
    if changed:
        report.updated.append(str(template))
    else:
        report.unchanged += 1


def _import_or_conflict(provider: Provider, item: RemoteTemplate, imports: bool,
                        report: SyncReport) -> MessageTemplate | None:
    Category = MessageTemplate.Category
    local = templates_for(provider).filter(Q(name=item.name) | Q(provider_template_name=item.name),
                                           language=item.language).order_by("-version").first()
    if local is not None:
        # A draft here with the name of a template made on the provider's side: the submission would fail.
        report.conflicts.append(f"{item.name} [{item.language}]: exists at the provider and is "
                                f"{local.get_status_display().lower()} here")
        return None
    template = MessageTemplate.objects.create(
        provider=provider, name=item.name, language=item.language,
        category=item.category if item.category in Category.values else Category.UTILITY,
        parameter_format=item.parameter_format or MessageTemplate.ParameterFormat.POSITIONAL,
        components=item.components, examples=item.examples, status=item.status,
        provider_template_id=item.provider_template_id, rejection_reason=item.reason,
        provider_recommendation=item.recommendation, quality=item.quality, managed_elsewhere=imports,
        approved_at=timezone.now() if item.status == TemplateStatus.APPROVED else None, synced_at=timezone.now())
    audit_record(action="template.imported", obj=template, actor_label=f"{provider.kind} sync",
                 after={"status": template.status, "provider_template_id": template.provider_template_id})
    report.imported.append(str(template))
    return template


def _mirror_content(template: MessageTemplate, item: RemoteTemplate) -> bool:
    """A template managed in the provider's own tool is a read-only copy: keep its content current."""
    content = {"components": item.components, "examples": item.examples,
               "parameter_format": item.parameter_format or template.parameter_format}
    if all(getattr(template, name) == value for name, value in content.items()):
        return False
    MessageTemplate.objects.filter(pk=template.pk).update(**content, updated_at=timezone.now())
    return True


def _after_listing(provider: Provider, seen: set[int], now, report: SyncReport) -> None:
    at_provider = _at_provider(provider)
    at_provider.filter(pk__in=seen).update(synced_at=now)
    if not backend_class_for(provider.kind).lists_templates:
        return  # it holds no list: nothing can be missing from it
    # A superseded version may leave the provider's list (deleted there) without being missed.
    for template in at_provider.exclude(pk__in=seen).exclude(
            status=TemplateStatus.SUPERSEDED).select_related("provider"):
        if template.status == TemplateStatus.SUBMITTED and template.sent_to_provider_at and (
                template.sent_to_provider_at < now - SUBMISSION_ANSWER_LOST_AFTER):
            _submission_lost(template)
            report.requeued.append(str(template))
        elif template.provider_template_id and template.status != TemplateStatus.SUBMITTED:
            report.missing.append(str(template))


def _submission_lost(template: MessageTemplate) -> None:
    MessageTemplate.objects.filter(pk=template.pk).update(
        status=TemplateStatus.INTERNALLY_APPROVED,
        submission_error="the provider never answered the submission and does not list the template; "
                         "it is submitted again")
    audit_record(action="template.submission_lost", obj=template, actor_label="template sync job",
                 before={"status": TemplateStatus.SUBMITTED}, after={"status": TemplateStatus.INTERNALLY_APPROVED})
    template.refresh_from_db()
    template_submission_schedule(template)


def templates_sync_all(*, actor: object = None) -> list[SyncReport]:
    """One sync per business account among the active providers that have templates (the beat job, or
    a user's "sync everything", over the numbers they may see)."""
    reports, accounts = [], set()
    # A user's "sync everything" covers the numbers of their teams (the beat job, with no actor, all of them).
    for provider in scoped(Provider.objects.filter(is_active=True), actor).order_by("pk"):
        if backend_class_for(provider.kind).template_management == TemplateManagement.NONE:
            continue
        account = template_account(provider)
        if account in accounts:
            continue
        accounts.add(account)
        reports.append(templates_sync(provider, actor=actor))
    return reports

