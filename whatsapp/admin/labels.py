"""The operators' shared vocabulary: conversation labels (name and colour) and saved replies."""

from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html
from django.utils.text import Truncator

from core.access import related_rows_of, sees_everything
from core.admin.base import AuditedModelAdmin
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.models import Label, SavedReply
from whatsapp.services.conversations import saved_reply_writable


@admin.register(Label)
class LabelAdmin(AuditedModelAdmin):
    list_display = ["chip", "description", "conversation_total"]
    search_fields = ["name", "description"]
    fields = ["name", "colour", "description"]

    def get_queryset(self, request):
        # Only the conversations of the user's numbers are counted.
        mine = related_rows_of(request.user, "conversations__provider")
        return super().get_queryset(request).annotate(conversation_total=Count("conversations", filter=mine))

    @admin.display(description="Label", ordering="name")
    def chip(self, obj):
        return format_html('<span style="display:inline-block;padding:0 8px;border-radius:9px;color:#fff;'
                           'background:{}">{}</span>', obj.colour, obj.name)

    @admin.display(description="Conversations", ordering="conversation_total")
    def conversation_total(self, obj):
        return obj.conversation_total


@admin.register(SavedReply)
class SavedReplyAdmin(AuditedModelAdmin):
    list_display = ["title", "short_text", "provider", "updated_at"]
    list_filter = [ProviderNameFilter]
    search_fields = ["title", "text"]
    fields = ["title", "text", "provider"]
    list_select_related = ["provider"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("provider__credentials")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # A reply offered on every number is every team's: only those who see every team write one.
    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._may_write(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._may_write(request, obj)

    @staticmethod
    def _may_write(request, obj) -> bool:
        return obj is None or saved_reply_writable(request.user, obj.provider_id)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if not sees_everything(request.user):
            form.base_fields["provider"].required = True
            form.base_fields["provider"].help_text = "Offered on this number's conversations only."
        return form

    @admin.display(description="Text")
    def short_text(self, obj):
        return format_html('<span title="{}">{}</span>', obj.text, Truncator(obj.text).chars(100))
