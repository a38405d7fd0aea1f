"""
The one-question satisfaction survey sent when a conversation is resolved, for the numbers of teams that ask
for it: a list of five ratings to tap (WhatsApp's reply buttons hold at most three), a numbered question where
the provider carries no interactive message, or an approved template (CSAT_TEMPLATE_NAME) once the 24-hour
window has closed. At most one per conversation per CSAT_SURVEY_PERIOD_DAYS. The answer and an optional
comment are stored on the conversation's Resolution; neither reopens the conversation.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from templates_app.selectors import templates_for
from whatsapp.models import Conversation, Message, Resolution, Team
from whatsapp.providers import backend_for
from whatsapp.providers.events import MessageType, TemplateStatus
from whatsapp.services.outbound import SendRequest, message_send
from whatsapp.services.send_rules import SendRefused
from whatsapp.services.sessions import session_current

Survey = Resolution.Survey
RATINGS = ((5, "Excellent"), (4, "Good"), (3, "Okay"), (2, "Poor"), (1, "Very poor"))
CHOICE_PREFIX = "csat:"
# An answer's echo from the provider's inbox (Chatwoot reopens on it) arrives within this long.
JUST_ANSWERED = timedelta(minutes=5)
# A numbered answer: the digit alone, or the digit, a mark and a comment ("4 - quick, thanks"). "2 of my 3
# items broke" is no answer: without the mark, a number opening a sentence is the sentence's.
NUMBERED = re.compile(r"^\s*([1-5])\s*(?:$|[.,:;!)/-]\s*)(.*)$", re.S)
DIGIT_ALONE = re.compile(r"^\s*([1-5])\s*[.!]?\s*$")


def survey_wanted(conversation: Conversation) -> bool:
    return Team.objects.filter(providers=conversation.provider_id, csat_survey=True).exists()


def survey_offer(resolution: Resolution) -> None:
    """Ask the customer of this resolution, when a team of its number wants it and nothing forbids it."""
    conversation = resolution.conversation
    if not survey_wanted(conversation):
        return
    since = resolution.resolved_at - timedelta(days=settings.CSAT_SURVEY_PERIOD_DAYS)
    if Resolution.objects.filter(conversation=conversation, survey__in=[Survey.ASKED, Survey.ANSWERED],
                                 resolved_at__gte=since).exclude(pk=resolution.pk).exists():
        return _skip(resolution, f"asked already within {settings.CSAT_SURVEY_PERIOD_DAYS} days")
    try:
        with transaction.atomic():
            message, _ = message_send(_question(conversation))
    except SendRefused as refused:
        return _skip(resolution, refused.reason)
    Resolution.objects.filter(pk=resolution.pk).update(survey=Survey.ASKED, survey_message=message, survey_note="")
    resolution.survey, resolution.survey_message = Survey.ASKED, message


def _skip(resolution: Resolution, why: str) -> None:
    Resolution.objects.filter(pk=resolution.pk).update(survey=Survey.SKIPPED, survey_note=why[:200])
    resolution.survey, resolution.survey_note = Survey.SKIPPED, why[:200]


def _question(conversation: Conversation) -> SendRequest:
    base = {"provider": conversation.provider, "contact": conversation.contact, "purpose": Message.Purpose.SURVEY}
    if session_current(conversation) is None:
        template = _template(conversation)
        if template is None:
            raise SendRefused("outside_window", "the 24-hour window has closed and CSAT_TEMPLATE_NAME names no "
                                                "approved template for this number")
        return SendRequest(**base, message_type=MessageType.TEMPLATE, template=template, template_variables={})
    if MessageType.INTERACTIVE in backend_for(conversation.provider).sendable_types:
        rows = [{"id": f"{CHOICE_PREFIX}{value}", "title": f"{value} {label}"} for value, label in RATINGS]
        return SendRequest(**base, message_type=MessageType.INTERACTIVE, interactive={
            "body": settings.CSAT_QUESTION, "button": "Rate us", "sections": [{"title": "", "rows": rows}]})
    numbers = ", ".join(f"{value} {label.lower()}" for value, label in RATINGS)
    return SendRequest(**base, message_type=MessageType.TEXT,
                       text=f"{settings.CSAT_QUESTION}\nReply with a number: {numbers}.")


def _template(conversation: Conversation):
    if not settings.CSAT_TEMPLATE_NAME:
        return None
    return (templates_for(conversation.provider).filter(name=settings.CSAT_TEMPLATE_NAME,
                                                        status=TemplateStatus.APPROVED)
            .order_by("-version").first())


def rating_of(message: Message, question: Message) -> tuple[int | None, str]:
    """The rating (and a comment written with it) this message gives, if it answers the question. A tap on
    one of the choices; a number, with or without a comment, when the question was numbered text or a
    template; the number alone always."""
    if message.message_type == MessageType.INTERACTIVE_REPLY:
        # A tap counts when it is on one of the survey's own choices (a menu of another message is not).
        return (tapped_rating(message), "")
    text = (message.text or "").strip()
    if message.message_type == MessageType.BUTTON:  # a template's quick-reply button
        found = NUMBERED.match(text)
        return (int(found.group(1)), "") if found else (None, "")
    if message.message_type != MessageType.TEXT:
        return None, ""
    if found := DIGIT_ALONE.match(text):
        return int(found.group(1)), ""
    if question.message_type != MessageType.INTERACTIVE and (found := NUMBERED.match(text)):
        return int(found.group(1)), found.group(2).strip()[:2000]
    return None, ""


def tapped_rating(message: Message) -> int | None:
    """The rating of a tap on one of the survey's choices (by its id: "csat:4"), or None."""
    choice = str((message.content or {}).get("id", ""))
    value = choice[len(CHOICE_PREFIX):] if choice.startswith(CHOICE_PREFIX) else ""
    return int(value) if value in {"1", "2", "3", "4", "5"} else None


