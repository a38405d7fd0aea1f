"""
The AI panel of the conversation page (registered on whatsapp.admin.extensions.conversation_panels): the
latest message's intent and sentiment, the latest summary and the latest reply suggestions, each with the
button that asks for new ones, or why it cannot. While a request is being made the page polls the panel
(ai_panel.js) until it is over. "Use" puts a suggestion into the send form; only Send sends it.
"""

from __future__ import annotations

import json

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from ai.admin.common import ASK_PERMISSION, provider_settings_url
from ai.client import ai_configured
from ai.models import AiRequest, ReplySuggestion, StepStatus
from ai.selectors import latest_classified_insight, latest_request, latest_summary, request_suggestions
from ai.services.requests import unavailable_reason
from templates_app.parameters import TemplateVariablesError, template_bind, template_render
from whatsapp.admin.extensions import PANEL_FORM_ID
from whatsapp.models import Conversation

# A request still pending after this long has probably no worker to make it.
SLOW_REQUEST_SECONDS = 60
SETTINGS_PERMISSIONS = ("ai.change_provideraisettings", "ai.add_provideraisettings")


def conversation_ai_panel(request, conversation: Conversation) -> SafeString:
    """The hook's receiver: the whole panel, with its script."""
    return render_to_string("admin/ai/conversation_panel.html", panel_context(request, conversation), request=request)


def panel_body(request, conversation: Conversation) -> SafeString:
    """The panel's changing part, which the page fetches again while a request is pending."""
    return render_to_string("admin/ai/_panel_body.html", panel_context(request, conversation), request=request)


def _request_state(ai_request: AiRequest | None, now) -> dict | None:
    if ai_request is None:
        return None
    waited = int((now - ai_request.created_at).total_seconds())
    return {"request": ai_request, "pending": ai_request.status == StepStatus.PENDING,
            "slow": ai_request.status == StepStatus.PENDING and waited > SLOW_REQUEST_SECONDS, "waited": waited}


def _suggestion_item(suggestion: ReplySuggestion) -> dict:
    template = suggestion.template
    if template is None:
        return {"suggestion": suggestion, "text": suggestion.text}
    try:
        preview = template_render(template, template_bind(template, suggestion.template_variables))
    except TemplateVariablesError:
        preview = ""
    return {"suggestion": suggestion, "template": template, "preview": preview,
            "variables_json": json.dumps(suggestion.template_variables, ensure_ascii=False)}


def panel_context(request, conversation: Conversation) -> dict:
    now = timezone.now()
    configured = ai_configured()
    user = request.user
    summary = latest_summary(conversation)
    summary_state = _request_state(latest_request(conversation, AiRequest.Kind.SUMMARY), now)
    if summary_state and summary_state["request"].status == StepStatus.DONE:
        summary_state = None  # its summary is the one shown (or a newer one)
    suggestions_state = _request_state(latest_request(conversation, AiRequest.Kind.SUGGESTIONS), now)
    suggestions = []
    if suggestions_state and suggestions_state["request"].status == StepStatus.DONE:
        suggestions = [_suggestion_item(row) for row in request_suggestions(suggestions_state["request"])]
        made_at = suggestions_state["request"].created_at
        suggestions_state["outdated"] = bool(conversation.last_message_at and conversation.last_message_at > made_at)
    pending = any(state and state["pending"] for state in (summary_state, suggestions_state))
    return {
        "conversation": conversation, "configured": configured, "may_ask": user.has_perm(ASK_PERMISSION),
        "insight": latest_classified_insight(conversation),
        "summary": summary, "summary_state": summary_state,
        "suggestions": suggestions, "suggestions_state": suggestions_state,
        # Why a kind cannot be asked for now (AI off is said once, at the top of the panel).
        "summary_reason": unavailable_reason(conversation, AiRequest.Kind.SUMMARY) if configured else "",
        "suggestions_reason": unavailable_reason(conversation, AiRequest.Kind.SUGGESTIONS) if configured else "",
        "pending": pending,
        "settings_url": provider_settings_url(conversation.provider)
        if any(user.has_perm(permission) for permission in SETTINGS_PERMISSIONS) else "",
        "panel_form_id": PANEL_FORM_ID,
        "poll_url": reverse("admin:ai_airequest_panel", args=[conversation.pk]),
        "suggest_url": reverse("admin:ai_airequest_suggest", args=[conversation.pk]),
        "summarise_url": reverse("admin:ai_airequest_summarise", args=[conversation.pk]),
        # The send form is on the page for those who may change the conversation: "Use" fills it.
        "send_form_shown": user.has_perm(ASK_PERMISSION),
    }
