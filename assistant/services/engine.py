"""
One assistant turn: a mapped user's message becomes tool calls (through the OpenAI SDK), the tools run, and
the notification policy decides what, if anything, goes back.

Turns of one conversation run one at a time, oldest first, so "make it high priority" always sees the task
the message before it made. A clarification's answer fills its field without a model call. When the AI
is down or over budget the turn waits (the message is kept), the user is told once per outage, and beat
retries waiting turns until the AI answers again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jsonschema
from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from ai import guards
from ai.client import AiError, ChatResult
from ai.context import message_text
from ai.models import Feature
from ai.pricing import estimated_chat_cost
from ai.redaction import Redaction, redact, restore
from ai.services.calls import CallScope, chat_call, record_skip
from ai.services.pipeline import needs_transcript
from assistant.models import ContentRequest, ConversationState, Turn
from assistant.phrases import phrase
from assistant.policy import Action, Decision, Outcome, decide
from assistant.selectors import policy_for, profile_for
from assistant.services import clarify, drafting, handoff, outbox
from assistant.services.actions import HANDLERS, ActionError, ActionResult, TurnContext
from assistant.services.timezones import local_now, user_zone
from assistant.tools import TOOLS, tool_schema
from core.locks import try_session_lock
from core.queueing import task_named
from whatsapp.models import Message

logger = logging.getLogger(__name__)

PROMPT_VERSION = "assistant-1"
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0
# A queued turn whose task never reached the broker is picked up by the sweep after this long.
QUEUED_STALE = timedelta(minutes=1)
DRAFT_STALE = timedelta(minutes=2)


# Questions answered from a tool's result, and a clarification: the turn's reply, with no closing model call.
ANSWERS = {Outcome.TASKS_LISTED, Outcome.DUE_REPORTED, Outcome.NOTES_FOUND, Outcome.CONTENT_CLARIFY}
# The AI account is out of credit: like a budget, it waits (one notice) instead of failing each message.
OUT_OF_CREDIT = {"insufficient_quota"}


class ConversationBusy(Exception):
    """Another worker is running this conversation's turns; it takes this one too, or the task retries."""


SYSTEM_PROMPT = """You are {name}'s personal assistant on WhatsApp. You keep their notes, tasks, projects, \
goals, content requests and reminders by calling the tools.
Today: {today} ({weekday}), now {now}, time zone {zone}
{last_task}Rules:
- When the message asks for something a tool does, call the tool; one call per step.
- Resolve relative dates ("tomorrow", "next Friday") to YYYY-MM-DD yourself, from today's date above.
- "it", "that" or "the task" mean the last task named above: pass task="last".
- A message starting with "note" or asking to remember something is a note: save it as said.
- Never invent a field the user did not give; leave it null.
- If no tool fits, answer in one short sentence, in the user's language. Never chat otherwise."""


@dataclass
class Reply:
    lines: list[str] = field(default_factory=list)
    emoji: str = ""
    question: clarify.Question | None = None
    notice: str = ""


# --- running a conversation's turns ----------------------------------------------------------------------

def turn_run(message_id: int) -> None:
    """Run the message's turn and any earlier ones of its conversation still queued. Raises ConversationBusy
    when another worker holds the conversation (the task retries shortly)."""
    turn = Turn.objects.select_related("message").filter(message_id=message_id).first()
    if turn is None or turn.status not in (Turn.Status.QUEUED, Turn.Status.WAITING):
        return
    conversation_id = turn.message.conversation_id
    with try_session_lock("assistant-conversation", conversation_id) as locked:
        if not locked:
            raise ConversationBusy(conversation_id)
        while (next_turn := _next_due(conversation_id)) is not None:
            turn_process(next_turn)
            if next_turn.status == Turn.Status.WAITING:
                break  # the AI is out: later turns of this conversation wait behind this one


def _next_due(conversation_id: int) -> Turn | None:
    """The conversation's oldest open turn, if it can run now. A turn waiting for the AI, or a voice note
    waiting for its transcript, holds back every later turn: they are handled in the order they were sent."""
    oldest = (Turn.objects.select_related("message__provider", "message__conversation__contact", "owner")
              .filter(status__in=[Turn.Status.QUEUED, Turn.Status.WAITING], message__conversation_id=conversation_id)
              .order_by("message__created_at", "message_id").first())
    if oldest is None:
        return None
    if oldest.status == Turn.Status.WAITING and oldest.next_attempt_at and oldest.next_attempt_at > timezone.now():
        return None
    if needs_transcript(oldest.message) and oldest.message.ai_processed_at is None:
        return None  # ai.hooks.message_understood enqueues it once the transcript exists
    return oldest


