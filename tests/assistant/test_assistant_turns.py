"""The assistant's turns as a user lives them: messages through the sandbox webhook, the model's tool calls
from the fake OpenAI, and what comes back on WhatsApp."""

import json
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from ai.models import AiCall
from assistant.models import AssistantPolicy, ContentRequest, ConversationState, Note, Task, Turn
from assistant.services import drafting, engine, handoff, proactive
from contacts.models import ContactUserMapping
from tests.conftest import fixture_bytes
from tests.fake_openai import ChatAnswer, error, tool_calls
from tests.signing import make_chatwoot, post_chatwoot
from whatsapp.models import Conversation, Message
from whatsapp.providers.events import MessageType
from whatsapp.services.outbound import message_send_text
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

NULLS = {"details": None, "priority": None, "due_date": None, "due_time": None, "project": None}


def next_friday(today: date) -> date:
    return today + timedelta(days=(4 - today.weekday()) % 7 or 7)


def test_a_task_made_then_changed_over_two_turns(phone, fake_openai):
    fake_openai.script("chat", tool_calls([("create_task", {"title": "Review marketing budget", **NULLS})]))
    first = phone.turn("create a task to review the marketing budget")

    task = Task.objects.get()
    assert (task.owner, task.title, task.priority, task.source_message) == (phone.user, "Review marketing budget",
                                                                           "normal", first.message)
    assert (first.status, first.outcome) == ("done", "task_created")
    assert phone.replies() == []  # the minimal preset acts silently

    friday = next_friday(timezone.localtime(timezone.now(), ZoneInfo("Europe/Madrid")).date())
    fake_openai.script("chat", tool_calls([("update_task", {
        "task": "last", "title": None, "details": None, "priority": "high", "due_date": friday.isoformat(),
        "due_time": None, "project": None})]))
    second = phone.turn("make it high priority and due next Friday")

    task.refresh_from_db()
    assert (task.priority, task.due_date) == ("high", friday)
    # Due by the end of that day in the user's zone.
    assert task.due_at == datetime.combine(friday, time(23, 59, 59), tzinfo=ZoneInfo("Europe/Madrid"))
    assert second.tool_calls[0]["name"] == "update_task" and second.tool_calls[0]["ok"] is True
    # The model was told which task "it" is and what day it is in the user's zone.
    system = fake_openai.chat_requests[-1]["messages"][0]["content"]
    assert f'#{task.pk} "Review marketing budget"' in system and "Europe/Madrid" in system
    # Each action's result went back once, for the model to call another tool or close.
    assert AiCall.objects.filter(feature="assistant", status="ok").count() == 4


def test_the_conversational_preset_confirms_a_task_in_one_line(phone, fake_openai, conversational):
    fake_openai.script("chat", tool_calls([("create_task", {"title": "Review marketing budget", **NULLS})]))
    turn = phone.turn("create a task to review the marketing budget")
    assert phone.texts() == ["✅ Created task: Review marketing budget"]
    reply = phone.replies()[0]
    assert (turn.reply, reply.purpose) == (reply, Message.Purpose.ASSISTANT)


def test_a_note_is_stored_with_no_reply_and_a_reaction_only_when_set(phone, fake_openai, sandbox_provider):
    fake_openai.script("chat", tool_calls([("save_note", {"text": "call the printer about the invoice",
                                                          "tags": ["invoice", "Printer"]})]))
    turn = phone.turn("note: call the printer about the invoice")
    note = Note.objects.get()
    assert (note.text, note.tags, note.source_message) == ("call the printer about the invoice",
                                                           ["invoice", "printer"], turn.message)
    assert phone.replies() == [] and turn.outcome == "note_saved"

    AssistantPolicy.objects.create(provider=sandbox_provider, note_reaction="👍")
    fake_openai.script("chat", tool_calls([("save_note", {"text": "wifi password is on the fridge", "tags": []})]))
    second = phone.turn("note: wifi password is on the fridge")
    [reaction] = phone.replies()
    assert (reaction.message_type, reaction.content["emoji"]) == (MessageType.REACTION, "👍")
    assert reaction.content["target"] == second.message.provider_message_id


