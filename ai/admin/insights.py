"""What the AI made of each inbound message, and the conversations' summaries: read-only pages."""

from django.contrib import admin
from django.template.defaultfilters import linebreaksbr
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from ai.admin.common import admin_link, message_in_conversation_url, usd, when
from ai.models import ConversationSummary, MessageInsight
from core.admin.base import ReadOnlyModelAdmin, pretty_json
from whatsapp.admin.filters import ProviderNameFilter


def readable_fields(extracted) -> str:
    """The things a message names (dates, amounts, items...), one line per kind."""
    if not extracted:
        return "-"
    if not isinstance(extracted, dict):
        return pretty_json(extracted)
    lines = ((name.replace("_", " "), ", ".join(map(str, values)) if isinstance(values, list) else str(values))
             for name, values in extracted.items() if values)
    items = format_html_join("", "<li><strong>{}</strong>: {}</li>", lines)
    return format_html('<ul class="ai-fields">{}</ul>', items) if items else "-"


class ConversationProviderFilter(ProviderNameFilter):
    provider_field = "conversation__provider_id"


class MessageProviderFilter(ProviderNameFilter):
    provider_field = "message__provider_id"


@admin.register(MessageInsight)
class MessageInsightAdmin(ReadOnlyModelAdmin):
    list_display = ["updated", "message_link", "transcription_status", "classification_status", "intent",
                    "sentiment_with_score", "language", "urgency", "classification_model", "short_error"]
    list_filter = ["classification_status", "transcription_status", "intent", "sentiment", "urgency",
                   MessageProviderFilter]
    search_fields = ["intent", "language", "message__provider_message_id"]
    list_select_related = ["message"]
    fieldsets = [
        (None, {"fields": ["message_link", "in_conversation"]}),
        ("Transcription", {"fields": ["transcription_status", "transcription_error", "transcript_language",
                                      "audio_seconds", "transcription_model", "transcription_cost_usd"]}),
        ("Classification", {"fields": ["classification_status", "classification_error", "intent",
                                       "sentiment_with_score", "language", "urgency", "extracted_fields",
                                       "classification_model", "prompt_version"]}),
        ("Processing", {"fields": ["attempts", "next_attempt_at", "claimed_until", "created_at", "updated_at"]}),
    ]
    readonly_fields = ["message_link", "in_conversation", "sentiment_with_score", "extracted_fields",
                       "transcription_cost_usd"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("message__content", "message__template_variables")

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj):
        return when(obj.updated_at)

    @admin.display(description="Message", ordering="message_id")
    def message_link(self, obj):
        label = f"#{obj.message_id}: {Truncator(obj.message.text or obj.message.message_type).chars(50)}"
        return admin_link(obj.message, label)

    @admin.display(description="In its conversation")
    def in_conversation(self, obj):
        return format_html('<a href="{}">the message in the transcript</a>',
                           message_in_conversation_url(obj.message.conversation_id, obj.message_id))

    @admin.display(description="Sentiment", ordering="sentiment")
    def sentiment_with_score(self, obj):
        if not obj.sentiment:
            return "-"
        return f"{obj.sentiment} ({obj.sentiment_score:+.2f})" if obj.sentiment_score is not None else obj.sentiment

    @admin.display(description="Fields found")
    def extracted_fields(self, obj):
        return readable_fields(obj.extracted)

    @admin.display(description="Transcription cost (USD)")
    def transcription_cost_usd(self, obj):
        return usd(obj.transcription_cost, 6)

    @admin.display(description="Error")
    def short_error(self, obj):
        return Truncator(obj.classification_error or obj.transcription_error).chars(60)


@admin.register(ConversationSummary)
class ConversationSummaryAdmin(ReadOnlyModelAdmin):
    list_display = ["created", "conversation", "trigger", "message_count", "covers", "model", "short_text"]
    list_filter = ["trigger", ConversationProviderFilter]
    search_fields = ["text", "conversation__contact__profile_name"]
    fieldsets = [
        (None, {"fields": ["conversation_link", "summary", "covers", "message_count", "language"]}),
        ("How it was made", {"fields": ["trigger", "created_by", "model", "request_link", "created"]}),
    ]
    readonly_fields = ["conversation_link", "summary", "covers", "request_link", "created"]

    def get_queryset(self, request):
        return (super().get_queryset(request)
                .select_related("conversation__contact", "conversation__provider", "created_by")
                .defer("conversation__provider__credentials"))

    @admin.display(description="Made", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="Covers")
    def covers(self, obj):
        if not (obj.first_message_id and obj.last_message_id):
            return "-"
        return f"messages #{obj.first_message_id}–#{obj.last_message_id}"

    @admin.display(description="Summary")
    def short_text(self, obj):
        return Truncator(obj.text).chars(90)

    @admin.display(description="Summary")
    def summary(self, obj):
        return linebreaksbr(obj.text, autoescape=True)

    @admin.display(description="Conversation")
    def conversation_link(self, obj):
        return admin_link(obj.conversation)

    @admin.display(description="Request")
    def request_link(self, obj):
        return admin_link(obj.request) if obj.request_id else "-"
