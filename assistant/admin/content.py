"""Content requests: what was asked for, where it stands, and the draft as it will read."""

from django.contrib import admin
from django.template.defaultfilters import truncatechars

from ai.admin.common import admin_link
from assistant.admin.common import OwnedAdmin, message_link, pre, when
from assistant.models import ContentRequest
from assistant.services.items import content_request_prepare, content_request_saved

PREVIEW_CHARS = 80


@admin.register(ContentRequest)
class ContentRequestAdmin(OwnedAdmin):
    list_display = ["brief_preview", "owner", "platform", "length", "tone", "topic", "status", "created"]
    list_filter = ["status", "platform", "length"]
    search_fields = ["brief", "topic", "draft"]
    list_select_related = ["owner"]
    fieldsets = [
        (None, {"fields": ["owner", "brief", "platform", "length", "tone", "topic", "status"]}),
        ("Draft", {"fields": ["draft_shown", "drafted", "error"]}),
        ("Where it came from", {"fields": ["source", "conversation_shown", "created", "updated"]}),
    ]
    readonly_fields = ["draft_shown", "drafted", "error", "source", "conversation_shown", "created", "updated"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("source_message", "conversation__contact",
                                                            "conversation__provider").defer(
            "conversation__provider__credentials")

    def save_model(self, request, obj, form, change):
        content_request_prepare(obj)
        super().save_model(request, obj, form, change)
        content_request_saved(obj)

    @admin.display(description="Brief", ordering="brief")
    def brief_preview(self, obj):
        return truncatechars(" ".join(obj.brief.split()), PREVIEW_CHARS)

    @admin.display(description="Draft")
    def draft_shown(self, obj):
        return pre(obj.draft)

    @admin.display(description="Drafted")
    def drafted(self, obj):
        return when(obj.drafted_at)

    @admin.display(description="From")
    def source(self, obj):
        return message_link(obj.source_message)

    @admin.display(description="Conversation")
    def conversation_shown(self, obj):
        return admin_link(obj.conversation)