def clarification_script(fake_openai):
    fake_openai.script("chat", tool_calls([("create_content_request", {
        "brief": "a LinkedIn post about our launch", "platform": "linkedin", "length": None, "tone": None,
        "topic": "our launch"})]))


@pytest.mark.parametrize("opted_in", [True, False])
def test_a_content_request_missing_two_fields_is_clarified_then_drafted(phone, fake_openai, opted_in):
    ContactUserMapping.objects.filter(contact=phone.contact).update(notify_on_ready=opted_in)
    clarification_script(fake_openai)
    phone.turn("write a LinkedIn post about our launch")

    request = ContentRequest.objects.get()
    assert (request.platform, request.topic, request.status) == ("linkedin", "our launch", "needs_input")
    [question] = phone.replies()
    assert question.message_type == MessageType.INTERACTIVE
    assert question.content["body"] == "How long should it be?"
    assert [button["title"] for button in question.content["buttons"]] == ["Short", "Medium", "Long"]

    chats_before = len(fake_openai.chat_requests)
    answer = phone.turn("Short")  # a tap arrives as the button's title where ids are not passed on
    assert (answer.outcome, len(fake_openai.chat_requests)) == ("content_clarify", chats_before)
    request.refresh_from_db()
    assert request.length == "short"
    tone_question = phone.replies()[-1]
    # Four tones: a list, not buttons.
    rows = tone_question.content["sections"][0]["rows"]
    assert [row["title"] for row in rows] == ["Professional", "Friendly", "Playful", "Inspiring"]

    phone.turn("2")  # the choice's number answers too
    request.refresh_from_db()
    assert (request.tone, request.status) == ("friendly", "drafting")
    assert ConversationState.objects.get(conversation=question.conversation).pending == {}

    fake_openai.script("chat", ChatAnswer("We launched! 🚀 Here is what it means for you."))
    drafting.draft_make(request.pk)
    request.refresh_from_db()
    assert (request.status, request.draft) == ("ready", "We launched! 🚀 Here is what it means for you.")
    notices = [text for text in phone.texts() if text.startswith("📝")]
    expected = "📝 Your draft is ready (short LinkedIn post):\n\nWe launched! 🚀 Here is what it means for you."
    assert notices == ([expected] if opted_in else [])
    assert AiCall.objects.filter(feature="drafting", status="ok").count() == 1


def test_an_unmatched_answer_is_a_new_request_and_an_expired_question_is_dropped(phone, fake_openai):
    clarification_script(fake_openai)
    phone.turn("write a LinkedIn post about our launch")
    fake_openai.script("chat", tool_calls([("save_note", {"text": "buy milk", "tags": []})]))
    phone.turn("note: buy milk")
    assert Note.objects.filter(text="buy milk").exists()
    state = ConversationState.objects.get()
    assert state.pending["field"] == "length"  # still waiting
    ConversationState.objects.update(pending_expires_at=timezone.now() - timedelta(seconds=1))
    fake_openai.script("chat", ChatAnswer("Hello!"))
    turn = phone.turn("Short")
    assert turn.outcome == "answered" and ContentRequest.objects.get().length == ""
    assert ConversationState.objects.get().pending == {}


def test_a_failed_tool_gets_one_short_notice(phone, fake_openai):
    for _ in range(3):
        fake_openai.script("chat", tool_calls([("complete_task", {"task": "budget"})]))
    turn = phone.turn("mark the budget task done")
    assert (turn.status, turn.outcome) == ("failed", "failed")
    [notice] = phone.texts()
    assert notice.startswith("⚠️ I couldn't do that (no task matches \"budget\"). Your message is kept.")
    # The model saw the error and could try again each round.
    assert len(fake_openai.chat_requests) == 3
    assert fake_openai.chat_requests[1]["messages"][-1]["role"] == "tool"


