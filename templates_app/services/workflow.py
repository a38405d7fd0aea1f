"""
A template's life here, every step audited with who and when:

    draft -> in review (a user submits it) -> approved or rejected internally (by a user with the
    template-reviewer permission who neither wrote, edited nor submitted it; a rejection needs a reason)
    -> submitted to the provider (provider_submission.py) -> pending -> approved / rejected / paused /
    disabled / in appeal.

A template the provider refused outright (its submission_error set, no retry due) goes back to draft
with an edit or a withdrawal.

A draft or an internally rejected template is edited in place. Editing a template the provider has seen
(approved, rejected, paused, disabled) makes its next version, as a draft; an approved version stays
sendable until its successor is approved.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from core.locks import lock_key
from core.models import AuditLog
from templates_app.models import MessageTemplate
from templates_app.selectors import latest_version, template_account, templates_for
from templates_app.services.errors import TemplateWorkflowError
from templates_app.services.provider_submission import template_resubmit, template_submission_schedule
from templates_app.validation import TemplateInvalid, template_errors
from whatsapp.models import Provider
from whatsapp.providers import backend_class_for, backend_for
from whatsapp.providers.events import TemplateDefinition, TemplateManagement, TemplateStatus

AUTHORED_FIELDS = ("name", "language", "category", "parameter_format", "components", "examples")
EDITABLE_IN_PLACE = (TemplateStatus.DRAFT, TemplateStatus.INTERNALLY_REJECTED)
# What the provider has decided on: an edit becomes the next version.
EDITED_AS_NEW_VERSION = (TemplateStatus.APPROVED, TemplateStatus.REJECTED, TemplateStatus.PAUSED,
                         TemplateStatus.DISABLED)
REVIEW_PERMISSION = "templates_app.review_messagetemplate"


def _snapshot(template: MessageTemplate) -> dict[str, Any]:
    return {"status": template.status, "version": template.version}


def _transition(template: MessageTemplate, action: str, actor: Any, before: dict[str, Any],
                fields: list[str], **extra: Any) -> MessageTemplate:
    template.save(update_fields=[*fields, "updated_at"])
    audit_record(action=f"template.{action}", obj=template, actor=actor, before=before,
                 after={**_snapshot(template), **extra})
    return template


def _locked(template: MessageTemplate) -> MessageTemplate:
    """The template's row, locked for this transaction, as it is now (another request may have moved it)."""
    return MessageTemplate.objects.select_for_update(of=("self",)).select_related("provider").get(pk=template.pk)


def refused_by_provider(template: MessageTemplate) -> bool:
    """Approved internally, but the provider refused it for good: nothing more will happen on its own."""
    return (template.status == TemplateStatus.INTERNALLY_APPROVED and bool(template.submission_error)
            and template.next_submission_at is None)


def _require_status(template: MessageTemplate, allowed: tuple[str, ...], doing: str) -> None:
    if template.status not in allowed:
        raise TemplateWorkflowError(
            f"{template} is {template.get_status_display().lower()}; it can only be {doing} when it is "
            + " or ".join(TemplateStatus(status).label.lower() for status in allowed), code="wrong_status")


def _validate(fields: dict[str, Any], provider: Provider, version: int = 1) -> None:
    """WhatsApp's rules, then what the provider itself cannot take (e.g. a media header on Meta), so the
    author learns it on the form instead of after the review."""
    errors = template_errors(**{name: fields[name] for name in AUTHORED_FIELDS})
    if not errors:
        errors = backend_for(provider).template_problems(TemplateDefinition(
            **{name: fields[name] for name in AUTHORED_FIELDS}, version=version))
    if errors:
        raise TemplateInvalid(errors)


def _require_authoring(provider: Provider) -> None:
    management = backend_class_for(provider.kind).template_management
    if management != TemplateManagement.SUBMIT:
        label = backend_class_for(provider.kind).label
        raise TemplateWorkflowError(
            f"{label} templates are managed in {label} itself; they are imported by the template sync, "
            "not written here" if management == TemplateManagement.IMPORT
            else f"{label} has no WhatsApp templates", code="templates_managed_elsewhere")


VERSION_SUFFIX = re.compile(r"_v\d+$")


def _require_unique_name(provider: Provider, name: str, language: str, exclude_pk: int | None = None) -> None:
    # Later versions are <name>_v<N> at the provider: such a name could collide with one of them.
    if VERSION_SUFFIX.search(name):
        raise TemplateInvalid({"name": [f"a name ending in {VERSION_SUFFIX.search(name).group()} is kept for "
                                        "later versions of a template (<name>_v<N> at the provider); choose "
                                        "another"]})
    taken = templates_for(provider).filter(name=name, language=language).exclude(pk=exclude_pk)
    if taken.exists():
        raise TemplateInvalid({"name": [f"a template named {name!r} in {language} already exists for this "
                                        "business account; edit it to make a new version"]})


