"""
The messages and what happens to them: a message's page (files, status reports, the send log), the
dead letters (retry or discard), the send attempts and the status reports received.

A message's page shows what applies to its direction: an inbound message has what the provider and the AI
made of it, an outbound one how it was sent. Its times are shown to the second, since its steps (queued,
sent, delivered, read) often fall within one minute.
"""

from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR
from django.utils.html import format_html

from core.access import can_see
from core.admin.base import ADMIN_CSS, AuditedModelAdmin, ReadOnlyModelAdmin, clipped, pretty_json, time_with_seconds
from core.admin.changes import values_table
from whatsapp.admin.extensions import message_actions
from whatsapp.admin.filters import ProviderNameFilter
from whatsapp.models import DeadLetter, Media, Message, MessageStatusEvent, SendAttempt
from whatsapp.providers.events import MessageStatus, MessageType
from whatsapp.services.outbound import message_discard, message_retry


def status_event_outcome(event: MessageStatusEvent) -> str:
    """What a report did to its message, in words: one that did not move the status is no failure."""
    if event.applied:
        return "Applied"
    if event.message_id is None:
        return "Waiting for its message (the send has not recorded the provider's id yet)"
    return "Kept for history (not newer than the message's status)"


class StatusEventInline(admin.TabularInline):
    model = MessageStatusEvent
    fields = ["status", "occurred", "outcome", "error_code", "error_title"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "status reports from the provider"

    occurred = time_with_seconds("occurred_at", "Occurred")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Outcome")
    def outcome(self, obj):
        return status_event_outcome(obj)


class MediaInline(admin.TabularInline):
    model = Media
    fields = ["mime_type", "filename", "state", "attempts", "archive_path"]
    readonly_fields = fields
    extra = 0


class MessageViewPermission:
    """Send attempts and dead letters are views of messages: whoever may see messages may see them
    (the default groups grant permissions on Message, not on these models)."""

    def has_view_permission(self, request, obj=None):
        allowed = request.user.has_perm("whatsapp.view_message") or request.user.has_perm("whatsapp.change_message")
        return (allowed or super().has_view_permission(request, obj)) and (obj is None or can_see(request.user, obj))


class SendAttemptInline(MessageViewPermission, admin.TabularInline):
    model = SendAttempt
    fields = ["number", "started", "finished", "outcome", "error_code", "error_title", "error_detail",
              "http_status", "retry"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "send attempts (the send log)"

    started = time_with_seconds("started_at", "Started")
    finished = time_with_seconds("finished_at", "Finished")
    retry = time_with_seconds("retry_at", "Retry at")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.display(description="Text")
def short_text(obj):
    return clipped(obj.text or obj.transcript, width="30em")


@admin.display(description="Contact", ordering="conversation__contact__profile_name")
def contact(obj):
    return clipped(str(obj.conversation.contact), width="10em")


@admin.display(description="Message", ordering="message_type")
def kind(obj):
    return f"{obj.get_direction_display()} {obj.get_message_type_display().lower()}"


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def readable_content(obj):
    return values_table(obj.content)


# The page's times, each shown to the second (see the module's docstring).
MESSAGE_TIMES = {
    "created_at": ("Stored", ""),
    "received_at": ("Sent by the customer", "The provider's time for it."),
    "queued_at": ("Queued", ""),
    "enqueued_at": ("Handed to a worker", "Empty while it waits here."),
    "next_attempt_at": ("Next attempt", "Retry backoff, rate limit or hold."),
    "sent_at": ("Sent", ""),
    "delivered_at": ("Delivered", ""),
    "read_at": ("Read", ""),
    "played_at": ("Played", "First play of a voice message."),
    "failed_at": ("Failed", ""),
    "dead_lettered_at": ("Dead-lettered", ""),
    "ai_processed_at": ("AI processed", ""),
    "updated_at": ("Last changed", ""),
}


def _time(name: str) -> str:
    return f"{name}_shown"


def message_fieldsets(message: Message | None) -> list:
    """A message's page, by what applies to its direction (see the module's docstring)."""
    inbound = message is not None and message.direction == Message.Direction.INBOUND
    summary = ["conversation", "provider", "direction", "message_type", "text", "content_summary", "reply_to",
               _time("created_at")]
    if inbound:
        delivery = ["status", _time("received_at"), "duplicate_count"]
    else:
        summary[1:1] = ["purpose", "created_by"]
        delivery = ["status", "lane", _time("queued_at"), _time("enqueued_at"), _time("sent_at"),
                    _time("delivered_at"), _time("read_at"), _time("failed_at"), "attempts", _time("next_attempt_at")]
        # The rest only where it has something to say.
        if message is not None:
            if message.played_at:
                delivery.insert(delivery.index(_time("read_at")) + 1, _time("played_at"))
            if message.hold_reason:
                delivery.append("hold_reason")
            if message.error_code or message.error_title or message.error_detail:
                delivery += ["error_code", "error_title", "error_detail"]
            if message.dead_lettered_at:
                delivery.append(_time("dead_lettered_at"))
            if message.response_seconds is not None:
                delivery.append("reply_wait")
    fieldsets = [("Message", {"fields": summary}), ("Delivery", {"fields": delivery})]
    if message is not None and (message.template_id or message.message_type == MessageType.TEMPLATE):
        fieldsets.append(("Template", {"fields": ["template", "template_variables_summary"]}))
    if inbound:
        fieldsets.append(("AI", {"fields": ["processing_status", "transcript", "intent", "sentiment", "language",
                                            _time("ai_processed_at")]}))
    technical = ["provider_message_id", "session", _time("updated_at"), "pretty_content"]
    if not inbound:
        technical[1:1] = ["idempotency_key", "request_fingerprint"]
    fieldsets.append(("Technical", {"fields": technical, "classes": ["collapse"]}))
    return fieldsets


@admin.register(Message)
class MessageAdmin(AuditedModelAdmin):
    # Messages are written by the inbound and send pipelines; admins read them (and may delete them).
    # The columns that say what a message is, in a 1400 px window; the rest is on its page.
    list_display = ["id", "created_at", contact, kind, short_text, "status"]
    list_filter = ["direction", "status", "lane", "message_type", ProviderNameFilter, "processing_status"]
    search_fields = ["text", "provider_message_id", "conversation__contact__profile_name"]
    raw_id_fields = ["conversation", "session", "reply_to", "template", "created_by"]
    readonly_fields = ["content_summary", "template_variables_summary", "pretty_content", "reply_wait",
                       *(_time(name) for name in MESSAGE_TIMES)]
    inlines = [MediaInline, StatusEventInline, SendAttemptInline]
    list_select_related = ["provider", "conversation__contact"]
    date_hierarchy = "created_at"

    class Media:
        css = {"all": [ADMIN_CSS]}

    def get_fieldsets(self, request, obj=None):
        return message_fieldsets(obj)

    def get_inlines(self, request, obj):
        inlines = list(self.inlines)
        if obj is not None and obj.direction == Message.Direction.INBOUND:
            inlines = [MediaInline]  # status reports and send attempts belong to what we send
        if obj is not None and not obj.media.exists():
            inlines.remove(MediaInline)
        return inlines

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
    def content_summary(self, obj):
        return readable_content(obj)

    @admin.display(description="Reply time")
    def reply_wait(self, obj):
        wait = f"{duration(obj.response_seconds)} after the customer wrote"
        return f"{wait} (the first reply of its 24-hour window)" if obj.first_response else wait

    @admin.display(description="Template values")
    def template_variables_summary(self, obj):
        return values_table(obj.template_variables)

    @admin.display(description="Raw content (JSON)")
    def pretty_content(self, obj):
        return pretty_json(obj.content)


for _name, (_label, _help) in MESSAGE_TIMES.items():
    setattr(MessageAdmin, _time(_name), time_with_seconds(_name, _label, _help))


@admin.register(DeadLetter)
class DeadLetterAdmin(MessageViewPermission, ReadOnlyModelAdmin):
    """Outbound messages whose retries ran out or whose outcome is unknown: a person retries or discards."""

    list_display = ["id", "dead_lettered_at", contact, short_text, "error", "attempts"]
    list_filter = [ProviderNameFilter, "error_code"]
    search_fields = ["text", "conversation__contact__profile_name", "provider_message_id"]
    list_select_related = ["provider", "conversation__contact"]
    ordering = ["-dead_lettered_at", "-pk"]
    fieldsets = [
        ("Why it stopped", {"fields": ["error_code", "error_title", "error_detail", "attempts",
                                       _time("dead_lettered_at")]}),
        ("Message", {"fields": ["provider", "conversation", "message_type", "text", "content_summary", "lane",
                                "created_by", _time("queued_at"), _time("created_at")]}),
        ("Technical", {"fields": ["pretty_content"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["content_summary", "pretty_content", *(_time(name) for name in MESSAGE_TIMES)]
    inlines = [SendAttemptInline]
    actions = ["retry", "discard"]

    class Media:
        css = {"all": [ADMIN_CSS]}

    def get_queryset(self, request):
        return super().get_queryset(request).filter(direction=Message.Direction.OUTBOUND,
                                                    status=MessageStatus.DEAD_LETTER)

    def has_delete_permission(self, request, obj=None):
        return False  # discard instead: the message stays, failed, with an audit entry

    def has_resend_permission(self, request):
        return request.user.has_perm("whatsapp.change_message")

    @admin.display(description="Error", ordering="error_code")
    def error(self, obj):
        return clipped(" ".join(part for part in (obj.error_code, obj.error_title) if part), width="20em")

    @admin.display(description="Content")
    def content_summary(self, obj):
        return readable_content(obj)

    @admin.display(description="Raw content (JSON)")
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


for _name, (_label, _help) in MESSAGE_TIMES.items():
    setattr(DeadLetterAdmin, _time(_name), time_with_seconds(_name, _label, _help))


@admin.register(SendAttempt)
class SendAttemptAdmin(MessageViewPermission, ReadOnlyModelAdmin):
    list_display = ["message", "number", "outcome", "error_code", "started_at"]
    list_filter = ["outcome"]
    search_fields = ["error_code", "error_title", "correlation_id"]
    raw_id_fields = ["message"]
    list_select_related = ["message"]
    date_hierarchy = "started_at"


class StatusEventOutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("applied", "Applied"), ("kept", "Kept for history"), ("waiting", "Waiting for its message")]

    def queryset(self, request, queryset):
        if self.value() == "applied":
            return queryset.filter(applied=True)
        if self.value() == "kept":
            return queryset.filter(applied=False, message__isnull=False)
        if self.value() == "waiting":
            return queryset.filter(applied=False, message__isnull=True)
        return queryset


@admin.register(MessageStatusEvent)
class MessageStatusEventAdmin(ReadOnlyModelAdmin):
    list_display = ["occurred", "status_column", "result", "message_column"]
    list_filter = ["status", StatusEventOutcomeFilter, ProviderNameFilter]
    list_select_related = ["provider", "message"]
    search_fields = ["provider_message_id"]
    fieldsets = [
        (None, {"fields": ["message", "status", "occurred", "result", "provider", "provider_message_id",
                           "received"]}),
        ("Error", {"fields": ["error_code", "error_title", "error_detail"]}),
        ("Technical", {"fields": ["webhook_event", "pretty_raw"], "classes": ["collapse"]}),
    ]
    readonly_fields = ["occurred", "result", "received", "pretty_raw"]

    class Media:
        css = {"all": [ADMIN_CSS]}

    occurred = time_with_seconds("occurred_at", "Occurred")
    received = time_with_seconds("created_at", "Received")

    @admin.display(description="Outcome", ordering="applied")
    def result(self, obj):
        return clipped(status_event_outcome(obj), width="30em")

    @admin.display(description="Message")
    def message_column(self, obj):
        return clipped(str(obj.message) if obj.message else f"Not stored yet: {obj.provider_message_id}",
                       width="16em")

    @admin.display(description="Status", ordering="status")
    def status_column(self, obj):
        # A failed report's code beside its status, its title on hover.
        status = obj.get_status_display()
        if not obj.error_code:
            return status
        return format_html('<span title="{}">{} ({})</span>', obj.error_title, status, obj.error_code)

    @admin.display(description="Raw report")
    def pretty_raw(self, obj):
        return pretty_json(obj.raw)