def test_the_ai_down_then_back(phone, fake_openai, settings):
    fake_openai.always("chat", error(503, None, "overloaded"))
    first = phone.turn("create a task to call Ana")
    second = phone.turn("create a task to pay rent")
    first.refresh_from_db()
    # The second waits behind the first: they are handled in the order they were sent.
    assert (first.status, second.status) == ("waiting", "queued")
    assert phone.texts() == ["⚠️ I can't handle messages right now. Yours are kept and I'll act on them as soon as "
                             "I'm back."]  # once, not per message

    fake_openai.reset()
    fake_openai.script("chat", tool_calls([("create_task", {"title": "Call Ana", **NULLS})]), ChatAnswer("Done."),
                       tool_calls([("create_task", {"title": "Pay rent", **NULLS})]), ChatAnswer("Done."))
    Turn.objects.update(next_attempt_at=timezone.now())
    engine.turn_run(first.message_id)
    assert list(Task.objects.order_by("pk").values_list("title", flat=True)) == ["Call Ana", "Pay rent"]
    assert set(Turn.objects.values_list("status", flat=True)) == {"done"}
    # The notice is not sent again for the next outage within ASSISTANT_UNAVAILABLE_NOTICE_HOURS, even when
    # the AI came back in between (a flapping API would otherwise notify on every failure).
    fake_openai.always("chat", error(503, None, "overloaded"))
    assert phone.turn("create a task to water plants").status == "waiting"
    assert len(phone.texts()) == 1


def test_over_the_daily_budget_the_message_waits(phone, fake_openai, sandbox_provider):
    from ai.models import ProviderAiSettings
    ProviderAiSettings.objects.create(provider=sandbox_provider, daily_budget=0)
    turn = phone.turn("create a task to call Ana")
    assert turn.status == "waiting" and "daily budget" in turn.error
    assert fake_openai.chat_requests == [] and len(phone.texts()) == 1


def test_a_person_replying_silences_the_assistant_until_resumed(phone, fake_openai, sandbox_provider,
                                                                 admin_user):
    phone.say("hello")  # opens the window
    message_send_text(provider=sandbox_provider, contact=phone.contact, text="Hi Ana, Marta here.", actor=admin_user)
    state = ConversationState.objects.get()
    assert state.silenced_until > timezone.now() + timedelta(minutes=59) and state.silenced_by == "admin"

    turn = phone.turn("create a task to call Ana")
    assert turn.status == "silenced" and fake_openai.chat_requests == [] and Task.objects.count() == 0

    assert handoff.resume(state.conversation, actor=admin_user)
    fake_openai.script("chat", tool_calls([("create_task", {"title": "Call Ana", **NULLS})]))
    assert phone.turn("create a task to call Ana").status == "done"


def test_preferences_by_message(phone, fake_openai):
    phone.user.assistant_profile.daily_summary = True
    phone.user.assistant_profile.save()
    fake_openai.script("chat", tool_calls([("set_preferences", {
        "daily_summary": False, "daily_summary_time": None, "weekly_summary": None, "reminders": None,
        "notify_on_ready": None, "time_zone": None})]))
    phone.turn("stop the daily summary")
    phone.user.assistant_profile.refresh_from_db()
    assert phone.user.assistant_profile.daily_summary is False
    assert phone.texts() == ["✅ Settings updated: daily summary off"]


def test_a_question_is_answered_with_the_list(phone, fake_openai):
    Task.objects.create(owner=phone.user, title="Ship the release", priority="high",
                        due_date=timezone.localdate(), due_at=timezone.now())
    Task.objects.create(owner=phone.user, title="Water plants", priority="low", due_date=timezone.localdate(),
                        due_at=timezone.now())
    fake_openai.script("chat", tool_calls([("list_tasks", {"period": "today", "priority": "high", "project": None,
                                                           "include_done": False})]))
    phone.turn("what are my high priority tasks today?")
    [answer] = phone.texts()
    assert answer.startswith("Your tasks (1):\n• #") and "Ship the release" in answer and "Water" not in answer


