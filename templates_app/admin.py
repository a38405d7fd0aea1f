"""
Templates in the admin: the list (with usage figures and a sync button), the authoring page (a form per
part, WhatsApp's rules shown on the field they are about, a live preview), the workflow buttons, the
history of versions with a diff, the audit trail, and the "Templates awaiting review" screen.

Every change goes through the workflow, sync and submission services, which check what is allowed and
write the audit entries; the admin only shows their answers. So these admins do not extend
AuditedModelAdmin: its entries would repeat the services' own.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import truncatechars
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST

from contacts.services.mapping import user_label
from core.admin.base import pretty_json
from core.models import AuditLog
from templates_app.forms import RejectForm, TemplateForm
from templates_app.models import MessageTemplate, TemplateAwaitingReview
from templates_app.preview import TemplatePreview, template_preview
from templates_app.selectors import awaiting_review, latest_version, usage_of, versions_of, with_usage
from templates_app.services.provider_submission import template_resubmit
from templates_app.services.sync import templates_sync_all
from templates_app.services.versions import template_diff
from templates_app.services.workflow import (
    EDITABLE_IN_PLACE,
    EDITED_AS_NEW_VERSION,
    REVIEW_PERMISSION,
    TemplateWorkflowError,
    refused_by_provider,
    review_version,
    template_approve,
    template_authors,
    template_create,
    template_delete,
    template_edit,
    template_reject,
    template_submit_for_review,
    template_withdraw,
)
from templates_app.validation import TemplateInvalid
from whatsapp.admin_filters import ProviderNameFilter
from whatsapp.providers.events import TemplateStatus

AUDIT_ROWS_SHOWN = 200
DIFF_CSS = {" ": "tpl-diff-same", "-": "tpl-diff-del", "+": "tpl-diff-add"}
# The audit log names the model a service saved; the review screen's proxy rows are the same templates.
AUDIT_TYPES = [MessageTemplate._meta.label, TemplateAwaitingReview._meta.label]


def _when(moment) -> str:
    return date_format(localtime(moment), "SHORT_DATETIME_FORMAT") if moment else ""


def _who(user) -> str:
    return user_label(user) if user is not None else ""


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _refusal(exc: Exception) -> str:
    return str(exc).rstrip(".") + "."


def _body_text(template: MessageTemplate) -> str:
    """The body with the template's example values filled in, as a reviewer first reads it."""
    return template_preview(template.components, template.examples).body




class TemplateMedia:
    class Media:
        css = {"all": ["templates_app/template_admin.css"]}
        js = ["templates_app/template_preview.js"]


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                              require_https=request.is_secure())
    return target if allowed else ""


