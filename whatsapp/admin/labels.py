"""The operators' shared vocabulary: conversation labels (name and colour) and saved replies."""

from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html
from django.utils.text import Truncator

from core.access import related_rows_of
from core.admin.base import AuditedModelAdmin
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.models import Label, SavedReply


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

    @admin.display(description="Text")
    def short_text(self, obj):
        return format_html('<span title="{}">{}</span>', obj.text, Truncator(obj.text).chars(100))
