"""
What each tool does. A tool gets the turn's context and the model's arguments (already checked against
its schema) and returns what came of it: an outcome the notification policy reads, the line it would
confirm with, and the ids it touched (kept on the turn). A request that cannot be carried out raises
ActionError with a reason the model (and, failing that, the user) can act on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Case, F, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from assistant.models import AssistantProfile, ContentRequest, ConversationState, Goal, Note, Project, Task
from assistant.phrases import phrase
from assistant.policy import Outcome
from assistant.services import clarify, proactive
from assistant.services.items import preferences_update
from assistant.services.timezones import instant, local_now, zone_named
from contacts.models import ContactUserMapping
from whatsapp.models import Conversation, Message

PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
MAX_LISTED = 15


class ActionError(Exception):
    """A tool call that cannot be carried out, with a reason in plain words."""


@dataclass
class TurnContext:
    user: Any
    conversation: Conversation
    message: Message
    state: ConversationState
    profile: AssistantProfile
    zone: ZoneInfo
    language: str = "en"
    now: datetime = field(default_factory=timezone.now)

    @property
    def today(self) -> date:
        return local_now(self.zone, self.now).date()


@dataclass
class ActionResult:
    outcome: Outcome
    line: str = ""  # the confirmation, or the answer for a question
    data: dict[str, Any] = field(default_factory=dict)
    question: clarify.Question | None = None


# --- argument parsing ------------------------------------------------------------------------------------

def _date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ActionError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _time(value: str | None) -> time | None:
    if not value:
        return None
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ActionError(f"{value!r} is not a time (HH:MM)") from None


def _when(task: Task, ctx: TurnContext) -> str:
    if not task.due_date:
        return ""
    text = task.due_date.strftime("%a %d %b")
    return f"{text} {task.due_time:%H:%M}" if task.due_time else text


def _project(ctx: TurnContext, name: str | None) -> Project | None:
    if not name:
        return None
    project = Project.objects.filter(owner=ctx.user, name__iexact=name.strip()).first()
    return project or Project.objects.create(owner=ctx.user, name=name.strip()[:200])


def _open_tasks(ctx: TurnContext) -> QuerySet[Task]:
    return Task.objects.filter(owner=ctx.user).exclude(status=Task.Status.CANCELLED)


def task_find(ctx: TurnContext, reference: str) -> Task:
    """The task a user means: "last" (the one just made or talked about), its number, or title words."""
    reference = (reference or "").strip()
    tasks = _open_tasks(ctx)
    if reference.lower() in ("", "last", "it", "that", "this"):
        if ctx.state.last_task_id and tasks.filter(pk=ctx.state.last_task_id).exists():
            return tasks.get(pk=ctx.state.last_task_id)
        raise ActionError("no task was made or mentioned just before")
    number = reference.lstrip("#")
    if number.isdigit():
        found = tasks.filter(pk=int(number)).first()
        if found:
            return found
        raise ActionError(f"there is no task number {number}")
    words = [word for word in re.findall(r"\w+", reference.lower()) if len(word) > 2] or [reference.lower()]
    query = Q()
    for word in words:
        query &= Q(title__icontains=word)
    matches = list(tasks.filter(query).order_by("status", "-created_at")[:4])
    open_matches = [task for task in matches if task.status == Task.Status.OPEN]
    if len(open_matches) == 1 or (len(matches) == 1):
        return (open_matches or matches)[0]
    if not matches:
        raise ActionError(f"no task matches \"{reference}\"")
    names = "; ".join(f"#{task.pk} {task.title}" for task in matches[:3])
    raise ActionError(f"several tasks match \"{reference}\": {names}")


def _set_due(task: Task, ctx: TurnContext) -> None:
    task.due_at = instant(task.due_date, task.due_time, ctx.zone) if task.due_date else None


def _remember(ctx: TurnContext, task: Task) -> None:
    ctx.state.last_task = task
    ConversationState.objects.filter(pk=ctx.state.pk).update(last_task=task)


# --- the tools -------------------------------------------------------------------------------------------

def create_task(ctx: TurnContext, *, title: str, details: str | None = None, priority: str | None = None,
                due_date: str | None = None, due_time: str | None = None, project: str | None = None) -> ActionResult:
    if not title.strip():
        raise ActionError("a task needs a title")
    task = Task(owner=ctx.user, title=title.strip()[:300], details=details or "", priority=priority or "normal",
                due_date=_date(due_date), due_time=_time(due_time), project=_project(ctx, project),
                source_message=ctx.message)
    if task.due_time and not task.due_date:
        task.due_date = ctx.today
    _set_due(task, ctx)
    task.save()
    proactive.reminder_sync_for_task(task)
    _remember(ctx, task)
    return ActionResult(Outcome.TASK_CREATED, phrase("task_created", ctx.language, title=task.title),
                        {"task": task.pk})


def update_task(ctx: TurnContext, *, task: str, title: str | None = None, details: str | None = None,
                priority: str | None = None, due_date: str | None = None, due_time: str | None = None,
                project: str | None = None) -> ActionResult:
    found = task_find(ctx, task)
    changes = {"title": title and title.strip()[:300], "details": details, "priority": priority,
               "due_date": _date(due_date), "due_time": _time(due_time), "project": _project(ctx, project)}
    changes = {name: value for name, value in changes.items() if value not in (None, "")}
    if not changes:
        raise ActionError("nothing to change was given")
    for name, value in changes.items():
        setattr(found, name, value)
    if found.due_time and not found.due_date:
        found.due_date = ctx.today
    _set_due(found, ctx)
    found.save()
    proactive.reminder_sync_for_task(found)
    _remember(ctx, found)
    described = ", ".join(filter(None, [f"{found.priority} priority" if "priority" in changes else "",
                                        f"due {_when(found, ctx)}" if {"due_date", "due_time"} & set(changes)
                                        else ""]))
    title_line = f"{found.title} ({described})" if described else found.title
    return ActionResult(Outcome.TASK_UPDATED, phrase("task_updated", ctx.language, title=title_line),
                        {"task": found.pk, "changed": sorted(changes)})


def complete_task(ctx: TurnContext, *, task: str) -> ActionResult:
    found = task_find(ctx, task)
    if found.status != Task.Status.DONE:
        found.status, found.completed_at = Task.Status.DONE, timezone.now()
        found.save(update_fields=["status", "completed_at", "updated_at"])
        proactive.reminder_sync_for_task(found)
    _remember(ctx, found)
    return ActionResult(Outcome.TASK_COMPLETED, phrase("task_completed", ctx.language, title=found.title),
                        {"task": found.pk})


def tasks_matching(ctx: TurnContext, *, period: str | None, priority: str | None, project: str | None,
                   include_done: bool) -> QuerySet[Task]:
    tasks = Task.objects.filter(owner=ctx.user).select_related("project")
    tasks = tasks if include_done else tasks.filter(status=Task.Status.OPEN)
    today = ctx.today
    if period == "today":
        tasks = tasks.filter(due_date__lte=today)
    elif period == "tomorrow":
        tasks = tasks.filter(due_date=today + timedelta(days=1))
    elif period == "overdue":
        tasks = tasks.filter(due_at__lt=ctx.now)
    elif period == "this_week":
        tasks = tasks.filter(due_date__lte=today + timedelta(days=6 - today.weekday()))
    if priority:
        tasks = tasks.filter(priority__in=[name for name, rank in PRIORITY_RANK.items()
                                           if rank >= PRIORITY_RANK[priority]])
    if project:
        tasks = tasks.filter(project__name__icontains=project.strip())
    rank = Case(*[When(priority=name, then=Value(value)) for name, value in PRIORITY_RANK.items()],
                default=Value(1), output_field=IntegerField())
    return tasks.annotate(rank=rank).order_by(F("due_at").asc(nulls_last=True), "-rank", "pk")


def task_line(task: Task) -> str:
    parts = [f"• #{task.pk} {task.title}"]
    if task.due_date:
        parts.append(f"— {task.due_date:%a %d %b}" + (f" {task.due_time:%H:%M}" if task.due_time else ""))
    if task.priority in ("high", "urgent"):
        parts.append(f"[{task.priority}]")
    if task.status == Task.Status.DONE:
        parts.append("✓")
    return " ".join(parts)


def list_tasks(ctx: TurnContext, *, period: str | None = None, priority: str | None = None,
               project: str | None = None, include_done: bool = False) -> ActionResult:
    tasks = list(tasks_matching(ctx, period=period, priority=priority, project=project,
                                include_done=include_done)[:MAX_LISTED + 1])
    if not tasks:
        return ActionResult(Outcome.TASKS_LISTED, phrase("no_tasks", ctx.language), {"tasks": []})
    lines = [phrase("tasks_header", ctx.language, count=len(tasks) if len(tasks) <= MAX_LISTED else
                    f"{MAX_LISTED}+")]
    lines += [task_line(task) for task in tasks[:MAX_LISTED]]
    if len(tasks) == 1:
        _remember(ctx, tasks[0])
    return ActionResult(Outcome.TASKS_LISTED, "\n".join(lines), {"tasks": [task.pk for task in tasks[:MAX_LISTED]]})


def create_project(ctx: TurnContext, *, name: str, description: str | None = None) -> ActionResult:
    if not name.strip():
        raise ActionError("a project needs a name")
    project, created = Project.objects.get_or_create(owner=ctx.user, name=name.strip()[:200],
                                                     defaults={"description": description or ""})
    return ActionResult(Outcome.PROJECT_CREATED, phrase("project_created", ctx.language, name=project.name),
                        {"project": project.pk, "existed": not created})


def create_goal(ctx: TurnContext, *, title: str, target_date: str | None = None,
                project: str | None = None) -> ActionResult:
    if not title.strip():
        raise ActionError("a goal needs a title")
    goal = Goal.objects.create(owner=ctx.user, title=title.strip()[:300], target_date=_date(target_date),
                               project=_project(ctx, project))
    return ActionResult(Outcome.GOAL_CREATED, phrase("goal_created", ctx.language, title=goal.title),
                        {"goal": goal.pk})


def save_note(ctx: TurnContext, *, text: str, tags: list[str] | None = None) -> ActionResult:
    body = text.strip() or ctx.message.text.strip() or ctx.message.transcript.strip()
    if not body:
        raise ActionError("the note is empty")
    clean_tags = sorted({tag.strip().lower()[:40] for tag in (tags or []) if tag.strip()})[:10]
    note = Note.objects.create(owner=ctx.user, text=body, tags=clean_tags, source_message=ctx.message,
                               transcript=ctx.message.transcript or "")
    ctx.state.last_note = note
    ConversationState.objects.filter(pk=ctx.state.pk).update(last_note=note)
    return ActionResult(Outcome.NOTE_SAVED, phrase("note_saved", ctx.language), {"note": note.pk})


def search_notes(ctx: TurnContext, *, query: str) -> ActionResult:
    words = [word for word in re.findall(r"\w+", query.lower()) if len(word) > 2] or [query.strip().lower()]
    match = Q()
    for word in words:
        match |= Q(text__icontains=word) | Q(tags__icontains=word)
    notes = list(Note.objects.filter(match, owner=ctx.user).order_by("-created_at")[:5])
    if not notes:
        return ActionResult(Outcome.NOTES_FOUND, phrase("no_notes", ctx.language, query=query), {"notes": []})
    lines = [phrase("notes_header", ctx.language, query=query, count=len(notes))]
    lines += [f"• {timezone.localtime(note.created_at, ctx.zone):%d %b}: {note.text[:200]}" for note in notes]
    return ActionResult(Outcome.NOTES_FOUND, "\n".join(lines), {"notes": [note.pk for note in notes]})


def create_content_request(ctx: TurnContext, *, brief: str, platform: str | None = None, length: str | None = None,
                           tone: str | None = None, topic: str | None = None) -> ActionResult:
    if not brief.strip():
        raise ActionError("say what to write")
    request = ContentRequest.objects.create(
        owner=ctx.user, brief=brief.strip(), platform=platform or "", length=length or "", tone=tone or "",
        topic=(topic or "")[:300], source_message=ctx.message, conversation=ctx.conversation)
    question = clarify.next_question(request, ctx.state, language=ctx.language, now=ctx.now)
    if question is not None:
        return ActionResult(Outcome.CONTENT_CLARIFY, "", {"content_request": request.pk}, question=question)
    clarify.drafting_start(request)
    return ActionResult(Outcome.CONTENT_REQUESTED, phrase("content_requested", ctx.language, brief=request.brief),
                        {"content_request": request.pk})


def complete_content_request(ctx: TurnContext, *, request: str) -> ActionResult:
    requests = ContentRequest.objects.filter(owner=ctx.user).exclude(status=ContentRequest.Status.CANCELLED)
    reference = request.strip().lstrip("#")
    if reference.isdigit():
        found = requests.filter(pk=int(reference)).first()
    elif reference.lower() in ("", "last", "it", "that"):
        found = requests.order_by("-created_at").first()
    else:
        found = requests.filter(brief__icontains=reference).order_by("-created_at").first()
    if found is None:
        raise ActionError(f"no content request matches \"{request}\"")
    ContentRequest.objects.filter(pk=found.pk).update(status=ContentRequest.Status.DONE, updated_at=timezone.now())
    return ActionResult(Outcome.CONTENT_COMPLETED, phrase("content_completed", ctx.language, brief=found.brief),
                        {"content_request": found.pk})


def set_reminder(ctx: TurnContext, *, text: str, date: str, time: str, task: str | None = None) -> ActionResult:
    day, at = _date(date), _time(time)
    due_at = instant(day, at, ctx.zone)
    if due_at <= ctx.now:
        raise ActionError(f"{date} {time} has already passed")
    linked = task_find(ctx, task) if task else None
    reminder = proactive.reminder_create(ctx.user, text=text.strip() or (linked.title if linked else ""),
                                         due_at=due_at, task=linked)
    when = f"{day:%a %d %b} {at:%H:%M}"
    return ActionResult(Outcome.REMINDER_SET, phrase("reminder_set", ctx.language, when=when, text=reminder.text),
                        {"reminder": reminder.pk})


def report_due(ctx: TurnContext, *, period: str) -> ActionResult:
    return ActionResult(Outcome.DUE_REPORTED, proactive.summary_text(ctx.user, period, now=ctx.now),
                        {"period": period})


PREFERENCE_NAMES = {"daily_summary": "daily summary", "weekly_summary": "weekly summary",
                    "reminders": "reminders", "notify_on_ready": "ready notices"}


def set_preferences(ctx: TurnContext, *, daily_summary: bool | None = None, daily_summary_time: str | None = None,
                    weekly_summary: bool | None = None, reminders: bool | None = None,
                    notify_on_ready: bool | None = None, time_zone: str | None = None) -> ActionResult:
    changes: list[str] = []
    fields: dict[str, object] = {}
    for name, value in (("daily_summary", daily_summary), ("weekly_summary", weekly_summary),
                        ("reminders", reminders)):
        if value is not None:
            fields[name] = value
            changes.append(f"{PREFERENCE_NAMES[name]} {'on' if value else 'off'}")
    if notify_on_ready is not None:
        # Kept on the contact's mapping to the user, where it is set when the number is mapped.
        ContactUserMapping.objects.filter(contact_id=ctx.conversation.contact_id).update(
            notify_on_ready=notify_on_ready)
        changes.append(f"{PREFERENCE_NAMES['notify_on_ready']} {'on' if notify_on_ready else 'off'}")
    if daily_summary_time:
        fields["daily_summary_time"] = _time(daily_summary_time)
        changes.append(f"daily summary at {fields['daily_summary_time']:%H:%M}")
    if time_zone:
        if zone_named(time_zone) is None:
            raise ActionError(f"{time_zone!r} is not a time zone name (e.g. Europe/Madrid)")
        fields["time_zone"] = time_zone
        changes.append(f"time zone {time_zone}")
    if not changes:
        raise ActionError("no setting to change was given")
    if fields:
        preferences_update(ctx.profile, fields)
    return ActionResult(Outcome.PREFERENCES_CHANGED,
                        phrase("preferences_changed", ctx.language, changes=", ".join(changes)),
                        {"changes": changes})


HANDLERS: dict[str, Callable[..., ActionResult]] = {
    "create_task": create_task, "update_task": update_task, "complete_task": complete_task,
    "list_tasks": list_tasks, "create_project": create_project, "create_goal": create_goal,
    "save_note": save_note, "search_notes": search_notes, "create_content_request": create_content_request,
    "complete_content_request": complete_content_request, "set_reminder": set_reminder,
    "report_due": report_due, "set_preferences": set_preferences,
}
