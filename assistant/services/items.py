"""
What the admin pages and the API do alike when a person edits a user's items by hand: a task's due instant
from its local date and time in its owner's time zone, its completion time and its automatic reminder; a new
reminder's text; a content request's conversation and drafting; the due periods the lists are filtered on;
and the audit entry of each change. (The assistant's own edits, from WhatsApp, go through assistant.services.)
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms.models import model_to_dict
from django.utils import timezone

from assistant.models import AssistantProfile, ContentRequest, Reminder, Task
from assistant.selectors import user_conversation
from assistant.services import clarify, proactive
from assistant.services.timezones import instant, local_now, user_zone
from contacts.models import ContactUserMapping
from core.audit import audit_record

DUE_PERIODS = [("today", "Due today"), ("overdue", "Overdue"), ("this_week", "Due this week")]


def owner_zone(user) -> ZoneInfo:
    """The user's time zone: their assistant preference, else that of the contact they write from."""
    profile_zone = AssistantProfile.objects.filter(user=user).values_list("time_zone", flat=True).first() or ""
    conversation = user_conversation(user)
    contact = conversation.contact if conversation is not None else None
    if contact is None:
        mapping = ContactUserMapping.objects.select_related("contact").filter(user=user).order_by("pk").first()
        contact = mapping.contact if mapping else None
    return user_zone(profile_zone=profile_zone, contact=contact)


def preferences_update(profile: AssistantProfile, changes: dict) -> None:
    """Save the preferences given, and only those: beat marks summaries sent on this row meanwhile, and a full
    save would undo that. A new time zone moves the user's open tasks and their reminders."""
    zone_changed = "time_zone" in changes and changes["time_zone"] != profile.time_zone
    for name, value in changes.items():
        setattr(profile, name, value)
    profile.save(update_fields=[*changes, "updated_at"])
    if zone_changed:
        tasks_rezone(profile.user)


def tasks_rezone(user) -> int:
    """After a user's time zone changed: their open tasks' due instants, and so their reminders, read in the
    new zone (a task due at 09:00 stays due at 09:00 where the user now is). How many moved."""
    zone = owner_zone(user)
    moved = 0
    for task in Task.objects.filter(owner=user, status=Task.Status.OPEN, due_date__isnull=False):
        due = instant(task.due_date, task.due_time, zone)
        if due != task.due_at:
            task.due_at = due
            task.save(update_fields=["due_at", "updated_at"])
            proactive.reminder_sync_for_task(task)
            moved += 1
    return moved


def task_prepare(task: Task, *, now: datetime | None = None) -> None:
    """Fill in what follows from the fields a person edits: the due instant (the end of the day when no time
    is given) and when it was completed. Called before the task is saved."""
    if task.due_date is None:
        task.due_time = None
        task.due_at = None
    else:
        task.due_at = instant(task.due_date, task.due_time, owner_zone(task.owner))
    if task.status == Task.Status.DONE:
        task.completed_at = task.completed_at or now or timezone.now()
    else:
        task.completed_at = None


def task_saved(task: Task) -> None:
    """After a task is saved: its automatic reminder follows its due time and status (made, moved or
    cancelled), as when the assistant changes it."""
    proactive.reminder_sync_for_task(task)


def tasks_complete(tasks: QuerySet, *, actor) -> int:
    """Mark open tasks done (the others are left as they are), which cancels their pending reminders; each
    change is audited. How many changed."""
    now = timezone.now()
    done = 0
    for task in tasks.filter(status=Task.Status.OPEN):
        with transaction.atomic():
            Task.objects.filter(pk=task.pk).update(status=Task.Status.DONE, completed_at=now, updated_at=now)
            task_saved(task)
            audit_record(action="task.complete", obj=task, actor=actor, before={"status": task.status},
                         after={"status": Task.Status.DONE, "completed_at": now.isoformat()})
        done += 1
    return done


def content_request_prepare(request: ContentRequest) -> None:
    """A new request's questions and ready notice go to the conversation its owner last wrote from."""
    if request.pk is None and request.conversation_id is None:
        request.conversation = user_conversation(request.owner)


def content_request_saved(request: ContentRequest) -> None:
    """A request still waiting for details is drafted as soon as none is missing, as on WhatsApp. One with no
    conversation to announce the draft on is left waiting."""
    if (request.status == ContentRequest.Status.NEEDS_INPUT and request.conversation_id is not None
            and not clarify.missing_fields(request)):
        clarify.drafting_start(request)


def reminder_prepare(reminder: Reminder) -> None:
    """A reminder a person makes is an explicit one: without text of its own it takes its task's title, which
    keeps it apart from the task's automatic reminder (that one has no text)."""
    if reminder.pk is None and not reminder.text.strip() and reminder.task_id is not None:
        reminder.text = proactive.one_line(reminder.task.title)[:500]


def due_in_period(tasks: QuerySet, period: str, zone: ZoneInfo, *, now: datetime | None = None) -> QuerySet:
    """Tasks due today or this week (Monday to Sunday) in this time zone, or open and past their due instant."""
    now = now or timezone.now()
    if period == "overdue":
        return tasks.filter(status=Task.Status.OPEN, due_at__lt=now)
    today = local_now(zone, now).date()
    if period == "today":
        return tasks.filter(due_date=today)
    if period == "this_week":
        monday = today - timedelta(days=today.weekday())
        return tasks.filter(due_date__range=(monday, monday + timedelta(days=6)))
    raise ValueError(f"unknown due period {period!r}")


def snapshot(obj: Model) -> dict:
    """The row's fields as JSON, for an audit entry."""
    return json.loads(json.dumps(model_to_dict(obj), default=str))


def item_audit(action: str, obj: Model, *, actor, before: dict | None = None) -> None:
    """The audit entry of a change made by a person: `<model>.<action>`, with the row after it (before it for a
    deletion)."""
    name = obj._meta.model_name
    after = {} if action == "delete" else snapshot(obj)
    audit_record(action=f"{name}.{action}", obj=obj, actor=actor, before=before, after=after)
