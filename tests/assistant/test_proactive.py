"""
Reminders and summaries as the user receives them: the business's own users write to a sandbox number
(the signed sandbox webhook, processed as the worker does), are mapped to Django users, and beat's
proactive run sends them reminders at their due time and summaries at their local time, as text inside
the 24-hour window and as an approved template outside it.
"""

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from assistant.models import AssistantPolicy, AssistantProfile, Reminder, Task
from assistant.services import proactive
from assistant.services.proactive import (
    proactive_run,
    reminder_create,
    reminder_sync_for_task,
    summary_build,
    summary_text,
)
from assistant.services.timezones import instant
from contacts.services.mapping import contact_map_to_user
from templates_app.models import MessageTemplate
from templates_app.services.provider_submission import template_submit
from templates_app.services.workflow import template_approve, template_create, template_submit_for_review
from tests.conftest import default_group, in_threads, start_worker, stop_worker, wait_until
from whatsapp.models import Message, Provider
from whatsapp.providers.events import TemplateStatus

pytestmark = pytest.mark.django_db

MADRID = ZoneInfo("Europe/Madrid")
# A Tuesday; Madrid is at UTC+1 then (summer time starts on the 31st), Sao Paulo at UTC-3, Tokyo at UTC+9.
DAY = date(2030, 3, 5)
MONDAY = date(2030, 3, 4)