def test_only_mapped_users_and_not_their_consent_keywords(sandbox_provider, phone, fake_openai, post_sandbox):
    stop = phone.say("STOP")
    assert not Turn.objects.filter(message=stop).exists()
    other = phone.say("hello")  # an opted-out contact's message is still stored; the assistant acts
    assert Turn.objects.filter(message=other).exists()
    ContactUserMapping.objects.all().delete()
    assert not Turn.objects.filter(message=phone.say("create a task")).exists()


def test_a_message_asking_for_two_things_gets_both(phone, fake_openai, conversational):
    fake_openai.script("chat", tool_calls([("create_task", {"title": "Call the bank", **NULLS})]),
                       tool_calls([("set_reminder", {"text": "Call the bank", "date": "2099-01-05", "time": "09:00",
                                                     "task": "last"})]),
                       ChatAnswer("Done."))
    turn = phone.turn("create a task to call the bank and remind me on Monday at 9")
    assert [call["name"] for call in turn.tool_calls] == ["create_task", "set_reminder"]
    reminder = Task.objects.get().reminders.get(text="Call the bank")
    assert reminder.due_at == datetime(2099, 1, 5, 9, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    assert phone.texts() == ["✅ Created task: Call the bank\n⏰ Reminder set for Mon 05 Jan 09:00: Call the bank"]


def test_a_broken_tool_call_is_not_run(phone, fake_openai):
    fake_openai.script("chat", tool_calls([("create_task", "{not json")]),
                       tool_calls([("create_task", {"title": 5})]),
                       tool_calls([("drop_database", {})]))
    turn = phone.turn("create a task")
    assert turn.status == "failed" and Task.objects.count() == 0
    assert [call["ok"] for call in turn.tool_calls] == [False, False, False]


def test_a_chatwoot_agent_takes_over_but_chatwoots_own_messages_do_not(client, fake_openai):
    provider = make_chatwoot()
    agent_reply = json.loads(fixture_bytes("chatwoot", "message_created_agent_reply.json"))
    away = {**agent_reply, "id": 18009, "message_type": "template", "content": "We are away until Monday.",
            "sender": {"id": 1, "name": "Acme", "type": "agent_bot"}}
    webhook_event_process(post_chatwoot(client, provider, json.dumps(away).encode()).json()["event"])
    conversation = Conversation.objects.get(provider=provider)
    assert not ConversationState.objects.filter(conversation=conversation, silenced_until__isnull=False).exists()

    webhook_event_process(post_chatwoot(client, provider, json.dumps(agent_reply).encode()).json()["event"])
    state = ConversationState.objects.get(conversation=conversation)
    assert state.silenced_until > timezone.now() and state.silenced_by == "user: Paulo Agent"


def test_a_new_time_zone_moves_open_tasks_and_their_reminders(phone, fake_openai):
    task = Task.objects.create(owner=phone.user, title="Call Rui", due_date=date(2099, 1, 5), due_time=time(9, 0),
                               due_at=datetime(2099, 1, 5, 9, 0, tzinfo=ZoneInfo("Europe/Madrid")))
    reminder = proactive.reminder_sync_for_task(task)
    fake_openai.script("chat", tool_calls([("set_preferences", {
        "daily_summary": None, "daily_summary_time": None, "weekly_summary": None, "reminders": None,
        "notify_on_ready": None, "time_zone": "Asia/Tokyo"})]))
    phone.turn("I moved to Tokyo")
    task.refresh_from_db()
    reminder.refresh_from_db()
    tokyo_nine = datetime(2099, 1, 5, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert (task.due_at, reminder.due_at, reminder.status) == (tokyo_nine, tokyo_nine, "pending")