def turn_process(turn: Turn) -> None:
    message = turn.message
    conversation = message.conversation
    state = handoff.state_for(conversation)
    if handoff.is_silenced(state):
        _finish(turn, Turn.Status.SILENCED, error=f"a person replied ({state.silenced_by})")
        return
    profile = profile_for(turn.owner)
    ctx = TurnContext(user=turn.owner, conversation=conversation, message=message, state=state, profile=profile,
                      zone=user_zone(profile_zone=profile.time_zone, contact=conversation.contact),
                      language=(message.language or conversation.contact.language or "en")[:2].lower())
    try:
        answer = clarify.answer_of(state, message) if clarify.pending_active(state) else None
        if answer is not None and _clarification_answered(turn, ctx, answer):
            return
        if state.pending and not clarify.pending_active(state):
            clarify.pending_clear(state)  # expired: the message is a new request
        if not message_text(message):
            _finish(turn, Turn.Status.SKIPPED, error="no text, caption or transcript to act on")
            return
        _model_turn(turn, ctx)
    except Exception:
        logger.exception("assistant turn raised", extra={"message_id": message.pk})
        reply = Reply(notice=phrase("failed", ctx.language, reason="an unexpected error"))
        _finish(turn, Turn.Status.FAILED, outcome=Outcome.FAILED, error="unexpected error",
                reply=_send(ctx, reply))


def _clarification_answered(turn: Turn, ctx: TurnContext, value: str) -> bool:
    """Fill the waiting field; False when the question is no longer open (its request was closed or belongs
    to someone else), and the message is then handled as a new request."""
    with transaction.atomic():
        request = clarify.answer_apply(ctx.state, value, owner=ctx.user)
        if request is None:
            return False
        question = clarify.next_question(request, ctx.state, language=ctx.language)
        if question is None:
            clarify.drafting_start(request)
        outcome = Outcome.CONTENT_CLARIFY if question else Outcome.CONTENT_REQUESTED
        calls = [{"name": "answer_clarification", "arguments": {"request": request.pk, "value": value},
                  "result": {"content_request": request.pk}, "ok": True}]
        reply = _reply_for([ActionResult(outcome, phrase("content_requested", ctx.language, brief=request.brief),
                                         question=question)], ctx)
        _finish(turn, Turn.Status.DONE, outcome=outcome, tool_calls=calls, reply=_send(ctx, reply))
    return True


# --- the model's part ------------------------------------------------------------------------------------

def _model_turn(turn: Turn, ctx: TurnContext) -> None:
    provider = ctx.conversation.provider
    ai_settings = guards.ai_settings_for(provider)
    scope = CallScope(Feature.ASSISTANT, provider=provider, message=ctx.message, conversation=ctx.conversation,
                      attempt=turn.attempts + 1)
    messages, redaction = _prompt(ctx, redact_pii=ai_settings.redact_pii)
    estimate = estimated_chat_cost(settings.OPENAI_MODEL, prompt_chars=sum(len(str(m["content"])) for m in messages)
                                   + 6000, max_output_tokens=600)
    skip = guards.skip_for(Feature.ASSISTANT, provider, contact_id=ctx.conversation.contact_id, estimate=estimate,
                           ai_settings=ai_settings)
    if skip and skip.recorded:
        record_skip(scope, skip)
        _wait(turn, ctx, skip.reason, retry_in=MAX_RETRY_SECONDS)
        return
    if skip:
        _finish(turn, Turn.Status.SKIPPED, error=skip.reason)
        return
    results: list[ActionResult] = []
    calls: list[dict[str, Any]] = []
    errors: list[str] = []
    answer = ""
    for _round in range(settings.ASSISTANT_MAX_TOOL_ROUNDS):
        try:
            result, _cost = chat_call(scope, messages, tools=TOOLS, prompt_version=PROMPT_VERSION,
                                      max_completion_tokens=600)
        except AiError as error:
            if (error.retryable or error.code in OUT_OF_CREDIT) and not results:
                _wait(turn, ctx, str(error), retry_in=error.retry_after)
                return
            logger.warning("assistant model call failed", extra={"message_id": ctx.message.pk, "code": error.code})
            errors.append("the AI could not answer")
            break
        if not result.tool_calls:
            if not results:
                answer = restore(result.content, redaction.replacements).strip()
            break  # after actions, the model's closing words are not sent: the policy decides
        done_before = len(results)
        errors = _run_calls(result, ctx, redaction, results, calls)
        if any(outcome.outcome in ANSWERS for outcome in results[done_before:]):
            break  # a question or a clarification is the turn's answer: no closing call
        # One call per round (strict tools refuse parallel calls): the results go back, so a message asking
        # for two things ("a task and a reminder") gets its second call, and a failed call another try.
        messages = [*messages, *_tool_messages(result, calls[-len(result.tool_calls):])]
    _conclude(turn, ctx, results, calls, errors, answer)


