"""
The "Templates awaiting review" screen: the templates in internal review, oldest submission first, with
approve and reject on each row and as actions. The steps go through the workflow service, which audits.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.shortcuts import redirect, render
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from core.access import scoped
from core.admin.base import ScopedModelAdmin
from templates_app.admin.common import TemplateMedia, body_text, refusal_text, when, who
from templates_app.forms import RejectForm
from templates_app.models import MessageTemplate, TemplateAwaitingReview
from templates_app.selectors import awaiting_review
from templates_app.services.workflow import (
    REVIEW_PERMISSION,
    TemplateWorkflowError,
    review_version,
    template_approve,
    template_reject,
)
from templates_app.validation import TemplateInvalid
from whatsapp.admin.filters import ProviderNameFilter


@admin.register(TemplateAwaitingReview)
class TemplateAwaitingReviewAdmin(TemplateMedia, ScopedModelAdmin):
    """The templates in internal review, oldest submission first, with approve and reject on each row."""

    list_display_links = None
    list_filter = [ProviderNameFilter]
    search_fields = ["name"]
    ordering = ["submitted_at", "pk"]
    sortable_by = ["submitted_at"]
    actions = ["approve_selected", "reject_selected"]
    show_full_result_count = False

    def get_queryset(self, request):
        return scoped(awaiting_review(), request.user)

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

        # What a reviewer reads first: which template, its words, then the decision and who is asking.
        return ["template_link", "body_preview", review, "submitted"]

    @admin.display(description="Template", ordering="name")
    def template_link(self, obj):
        return format_html('<a href="{}">{}</a><small class="tpl-subline">{} · v{} · {}</small>',
                           reverse("admin:templates_app_messagetemplate_change", args=[obj.pk]), obj.name,
                           obj.language, obj.version, obj.provider.name)

    @admin.display(description="Submitted", ordering="submitted_at")
    def submitted(self, obj):
        author, submitter = who(obj.created_by), who(obj.submitted_by)
        by = submitter or author or "—"
        written = (format_html('<small class="tpl-subline">written by {}</small>', author)
                   if author and submitter and author != submitter else "")
        return format_html('{}<small class="tpl-subline">{}</small>{}', by, when(obj.submitted_at), written)

    @admin.display(description="Body (with its example values)")
    def body_preview(self, obj):
        body = body_text(obj)
        # The whole body on hover; most bodies fit in the cell anyway.
        return format_html('<span class="tpl-body-cell" title="{}">{}</span>', body, truncatechars(body, 220))

    def _review_each(self, request, templates: list[MessageTemplate], step, done: str, refused: str) -> None:
        count = 0
        for template in templates:
            try:
                step(template)
            except (TemplateWorkflowError, TemplateInvalid) as refusal:
                self.message_user(request, f"{template}: not {refused}: {refusal_text(refusal)}", messages.ERROR)
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
                   "bodies": [(template, body_text(template)) for template in templates]}
        return render(request, "admin/templates_app/templateawaitingreview/reject_selected.html", context)
