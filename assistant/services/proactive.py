"""
Reminders at their due time and summaries at each user's chosen local time.

Beat calls `proactive_run` every minute. Every step claims its rows first (reminders with SELECT ... FOR
UPDATE SKIP LOCKED, summaries with a conditional update of the day they were last sent), so two runs at
once (two beats, or a slow run overlapping the next) never send anything twice.

A reminder is automatic when it belongs to a task and has no text of its own: it follows the task's due
time (`reminder_sync_for_task`). Every other reminder was asked for explicitly (`reminder_create`) and
keeps its own text and time.

The wording lives in small pure functions (`reminder_message`, `summary_build` and `Summary`), so that a
summary reads the same wherever it is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from assistant.models import AssistantPolicy, AssistantProfile, Priority, Reminder, Task
from assistant.services import outbox
from assistant.services.timezones import instant, local_now, user_zone
from contacts.models import Contact
from templates_app.models import MessageTemplate
from templates_app.selectors import sendable_template
from whatsapp.models import Conversation, Message
from whatsapp.providers.events import TemplateStatus

logger = logging.getLogger(__name__)

# Due reminders claimed per transaction; a run takes batches until none are left.
REMINDER_BATCH = 200
# How many tasks a summary lists; the rest are counted.
SUMMARY_MAX_LINES = 10
# A reminder that goes out this much before or after the time it is about says which time that was.
SHOW_DUE_AFTER = timedelta(minutes=5)
# A template's body holds at most 1024 characters, its own words included
# (https://developers.facebook.com/docs/whatsapp/business-management-api/message-templates/components).
TEMPLATE_VARIABLE_CHARS = 900
TITLE_CHARS = 80
PERIODS = ("today", "tomorrow", "this_week")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Only the priorities worth a glance are marked in a summary line.
MARKED_PRIORITIES = (Priority.HIGH, Priority.URGENT)
PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


# --- wording (pure) ---------------------------------------------------------------------------------

class DueItem(Protocol):
    """What a summary line needs of a task."""

    title: str
    due_date: date | None
    due_time: time | None
    priority: str


def day_label(day: date) -> str:
    """"Tue 3 Mar", the same in every server locale."""
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]}"


def when_label(moment: datetime, today: date) -> str:
    """A local time, with its day when it is not today: "14:30", "Wed 4 Mar 14:30"."""
    clock = f"{moment:%H:%M}"
    return clock if moment.date() == today else f"{day_label(moment.date())} {clock}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def task_line(item: DueItem, *, today: date, with_day: bool = False) -> str:
    """'Call Ana (09:30) [high]'. `with_day`: the list spans several days, so each line names its day."""
    title = one_line(item.title)
    if len(title) > TITLE_CHARS:
        title = title[:TITLE_CHARS - 1] + "…"
    when = f"{item.due_time:%H:%M}" if item.due_time else ""
    if item.due_date is not None and (item.due_date < today or with_day):
        when = " ".join(filter(None, [day_label(item.due_date), when]))
        if item.due_date < today:
            when = f"overdue: {when}"
    parts = [title]
    if when:
        parts.append(f"({when})")
    if item.priority in MARKED_PRIORITIES:
        parts.append(f"[{item.priority}]")
    return " ".join(parts)


def reminder_message(subject: str, *, now_local: datetime, due_local: datetime | None = None,
                     of_task: bool = False) -> str:
    """
    '⏰ Reminder: Call Ana'. When the time it is about is not now (the task is due later than the
    reminder, or the reminder waited for quiet hours or the platform to be back), that time is added in
    the user's local time: '(due at 15:00)' for a task, '(set for Tue 3 Mar 23:30)' otherwise.
    """
    text = f"⏰ Reminder: {one_line(subject)}"
    if due_local is not None and abs(now_local - due_local) >= SHOW_DUE_AFTER:
        label = when_label(due_local, now_local.date())
        text += f" (due at {label})" if of_task else f" (set for {label})"
    return text


def _tasks_phrase(count: int, overdue: int) -> str:
    phrase = f"{count} task{'s' if count != 1 else ''} due"
    return phrase + (f", {overdue} overdue" if overdue else "")


@dataclass(frozen=True)
class Summary:
    """A summary of what is due: a heading, up to SUMMARY_MAX_LINES task lines, and what did not fit."""

    icon: str
    heading: str
    lines: tuple[str, ...] = ()
    more: int = 0
    notes: tuple[str, ...] = field(default=())

    def text(self) -> str:
        """As a WhatsApp text: one line per task."""
        rows = [f"{self.icon} {self.heading}", *(f"• {line}" for line in self.lines)]
        if self.more:
            rows.append(f"…and {self.more} more.")
        rows.extend(self.notes)
        return "\n".join(rows)

    def variable(self) -> str:
        """As one template parameter: WhatsApp refuses line breaks, tabs and runs of spaces in parameters
        (error 132018, https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes)."""
        notes = " ".join(one_line(note) for note in self.notes)
        lines = [*self.lines]
        while True:
            more = self.more + len(self.lines) - len(lines)
            body = "; ".join(lines) + (f"; and {more} more" if more else "")
            text = " ".join(filter(None, [one_line(self.heading), body + "." if body else "", notes]))
            if len(text) <= TEMPLATE_VARIABLE_CHARS or not lines:
                return text[:TEMPLATE_VARIABLE_CHARS]
            lines.pop()


def summary_build(period: str, items: Sequence[DueItem], *, today: date, total: int, overdue: int,
                  done_last_week: int | None = None) -> Summary:
    """
    The summary of one period. `items`: the first tasks in order (only SUMMARY_MAX_LINES are listed);
    `total` and `overdue`: how many there are in all; `done_last_week`: added to a weekly summary.
    """
    if period == "today":
        icon, name, empty = "📋", f"Today, {day_label(today)}", "Nothing due today."
    elif period == "tomorrow":
        icon, name, empty = "📋", f"Tomorrow, {day_label(today + timedelta(days=1))}", "Nothing due tomorrow."
    elif period == "this_week":
        icon, name = "📅", f"This week, {day_label(today)} – {day_label(today + timedelta(days=6))}"
        empty = "Nothing due this week."
    else:
        raise ValueError(f"unknown period {period!r}; one of {', '.join(PERIODS)}")
    notes = () if done_last_week is None else (f"✅ Done last week: {done_last_week}.",)
    if not total:
        return Summary(icon=icon, heading=f"{name}: {empty}", notes=notes)
    listed = tuple(task_line(item, today=today, with_day=period == "this_week")
                   for item in items[:SUMMARY_MAX_LINES])
    return Summary(icon=icon, heading=f"{name}: {_tasks_phrase(total, overdue)}.", lines=listed,
                   more=max(total - len(listed), 0), notes=notes)


def in_quiet_hours(at: time, start: time | None, end: time | None) -> bool:
    """Whether a local time falls in quiet hours [start, end), which may run past midnight (22:00-07:00)."""
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= at < end
    return at >= start or at < end


# --- whom to send to --------------------------------------------------------------------------------

@dataclass
class Recipient:
    """One user, with where their proactive messages go and the clock they live by."""

    user: AbstractBaseUser
    profile: AssistantProfile
    conversation: Conversation | None
    zone: ZoneInfo
    policy: AssistantPolicy | None

    def local(self, now: datetime) -> datetime:
        return local_now(self.zone, now)

    def quiet(self, now: datetime) -> bool:
        return in_quiet_hours(self.local(now).time(), self.profile.quiet_hours_start, self.profile.quiet_hours_end)


def _profile_of(user: AbstractBaseUser) -> AssistantProfile:
    # Reading preferences must not write: a user who never set any has the defaults.
    try:
        return user.assistant_profile
    except AssistantProfile.DoesNotExist:
        return AssistantProfile(user=user)


def conversations_by_user(user_ids: Iterable[int]) -> dict[int, Conversation]:
    """For many users in one query, the conversation proactive messages go to: the rule of
    selectors.user_conversation (the mapped contact that spoke last, on an active number)."""
    rows = (Conversation.objects.select_related("provider", "contact")
            .filter(contact__user_mapping__user_id__in=list(user_ids), provider__is_active=True)
            .exclude(provider__assistant_policy__enabled=False)
            .annotate(mapped_user_id=F("contact__user_mapping__user_id"))
            .order_by(F("last_message_at").desc(nulls_last=True), "-pk"))
    chosen: dict[int, Conversation] = {}
    for conversation in rows:
        chosen.setdefault(conversation.mapped_user_id, conversation)
    return chosen


def _policies(provider_ids: Iterable[int]) -> dict[int, AssistantPolicy]:
    rows = AssistantPolicy.objects.select_related("reminder_template", "summary_template").filter(
        provider_id__in=set(provider_ids))
    return {policy.provider_id: policy for policy in rows}


def recipients_for(users: Sequence[AbstractBaseUser],
                   profiles: dict[int, AssistantProfile] | None = None) -> dict[int, Recipient]:
    """Each user's conversation, time zone and number's policy: two queries for them all, plus the phone
    number of those whose time zone is known from nowhere else."""
    conversations = conversations_by_user(user.pk for user in users)
    policies = _policies(conversation.provider_id for conversation in conversations.values())
    recipients = {}
    for user in users:
        profile = (profiles or {}).get(user.pk) or _profile_of(user)
        conversation = conversations.get(user.pk)
        contact: Contact | None = conversation.contact if conversation else None
        policy = None
        if conversation is not None:
            policy = policies.get(conversation.provider_id) or AssistantPolicy(provider=conversation.provider)
        recipients[user.pk] = Recipient(user=user, profile=profile, conversation=conversation, policy=policy,
                                        zone=user_zone(profile_zone=profile.time_zone, contact=contact))
    return recipients


def recipient_for(user: AbstractBaseUser) -> Recipient:
    return recipients_for([user])[user.pk]


# --- sending ----------------------------------------------------------------------------------------

def _template_usable(conversation: Conversation, template: MessageTemplate | None) -> bool:
    if template is None:
        return False
    current = sendable_template(conversation.provider, template.name, template.language) or template
    return current.status == TemplateStatus.APPROVED


def _why_not_sent(conversation: Conversation, template: MessageTemplate | None, what: str) -> str:
    """A readable reason for a message outbox.send_proactive did not send (it logs the refusal itself)."""
    contact = conversation.contact
    if contact.consent == Contact.Consent.OPTED_OUT:
        return f"{contact} opted out of messages"
    if not outbox.window_open(conversation):
        if template is None:
            return (f"the user has not written in the last 24 hours and no {what} template is set in the "
                    f"assistant policy of {conversation.provider.name}")
        if not _template_usable(conversation, template):
            return (f"the user has not written in the last 24 hours and the {what} template "
                    f"{template.name} [{template.language}] is not approved")
    return f"the message was refused on {conversation.provider.name} (see the log)"


def _send(conversation: Conversation, text: str, variable: str, template: MessageTemplate | None) -> Message | None:
    # The template carries its own words around the parameter, so it gets the bare, single-line version.
    if outbox.window_open(conversation):
        return outbox.send_proactive(conversation, text, template)
    return outbox.send_proactive(conversation, variable, template)


# --- reminders --------------------------------------------------------------------------------------

def is_automatic(reminder: Reminder) -> bool:
    return reminder.task_id is not None and not reminder.text


def reminder_create(owner: AbstractBaseUser, text: str, due_at: datetime, task: Task | None = None) -> Reminder:
    """An explicit reminder ('remind me at 17:00 to call Ana'). Without text of its own, a task's title
    is taken, so it stays apart from the task's automatic reminder."""
    text = one_line(text or "") or (task.title if task is not None else "")
    if not text:
        raise ValueError("a reminder needs a text or a task")
    if timezone.is_naive(due_at):
        raise ValueError("a reminder's due_at must be an aware datetime")
    return Reminder.objects.create(owner=owner, task=task, text=text[:500], due_at=due_at)