def _prompt(ctx: TurnContext, *, redact_pii: bool) -> tuple[list[dict[str, Any]], Redaction]:
    now = local_now(ctx.zone)
    last = ctx.state.last_task if ctx.state.last_task and ctx.state.last_task.owner_id == ctx.user.pk else None
    last_task = (f"The last task: #{last.pk} \"{last.title}\" (priority {last.priority}"
                 f"{', due ' + str(last.due_date) if last.due_date else ''}).\n") if last else ""
    system = SYSTEM_PROMPT.format(name=ctx.user.get_short_name() or ctx.user.get_username(), today=now.date(),
                                  weekday=now.strftime("%A"), now=now.strftime("%H:%M"), zone=ctx.zone.key,
                                  last_task=last_task)
    history = (Message.objects.filter(conversation=ctx.conversation, created_at__lt=ctx.message.created_at)
               .exclude(purpose__in=[Message.Purpose.VERIFICATION, Message.Purpose.REGISTRATION,
                                     Message.Purpose.CONSENT_CONFIRMATION])
               .order_by("-created_at")[:settings.ASSISTANT_CONTEXT_MESSAGES])
    redaction = Redaction("", {})
    turns: list[dict[str, Any]] = []
    for earlier in reversed(list(history)):
        text = message_text(earlier)
        if not text:
            continue
        if redact_pii:
            redaction = redact(text, into=redaction)
            text = redaction.text
        role = "user" if earlier.direction == Message.Direction.INBOUND else "assistant"
        turns.append({"role": role, "content": text[:1000]})
    text = message_text(ctx.message)
    if redact_pii:
        redaction = redact(text, into=redaction)
        text = redaction.text
    return [{"role": "system", "content": system}, *turns, {"role": "user", "content": text}], redaction


def _run_calls(result: ChatResult, ctx: TurnContext, redaction: Redaction, results: list[ActionResult],
               calls: list[dict[str, Any]]) -> list[str]:
    errors = []
    for call in result.tool_calls:
        name = call["name"]
        record: dict[str, Any] = {"name": name, "arguments": {}, "result": None, "ok": False}
        calls.append(record)
        try:
            arguments = json.loads(restore(call["arguments"] or "{}", redaction.replacements))
            record["arguments"] = arguments
            if name not in HANDLERS:
                raise ActionError(f"there is no tool named {name}")
            jsonschema.validate(arguments, tool_schema(name))
            with transaction.atomic():
                outcome = HANDLERS[name](ctx, **arguments)
        except (ValueError, jsonschema.ValidationError, ActionError) as problem:
            reason = problem.message if isinstance(problem, jsonschema.ValidationError) else str(problem)
            record["result"] = reason
            errors.append(reason)
            continue
        record.update(result=outcome.data, ok=True, outcome=outcome.outcome.value)
        results.append(outcome)
    return errors


