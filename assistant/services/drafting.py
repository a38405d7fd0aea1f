"""A complete content request's draft: one model call, then a ready notice for users who opted in."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from ai import guards
from ai.client import AiError
from ai.models import Feature
from ai.services.calls import CallScope, chat_call
from assistant.models import ContentRequest
from assistant.phrases import phrase
from assistant.policy import Action, Outcome, decide
from assistant.selectors import policy_for
from assistant.services import outbox
from contacts.models import ContactUserMapping

logger = logging.getLogger(__name__)

PROMPT_VERSION = "draft-1"
DRAFT_LEASE = timedelta(minutes=2)
WORDS = {"short": "at most 60 words", "medium": "about 150 words", "long": "about 400 words"}
MAX_TOKENS = {"short": 300, "medium": 700, "long": 1600}
PLATFORM_NOTES = {
    "linkedin": "a LinkedIn post: a strong first line, short paragraphs, at most three hashtags at the end",
    "instagram": "an Instagram caption: a hook, short lines, a few hashtags at the end",
    "x": "a post for X: under 280 characters",
    "facebook": "a Facebook post",
    "blog": "a blog article with a title and short sections",
    "email": "an email with a subject line",
}

# What a draft is called in the ready notice: "short LinkedIn post".
KINDS = {"linkedin": "LinkedIn post", "instagram": "Instagram caption", "x": "post for X",
         "facebook": "Facebook post", "blog": "blog article", "email": "email"}


def draft_messages(request: ContentRequest) -> list[dict[str, str]]:
    system = (f"You write {PLATFORM_NOTES.get(request.platform, 'a short text')}, {WORDS.get(request.length, '')}, "
              f"in a {request.tone or 'neutral'} tone, in the language of the brief. Answer with the text only.")
    user = f"Brief: {request.brief}\nTopic: {request.topic or request.brief}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def draft_make(request_id: int) -> None:
    # Claimed for DRAFT_LEASE by moving updated_at ahead: a second copy of this task (the sweep's) finds it
    # taken and pays for no second draft; after a failure updated_at is now again, and the sweep retries.
    now = timezone.now()
    drafting = ContentRequest.objects.filter(Q(draft=""), pk=request_id, status=ContentRequest.Status.DRAFTING)
    if not drafting.filter(updated_at__lte=now).update(updated_at=now + DRAFT_LEASE):
        return
    request = drafting.select_related("conversation__provider", "conversation__contact", "owner").first()
    if request is None or request.conversation is None:
        return
    conversation = request.conversation
    skip = guards.skip_for(Feature.DRAFTING, conversation.provider, contact_id=conversation.contact_id)
    if skip and not skip.recorded:
        _failed(request, skip.reason)
        return
    if skip:
        ContentRequest.objects.filter(pk=request.pk).update(error=skip.reason[:300], updated_at=timezone.now())
        return  # over budget: the sweep tries again later
    scope = CallScope(Feature.DRAFTING, provider=conversation.provider, conversation=conversation,
                      message=request.source_message)
    try:
        result, _cost = chat_call(scope, draft_messages(request), prompt_version=PROMPT_VERSION,
                                  max_completion_tokens=MAX_TOKENS.get(request.length, 700))
    except AiError as error:
        if error.retryable:
            ContentRequest.objects.filter(pk=request.pk).update(error=str(error)[:300], updated_at=timezone.now())
            return  # the sweep tries again
        _failed(request, str(error))
        return
    draft = result.content.strip()
    if not draft:
        _failed(request, "the model answered with no text")
        return
    updated = ContentRequest.objects.filter(pk=request.pk, status=ContentRequest.Status.DRAFTING, draft="").update(
        draft=draft, status=ContentRequest.Status.READY, drafted_at=timezone.now(), error="",
        updated_at=timezone.now())
    if updated:
        _ready_notice(request, draft)


def _ready_notice(request: ContentRequest, draft: str) -> None:
    conversation = request.conversation
    opted_in = ContactUserMapping.objects.filter(contact_id=conversation.contact_id, notify_on_ready=True).exists()
    decision = decide(Outcome.CONTENT_READY, policy_for(conversation.provider), notify_on_ready=opted_in)
    if decision.action != Action.CONFIRM:
        return
    what = " ".join(filter(None, [request.length, KINDS.get(request.platform, "text")]))
    language = conversation.contact.language
    outbox.send_text(conversation, phrase("content_ready", language, what=what, draft=draft[:3500]))


def draft_give_up(request: ContentRequest) -> None:
    """The sweep's last word on a draft that could not be written for ASSISTANT_GIVE_UP_HOURS."""
    _failed(request, "the AI stayed unavailable")


def _failed(request: ContentRequest, reason: str) -> None:
    ContentRequest.objects.filter(pk=request.pk).update(status=ContentRequest.Status.FAILED, error=reason[:300],
                                                        updated_at=timezone.now())
    logger.warning("content draft failed", extra={"content_request_id": request.pk, "reason": reason})
    if request.conversation is not None:
        outbox.send_text(request.conversation, phrase("failed", request.conversation.contact.language,
                                                      reason="the draft could not be written"))
