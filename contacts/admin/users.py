"""
The users: their WhatsApp profile (the phone the auto rule matches), and the GDPR actions on the user
list (export a user's WhatsApp data, erase it). Deleting a user unmaps their contacts, and its
confirmation page says so.
"""

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from contacts.admin.forms import UserProfileForm
from contacts.models import UserProfile
from contacts.selectors import mapped_contact_count
from contacts.services.erasure import PREVIEW_LABELS, ErasureBusy, ErasureReport, user_data_erase
from contacts.services.erasure import erasure_preview as erasure_preview_of
from contacts.services.export import data_export_request
from contacts.services.mapping import user_label
from contacts.services.user_deletion import mappings_release_for_user
from core.admin.base import AuditedModelAdmin

User = get_user_model()


class UserProfileInline(admin.StackedInline):
    model = UserProfile
    form = UserProfileForm
    can_delete = False
    max_num = 1
    verbose_name = verbose_name_plural = "WhatsApp profile"


@admin.register(UserProfile)
class UserProfileAdmin(AuditedModelAdmin):
    form = UserProfileForm
    list_display = ["user", "phone_number"]
    search_fields = ["user__username", "user__first_name", "user__last_name", "phone_number"]
    autocomplete_fields = ["user"]
    list_select_related = ["user"]
    fields = ["user", "phone_number"]


# --- GDPR: export and erasure of a user's WhatsApp data -------------------------------------------

def erasure_preview(users: list) -> list[dict]:
    """What erasing each user's WhatsApp data removes, counted the way the erasure counts."""
    previews = [(user, erasure_preview_of(user).as_dict()) for user in users]
    return [{"user": user, "counts": [counts[key] for key in PREVIEW_LABELS]} for user, counts in previews]


def _erasure_summary(user, report: ErasureReport) -> str:
    counts = report.as_dict()
    return (f"Erased the WhatsApp data of {user_label(user)}: {counts['contacts']} contact(s), "
            f"{counts['conversations']} conversation(s), {counts['messages']} message(s), {counts['media']} media "
            f"file(s), {counts['webhook_events']} webhook event(s), {counts['exports']} export(s). The archive "
            f"storage deletes {counts['buckets']} bucket(s) and {counts['objects_elsewhere']} object(s) kept in "
            f"other buckets, and rewrites {counts['bundles_rewritten']} bundle(s) of webhook bodies without theirs; "
            "what it cannot do now is retried (see Storage deletions and Archive bundles).")


class UserAdmin(DjangoUserAdmin):
    inlines = [*DjangoUserAdmin.inlines, UserProfileInline]
    actions = ["delete_selected", "export_whatsapp_data", "erase_whatsapp_data"]

    # Deleting a user never erases: their contacts go back to the unmapped queue with their messages (see
    # mappings_release_for_user). Both delete confirmations say so; the release is done here first so that
    # the audit trail names who deleted (the pre_delete receiver then finds nothing left to release).
    def render_delete_form(self, request, context):
        context["mapped_contacts"] = mapped_contact_count([context["object"]])
        return super().render_delete_form(request, context)

    @admin.action(permissions=["delete"], description=django_delete_selected.short_description)
    def delete_selected(self, request, queryset):
        response = django_delete_selected(self, request, queryset)
        if isinstance(response, TemplateResponse):  # the confirmation page, not the deletion's redirect
            response.context_data["mapped_contacts"] = mapped_contact_count(queryset)
        return response

    def delete_model(self, request, obj):
        with transaction.atomic():
            mappings_release_for_user(obj, actor=request.user)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for user in queryset.order_by("pk"):
                mappings_release_for_user(user, actor=request.user)
            super().delete_queryset(request, queryset)

    def get_inline_instances(self, request, obj=None):
        # The add page is Django's two-step one (name and password first); the profile comes after.
        return super().get_inline_instances(request, obj) if obj is not None else []

    def has_export_whatsapp_data_permission(self, request):
        return request.user.has_perm("contacts.add_dataexport")

    def has_erase_whatsapp_data_permission(self, request):
        return request.user.has_perm("contacts.erase_user_data")

    @admin.action(description="Export WhatsApp data (GDPR)", permissions=["export_whatsapp_data"])
    def export_whatsapp_data(self, request, queryset):
        for user in queryset.order_by("username"):
            export = data_export_request(user=user, actor=request.user)
            self.message_user(request, format_html(
                'Export of {}\'s WhatsApp data requested (<a href="{}">export {}</a>); it can be downloaded from '
                "Data exports once it is ready.", user_label(user),
                reverse("admin:contacts_dataexport_change", args=[export.pk]), export.pk))

    @admin.action(description="Erase WhatsApp data (GDPR)…", permissions=["erase_whatsapp_data"])
    def erase_whatsapp_data(self, request, queryset):
        users = list(queryset.order_by("username"))
        if request.POST.get("confirm") == "yes":
            for user in users:
                try:
                    report = user_data_erase(user=user, actor=request.user)
                except ErasureBusy as exc:
                    self.message_user(request, f"{user_label(user)}: nothing erased, {exc}.", messages.ERROR)
                    continue
                self.message_user(request, _erasure_summary(user, report), messages.SUCCESS)
            return None
        context = {**self.admin_site.each_context(request), "title": "Erase WhatsApp data: are you sure?",
                   "opts": self.model._meta, "rows": erasure_preview(users),
                   "columns": list(PREVIEW_LABELS.values()), "action": "erase_whatsapp_data",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
        return render(request, "admin/auth/user/erase_whatsapp_data.html", context)


admin.site.unregister(User)
admin.site.register(User, UserAdmin)
