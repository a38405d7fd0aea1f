"""
The messages and what happens to them: a message's page (files, status reports, the send log), the
dead letters (retry or discard), the send attempts and the status reports received.
"""

from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR

from core.admin.base import AuditedModelAdmin, ReadOnlyModelAdmin, pretty_json
from whatsapp.admin.extensions import message_actions
from whatsapp.models import DeadLetter, Media, Message, MessageStatusEvent, SendAttempt
from whatsapp.providers.events import MessageStatus
from whatsapp.services.outbound import message_discard, message_retry


class StatusEventInline(admin.TabularInline):
    model = MessageStatusEvent
    fields = ["status", "occurred_at", "applied", "error_code", "error_title"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class MediaInline(admin.TabularInline):
    model = Media
    fields = ["mime_type", "filename", "state", "attempts", "archive_path"]
    readonly_fields = fields
    extra = 0


class MessageViewPermission:
    """Send attempts and dead letters are views of messages: whoever may see messages may see them
    (the default groups grant permissions on Message, not on these models)."""

    def has_view_permission(self, request, obj=None):
        return (request.user.has_perm("whatsapp.view_message") or request.user.has_perm("whatsapp.change_message")
                or super().has_view_permission(request, obj))


class SendAttemptInline(MessageViewPermission, admin.TabularInline):
    model = SendAttempt
    fields = ["number", "started_at", "finished_at", "outcome", "error_code", "error_title", "error_detail",
              "http_status", "retry_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "send attempts (the send log)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.display(description="Text")
def short_text(obj):
    return (obj.text or "")[:60]


@admin.register(Message)
class MessageAdmin(AuditedModelAdmin):
    # Messages are written by the inbound and send pipelines; admins read them (and may delete them).
    list_display = ["id", "created_at", "direction", "message_type", short_text, "status", "provider",
                    "conversation"]
    list_filter = ["direction", "status", "lane", "message_type", "provider", "processing_status"]
    search_fields = ["text", "provider_message_id", "conversation__contact__profile_name"]
    raw_id_fields = ["conversation", "session", "reply_to", "template", "created_by"]
    readonly_fields = ["provider_message_id", "duplicate_count", "attempts", "lane", "next_attempt_at", "hold_reason",
                       "error_title", "dead_lettered_at", "created_at", "updated_at", "pretty_content"]
    inlines = [MediaInline, StatusEventInline, SendAttemptInline]
    list_select_related = ["provider", "conversation__contact"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        if IS_POPUP_VAR in request.GET:
            return actions
        # The actions other apps registered on the message list (whatsapp.admin.extensions).
        for function in message_actions.receivers:
            if self._may_run(request, function):
                func, name, description = self.get_action(function)
                actions.setdefault(name, (func, name, description))
        return actions

    def _may_run(self, request, function) -> bool:
        for permission in getattr(function, "allowed_permissions", ()):
            check = getattr(self, f"has_{permission}_permission", None)
            allowed = check(request) if check is not None else request.user.has_perm(permission)
            if not allowed:
                return False
        return True

    @admin.display(description="Content")
    def pretty_content(self, obj):
        return pretty_json(obj.content)


@admin.register(DeadLetter)
class DeadLetterAdmin(MessageViewPermission, ReadOnlyModelAdmin):
    """Outbound messages whose retries ran out or whose outcome is unknown: a person retries or discards."""

    list_display = ["id", "dead_lettered_at", "provider", "contact", "message_type", short_text, "error_code",
                    "error_title", "attempts"]
    list_filter = ["provider", "error_code"]
    search_fields = ["text", "conversation__contact__profile_name", "provider_message_id"]
    list_select_related = ["provider", "conversation__contact"]
    ordering = ["-dead_lettered_at", "-pk"]
    fieldsets = [
        ("Why it stopped", {"fields": ["error_code", "error_title", "error_detail", "attempts", "dead_lettered_at"]}),
        ("Message", {"fields": ["provider", "conversation", "message_type", "text", "pretty_content", "lane",
                                "created_by", "queued_at", "created_at"]}),
    ]
    readonly_fields = ["pretty_content"]
    inlines = [SendAttemptInline]
    actions = ["retry", "discard"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(direction=Message.Direction.OUTBOUND,
                                                    status=MessageStatus.DEAD_LETTER)

    def has_delete_permission(self, request, obj=None):
        return False  # discard instead: the message stays, failed, with an audit entry

    def has_resend_permission(self, request):
        return request.user.has_perm("whatsapp.change_message")

    @admin.display(description="Contact", ordering="conversation__contact__profile_name")
    def contact(self, obj):
        return obj.conversation.contact

    @admin.display(description="Content")
    def pretty_content(self, obj):
        return pretty_json(obj.content)

    @admin.action(description="Retry now", permissions=["resend"])
    def retry(self, request, queryset):
        total = len(queryset)
        queued = sum(message_retry(message=message, actor=request.user) for message in queryset)
        self.message_user(request, f"{queued} of {total} message(s) queued again.")

    @admin.action(description="Discard (mark failed)", permissions=["resend"])
    def discard(self, request, queryset):
        total = len(queryset)
        discarded = sum(message_discard(message=message, actor=request.user) for message in queryset)
        self.message_user(request, f"{discarded} of {total} message(s) discarded.")


@admin.register(SendAttempt)
class SendAttemptAdmin(MessageViewPermission, ReadOnlyModelAdmin):
    list_display = ["message", "number", "outcome", "error_code", "started_at"]
    list_filter = ["outcome"]
    search_fields = ["error_code", "error_title", "correlation_id"]
    raw_id_fields = ["message"]
    list_select_related = ["message"]
    date_hierarchy = "started_at"


@admin.register(MessageStatusEvent)
class MessageStatusEventAdmin(ReadOnlyModelAdmin):
    list_display = ["provider_message_id", "status", "occurred_at", "applied", "error_code", "provider"]
    list_filter = ["status", "applied", "provider"]
    search_fields = ["provider_message_id"]
    exclude = ["raw"]
    readonly_fields = ["pretty_raw"]

    @admin.display(description="Raw report")
    def pretty_raw(self, obj):
        return pretty_json(obj.raw)
