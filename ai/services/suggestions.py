"""
Up to three replies an operator may send next, in the customer's language. Inside the 24-hour window
they are free text; outside it only an approved template may be sent, so they are templates with their
variables filled in. Nothing is sent: a person picks one, edits it and sends it.
"""

from __future__ import annotations

from django.db import transaction

from ai.client import AiError
from ai.context import conversation_context
from ai.models import AiRequest, Feature, MessageInsight, ReplySuggestion, StepStatus
from ai.prompts import SUGGESTIONS_VERSION, suggestions_format, suggestions_messages
from ai.redaction import restore
from ai.services.calls import CallScope, structured_call
from ai.services.requests import ai_request_begin, ai_request_finish, redacted_context
from templates_app.models import MessageTemplate
from templates_app.parameters import template_spec
from templates_app.selectors import approved_templates_for
from whatsapp.models import Conversation, Message
from whatsapp.services.sessions import session_current


def customer_language(conversation: Conversation) -> str:
    insight = (MessageInsight.objects.filter(message__conversation=conversation).exclude(language="")
               .order_by("-message__created_at").first())
    return insight.language if insight else ""


def fillable_templates(conversation: Conversation) -> dict[str, MessageTemplate]:
    """Approved templates a suggestion can fill: body variables only (a header or button that needs a value
    is for a person to fill). The newest approved version of each name and language."""
    templates: dict[str, MessageTemplate] = {}
    for template in approved_templates_for(conversation.provider).order_by("name", "language", "-version"):
        spec = template_spec(template)
        if spec.header_params or spec.header_format not in ("", "TEXT") or any(n for _, n in spec.buttons.values()):
            continue
        templates.setdefault(f"{template.name}:{template.language}", template)
    return templates


def suggestions_make(request_id: int) -> AiRequest | None:
    request = ai_request_begin(request_id)
    if request is None:
        return None
    conversation = request.conversation
    window_open = session_current(conversation) is not None
    templates = None if window_open else fillable_templates(conversation)
    lines = [line.render() for line in conversation_context(conversation)]
    if not lines:
        ai_request_finish(request, StepStatus.SKIPPED, "the conversation has no messages to answer")
        return request
    if templates is not None and not templates:
        ai_request_finish(request, StepStatus.SKIPPED, "the 24-hour window is closed and no approved template "
                                                       "can be filled in")
        return request
    lines, redaction = redacted_context(lines, conversation)
    language = customer_language(conversation)
    template_rows = None if templates is None else [
        {"name": key, "language": t.language, "body": template_spec(t).body_text} for key, t in templates.items()]
    scope = CallScope(Feature.SUGGESTIONS, provider=conversation.provider, conversation=conversation)
    try:
        answer = structured_call(
            scope, suggestions_messages(lines, language_hint=language, templates=template_rows),
            suggestions_format(None if templates is None else list(templates)), prompt_version=SUGGESTIONS_VERSION)
    except AiError as error:
        ai_request_finish(request, StepStatus.FAILED, str(error))
        return request
    _store(request, answer.data, redaction.replacements, templates)
    return request


@transaction.atomic
def _store(request: AiRequest, data: dict, replacements: dict[str, str],
           templates: dict[str, MessageTemplate] | None) -> None:
    conversation = request.conversation
    latest = Message.objects.filter(conversation=conversation).order_by("-created_at", "-pk").first()
    language = str(data.get("language") or "")[:16].lower()
    stored = 0
    for item in data.get("suggestions", [])[:3]:
        row = ReplySuggestion(conversation=conversation, request=request, for_message=latest, language=language,
                              position=stored + 1)
        if templates is None:
            row.text = restore(str(item.get("text", "")), replacements).strip()
            if not row.text:
                continue
        else:
            template = templates.get(str(item.get("template", "")))
            if template is None:
                continue
            values = [restore(str(value), replacements) for value in item.get("variables", [])]
            params = template_spec(template).body_params
            if len(values) != len(params):
                continue  # a template filled in wrongly is not offered
            row.template, row.template_variables = template, {"body": dict(zip(params, values, strict=True))}
        row.save()
        stored += 1
    if stored:
        ai_request_finish(request, StepStatus.DONE)
    else:
        ai_request_finish(request, StepStatus.FAILED, "the model offered no usable suggestion")
