"""
The assistant's turns, read-only: for each inbound message it handled, what it came to, the tools it called
(with their arguments and results) and what it replied. The conversation page's assistant panel links here
(?conversation=<id>) and posts its "Resume assistant" button to resume/ here.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.defaultfilters import truncatechars
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from assistant.admin.common import OwnedReadOnlyAdmin, message_link, when
from assistant.models import Turn
from assistant.services.handoff import resume
from core.access import scoped
from whatsapp.models import Conversation

# Handing a conversation back to the assistant is part of handling the conversation.
RESUME_PERMISSION = "whatsapp.change_conversation"
ARGUMENT_CHARS = 2000


class ConversationFilter(admin.SimpleListFilter):
    """The turns of one conversation, reached from its page (?conversation=<id>); not listed in the sidebar."""

    title = "conversation"
    parameter_name = "conversation"

    def lookups(self, request, model_admin):
        value = self.value()
        if not value:
            return []
        if not value.isdigit():
            raise IncorrectLookupParameters(f"conversation must be a conversation id, not {value!r}")
        conversation = scoped(Conversation.objects.select_related("contact", "provider"), request.user).defer(
            "provider__credentials").filter(pk=int(value)).first()
        return [(value, str(conversation) if conversation else f"#{value}")]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(message__conversation_id=int(value)) if value and value.isdigit() else queryset


def _json(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return truncatechars(text, ARGUMENT_CHARS)


def _outcome_of(call: dict) -> str:
    if "ok" not in call:
        return ""
    return "ok" if call["ok"] else f"failed: {call.get('error') or 'see the result'}"


def tool_calls_table(calls) -> str:
    """The tools called, one row each: name, arguments, result (each pretty-printed) and whether it worked."""
    if not calls:
        return "-"
    rows = []
    for number, call in enumerate(calls if isinstance(calls, list) else [calls], 1):
        if isinstance(call, dict):
            name = call.get("name") or "?"
            arguments, result, outcome = call.get("arguments", {}), call.get("result"), _outcome_of(call)
        else:
            name, arguments, result, outcome = "?", call, None, ""
        rows.append((number, name, _json(arguments), "-" if result in (None, "", {}) else _json(result),
                     outcome or "-"))
    cell = "<td style='vertical-align:top'>"
    pre_cell = "<td style='vertical-align:top'><pre style='white-space:pre-wrap;margin:0;max-width:50em'>"
    row = (f"<tr>{cell}{{}}</td>{cell}<strong>{{}}</strong></td>{pre_cell}{{}}</pre></td>{pre_cell}{{}}</pre></td>"
           f"{cell}{{}}</td></tr>")
    return format_html("<table class='assistant-tool-calls'><thead><tr><th>#</th><th>Tool</th><th>Arguments</th>"
                       "<th>Result</th><th>Done</th></tr></thead><tbody>{}</tbody></table>",
                       format_html_join("", row, rows))


def turns_of_conversation_url(conversation_id: int) -> str:
    return reverse("admin:assistant_turn_changelist") + f"?conversation={conversation_id}"


@admin.register(Turn)
class TurnAdmin(OwnedReadOnlyAdmin):
    list_display = ["created", "owner", "message_shown", "status", "outcome", "tool_count", "reply_shown",
                    "short_error"]
    list_filter = ["status", "outcome", ConversationFilter]
    search_fields = ["outcome", "error", "message__text"]
    list_select_related = ["owner", "message", "reply"]
    fields = ["message_shown", "owner", "status", "outcome", "tool_calls_shown", "reply_shown", "error", "attempts",
              "next_attempt", "created", "finished"]
    readonly_fields = fields

    def get_urls(self):
        resume_url = path("conversation/<int:conversation_id>/resume/",
                          self.admin_site.admin_view(require_POST(self.resume_view)),
                          name="assistant_conversation_resume")
        return [resume_url, *super().get_urls()]

    def resume_view(self, request, conversation_id):
        """The panel's "Resume assistant": the assistant answers on this conversation again from now."""
        if not request.user.has_perm(RESUME_PERMISSION):
            raise PermissionDenied
        conversation = get_object_or_404(scoped(Conversation.objects.all(), request.user), pk=conversation_id)
        if resume(conversation, actor=request.user):
            self.message_user(request, "The assistant is back on this conversation.")
        else:
            self.message_user(request, "The assistant was not paused on this conversation.", messages.WARNING)
        return redirect(reverse("admin:whatsapp_conversation_change", args=[conversation.pk]) + "#assistant-panel")

    @admin.display(description="Received", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="Finished", ordering="finished_at")
    def finished(self, obj):
        return when(obj.finished_at)

    @admin.display(description="Next attempt")
    def next_attempt(self, obj):
        return when(obj.next_attempt_at)

    @admin.display(description="Message")
    def message_shown(self, obj):
        message = obj.message
        return message_link(message, truncatechars(message.text or f"[{message.message_type}]", 60))

    @admin.display(description="Reply")
    def reply_shown(self, obj):
        reply = obj.reply
        if reply is None:
            return "-"
        return message_link(reply, truncatechars(reply.text or f"[{reply.message_type}]", 60))

    @admin.display(description="Tools")
    def tool_count(self, obj):
        calls = obj.tool_calls if isinstance(obj.tool_calls, list) else []
        names = [str(call.get("name", "?")) for call in calls if isinstance(call, dict)]
        return ", ".join(names) or "-"

    @admin.display(description="Tool calls")
    def tool_calls_shown(self, obj):
        return tool_calls_table(obj.tool_calls)

    @admin.display(description="Error")
    def short_error(self, obj):
        return truncatechars(obj.error, 80) or "-"