def utc(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def local(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def person(say, sandbox_provider):
    """A user of the business whose WhatsApp contact wrote to the sandbox number `wrote_hours_ago` hours
    ago (within 24: the window is open), mapped to their Django user, with assistant preferences."""

    def make(username: str, phone: str, *, wrote_hours_ago: float = 0.1, **preferences):
        user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw-123456-strong")
        contact = say(phone, "hi", name=username.title(), at=time.time() - wrote_hours_ago * 3600)
        contact_map_to_user(contact=contact, user=user, actor=None)
        AssistantProfile.objects.create(user=user, **preferences)
        return user

    return make


def approved_template(provider: Provider, name: str, body: str, example: str) -> MessageTemplate:
    """A utility template through the real workflow: written, reviewed by someone else, submitted to the
    sandbox (which approves at once)."""
    users = get_user_model().objects
    author = users.filter(username="tpl_author").first() or users.create_user("tpl_author", is_staff=True)
    reviewer = users.filter(username="tpl_reviewer").first() or users.create_user("tpl_reviewer", is_staff=True)
    reviewer.groups.add(default_group("Template reviewer"))
    template = template_create(provider=provider, actor=author, name=name, language="en", category="utility",
                               parameter_format="positional", components=[{"type": "BODY", "text": body}],
                               examples={"body": {"1": example}})
    template = template_approve(template_submit_for_review(template, actor=author), reviewer=reviewer)
    template_submit(template.pk)
    template.refresh_from_db()
    assert template.status == TemplateStatus.APPROVED
    return template


@pytest.fixture
def templates(sandbox_provider):
    """The number's assistant policy with approved reminder and summary templates."""
    reminder = approved_template(sandbox_provider, "assistant_reminder",
                                 "Reminder: {{1}}. Reply here to see your tasks.", "Call Ana")
    summary = approved_template(sandbox_provider, "assistant_summary",
                                "Your summary: {{1}} Reply here for the details.", "Today: 2 tasks due.")
    AssistantPolicy.objects.create(provider=sandbox_provider, reminder_template=reminder, summary_template=summary)
    return reminder, summary


def task_for(user, title: str, day: date | None = None, at: clock | None = None, *, zone: ZoneInfo = MADRID,
             **fields) -> Task:
    """A task as the engine saves it: due date and time local to the user, due_at the instant."""
    due_at = instant(day, at, zone) if day else None
    return Task.objects.create(owner=user, title=title, due_date=day, due_time=at, due_at=due_at, **fields)


def notifications(user=None) -> list[tuple[str, str, str | None]]:
    """(type, text, template name) of the reminders and summaries sent, oldest first."""
    rows = Message.objects.filter(direction=Message.Direction.OUTBOUND, purpose=Message.Purpose.NOTIFICATION)
    if user is not None:
        rows = rows.filter(conversation__contact__user_mapping__user=user)
    return [(m.message_type, m.text, m.template.name if m.template_id else None)
            for m in rows.select_related("template").order_by("pk")]


# --- reminders ------------------------------------------------------------------------------------

def test_a_due_reminder_inside_the_window_goes_as_text(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid")
    due = local(DAY, 17, 0, MADRID)
    reminder = reminder_create(ana, "Call the bank", due)

    assert proactive_run(now=due - timedelta(seconds=30)) == 0
    assert Reminder.objects.get().status == "pending"

    assert proactive_run(now=due + timedelta(seconds=20)) == 1
    assert notifications(ana) == [("text", "⏰ Reminder: Call the bank", None)]
    reminder.refresh_from_db()
    message = Message.objects.get(purpose="notification")
    assert (reminder.status, reminder.message, reminder.sent_at, reminder.error) == (
        "sent", message, due + timedelta(seconds=20), "")
    assert (message.status, message.lane) == ("queued", "reply")
    # Sent once: the next minute has nothing left.
    assert proactive_run(now=due + timedelta(minutes=1)) == 0


def test_outside_the_window_the_reminder_goes_as_the_approved_template(person, templates):
    reminder_template, _ = templates
    ana = person("ana", "+34600000001", wrote_hours_ago=30, time_zone="Europe/Madrid")
    due = local(DAY, 17, 0, MADRID)
    reminder = reminder_create(ana, "Call the bank", due)

    assert proactive_run(now=due) == 1

    message = Message.objects.get(purpose="notification")
    assert (message.message_type, message.template, message.purpose) == ("template", reminder_template,
                                                                         "notification")
    assert message.template_variables == {"body": {"1": "Call the bank"}}
    assert message.text == "Reminder: Call the bank. Reply here to see your tasks."
    reminder.refresh_from_db()
    assert (reminder.status, reminder.message) == ("sent", message)


def test_without_a_window_or_a_template_nothing_goes_and_the_reminder_says_why(person, sandbox_provider):
    ana = person("ana", "+34600000001", wrote_hours_ago=30, time_zone="Europe/Madrid")
    due = local(DAY, 17, 0, MADRID)
    closed = reminder_create(ana, "Call the bank", due)
    # A template that is not approved (still a draft) does not help either.
    draft = MessageTemplate.objects.create(provider=sandbox_provider, name="draft_reminder", language="en",
                                           components=[{"type": "BODY", "text": "Reminder: {{1}}."}])
    nobody = get_user_model().objects.create_user("rui")  # mapped to no contact
    unreachable = reminder_create(nobody, "Pay rent", due)

    assert proactive_run(now=due) == 0

    closed.refresh_from_db()
    assert closed.status == "failed" and closed.message is None
    assert closed.error == ("the user has not written in the last 24 hours and no reminder template is set in "
                            "the assistant policy of Sandbox test")
    unreachable.refresh_from_db()
    assert (unreachable.status, unreachable.error) == (
        "failed", "no WhatsApp conversation with the user: no mapped contact has written on an active number")
    assert notifications() == []

    AssistantPolicy.objects.create(provider=sandbox_provider, reminder_template=draft)
    again = reminder_create(ana, "Call the bank again", due)
    assert proactive_run(now=due) == 0
    again.refresh_from_db()
    assert (again.status, again.error) == (
        "failed", "the user has not written in the last 24 hours and the reminder template draft_reminder [en] "
                  "is not approved")


def test_a_reminder_due_in_quiet_hours_waits_until_they_end(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid", quiet_hours_start=clock(22),
                 quiet_hours_end=clock(7))
    due = local(DAY, 23, 30, MADRID)
    reminder = reminder_create(ana, "Call the plumber", due)

    assert proactive_run(now=due + timedelta(minutes=1)) == 0
    assert proactive_run(now=local(DAY + timedelta(days=1), 6, 59, MADRID)) == 0
    reminder.refresh_from_db()
    assert reminder.status == "pending" and notifications() == []

    assert proactive_run(now=local(DAY + timedelta(days=1), 7, 0, MADRID)) == 1
    # Sent the next morning, it says when it was set for, in the user's time.
    assert notifications(ana) == [("text", "⏰ Reminder: Call the plumber (set for Tue 5 Mar 23:30)", None)]
    reminder.refresh_from_db()
    assert reminder.status == "sent"


def test_with_reminders_turned_off_task_reminders_are_cancelled_but_asked_for_ones_go(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid", reminders=False)
    due = local(DAY, 17, 0, MADRID)
    task = task_for(ana, "Send the report", DAY, clock(17))
    automatic = reminder_sync_for_task(task, now=due - timedelta(hours=3))
    asked = reminder_create(ana, "Water the plants", due)

    assert proactive_run(now=due) == 1

    automatic.refresh_from_db()
    assert (automatic.status, automatic.error) == (
        "cancelled", "reminders of tasks are turned off in the user's assistant preferences")
    asked.refresh_from_db()
    assert asked.status == "sent"
    assert notifications(ana) == [("text", "⏰ Reminder: Water the plants", None)]


def test_a_task_with_a_due_time_keeps_one_reminder_that_follows_it(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid")
    now = local(DAY, 9, 0, MADRID)
    task = task_for(ana, "Send the invoice", DAY, clock(17))

    created = reminder_sync_for_task(task, now=now)
    assert (created.status, created.due_at, created.text, created.task) == (
        "pending", local(DAY, 17, 0, MADRID), "", task)

    # Saved again unchanged (say its title was edited): still the one reminder.
    assert reminder_sync_for_task(task, now=now).pk == created.pk

    # Moved: the same reminder moves with it.
    task.due_time, task.due_at = clock(18, 30), local(DAY, 18, 30, MADRID)
    task.save()
    moved = reminder_sync_for_task(task, now=now)
    assert moved.pk == created.pk and moved.due_at == local(DAY, 18, 30, MADRID)
    assert Reminder.objects.count() == 1

    # The time removed (any time that day): no reminder.
    task.due_time, task.due_at = None, instant(DAY, None, MADRID)
    task.save()
    assert reminder_sync_for_task(task, now=now) is None
    created.refresh_from_db()
    assert (created.status, created.error) == ("cancelled", "the task no longer has a due time")

    # A time again: a new reminder, which goes at that time with the task's title.
    task.due_time, task.due_at = clock(16), local(DAY, 16, 0, MADRID)
    task.save()
    fresh = reminder_sync_for_task(task, now=now)
    assert fresh.pk != created.pk and fresh.status == "pending"
    assert proactive_run(now=local(DAY, 16, 0, MADRID)) == 1
    assert notifications(ana) == [("text", "⏰ Reminder: Send the invoice", None)]
    # Reminded of already: syncing the task again does not make another one for the same time.
    assert reminder_sync_for_task(task, now=now) is None
    assert Reminder.objects.filter(status="pending").count() == 0


def test_completing_a_task_cancels_its_reminders(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid")
    now = local(DAY, 9, 0, MADRID)
    task = task_for(ana, "Book the venue", DAY, clock(15))
    automatic = reminder_sync_for_task(task, now=now)
    asked = reminder_create(ana, "", local(DAY, 14, 0, MADRID), task=task)
    assert asked.text == "Book the venue"

    task.status, task.completed_at = Task.Status.DONE, now
    task.save()
    assert reminder_sync_for_task(task, now=now) is None

    for reminder in (automatic, asked):
        reminder.refresh_from_db()
        assert (reminder.status, reminder.error) == ("cancelled", "the task was done")
    assert proactive_run(now=local(DAY, 15, 0, MADRID)) == 0
    assert notifications() == []


def test_a_reminder_ahead_of_its_task_says_when_the_task_is_due(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid")
    task = task_for(ana, "Submit the tender", DAY, clock(17))
    reminder_create(ana, "", local(DAY, 15, 0, MADRID), task=task)
    # A task completed without the engine syncing it: its reminder is cancelled when it comes due.
    done = task_for(ana, "Old errand", DAY, clock(15), status=Task.Status.DONE)
    stale = Reminder.objects.create(owner=ana, task=done, due_at=local(DAY, 15, 0, MADRID))

    assert proactive_run(now=local(DAY, 15, 0, MADRID)) == 1

    assert notifications(ana) == [("text", "⏰ Reminder: Submit the tender (due at 17:00)", None)]
    stale.refresh_from_db()
    assert (stale.status, stale.error) == ("cancelled", "the task was done")


# --- summaries ------------------------------------------------------------------------------------

def test_the_daily_summary_goes_at_eight_in_each_users_own_time_zone(person):
    # Sao Paulo's zone comes from the phone number; Tokyo's from the preference (the number is American).
    paula = person("paula", "+5511987654321", daily_summary=True, last_daily_summary_on=DAY - timedelta(days=1))
    kenji = person("kenji", "+16505550100", daily_summary=True, time_zone="Asia/Tokyo",
                   last_daily_summary_on=DAY - timedelta(days=1))
    task_for(paula, "Pay the supplier", DAY, clock(10), zone=ZoneInfo("America/Sao_Paulo"))
    task_for(kenji, "Visit the client", DAY, clock(14), zone=ZoneInfo("Asia/Tokyo"), priority="high")

    # 08:00 in Tokyo on the 5th is 23:00 UTC on the 4th, when it is 20:00 of the 4th in Sao Paulo.
    assert proactive_run(now=utc(DAY - timedelta(days=1), 22, 59)) == 0
    assert proactive_run(now=utc(DAY - timedelta(days=1), 23, 0, 30)) == 1
    assert notifications(kenji) == [
        ("text", "📋 Today, Tue 5 Mar: 1 task due.\n• Visit the client (14:00) [high]", None)]
    assert notifications(paula) == []

    # 08:00 in Sao Paulo is 11:00 UTC.
    assert proactive_run(now=utc(DAY, 10, 59)) == 0
    assert proactive_run(now=utc(DAY, 11, 1)) == 1
    assert notifications(paula) == [("text", "📋 Today, Tue 5 Mar: 1 task due.\n• Pay the supplier (10:00)", None)]
    assert proactive_run(now=utc(DAY, 11, 2)) == 0
    assert len(notifications(kenji)) == len(notifications(paula)) == 1
    assert set(AssistantProfile.objects.values_list("last_daily_summary_on", flat=True)) == {DAY}


def test_the_daily_summary_lists_open_tasks_due_today_and_overdue(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid", daily_summary=True)
    bo = person("bo", "+34600000002", time_zone="Europe/Madrid", daily_summary=True,
                daily_summary_time=clock(7, 30))
    task_for(ana, "Send the invoice", date(2030, 3, 3), clock(17), priority="high")
    task_for(ana, "Buy paper", DAY)
    task_for(ana, "Book the venue", DAY, clock(14), priority="low")
    task_for(ana, "Call Rui", DAY, clock(9, 30), priority="urgent")
    task_for(ana, "Plan the trip", DAY + timedelta(days=1), clock(9))
    task_for(ana, "Already done", DAY, clock(8), status=Task.Status.DONE)
    task_for(ana, "Someday", None)
    task_for(bo, "Bo's own task", DAY + timedelta(days=2))

    assert proactive_run(now=local(DAY, 7, 59, MADRID)) == 1  # Bo's, at 07:30
    assert proactive_run(now=local(DAY, 8, 0, MADRID)) == 1
    assert proactive_run(now=local(DAY, 8, 5, MADRID)) == 0

    assert notifications(ana) == [("text", "📋 Today, Tue 5 Mar: 4 tasks due, 1 overdue.\n"
                                           "• Send the invoice (overdue: Sun 3 Mar 17:00) [high]\n"
                                           "• Call Rui (09:30) [urgent]\n"
                                           "• Book the venue (14:00)\n"
                                           "• Buy paper", None)]
    assert notifications(bo) == [("text", "📋 Today, Tue 5 Mar: Nothing due today.", None)]


def test_a_summary_late_the_same_day_still_goes_but_a_missed_day_is_not_sent(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid", daily_summary=True,
                 last_daily_summary_on=DAY - timedelta(days=1))
    bo = person("bo", "+34600000002", time_zone="Europe/Madrid", daily_summary=True,
                last_daily_summary_on=DAY - timedelta(days=2))

    # Down from 07:00 to 10:00 on the 5th: Ana's summary of the 5th still goes at 10:00. Bo's of the
    # 4th (down all that day too) never goes: he gets the 5th's, once.
    assert proactive_run(now=local(DAY, 10, 0, MADRID)) == 2
    assert notifications(ana) == notifications(bo) == [("text", "📋 Today, Tue 5 Mar: Nothing due today.", None)]
    # The next morning, before eight: nothing for the 5th again, and the 6th's waits for eight.
    assert proactive_run(now=local(DAY + timedelta(days=1), 7, 0, MADRID)) == 0
    assert proactive_run(now=local(DAY + timedelta(days=1), 8, 0, MADRID)) == 2


def test_summaries_wait_for_quiet_hours_to_end(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid", daily_summary=True,
                 quiet_hours_start=clock(22), quiet_hours_end=clock(8, 30))
    assert proactive_run(now=local(DAY, 8, 0, MADRID)) == 0
    assert proactive_run(now=local(DAY, 8, 30, MADRID)) == 1
    assert len(notifications(ana)) == 1


def test_the_weekly_summary_goes_on_its_day_with_last_weeks_done_count(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid", weekly_summary=True,
                 weekly_summary_day=AssistantProfile.Weekday.MONDAY)
    task_for(ana, "Renew the domain", date(2030, 3, 1))
    task_for(ana, "Review the budget", date(2030, 3, 6), clock(14), priority="high")
    task_for(ana, "Water the plants", date(2030, 3, 10))
    task_for(ana, "Next week's", date(2030, 3, 11))
    for title, completed in [("Done on Tuesday", local(date(2030, 2, 26), 10, 0, MADRID)),
                             ("Done on Sunday", local(date(2030, 3, 3), 23, 0, MADRID)),
                             ("Done two weeks ago", local(date(2030, 2, 24), 12, 0, MADRID)),
                             ("Done this morning", local(MONDAY, 7, 0, MADRID))]:
        task_for(ana, title, status=Task.Status.DONE, completed_at=completed)

    # Sunday at 09:00: not its day.
    assert proactive_run(now=local(date(2030, 3, 3), 9, 0, MADRID)) == 0
    assert proactive_run(now=local(MONDAY, 8, 0, MADRID)) == 1
    assert proactive_run(now=local(MONDAY, 9, 0, MADRID)) == 0

    assert notifications(ana) == [("text", "📅 This week, Mon 4 Mar – Sun 10 Mar: 3 tasks due, 1 overdue.\n"
                                           "• Renew the domain (overdue: Fri 1 Mar)\n"
                                           "• Review the budget (Wed 6 Mar 14:00) [high]\n"
                                           "• Water the plants (Sun 10 Mar)\n"
                                           "✅ Done last week: 2.", None)]
    assert AssistantProfile.objects.get(user=ana).last_weekly_summary_on == MONDAY


def test_outside_the_window_a_summary_goes_as_the_template_on_one_line(person, templates):
    _, summary_template = templates
    ana = person("ana", "+34600000001", wrote_hours_ago=26, time_zone="Europe/Madrid", daily_summary=True)
    task_for(ana, "Call Rui", DAY, clock(9, 30), priority="urgent")
    task_for(ana, "Buy\npaper", DAY)

    assert proactive_run(now=local(DAY, 8, 0, MADRID)) == 1

    message = Message.objects.get(purpose="notification")
    assert (message.message_type, message.template) == ("template", summary_template)
    variable = "Today, Tue 5 Mar: 2 tasks due. Call Rui (09:30) [urgent]; Buy paper."
    assert message.template_variables == {"body": {"1": variable}}
    assert message.text == f"Your summary: {variable} Reply here for the details."


def test_summary_text_answers_today_tomorrow_and_this_week_in_the_same_words(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid")
    task_for(ana, "Call Rui", DAY, clock(9, 30))
    task_for(ana, "Plan the trip", DAY + timedelta(days=1), clock(11), priority="high")
    task_for(ana, "Renew the domain", DAY - timedelta(days=1))
    now = local(DAY, 12, 0, MADRID)

    assert summary_text(ana, "today", now=now) == ("📋 Today, Tue 5 Mar: 2 tasks due, 1 overdue.\n"
                                                   "• Renew the domain (overdue: Mon 4 Mar)\n"
                                                   "• Call Rui (09:30)")
    assert summary_text(ana, "tomorrow", now=now) == ("📋 Tomorrow, Wed 6 Mar: 1 task due.\n"
                                                      "• Plan the trip (11:00) [high]")
    assert summary_text(ana, "this_week", now=now) == ("📅 This week, Tue 5 Mar – Mon 11 Mar: 3 tasks due, "
                                                       "1 overdue.\n"
                                                       "• Renew the domain (overdue: Mon 4 Mar)\n"
                                                       "• Call Rui (Tue 5 Mar 09:30)\n"
                                                       "• Plan the trip (Wed 6 Mar 11:00) [high]")
    assert summary_text(ana, "tomorrow", now=local(DAY + timedelta(days=1), 12, 0, MADRID)) == \
        "📋 Tomorrow, Thu 7 Mar: Nothing due tomorrow."
    with pytest.raises(ValueError, match="unknown period"):
        summary_text(ana, "yesterday", now=now)
    # Reading never writes preferences for a user who has none.
    AssistantProfile.objects.filter(user=ana).delete()
    summary_text(ana, "today", now=now)
    assert not AssistantProfile.objects.filter(user=ana).exists()


def test_a_long_summary_lists_ten_tasks_and_counts_the_rest():
    class Item:
        def __init__(self, number):
            self.title, self.due_date, self.due_time, self.priority = f"Task {number}", DAY, None, "normal"

    items = [Item(number) for number in range(1, 13)]
    summary = summary_build("today", items, today=DAY, total=12, overdue=0)
    assert summary.text().splitlines() == ["📋 Today, Tue 5 Mar: 12 tasks due.",
                                           *[f"• Task {n}" for n in range(1, 11)], "…and 2 more."]
    assert summary.variable() == ("Today, Tue 5 Mar: 12 tasks due. "
                                  + "; ".join(f"Task {n}" for n in range(1, 11)) + "; and 2 more.")
    assert proactive.in_quiet_hours(clock(23), clock(22), clock(7))
    assert proactive.in_quiet_hours(clock(6, 59), clock(22), clock(7))
    assert not proactive.in_quiet_hours(clock(7), clock(22), clock(7))
    assert proactive.in_quiet_hours(clock(13), clock(12), clock(14))
    assert not proactive.in_quiet_hours(clock(13), None, clock(14))


# --- two runs at once, and the beat task on a real worker --------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_send_each_reminder_and_summary_once(person):
    users = [person(f"user{n}", f"+3460000010{n}", time_zone="Europe/Madrid", daily_summary=True)
             for n in range(3)]
    due = local(DAY, 8, 0, MADRID)
    for round_number in range(3):
        for user in users:
            for n in range(4):
                reminder_create(user, f"{user.username}: round {round_number} item {n}",
                                due + timedelta(minutes=round_number))
        now = due + timedelta(minutes=round_number, seconds=30)
        results = in_threads(lambda now=now: proactive_run(now=now), lambda now=now: proactive_run(now=now))
        # 12 reminders, and the three daily summaries in the first round.
        assert sum(results) == 12 + (3 if round_number == 0 else 0)

    assert Reminder.objects.filter(status="sent").count() == Reminder.objects.count() == 36
    sent = notifications()
    assert len(sent) == 36 + 3
    assert len({text for _, text, _ in sent}) == 36 + 1  # each reminder once; the same empty summary thrice
    assert len(set(Reminder.objects.values_list("message", flat=True))) == 36


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_beat_task_sends_a_due_reminder_through_the_ai_queue_worker(person, worker_env, tmp_path):
    from assistant.tasks import proactive_task

    ana = person("ana", "+34600000001", time_zone="Europe/Madrid")
    reminder = reminder_create(ana, "Join the standup", datetime.now(UTC) - timedelta(seconds=30))
    workers = [start_worker(worker_env, tmp_path / "ai-worker.log", "assistant-ai", queues="ai"),
               start_worker(worker_env, tmp_path / "worker.log", "assistant-send")]
    try:
        proactive_task.delay()
        message = wait_until(lambda: Message.objects.filter(purpose="notification", status__in=(
            "sent", "delivered", "read")).first(), 60, message="the reminder to be sent by the sandbox")
    finally:
        for worker in workers:
            stop_worker(worker)

    assert (message.message_type, message.text, message.template_id) == ("text", "⏰ Reminder: Join the standup",
                                                                         None)
    assert message.provider_message_id.startswith("sbx-")
    reminder.refresh_from_db()
    assert (reminder.status, reminder.message_id) == ("sent", message.pk)


def test_a_quiet_minute_costs_the_same_few_queries_however_many_users(person):
    for n in range(6):
        user = person(f"user{n}", f"+3460000020{n}", time_zone="Europe/Madrid", daily_summary=True,
                      weekly_summary=True, last_daily_summary_on=DAY)
        reminder_create(user, "Later", local(DAY, 18, 0, MADRID))
    with CaptureQueriesContext(connection) as queries:
        assert proactive_run(now=local(DAY, 9, 0, MADRID)) == 0
    # Due reminders, the profiles, their conversations and their numbers' policies: one query each.
    selects = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("SELECT")]
    assert len(selects) == 4, selects


def test_a_late_task_reminder_survives_an_edit_of_its_task(person):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid", quiet_hours_start=clock(22),
                 quiet_hours_end=clock(7))
    task = task_for(ana, "Send the invoice", DAY, clock(23, 0))
    reminder = reminder_sync_for_task(task, now=local(DAY, 12, 0, MADRID))
    assert proactive_run(now=local(DAY, 23, 1, MADRID)) == 0  # quiet hours: it waits
    task.priority = "high"  # edited at 06:00, before the quiet hours end
    task.save()
    reminder_sync_for_task(task, now=local(DAY + timedelta(days=1), 6, 0, MADRID))
    reminder.refresh_from_db()
    assert reminder.status == "pending"
    assert proactive_run(now=local(DAY + timedelta(days=1), 7, 0, MADRID)) == 1


def test_nothing_proactive_on_a_number_where_the_assistant_is_off(person, sandbox_provider):
    ana = person("ana", "+34600000001", time_zone="Europe/Madrid")
    AssistantPolicy.objects.create(provider=sandbox_provider, enabled=False)
    due = local(DAY, 17, 0, MADRID)
    reminder = reminder_create(ana, "Call the bank", due)
    assert proactive_run(now=due + timedelta(seconds=20)) == 0
    reminder.refresh_from_db()
    assert reminder.status == "failed" and notifications() == []