@admin.register(MessageTemplate)
class MessageTemplateAdmin(TemplateMedia, admin.ModelAdmin):
    form = TemplateForm
    list_display = ["name", "language", "version", "category", "status", "provider_name", "sends", "delivered_rate",
                    "read_rate", "failed_rate", "updated_at"]
    list_filter = ["status", "category", "language", ProviderNameFilter, "managed_elsewhere"]
    search_fields = ["name", "provider_template_id"]
    actions = ["submit_for_review"]
    # A read-only template: its stored fields as they are.
    view_fieldsets = [
        (None, {"fields": ["provider", "name", "language", "version", "category", "parameter_format", "status",
                           "managed_elsewhere"]}),
        ("Content", {"fields": ["pretty_components", "pretty_examples"]}),
    ]

    # --- what may be edited --------------------------------------------------------------------------

    @staticmethod
    def edit_mode(template: MessageTemplate | None) -> str:
        """"add", "in_place" (a draft or internally rejected), "new_version" (the provider decided on it:
        saving makes the next version) or "" (read-only: being reviewed, at the provider, managed elsewhere,
        or a later version exists)."""
        if template is None:
            return "add"
        if not hasattr(template, "_edit_mode"):
            mode = ""
            if not template.managed_elsewhere and template.status in EDITABLE_IN_PLACE:
                mode = "in_place"
            elif (not template.managed_elsewhere and template.status in EDITED_AS_NEW_VERSION
                  and latest_version(template).pk == template.pk):
                mode = "new_version"
            template._edit_mode = mode
        return template._edit_mode

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and (obj is None or bool(self.edit_mode(obj)))

    def has_delete_permission(self, request, obj=None):
        # Only a template the provider never saw (the workflow service also checks it was never sent).
        allowed = obj is None or (obj.status in EDITABLE_IN_PLACE and not obj.managed_elsewhere)
        return super().has_delete_permission(request, obj) and allowed

    def may_author(self, request) -> bool:
        return super().has_change_permission(request)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, through the workflow service
        return actions

    def get_fieldsets(self, request, obj=None):
        mode = self.edit_mode(obj)
        if not mode or not self.may_author(request):
            return self.view_fieldsets
        first = ["provider", "name", "language", "category", "parameter_format"]
        if obj is not None:
            first += ["version", "status"]
        return [(None, {"fields": first}),
                ("Content", {"fields": ["header_format", "header_text", "body_text", "footer_text", "buttons",
                                        "examples"],
                             "description": "Write the parts; the preview shows them with the example values."})]

    def get_readonly_fields(self, request, obj=None):
        mode = self.edit_mode(obj)
        if mode == "add":
            return []
        if mode == "in_place":
            return ["provider", "version", "status"]
        if mode == "new_version":
            return ["provider", "name", "language", "version", "status"]
        return flatten_fieldsets(self.view_fieldsets)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.service_errors = getattr(request, "_template_refusal", {})
        return form

    # --- the list ------------------------------------------------------------------------------------

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("provider").defer("provider__credentials")
        return with_usage(queryset)

    @admin.display(description="Provider", ordering="provider__name")
    def provider_name(self, obj):
        return obj.provider.name

    @admin.display(description="Sends", ordering="sends_count")
    def sends(self, obj):
        return obj.sends_count

    @admin.display(description="Delivered")
    def delivered_rate(self, obj):
        return _percent(usage_of(obj).delivered_rate)

    @admin.display(description="Read")
    def read_rate(self, obj):
        return _percent(usage_of(obj).read_rate)

    @admin.display(description="Failed")
    def failed_rate(self, obj):
        return _percent(usage_of(obj).failed_rate)

    @admin.display(description="Components")
    def pretty_components(self, obj):
        return pretty_json(obj.components)

    @admin.display(description="Example values")
    def pretty_examples(self, obj):
        return pretty_json(obj.examples)

    def changelist_view(self, request, extra_context=None):
        context = {"awaiting_count": awaiting_review().count(),
                   "can_sync": self.may_author(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    @admin.action(description="Submit for review", permissions=["change"])
    def submit_for_review(self, request, queryset):
        submitted = 0
        for template in queryset:
            try:
                template_submit_for_review(template, actor=request.user)
            except (TemplateWorkflowError, TemplateInvalid) as refusal:
                self.message_user(request, f"{template}: not submitted: {_refusal(refusal)}", messages.ERROR)
            else:
                submitted += 1
        if submitted:
            self.message_user(request, f"{submitted} template(s) submitted for review.", messages.SUCCESS)

    # --- saving: through the workflow service ----------------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except TemplateInvalid as invalid:
            # Refused after the form's own checks (e.g. a name taken on another number of the account): the
            # transaction is rolled back; show the form again with the service's messages on its fields.
            request._template_refusal = invalid.errors
        except TemplateWorkflowError as refusal:
            if object_id is not None:
                self.message_user(request, f"Not saved: {_refusal(refusal)}", messages.ERROR)
                return redirect("admin:templates_app_messagetemplate_change", unquote(object_id))
            field = "provider" if refusal.code == "templates_managed_elsewhere" else "components"
            request._template_refusal = {field: [str(refusal)]}
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if not change:
            saved = template_create(provider=form.cleaned_data["provider"], actor=request.user,
                                    **form.authored_values())
        else:
            saved = template_edit(obj, actor=request.user, changes=form.changes())
        if saved.pk != obj.pk:
            request._template_successor = saved
            return
        # Django's messages and redirects read the object it passed in: make it the saved row.
        for field in MessageTemplate._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        pass  # no related rows are edited here

    def response_change(self, request, obj):
        successor = getattr(request, "_template_successor", None)
        if successor is None:
            return super().response_change(request, obj)
        still = (f"stays sendable until version {successor.version} is approved"
                 if obj.status == TemplateStatus.APPROVED else f"stays {obj.get_status_display().lower()}")
        self.message_user(request, f"Saved as version {successor.version} of {obj.name} [{obj.language}], a draft: "
                                   f"submit it for review when it is ready. Version {obj.version} {still}.",
                          messages.SUCCESS)
        return redirect("admin:templates_app_messagetemplate_change", successor.pk)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except TemplateWorkflowError as refusal:
            self.message_user(request, f"Not deleted: {_refusal(refusal)}", messages.ERROR)
            return redirect("admin:templates_app_messagetemplate_change", unquote(object_id))

    def delete_model(self, request, obj):
        template_delete(obj, actor=request.user)

    # --- the change page -------------------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        context = {"preview": TemplatePreview(), "live_preview": True, **(extra_context or {})}
        return super().add_view(request, form_url, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        template = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if template is not None and self.has_view_or_change_permission(request, template):
            context.update(self.template_context(request, template))
        return super().change_view(request, object_id, form_url, context)

    def template_context(self, request, template: MessageTemplate) -> dict[str, Any]:
        mode = self.edit_mode(template)
        editable = bool(mode) and self.may_author(request)
        return {
            "preview": template_preview(template.components, template.examples),
            "live_preview": editable,
            "edit_notice": self.edit_notice(template, mode, editable),
            "workflow_facts": self.workflow_facts(template),
            "workflow_buttons": self.workflow_buttons(request, template),
            "usage": self.usage_panel(template),
            **self.history_panel(request, template),
            "audit_entries": list(AuditLog.objects.filter(object_type__in=AUDIT_TYPES, object_id=str(template.pk))
                                  .order_by("-created_at", "-id")[:AUDIT_ROWS_SHOWN]),
            "awaiting_count": awaiting_review().count(),
        }

    @staticmethod
    def edit_notice(template: MessageTemplate, mode: str, editable: bool) -> str:
        if mode == "new_version" and editable:
            return (f"This version is {template.get_status_display().lower()} at the provider. Saving does not "
                    f"change it: your edit becomes version {template.version + 1}, a draft"
                    + (f", and version {template.version} stays sendable until version {template.version + 1} "
                       "is approved." if template.status == TemplateStatus.APPROVED else "."))
        if mode == "in_place" and template.status == TemplateStatus.INTERNALLY_REJECTED and editable:
            return "Rejected internally: saving your changes makes it a draft again; then submit it for review."
        if template.managed_elsewhere:
            return (f"Managed in {template.provider.name}'s own tool and imported by the template sync: read-only "
                    "here; its status follows the provider's.")
        if not mode:
            latest = latest_version(template)
            if latest.pk != template.pk:
                return (f"Version {latest.version} of this template exists "
                        f"({latest.get_status_display().lower()}): edit that one.")
            return (f"{template.get_status_display()}: read-only while it is being reviewed or is at the provider; "
                    "editing becomes possible once the provider has decided.")
        return ""

    @staticmethod
    def workflow_facts(template: MessageTemplate) -> list[tuple[str, str]]:
        facts = [
            ("Status", template.get_status_display()),
            ("Version", str(template.version)),
            ("Author", _who(template.created_by)),
            ("Submitted for review", " ".join(filter(None, [_who(template.submitted_by),
                                                             _when(template.submitted_at)]))),
            ("Reviewed", " ".join(filter(None, [_who(template.reviewed_by), _when(template.reviewed_at)]))),
            ("Reviewer's note", template.review_note),
            ("Sent to the provider", _when(template.sent_to_provider_at)),
            ("Submission error", template.submission_error),
            ("Provider's template id", template.provider_template_id),
            ("Provider's reason", template.rejection_reason),
            ("Provider's recommendation", template.provider_recommendation),
            ("Quality", template.quality),
            ("Approved by the provider", _when(template.approved_at)),
            ("Last synced", _when(template.synced_at)),
        ]
        return [(label, value) for label, value in facts if value]

    def workflow_buttons(self, request, template: MessageTemplate) -> list[dict[str, str]]:
        """The steps that apply to this template and this user (the services still check each one)."""
        status, user = template.status, request.user
        url = lambda name: reverse(f"admin:templates_app_messagetemplate_{name}", args=[template.pk])  # noqa: E731
        buttons = []
        author = self.may_author(request) and not template.managed_elsewhere
        if author and status in EDITABLE_IN_PLACE:
            buttons.append({"label": "Submit for review", "url": url("submit_for_review"), "name": "submit"})
        if author and status == TemplateStatus.IN_REVIEW:
            buttons.append({"label": "Withdraw from review", "url": url("withdraw"), "name": "withdraw"})
        if author and refused_by_provider(template):
            buttons.append({"label": "Back to draft, to fix it", "url": url("withdraw"), "name": "withdraw"})
        if status == TemplateStatus.IN_REVIEW and user.has_perm(REVIEW_PERMISSION) and (
                user.pk not in template_authors(template)):
            # The version the reviewer is looking at: a template submitted again since is refused.
            seen = "?" + urlencode({"seen": review_version(template)})
            buttons.append({"label": "Approve", "url": url("approve") + seen, "name": "approve", "style": "default"})
            buttons.append({"label": "Reject…", "url": url("reject") + seen, "name": "reject", "method": "get"})
        if status == TemplateStatus.INTERNALLY_APPROVED and (author or user.has_perm(REVIEW_PERMISSION)):
            buttons.append({"label": f"Submit to {template.provider.name} again", "url": url("resubmit"),
                            "name": "resubmit"})
        return buttons

    @staticmethod
    def usage_panel(template: MessageTemplate) -> dict[str, Any]:
        usage = usage_of(template)
        return {"sends": usage.sends, "delivered": usage.delivered, "read": usage.read, "failed": usage.failed,
                "delivered_rate": _percent(usage.delivered_rate), "read_rate": _percent(usage.read_rate),
                "failed_rate": _percent(usage.failed_rate)}

    @staticmethod
    def history_panel(request, template: MessageTemplate) -> dict[str, Any]:
        versions = list(versions_of(template))
        older = [version for version in versions if version.version < template.version]
        chosen = request.GET.get("diff", "")
        other = next((v for v in versions if chosen.isdigit() and v.version == int(chosen)), None)
        other = other if other is not None and other.pk != template.pk else (older[0] if older else None)
        sections = []
        if other is not None:
            first, second = (other, template) if other.version < template.version else (template, other)
            sections = [{"section": section.section,
                         "lines": [(DIFF_CSS.get(marker, ""), marker, text) for marker, text in section.lines]}
                        for section in template_diff(first, second) if section.changed]
        return {"versions": versions, "diff_with": other, "diff_sections": sections,
                "diff_older": min(other.version, template.version) if other else None,
                "diff_newer": max(other.version, template.version) if other else None}

    # --- workflow steps (POST, CSRF-checked by admin_view) ----------------------------------------------

    def get_urls(self):
        def route(suffix, view, name, post_only=True):
            view = require_POST(view) if post_only else view
            return path(f"<int:template_id>/{suffix}/", self.admin_site.admin_view(view),
                        name=f"templates_app_messagetemplate_{name}")

        return [
            path("sync/", self.admin_site.admin_view(require_POST(self.sync_view)),
                 name="templates_app_messagetemplate_sync"),
            route("submit-for-review", self.submit_view, "submit_for_review"),
            route("withdraw", self.withdraw_view, "withdraw"),
            route("approve", self.approve_view, "approve"),
            route("reject", self.reject_view, "reject", post_only=False),
            route("resubmit", self.resubmit_view, "resubmit"),
            *super().get_urls(),
        ]

    def _template(self, request, template_id: int, *, author: bool = False) -> MessageTemplate:
        template = get_object_or_404(MessageTemplate.objects.select_related("provider"), pk=template_id)
        allowed = self.may_author(request) if author else self.has_view_or_change_permission(request)
        if not allowed:
            raise PermissionDenied
        return template

    def _back(self, request, template: MessageTemplate) -> HttpResponseRedirect:
        return HttpResponseRedirect(_safe_next(request)
                                    or reverse("admin:templates_app_messagetemplate_change", args=[template.pk]))

    def _step(self, request, template: MessageTemplate, step, done: str) -> HttpResponseRedirect:
        try:
            step(template)
        except (TemplateWorkflowError, TemplateInvalid) as refusal:
            self.message_user(request, f"{template}: {_refusal(refusal)}", messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return self._back(request, template)

    def submit_view(self, request, template_id):
        template = self._template(request, template_id, author=True)
        return self._step(request, template, lambda t: template_submit_for_review(t, actor=request.user),
                          f"{template} is in review: a template reviewer other than its author approves or "
                          "rejects it.")

    def withdraw_view(self, request, template_id):
        template = self._template(request, template_id, author=True)
        return self._step(request, template, lambda t: template_withdraw(t, actor=request.user),
                          f"{template} is withdrawn from review: a draft again.")

    def approve_view(self, request, template_id):
        template = self._template(request, template_id)
        seen = request.GET.get("seen")
        return self._step(request, template, lambda t: template_approve(t, reviewer=request.user, seen=seen),
                          f"{template} is approved internally and on its way to {template.provider.name}.")

    def resubmit_view(self, request, template_id):
        template = self._template(request, template_id)
        if not (self.may_author(request) or request.user.has_perm(REVIEW_PERMISSION)):
            raise PermissionDenied
        return self._step(request, template, lambda t: template_resubmit(t, actor=request.user),
                          f"{template} is being sent to {template.provider.name} again.")

    def reject_view(self, request, template_id):
        """Asks for the reason (required), then rejects through the workflow service."""
        template = self._template(request, template_id)
        form = RejectForm(request.POST if request.method == "POST" else None)
        seen = request.GET.get("seen")
        if form.is_valid():
            return self._step(request, template,
                              lambda t: template_reject(t, reviewer=request.user, reason=form.cleaned_data["reason"],
                                                        seen=seen),
                              f"{template} is rejected internally; its author sees your reason on its page.")
        context = {**self.admin_site.each_context(request), "title": f"Reject {template}", "opts": self.opts,
                   "form": form, "template": template, "next": _safe_next(request),
                   "preview": template_preview(template.components, template.examples),
                   "action_url": reverse("admin:templates_app_messagetemplate_reject", args=[template.pk])
                   + ("?" + urlencode({"seen": seen}) if seen is not None else "")}
        return render(request, "admin/templates_app/messagetemplate/reject.html", context)

    def sync_view(self, request):
        """Read every provider's templates now (the beat job does it every TEMPLATE_SYNC_INTERVAL_SECONDS)."""
        if not self.may_author(request):
            raise PermissionDenied
        reports = templates_sync_all(actor=request.user)
        for report in reports:
            level = messages.WARNING if report.skipped or report.error else messages.SUCCESS
            self.message_user(request, report.summary(), level)
        if not reports:
            self.message_user(request, "No active provider keeps templates: nothing to sync.", messages.WARNING)
        return redirect("admin:templates_app_messagetemplate_changelist")


# --- the review screen ---------------------------------------------------------------------------------

@admin.register(TemplateAwaitingReview)
class TemplateAwaitingReviewAdmin(TemplateMedia, admin.ModelAdmin):
    """The templates in internal review, oldest submission first, with approve and reject on each row."""

    list_display_links = None
    list_filter = [ProviderNameFilter]
    search_fields = ["name"]
    ordering = ["submitted_at", "pk"]
    sortable_by = ["submitted_at"]
    actions = ["approve_selected", "reject_selected"]
    show_full_result_count = False

    def get_queryset(self, request):
        return awaiting_review()

    # Whoever may see templates sees the queue; only reviewers act on it (the groups grant permissions on
    # MessageTemplate, none on this proxy).
    def has_view_permission(self, request, obj=None):
        user = request.user
        return any(user.has_perm(f"templates_app.{codename}") for codename in
                   ("view_messagetemplate", "change_messagetemplate", "review_messagetemplate"))

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_review_permission(self, request):
        return request.user.has_perm(REVIEW_PERMISSION)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return redirect("admin:templates_app_messagetemplate_change", unquote(object_id))

    def changelist_view(self, request, extra_context=None):
        title = "Templates awaiting review: approve each (it goes on to its provider) or reject it with a reason"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def get_list_display(self, request):
        reviewer = request.user.has_perm(REVIEW_PERMISSION)

        @admin.display(description="Review")
        def review(obj):
            if not reviewer:
                return "—"
            if request.user.pk in {obj.created_by_id, obj.submitted_by_id}:
                return format_html('<span class="tpl-own">{}</span>', "your template: another reviewer decides")
            approve = reverse("admin:templates_app_messagetemplate_approve", args=[obj.pk])
            reject = reverse("admin:templates_app_messagetemplate_reject", args=[obj.pk])
            # Inside the list's own form (forms cannot nest): the button posts that form, CSRF token
            # included, to the approve URL instead.
            # `seen`: the version on screen; if its author resubmits it meanwhile, the click is refused.
            query = urlencode({"next": request.get_full_path(), "seen": review_version(obj)})
            return format_html('<button type="submit" class="button tpl-approve" formaction="{}?{}">Approve'
                               '</button> <a class="button tpl-reject" href="{}?{}">Reject…</a>',
                               approve, query, reject, query)

        return ["template_link", review, "language", "version", "provider_name", "author", "submitted_by",
                "submitted_at", "body_preview"]

    @admin.display(description="Template", ordering="name")
    def template_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:templates_app_messagetemplate_change",
                                                          args=[obj.pk]), obj.name)

    @admin.display(description="Provider", ordering="provider__name")
    def provider_name(self, obj):
        return obj.provider.name

    @admin.display(description="Author")
    def author(self, obj):
        return _who(obj.created_by) or "—"

    @admin.display(description="Body (with its examples)")
    def body_preview(self, obj):
        return truncatechars(_body_text(obj), 90)

    def _review_each(self, request, templates: list[MessageTemplate], step, done: str, refused: str) -> None:
        count = 0
        for template in templates:
            try:
                step(template)
            except (TemplateWorkflowError, TemplateInvalid) as refusal:
                self.message_user(request, f"{template}: not {refused}: {_refusal(refusal)}", messages.ERROR)
            else:
                count += 1
        if count:
            self.message_user(request, done.format(count=count), messages.SUCCESS)

    @admin.action(description="Approve selected", permissions=["review"])
    def approve_selected(self, request, queryset):
        self._review_each(request, list(queryset), lambda t: template_approve(t, reviewer=request.user),
                          "{count} template(s) approved internally and on their way to their providers.", "approved")

    @admin.action(description="Reject selected…", permissions=["review"])
    def reject_selected(self, request, queryset):
        templates = list(queryset)
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            self._review_each(request, templates,
                              lambda t: template_reject(t, reviewer=request.user, reason=reason),
                              "{count} template(s) rejected internally; their authors see your reason.", "rejected")
            return None
        context = {**self.admin_site.each_context(request), "title": f"Reject {len(templates)} template(s)",
                   "opts": self.opts, "form": form, "templates": templates, "action": "reject_selected",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                   "bodies": [(template, _body_text(template)) for template in templates]}
        return render(request, "admin/templates_app/templateawaitingreview/reject_selected.html", context)