@transaction.atomic
def template_create(*, provider: Provider, actor: Any, **fields: Any) -> MessageTemplate:
    """A new template (version 1, a draft). Raises TemplateInvalid with every broken rule per field."""
    _require_authoring(provider)
    values = {name: fields.get(name, getattr(MessageTemplate, name).field.get_default()) for name in AUTHORED_FIELDS}
    _validate(values, provider)
    lock_key("template", *template_account(provider), values["name"], values["language"])
    _require_unique_name(provider, values["name"], values["language"])
    template = MessageTemplate.objects.create(provider=provider, created_by=_user(actor), **values)
    audit_record(action="template.created", obj=template, actor=actor, after=_snapshot(template))
    return template


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


@transaction.atomic
def template_edit(template: MessageTemplate, *, actor: Any, changes: dict[str, Any]) -> MessageTemplate:
    """
    Apply an author's changes. Returns the template that holds them: the same row for a draft or an
    internally rejected template (which goes back to draft), the next version for a template the
    provider has decided on. Raises TemplateWorkflowError while it is being reviewed or is at the provider.
    """
    template = _locked(template)
    if template.managed_elsewhere:
        raise TemplateWorkflowError(f"{template} is managed in {template.provider} itself; edit it there",
                                    code="templates_managed_elsewhere")
    unknown = sorted(set(changes) - set(AUTHORED_FIELDS))
    if unknown:
        raise TemplateWorkflowError(f"these fields cannot be edited: {', '.join(unknown)}", code="not_editable")
    values = {name: changes.get(name, getattr(template, name)) for name in AUTHORED_FIELDS}
    if template.status in EDITED_AS_NEW_VERSION:
        return _new_version(template, values, actor)
    if not refused_by_provider(template):
        _require_status(template, EDITABLE_IN_PLACE + EDITED_AS_NEW_VERSION, "edited")
    _validate(values, template.provider, template.version)
    if (values["name"], values["language"]) != (template.name, template.language):
        if template.version > 1:
            raise TemplateInvalid({"name": [f"version {template.version} keeps its template's name and language; "
                                            "create a new template for another name or language"]})
        _require_unique_name(template.provider, values["name"], values["language"], exclude_pk=template.pk)
    before = {**_snapshot(template), **{name: getattr(template, name) for name in AUTHORED_FIELDS}}
    for name, value in values.items():
        setattr(template, name, value)
    template.status, template.submission_error = TemplateStatus.DRAFT, ""
    return _transition(template, "edited", actor, before, [*AUTHORED_FIELDS, "status", "submission_error"],
                       **{name: values[name] for name in AUTHORED_FIELDS})


def _new_version(template: MessageTemplate, values: dict[str, Any], actor: Any) -> MessageTemplate:
    if (values["name"], values["language"]) != (template.name, template.language):
        raise TemplateInvalid({"name": ["a new version keeps its template's name and language; create a new "
                                        "template for another name or language"]})
    _validate(values, template.provider, template.version + 1)
    lock_key("template", *template_account(template.provider), template.name, template.language)
    latest = latest_version(template)
    if latest.pk != template.pk:
        status = latest.get_status_display().lower()
        raise TemplateWorkflowError(f"version {latest.version} of this template exists ({status}); edit that one",
                                    code="newer_version_exists")
    successor = MessageTemplate.objects.create(
        provider=template.provider, version=template.version + 1, status=TemplateStatus.DRAFT,
        created_by=_user(actor), **values)
    audit_record(action="template.version_created", obj=successor, actor=actor,
                 before={"version": template.version, "template_id": template.pk}, after=_snapshot(successor))
    return successor


@transaction.atomic
def template_submit_for_review(template: MessageTemplate, *, actor: Any) -> MessageTemplate:
    """draft (or internally rejected) -> in review. The template must pass validation first."""
    template = _locked(template)
    _require_status(template, EDITABLE_IN_PLACE, "submitted for review")
    _validate({name: getattr(template, name) for name in AUTHORED_FIELDS}, template.provider, template.version)
    before = _snapshot(template)
    template.status, template.submitted_by = TemplateStatus.IN_REVIEW, _user(actor)
    template.submitted_at = timezone.now()
    template.review_note = ""
    return _transition(template, "submitted_for_review", actor, before,
                       ["status", "submitted_by", "submitted_at", "review_note"])