def _task_due(task: Task) -> datetime | None:
    if task.due_date is None or task.due_time is None:
        return None
    if task.due_at is not None:
        return task.due_at
    # The engine keeps due_at; a task saved without it is placed in the owner's zone here.
    return instant(task.due_date, task.due_time, recipient_for(task.owner).zone)


def _cancel(reminders: QuerySet[Reminder], reason: str) -> int:
    return reminders.update(status=Reminder.Status.CANCELLED, error=reason[:300], updated_at=timezone.now())


@transaction.atomic
def reminder_sync_for_task(task: Task, *, now: datetime | None = None) -> Reminder | None:
    """
    Keep the task's automatic reminder at its due time: made when an open task gets a date and a time,
    moved when they change, cancelled when the time is removed or passed, or the task is done or
    cancelled (then its explicit reminders too). Returns the pending automatic reminder, if any.
    Called after the task is saved; the task row is locked so two updates at once keep one reminder.
    """
    now = now or timezone.now()
    task = Task.objects.select_for_update().select_related("owner").get(pk=task.pk)
    pending = Reminder.objects.filter(task=task, status=Reminder.Status.PENDING)
    automatic = pending.filter(text="")
    if task.status != Task.Status.OPEN:
        _cancel(pending, f"the task was {task.get_status_display().lower()}")
        return None
    due = _task_due(task)
    if due is None:
        _cancel(automatic, "the task no longer has a due time")
        return None
    if due <= now:
        # A reminder still pending at this very time is only late (quiet hours, a busy beat): it still goes.
        _cancel(automatic.exclude(due_at=due), "the task's due time has passed")
        return None
    current = list(automatic.order_by("pk"))
    if not current:
        if Reminder.objects.filter(task=task, text="", due_at=due).exclude(status=Reminder.Status.CANCELLED).exists():
            return None  # this due time was reminded of already (the task changed in another way since)
        return Reminder.objects.create(owner=task.owner, task=task, due_at=due)
    keep, extra = current[0], current[1:]
    if extra:
        _cancel(Reminder.objects.filter(pk__in=[reminder.pk for reminder in extra]), "replaced by another reminder")
    if keep.due_at != due:
        keep.due_at = due
        keep.save(update_fields=["due_at", "updated_at"])
    return keep


