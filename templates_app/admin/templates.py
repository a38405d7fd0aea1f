"""
A template's pages: the list (with usage figures and a sync button), the authoring page (a form per
part, WhatsApp's rules shown on the field they are about, a live preview), the workflow buttons, the
history of versions with a diff and the audit trail (their panels are in panels.py).

Every change goes through the workflow, sync and submission services, which check what is allowed and
write the audit entries; the admin only shows their answers. So this admin does not extend
AuditedModelAdmin: its entries would repeat the services' own.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from core.admin.base import ScopedModelAdmin
from templates_app.admin.common import TemplateMedia, percent, refusal_text, safe_next, status_badge, when
from templates_app.admin.panels import (
    audit_action,
    audit_details,
    content_panel,
    edit_notice,
    examples_panel,
    history_panel,
    usage_panel,
    workflow_buttons,
    workflow_facts,
)
from templates_app.forms import RejectForm, TemplateForm
from templates_app.models import MessageTemplate
from templates_app.preview import TemplatePreview, template_preview
from templates_app.selectors import audit_entries_of, awaiting_review, latest_version, usage_of, with_usage
from templates_app.services.provider_submission import template_resubmit
from templates_app.services.sync import templates_sync_all
from templates_app.services.workflow import (
    EDITABLE_IN_PLACE,
    EDITED_AS_NEW_VERSION,
    REVIEW_PERMISSION,
    TemplateWorkflowError,
    template_approve,
    template_create,
    template_delete,
    template_edit,
    template_reject,
    template_submit_for_review,
    template_withdraw,
)
from templates_app.validation import TemplateInvalid
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.providers.events import TemplateStatus

AUDIT_ROWS_SHOWN = 200


@admin.register(MessageTemplate)
class MessageTemplateAdmin(TemplateMedia, ScopedModelAdmin):
    form = TemplateForm
    # Narrow enough for a 1400 px window beside the menu and the filters: what a template is and where it
    # stands first, then how it does; language, version and number sit under the name.
    list_display = ["template", "status_label", "category", "usage", "updated"]
    list_filter = ["status", "category", "language", ProviderNameFilter, "managed_elsewhere"]
    search_fields = ["name", "provider_template_id"]
    actions = ["submit_for_review"]
    # A read-only template: its fields, its content laid out part by part.
    view_fieldsets = [
        (None, {"fields": ["provider", "name", "language", "version", "category", "parameter_format", "status",
                           "managed_where"]}),
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
                ("Content", {"fields": ["header_format", "header_text", "header_example", "body_text",
                                        "body_examples", "footer_text", "buttons"],
                             "description": "Write the parts, with an example value for each parameter; the "
                                            "preview shows them as the customer's phone will."})]

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

    @admin.display(description="Template", ordering="name")
    def template(self, obj):
        return format_html('{}<small class="tpl-subline">{} · v{} · {}</small>', obj.name, obj.language, obj.version,
                           obj.provider.name)

    @admin.display(description="Usage", ordering="sends_count")
    def usage(self, obj):
        if not obj.sends_count:
            return format_html('<span class="tpl-quiet">{}</span>', "Not sent yet")
        usage = usage_of(obj)
        return format_html('<span class="tpl-sends">{} sent</span>'
                           '<small class="tpl-subline tpl-delivered-rate">{} delivered</small>'
                           '<small class="tpl-subline tpl-read-rate">{} read</small>'
                           '<small class="tpl-subline tpl-failed-rate">{} failed</small>',
                           obj.sends_count, percent(usage.delivered_rate), percent(usage.read_rate),
                           percent(usage.failed_rate))

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj):
        return status_badge(obj)

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj):
        return when(obj.updated_at)

    @admin.display(description="Parts")
    def pretty_components(self, obj):
        return content_panel(obj)

    @admin.display(description="Example values")
    def pretty_examples(self, obj):
        return examples_panel(obj)

    @admin.display(description="Written")
    def managed_where(self, obj):
        # Words, not the admin's red cross: "not managed elsewhere" is the usual case, nothing wrong.
        return (f"In {obj.provider.name}'s own tool, imported by the sync (read-only here)" if obj.managed_elsewhere
                else "Here")

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
                self.message_user(request, f"{template}: not submitted: {refusal_text(refusal)}", messages.ERROR)
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
                self.message_user(request, f"Not saved: {refusal_text(refusal)}", messages.ERROR)
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
        if change and saved.pk != obj.pk:
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
            self.message_user(request, f"Not deleted: {refusal_text(refusal)}", messages.ERROR)
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
        mode, may_author = self.edit_mode(template), self.may_author(request)
        editable = bool(mode) and may_author
        return {
            "preview": template_preview(template.components, template.examples),
            "live_preview": editable,
            "edit_notice": edit_notice(template, mode, editable),
            "workflow_facts": workflow_facts(template),
            "workflow_buttons": workflow_buttons(request, template, may_author=may_author),
            "usage": usage_panel(template),
            **history_panel(request, template),
            "audit_entries": self._audit_entries(template),
            "awaiting_count": awaiting_review().count(),
        }

    @staticmethod
    def _audit_entries(template: MessageTemplate) -> list:
        entries = audit_entries_of(template, AUDIT_ROWS_SHOWN)
        for entry in entries:
            entry.before_text, entry.after_text = audit_details(entry.before), audit_details(entry.after)
            entry.action_text = audit_action(entry.action)
        return entries

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
        template = get_object_or_404(self.get_queryset(request).select_related("provider"), pk=template_id)
        allowed = self.may_author(request) if author else self.has_view_or_change_permission(request)
        if not allowed:
            raise PermissionDenied
        return template

    def _back(self, request, template: MessageTemplate) -> HttpResponseRedirect:
        return HttpResponseRedirect(safe_next(request)
                                    or reverse("admin:templates_app_messagetemplate_change", args=[template.pk]))

    def _step(self, request, template: MessageTemplate, step, done: str) -> HttpResponseRedirect:
        try:
            step(template)
        except (TemplateWorkflowError, TemplateInvalid) as refusal:
            self.message_user(request, f"{template}: {refusal_text(refusal)}", messages.ERROR)
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
                   "form": form, "template": template, "next": safe_next(request),
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