@transaction.atomic
def template_withdraw(template: MessageTemplate, *, actor: Any) -> MessageTemplate:
    """in review -> draft, e.g. when its author wants to change it before anyone has reviewed it; also a
    template the provider refused outright, to be fixed."""
    template = _locked(template)
    if not refused_by_provider(template):
        _require_status(template, (TemplateStatus.IN_REVIEW,), "withdrawn from review")
    before = _snapshot(template)
    template.status = TemplateStatus.DRAFT
    return _transition(template, "withdrawn", actor, before, ["status"])


def template_authors(template: MessageTemplate) -> set[int]:
    """Everyone who wrote this version's content or submitted it: none of them may review it."""
    edited_by = AuditLog.objects.filter(
        object_type=template._meta.label, object_id=str(template.pk), actor__isnull=False,
        action__in=("template.created", "template.edited", "template.version_created"),
    ).values_list("actor_id", flat=True)
    return ({template.created_by_id, template.submitted_by_id} | set(edited_by)) - {None}


def review_version(template: MessageTemplate) -> str:
    """What a reviewer saw: it changes whenever the template goes back into review (after an edit)."""
    return template.submitted_at.isoformat() if template.submitted_at else ""


def _require_reviewer(template: MessageTemplate, reviewer: Any, doing: str, seen: str | None) -> None:
    if not (reviewer is not None and reviewer.is_authenticated and reviewer.has_perm(REVIEW_PERMISSION)):
        raise TemplateWorkflowError(f"only a template reviewer can {doing} templates", code="not_a_reviewer")
    if reviewer.pk in template_authors(template):
        raise TemplateWorkflowError(f"a reviewer cannot {doing} their own template (one they wrote, edited or "
                                    "submitted); ask another reviewer", code="own_template")
    if seen is not None and template.status == TemplateStatus.IN_REVIEW and seen != review_version(template):
        raise TemplateWorkflowError(f"{template} was changed and submitted again since you opened it; look at it "
                                    "again", code="changed_since_seen")


@transaction.atomic
def template_approve(template: MessageTemplate, *, reviewer: Any, seen: str | None = None) -> MessageTemplate:
    """in review -> approved internally, then on to the provider (submitted after the commit). `seen`: the
    review_version the reviewer looked at; a template submitted again since is refused."""
    template = _locked(template)
    _require_reviewer(template, reviewer, "approve", seen)
    _require_status(template, (TemplateStatus.IN_REVIEW,), "approved")
    before = _snapshot(template)
    template.status, template.reviewed_by, template.reviewed_at = (TemplateStatus.INTERNALLY_APPROVED, reviewer,
                                                                   timezone.now())
    template.review_note = ""
    _transition(template, "approved_internally", reviewer, before,
                ["status", "reviewed_by", "reviewed_at", "review_note"])
    template_submission_schedule(template)
    return template


@transaction.atomic
def template_reject(template: MessageTemplate, *, reviewer: Any, reason: str,
                    seen: str | None = None) -> MessageTemplate:
    """in review -> rejected internally, with the reviewer's reason (required); its author edits it again."""
    reason = (reason or "").strip()
    template = _locked(template)
    _require_reviewer(template, reviewer, "reject", seen)
    if not reason:
        raise TemplateWorkflowError("a rejection needs a reason, for the template's author", code="reason_required")
    _require_status(template, (TemplateStatus.IN_REVIEW,), "rejected")
    before = _snapshot(template)
    template.status, template.reviewed_by, template.reviewed_at = (TemplateStatus.INTERNALLY_REJECTED, reviewer,
                                                                   timezone.now())
    template.review_note = reason
    return _transition(template, "rejected_internally", reviewer, before,
                       ["status", "reviewed_by", "reviewed_at", "review_note"], reason=reason)


@transaction.atomic
def template_delete(template: MessageTemplate, *, actor: Any) -> None:
    """Only a template the provider never saw can be deleted (the others are history, and may be in use)."""
    template = _locked(template)
    _require_status(template, (TemplateStatus.DRAFT, TemplateStatus.INTERNALLY_REJECTED), "deleted")
    if template.provider_template_id or template.messages.exists():
        raise TemplateWorkflowError(f"{template} has been at the provider or in messages; it is kept as history",
                                    code="in_use")
    audit_record(action="template.deleted", obj=template, actor=actor, before=_snapshot(template))
    template.delete()


def template_submit_next(template: MessageTemplate, *, actor: Any) -> MessageTemplate:
    """Move the template on to whoever looks at it next: a draft to review; a template approved internally
    whose submission failed to the provider again."""
    if template.status == TemplateStatus.INTERNALLY_APPROVED:
        return template_resubmit(template, actor=actor)
    return template_submit_for_review(template, actor=actor)