def _claim_due(now: datetime, skip: Sequence[int]) -> list[Reminder]:
    # One query for the batch; rows another run holds are skipped, not waited for. Only the reminder rows
    # are locked: FOR UPDATE may not touch the nullable side of the profile's outer join.
    return list(Reminder.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("task", "owner", "owner__assistant_profile")
                .filter(status=Reminder.Status.PENDING, due_at__lte=now).exclude(pk__in=skip)
                .order_by("due_at", "pk")[:REMINDER_BATCH])


def _reminder_finish(reminder: Reminder, status: str, *, now: datetime, message: Message | None = None,
                     error: str = "") -> None:
    Reminder.objects.filter(pk=reminder.pk).update(
        status=status, message=message, error=error[:300], updated_at=timezone.now(),
        sent_at=now if status == Reminder.Status.SENT else None)


def _reminder_text(reminder: Reminder, recipient: Recipient, now: datetime) -> tuple[str, str]:
    """The reminder as a text and as a template parameter."""
    task = reminder.task
    # A reminder of a task with a due time speaks of that time; any other, of the time it was set for.
    task_due = task.due_at if task is not None and task.due_time is not None else None
    subject = reminder.text or (task.title if task is not None else "")
    text = reminder_message(subject, now_local=recipient.local(now),
                            due_local=recipient.local(task_due or reminder.due_at), of_task=task_due is not None)
    return text, text.removeprefix("⏰ Reminder: ")[:TEMPLATE_VARIABLE_CHARS]


