"""
A conversation's summary, for whoever takes it over: on request (admin, API) and on its own when a
conversation goes idle after enough messages. Each summary keeps the range of messages it covers.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import F, Max, Q
from django.utils import timezone

from ai import guards
from ai.client import AiError, ai_configured
from ai.context import conversation_context
from ai.models import AiRequest, ConversationSummary, Feature, StepStatus
from ai.prompts import SUMMARY_VERSION, summary_format, summary_messages
from ai.redaction import restore
from ai.services.calls import CallScope, structured_call
from ai.services.requests import (
    AiUnavailable,
    ai_request_begin,
    ai_request_create,
    ai_request_finish,
    redacted_context,
)
from ai.services.suggestions import customer_language
from whatsapp.models import Conversation, Message


def summary_make(request_id: int) -> AiRequest | None:
    request = ai_request_begin(request_id)
    if request is None:
        return None
    conversation = request.conversation
    # The summary covers what fits the budget, told oldest first.
    lines = list(reversed(conversation_context(conversation, budget_chars=settings.AI_CONTEXT_CHARS * 4)))
    if not lines:
        ai_request_finish(request, StepStatus.SKIPPED, "the conversation has no messages to summarise")
        return request
    texts, redaction = redacted_context([line.render() for line in lines], conversation)
    scope = CallScope(Feature.SUMMARY, provider=conversation.provider, conversation=conversation)
    try:
        answer = structured_call(scope, summary_messages(texts, language=customer_language(conversation)),
                                 summary_format(), prompt_version=SUMMARY_VERSION)
    except AiError as error:
        ai_request_finish(request, StepStatus.FAILED, str(error))
        return request
    text = restore(str(answer.data["summary"]), redaction.replacements).strip()
    ConversationSummary.objects.create(
        conversation=conversation, request=request, text=text, language=str(answer.data["language"])[:16],
        first_message_id=lines[0].message_id, last_message_id=lines[-1].message_id, message_count=len(lines),
        trigger=request.trigger or ConversationSummary.Trigger.MANUAL, model=answer.model,
        created_by=request.created_by)
    Conversation.objects.filter(pk=conversation.pk).update(ai_summary=text)
    ai_request_finish(request, StepStatus.DONE)
    return request


def idle_conversations_summarize(*, limit: int = 100, scan_limit: int = 2000) -> int:
    """Beat job: conversations quiet for AI_SUMMARY_IDLE_MINUTES with AI_SUMMARY_MIN_MESSAGES messages or
    more since their last summary (or ever) get one."""
    if not ai_configured():
        return 0
    now = timezone.now()
    idle_since = now - timedelta(minutes=settings.AI_SUMMARY_IDLE_MINUTES)
    recent_request = Q(ai_requests__kind=AiRequest.Kind.SUMMARY) & (
        Q(ai_requests__status=StepStatus.PENDING)
        # A summary that failed is not asked for again (and paid for) every run: once a day.
        | Q(ai_requests__status=StepStatus.FAILED, ai_requests__created_at__gte=now - timedelta(days=1)))
    candidates = (Conversation.objects.filter(last_message_at__lte=idle_since,
                                              last_message_at__gte=now - timedelta(days=7))
                  .annotate(last_summary_at=Max("summaries__created_at"))
                  .filter(Q(last_summary_at__isnull=True) | Q(last_message_at__gt=F("last_summary_at")))
                  .exclude(recent_request)
                  .select_related("provider").order_by("-last_message_at")[:scan_limit])
    made = 0
    for conversation in candidates.iterator(chunk_size=200):
        if made >= limit:
            break
        if _messages_since_summary(conversation) < settings.AI_SUMMARY_MIN_MESSAGES:
            continue
        if guards.skip_for(Feature.SUMMARY, conversation.provider, contact_id=conversation.contact_id):
            continue
        try:
            ai_request_create(conversation, AiRequest.Kind.SUMMARY, trigger=ConversationSummary.Trigger.IDLE)
        except AiUnavailable:
            continue
        made += 1
    return made


def _messages_since_summary(conversation: Conversation) -> int:
    messages = Message.objects.filter(conversation=conversation, purpose="")
    last = conversation.summaries.order_by("-created_at").select_related("last_message").first()
    if last is not None and last.last_message is not None:
        messages = messages.filter(created_at__gt=last.last_message.created_at)
    return messages.count()