def survey_just_answered(conversation: Conversation) -> bool:
    """Whether the customer answered the survey a moment ago (their answer may still echo back from the
    provider's inbox as a reopening)."""
    return Resolution.objects.filter(conversation=conversation, survey=Survey.ANSWERED,
                                     answered_at__gte=timezone.now() - JUST_ANSWERED).exists()


def survey_answer_take(message: Message) -> bool:
    """Whether this customer message answers the conversation's survey (its rating, or the comment that
    follows it); it is then stored on the resolution, and the conversation stays as it is."""
    now = timezone.now()
    resolution = (Resolution.objects.select_for_update().select_related("survey_message")
                  .filter(conversation_id=message.conversation_id, survey__in=[Survey.ASKED, Survey.ANSWERED],
                          survey_message__isnull=False).order_by("-resolved_at").first())
    if resolution is None:
        return False
    resolved = message.conversation.status == Conversation.Status.RESOLVED
    if resolution.survey == Survey.ASKED:
        if resolution.survey_message.created_at < now - timedelta(hours=settings.CSAT_ANSWER_HOURS):
            return False
        # Once the conversation is open again, a "2" answers the operator, not the survey; a tap on a rating
        # is still unmistakable.
        if not resolved and tapped_rating(message) is None:
            return False
        rating, comment = rating_of(message, resolution.survey_message)
        if rating is None:
            return False
        Resolution.objects.filter(pk=resolution.pk).update(rating=rating, comment=comment, answered_at=now,
                                                           survey=Survey.ANSWERED)
        if settings.CSAT_THANKS and not comment:
            _thank(message)
        return True
    # The thank-you invites a comment; without it, what follows a rating is a message like any other.
    wants_comment = (resolved and bool(settings.CSAT_THANKS) and not resolution.comment
                     and resolution.answered_at is not None
                     and resolution.answered_at >= now - timedelta(minutes=settings.CSAT_COMMENT_MINUTES))
    if wants_comment and message.message_type == MessageType.TEXT and message.text.strip():
        Resolution.objects.filter(pk=resolution.pk).update(comment=message.text.strip()[:2000])
        return True
    return False


def _thank(message: Message) -> None:
    conversation = message.conversation
    try:
        with transaction.atomic():
            message_send(SendRequest(provider=conversation.provider, contact=conversation.contact,
                                     message_type=MessageType.TEXT, text=settings.CSAT_THANKS,
                                     purpose=Message.Purpose.SURVEY))
    except SendRefused:
        pass  # a thank-you that cannot go (the person opted out meanwhile) is simply not sent