def _reminder_deliver(reminder: Reminder, recipient: Recipient, now: datetime) -> bool | None:
    """Send one claimed reminder. True: sent; False: cancelled or failed; None: it waits (quiet hours)."""
    task = reminder.task
    if task is not None and task.status != Task.Status.OPEN:
        _reminder_finish(reminder, Reminder.Status.CANCELLED, now=now,
                         error=f"the task was {task.get_status_display().lower()}")
        return False
    if not recipient.user.is_active:
        _reminder_finish(reminder, Reminder.Status.CANCELLED, now=now, error="the user's account is inactive")
        return False
    # The preference is about reminders of tasks at their due time; a reminder the user asked for
    # explicitly is kept.
    if is_automatic(reminder) and not recipient.profile.reminders:
        _reminder_finish(reminder, Reminder.Status.CANCELLED, now=now,
                         error="reminders of tasks are turned off in the user's assistant preferences")
        return False
    if recipient.quiet(now):
        return None
    conversation = recipient.conversation
    if conversation is None:
        _reminder_finish(reminder, Reminder.Status.FAILED, now=now,
                         error="no WhatsApp conversation with the user: no mapped contact has written "
                               "on an active number")
        return False
    template = recipient.policy.reminder_template if recipient.policy else None
    text, variable = _reminder_text(reminder, recipient, now)
    message = _send(conversation, text, variable, template)
    if message is None:
        _reminder_finish(reminder, Reminder.Status.FAILED, now=now,
                         error=_why_not_sent(conversation, template, "reminder"))
        return False
    _reminder_finish(reminder, Reminder.Status.SENT, now=now, message=message)
    return True


