"""
A content request's missing fields (platform, length, tone, topic), asked one at a time: the question goes
out with its choices as buttons, and the answer (a tap, the choice's title, its number, or any text for
the topic) fills the field without a model call. The question waits on the conversation and expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from assistant.models import ContentRequest, ConversationState
from assistant.phrases import phrase
from assistant.services.outbox import Choice
from assistant.tools import LENGTHS, PLATFORMS, TONES
from core.queueing import publish_on_commit, task_named
from whatsapp.models import Message
from whatsapp.providers.events import MessageType

FIELDS = ("platform", "length", "tone", "topic")
CHOICES = {"platform": PLATFORMS, "length": LENGTHS, "tone": TONES, "topic": []}
TITLES = {"linkedin": "LinkedIn", "instagram": "Instagram", "x": "X (Twitter)", "facebook": "Facebook",
          "blog": "Blog", "email": "Email"}


@dataclass(frozen=True)
class Question:
    text: str
    choices: list[Choice]
    list_button: str = "Choose"


def _choice_id(request_id: int, field: str, value: str) -> str:
    return f"cr{request_id}:{field}:{value}"


def missing_fields(request: ContentRequest) -> list[str]:
    return [name for name in FIELDS if not getattr(request, name)]


def next_question(request: ContentRequest, state: ConversationState, *, language: str,
                  now: datetime | None = None) -> Question | None:
    """The question for the request's first missing field, left waiting on the conversation; None (and
    nothing waiting) when the request is complete."""
    missing = missing_fields(request)
    if not missing:
        pending_clear(state)
        return None
    field = missing[0]
    choices = [Choice(_choice_id(request.pk, field, value), TITLES.get(value, value.capitalize()))
               for value in CHOICES[field]]
    state.pending = {"kind": "content_field", "request": request.pk, "field": field,
                     "choices": [{"id": choice.id, "title": choice.title} for choice in choices]}
    state.pending_expires_at = (now or timezone.now()) + timedelta(minutes=settings.ASSISTANT_PENDING_MINUTES)
    ConversationState.objects.filter(pk=state.pk).update(pending=state.pending,
                                                         pending_expires_at=state.pending_expires_at)
    return Question(phrase(f"ask_{field}", language), choices, phrase("choose", language))


def pending_clear(state: ConversationState) -> None:
    if state.pending or state.pending_expires_at:
        state.pending, state.pending_expires_at = {}, None
        ConversationState.objects.filter(pk=state.pk).update(pending={}, pending_expires_at=None)


def pending_active(state: ConversationState, now: datetime | None = None) -> bool:
    return bool(state.pending) and state.pending_expires_at is not None and \
        state.pending_expires_at > (now or timezone.now())


def _value_of(choice_id: str, pending: dict) -> str | None:
    prefix = _choice_id(pending["request"], pending["field"], "")
    return choice_id[len(prefix):] if choice_id.startswith(prefix) else None


def answer_of(state: ConversationState, message: Message) -> str | None:
    """The value the message gives the waiting question, or None when it is no answer to it."""
    pending = state.pending
    choices = pending.get("choices") or []
    if message.message_type == MessageType.INTERACTIVE_REPLY:
        return _value_of(str(message.content.get("id", "")), pending)
    text = " ".join((message.text or message.transcript or "").split())
    if not text:
        return None
    if not choices:
        return text[:300]  # a free answer (the topic)
    for choice in choices:
        if text.casefold() == str(choice["title"]).casefold():
            return _value_of(choice["id"], pending)
    if text.rstrip(".").isdigit() and 1 <= int(text.rstrip(".")) <= len(choices):
        return _value_of(choices[int(text.rstrip(".")) - 1]["id"], pending)
    return None


def answer_apply(state: ConversationState, value: str, *, owner) -> ContentRequest | None:
    """Fill the waiting field; the request (None, and the question dropped, when it is gone, no longer
    waiting for input, or another user's: the contact was mapped to someone else meanwhile)."""
    pending = state.pending
    request = ContentRequest.objects.filter(pk=pending.get("request"), owner=owner,
                                            status=ContentRequest.Status.NEEDS_INPUT).first()
    if request is None or pending.get("field") not in FIELDS:
        pending_clear(state)
        return None
    setattr(request, pending["field"], value)
    request.save(update_fields=[pending["field"], "updated_at"])
    return request


def drafting_start(request: ContentRequest) -> None:
    ContentRequest.objects.filter(pk=request.pk).update(status=ContentRequest.Status.DRAFTING,
                                                        updated_at=timezone.now())
    request.status = ContentRequest.Status.DRAFTING
    draft_task = task_named("assistant.tasks.content_draft_task")
    publish_on_commit(lambda: draft_task.delay(request.pk), what=f"content request {request.pk}")