def _tool_messages(result: ChatResult, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's calls and their results, for the next round."""
    assistant = {"role": "assistant", "content": result.content or None,
                 "tool_calls": [{"id": call["id"], "type": "function",
                                 "function": {"name": call["name"], "arguments": call["arguments"]}}
                                for call in result.tool_calls]}
    answers = [{"role": "tool", "tool_call_id": call["id"],
                "content": json.dumps({"ok": record["ok"], "result": record["result"]}, default=str)}
               for call, record in zip(result.tool_calls, records, strict=True)]
    return [assistant, *answers]


def _conclude(turn: Turn, ctx: TurnContext, results: list[ActionResult], calls: list[dict[str, Any]],
              errors: list[str], answer: str) -> None:
    if errors and not results:
        reply = Reply(notice=phrase("failed", ctx.language, reason=errors[-1][:200]))
        _finish(turn, Turn.Status.FAILED, outcome=Outcome.FAILED, tool_calls=calls, error=errors[-1],
                reply=_send(ctx, reply))
        return
    if not results:
        outcome = Outcome.ANSWERED if answer else Outcome.NOTHING
        results = [ActionResult(outcome, answer[:1000])]
    reply = _reply_for(results, ctx)
    _finish(turn, Turn.Status.DONE, outcome=results[-1].outcome, tool_calls=calls,
            error="; ".join(errors)[:500], reply=_send(ctx, reply))


# --- what goes back ------------------------------------------------------------------------------------

def _reply_for(results: list[ActionResult], ctx: TurnContext) -> Reply:
    policy = policy_for(ctx.conversation.provider)
    reply = Reply()
    for result in results:
        decision: Decision = decide(result.outcome, policy)
        if decision.action in (Action.CONFIRM, Action.ANSWER) and result.line:
            reply.lines.append(result.line)
        elif decision.action == Action.REACT:
            reply.emoji = reply.emoji or decision.emoji
        elif decision.action == Action.ASK and result.question and reply.question is None:
            reply.question = result.question
    return reply


def _send(ctx: TurnContext, reply: Reply) -> Message | None:
    """Send the reply; the first message sent (the turn keeps it), or None."""
    sent: list[Message | None] = []
    conversation = ctx.conversation
    with transaction.atomic():
        if reply.emoji:
            sent.append(outbox.send_reaction(ctx.message, reply.emoji))
        text = "\n".join([*reply.lines, reply.notice]).strip()
        if text:
            sent.append(outbox.send_text(conversation, text))
        if reply.question is not None:
            sent.append(outbox.send_question(conversation, reply.question.text, reply.question.choices,
                                             list_button=reply.question.list_button, language=ctx.language))
    return next((message for message in sent if message is not None), None)


def _finish(turn: Turn, status: str, *, outcome: str = "", tool_calls: list | None = None, error: str = "",
            reply: Message | None = None) -> None:
    turn.status, turn.outcome, turn.error = status, str(outcome), error[:500]
    turn.tool_calls = tool_calls if tool_calls is not None else turn.tool_calls
    turn.reply, turn.finished_at, turn.next_attempt_at = reply, timezone.now(), None
    turn.save(update_fields=["status", "outcome", "error", "tool_calls", "reply", "finished_at", "next_attempt_at"])


# --- the AI out: wait, tell the user once, retry ---------------------------------------------------------

def _wait(turn: Turn, ctx: TurnContext, reason: str, *, retry_in: float | None) -> None:
    turn.attempts += 1
    delay = retry_in if retry_in is not None else FIRST_RETRY_SECONDS * 2 ** min(turn.attempts - 1, 8)
    turn.status, turn.error = Turn.Status.WAITING, reason[:500]
    turn.next_attempt_at = timezone.now() + timedelta(seconds=min(delay, MAX_RETRY_SECONDS))
    turn.save(update_fields=["status", "error", "attempts", "next_attempt_at"])
    _tell_unavailable_once(ctx)
    if delay <= 30:
        # Soon enough for a countdown; longer waits are the beat sweep's (a broker holding a delayed task past
        # its visibility timeout would hand it out twice).
        task_named("assistant.tasks.assistant_turn_task").apply_async((turn.message_id,), countdown=delay)


def _tell_unavailable_once(ctx: TurnContext) -> None:
    since = timezone.now() - timedelta(hours=settings.ASSISTANT_UNAVAILABLE_NOTICE_HOURS)
    told = ConversationState.objects.filter(
        Q(unavailable_notice_at__isnull=True) | Q(unavailable_notice_at__lt=since), pk=ctx.state.pk,
    ).update(unavailable_notice_at=timezone.now())
    if told:
        outbox.send_text(ctx.conversation, phrase("unavailable", ctx.language))


def waiting_turns_retry() -> int:
    """Beat: hand waiting turns that are due (and queued ones whose task was lost) back to the worker, one task
    per conversation; give up on turns older than ASSISTANT_GIVE_UP_HOURS; restart stalled drafts."""
    now = timezone.now()
    give_up_before = now - timedelta(hours=settings.ASSISTANT_GIVE_UP_HOURS)
    given_up = Turn.objects.filter(status__in=[Turn.Status.WAITING, Turn.Status.QUEUED],
                                   created_at__lt=give_up_before)
    given_up.update(status=Turn.Status.FAILED, error="the AI stayed unavailable; the message is kept",
                    finished_at=now, next_attempt_at=None)
    due = Turn.objects.filter(Q(status=Turn.Status.WAITING, next_attempt_at__lte=now)
                              | Q(status=Turn.Status.QUEUED, created_at__lt=now - QUEUED_STALE))
    firsts = due.values("message__conversation_id").annotate(first=Min("message_id"))
    for row in firsts:
        turn_enqueue_now(row["first"])
    stalled = ContentRequest.objects.filter(status=ContentRequest.Status.DRAFTING, updated_at__lt=now - DRAFT_STALE)
    for request in stalled.filter(created_at__lt=give_up_before).select_related("conversation__contact"):
        drafting.draft_give_up(request)
    draft_task = task_named("assistant.tasks.content_draft_task")
    for request_id in stalled.filter(created_at__gte=give_up_before).values_list("pk", flat=True):
        draft_task.delay(request_id)
    return len(firsts)


def turn_enqueue_now(message_id: int) -> None:
    task_named("assistant.tasks.assistant_turn_task").delay(message_id)