def reminders_send_due(*, now: datetime | None = None) -> int:
    """Send every pending reminder that is due. Returns how many messages went out."""
    now = now or timezone.now()
    sent = 0
    waiting: list[int] = []
    while True:
        with transaction.atomic():
            batch = _claim_due(now, waiting)
            recipients = recipients_for(list({reminder.owner_id: reminder.owner for reminder in batch}.values()))
            for reminder in batch:
                try:
                    with transaction.atomic():
                        outcome = _reminder_deliver(reminder, recipients[reminder.owner_id], now)
                except Exception as exc:
                    # One broken reminder must not hold back the others.
                    logger.exception("reminder not sent", extra={"reminder_id": reminder.pk})
                    _reminder_finish(reminder, Reminder.Status.FAILED, now=now,
                                     error=f"could not be sent: {type(exc).__name__}: {exc}")
                    continue
                if outcome is None:
                    waiting.append(reminder.pk)
                sent += bool(outcome)
        if len(batch) < REMINDER_BATCH:
            return sent


# --- summaries --------------------------------------------------------------------------------------

def _priority_rank() -> Case:
    return Case(*(When(priority=priority, then=Value(rank)) for priority, rank in PRIORITY_RANK.items()),
                default=Value(len(PRIORITY_RANK)), output_field=IntegerField())


def _period_tasks(user: AbstractBaseUser, period: str, today: date) -> QuerySet[Task]:
    open_tasks = Task.objects.filter(owner=user, status=Task.Status.OPEN, due_date__isnull=False)
    if period == "today":
        return open_tasks.filter(due_date__lte=today)
    if period == "tomorrow":
        return open_tasks.filter(due_date=today + timedelta(days=1))
    if period == "this_week":
        return open_tasks.filter(due_date__lte=today + timedelta(days=6))
    raise ValueError(f"unknown period {period!r}; one of {', '.join(PERIODS)}")


def period_summary(user: AbstractBaseUser, period: str, *, today: date, zone: ZoneInfo,
                   weekly: bool = False) -> Summary:
    """What is due in a period of the user's local calendar (today and this week include what is
    overdue; this week is today and the six days after it). `weekly`: with last week's done count."""
    tasks = _period_tasks(user, period, today)
    counts = tasks.aggregate(total=Count("pk"), overdue=Count("pk", filter=Q(due_date__lt=today)))
    items = list(tasks.order_by("due_date", F("due_time").asc(nulls_last=True), _priority_rank(), "title", "pk")
                 .only("title", "due_date", "due_time", "priority")[:SUMMARY_MAX_LINES])
    done = None
    if weekly:
        week_start = datetime.combine(today, time(0), tzinfo=zone)
        done = Task.objects.filter(owner=user, status=Task.Status.DONE, completed_at__lt=week_start,
                                   completed_at__gte=week_start - timedelta(days=7)).count()
    return summary_build(period, items, today=today, total=counts["total"], overdue=counts["overdue"],
                         done_last_week=done)


