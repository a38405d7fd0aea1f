"""
The suggestions and summaries asked for (read-only), and the conversation page's AI buttons: they post
here, ask the service for a request (a worker makes it) and go back to the conversation, whose AI panel
polls `panel/` until the request is over.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.text import Truncator
from django.views.decorators.http import require_GET, require_POST

from ai.admin.common import ASK_PERMISSION, may_see_conversations, when
from ai.admin.panel import panel_body
from ai.models import AiRequest, ReplySuggestion
from ai.services.requests import AiUnavailable, ai_request_create
from core.access import scoped
from core.admin.base import ReadOnlyModelAdmin, ReadOnlyTabularInline
from whatsapp.models import Conversation

ASKED = {AiRequest.Kind.SUGGESTIONS: "Reply suggestions asked for: they appear in the AI panel in a few seconds.",
         AiRequest.Kind.SUMMARY: "Summary asked for: it appears in the AI panel in a few seconds."}


class ReplySuggestionInline(ReadOnlyTabularInline):
    model = ReplySuggestion
    fields = ["position", "text", "template", "template_variables", "language", "for_message"]


@admin.register(AiRequest)
class AiRequestAdmin(ReadOnlyModelAdmin):
    list_display = ["created", "kind", "status", "conversation", "trigger", "created_by", "finished", "short_error"]
    list_filter = ["kind", "status", "trigger"]
    search_fields = ["error", "conversation__contact__profile_name"]
    inlines = [ReplySuggestionInline]

    def get_queryset(self, request):
        return (super().get_queryset(request)
                .select_related("conversation__contact", "conversation__provider", "created_by")
                .defer("conversation__provider__credentials"))

    def get_urls(self):
        def route(suffix, view, name):
            return path(f"conversation/<int:conversation_id>/{suffix}/", self.admin_site.admin_view(view),
                        name=f"ai_airequest_{name}")

        # Asking changes state: POST only (and CSRF-checked by admin_view).
        return [route("suggest", require_POST(self.suggest_view), "suggest"),
                route("summarise", require_POST(self.summarise_view), "summarise"),
                route("panel", require_GET(self.panel_view), "panel"),
                *super().get_urls()]

    def suggest_view(self, request, conversation_id):
        return self._ask(request, conversation_id, AiRequest.Kind.SUGGESTIONS)

    def summarise_view(self, request, conversation_id):
        return self._ask(request, conversation_id, AiRequest.Kind.SUMMARY)

    def _ask(self, request, conversation_id, kind):
        if not request.user.has_perm(ASK_PERMISSION):
            raise PermissionDenied
        conversation = get_object_or_404(scoped(Conversation.objects.select_related("provider"), request.user),
                                         pk=conversation_id)
        try:
            ai_request_create(conversation, kind, trigger="manual", actor=request.user)
        except AiUnavailable as unavailable:
            self.message_user(request, f"Not asked: {unavailable}.", messages.ERROR)
        else:
            self.message_user(request, ASKED[kind])
        return redirect(reverse("admin:whatsapp_conversation_change", args=[conversation.pk]) + "#ai-panel")

    def panel_view(self, request, conversation_id):
        """The AI panel's content, which the conversation page polls while a request is being made."""
        if not may_see_conversations(request.user):
            raise PermissionDenied
        conversation = get_object_or_404(scoped(Conversation.objects.select_related("provider"), request.user),
                                         pk=conversation_id)
        return HttpResponse(panel_body(request, conversation))  # admin_view marks it never cached

    @admin.display(description="Asked", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="Finished", ordering="finished_at")
    def finished(self, obj):
        return when(obj.finished_at) or "-"

    @admin.display(description="Why not done")
    def short_error(self, obj):
        return Truncator(obj.error).chars(80)