def summary_text(user: AbstractBaseUser, period: str, now: datetime | None = None) -> str:
    """What is due today, tomorrow or this week, as the daily and weekly summaries word it."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; one of {', '.join(PERIODS)}")
    recipient = recipient_for(user)
    today = recipient.local(now or timezone.now()).date()
    return period_summary(user, period, today=today, zone=recipient.zone).text()


def _claim_day(profile: AssistantProfile, field_name: str, today: date) -> bool:
    """Mark the summary sent for this local day; only one run can (a conditional update)."""
    unsent = Q(**{f"{field_name}__isnull": True}) | Q(**{f"{field_name}__lt": today})
    return AssistantProfile.objects.filter(unsent, pk=profile.pk).update(**{field_name: today}) == 1


def _summary_deliver(recipient: Recipient, summary: Summary) -> bool:
    conversation = recipient.conversation
    template = recipient.policy.summary_template if recipient.policy else None
    message = _send(conversation, summary.text(), summary.variable(), template)
    if message is None:
        logger.warning("summary not sent", extra={"user_id": recipient.user.pk,
                                                  "reason": _why_not_sent(conversation, template, "summary")})
    return message is not None


def _due_today(last_sent: date | None, today: date) -> bool:
    # Only today's summary is ever sent: after an outage it still goes later the same local day, but a
    # day missed entirely is not sent the next day.
    return last_sent is None or last_sent < today


def summaries_send_due(*, now: datetime | None = None) -> int:
    """Send the daily and weekly summaries whose local time has come. Returns how many went out."""
    now = now or timezone.now()
    profiles = list(AssistantProfile.objects.select_related("user")
                    .filter(Q(daily_summary=True) | Q(weekly_summary=True), user__is_active=True))
    recipients = recipients_for([profile.user for profile in profiles],
                                {profile.user_id: profile for profile in profiles})
    sent = 0
    for profile in profiles:
        try:
            sent += _summaries_send_one(recipients[profile.user_id], now)
        except Exception:
            # One user's failure must not hold back the others'; the claim was rolled back with it, so the
            # next run tries again.
            logger.exception("summary not sent", extra={"user_id": profile.user_id})
    return sent


def _summaries_send_one(recipient: Recipient, now: datetime) -> int:
    profile = recipient.profile
    if recipient.conversation is None:
        return 0
    local = recipient.local(now)
    today = local.date()
    if local.time() < profile.daily_summary_time or recipient.quiet(now):
        return 0
    sent = 0
    if profile.daily_summary and _due_today(profile.last_daily_summary_on, today):
        # The claim and the send commit together: a send that breaks leaves the day unclaimed.
        with transaction.atomic():
            if _claim_day(profile, "last_daily_summary_on", today):
                sent += _summary_deliver(recipient, period_summary(profile.user, "today", today=today,
                                                                   zone=recipient.zone))
    if (profile.weekly_summary and today.weekday() == profile.weekly_summary_day
            and _due_today(profile.last_weekly_summary_on, today)):
        with transaction.atomic():
            if _claim_day(profile, "last_weekly_summary_on", today):
                sent += _summary_deliver(recipient, period_summary(profile.user, "this_week", today=today,
                                                                   zone=recipient.zone, weekly=True))
    return sent


def proactive_run(now: datetime | None = None) -> int:
    """Beat, every minute: due reminders, then summaries. Returns how many messages went out."""
    now = now or timezone.now()
    return reminders_send_due(now=now) + summaries_send_due(now=now)
