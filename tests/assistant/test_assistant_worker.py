"""Scripted conversations end to end: signed sandbox webhooks over HTTP to a live server, real workers (the
default queue and the AI queue), the fake OpenAI answering with tool calls, and the replies the sandbox
phone receives."""

import json
import time

import httpx
import pytest
from django.utils import timezone

from ai.models import ProviderAiSettings
from assistant.models import ContentRequest, ConversationState, Note, Task, Turn
from assistant.tasks import retry_waiting_turns_task
from contacts.models import Contact, ContactUserMapping
from contacts.services.mapping import contact_map_to_user
from tests.ai.test_voice_note_worker import ogg_opus, serve_voice_note
from tests.conftest import fixture_bytes, start_worker, stop_worker, wait_until
from tests.fake_openai import ChatAnswer, error, tool_calls
from tests.fakes import FakeServer
from tests.signing import make_meta, post_meta
from whatsapp import sandbox_phone
from whatsapp.models import Message
from whatsapp.providers.events import MessageType
from whatsapp.providers.sandbox import inbound_body
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_webhook_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NULLS = {"details": None, "priority": None, "due_date": None, "due_time": None, "project": None}
PHONE = "+34612345678"


class LivePhone:
    """The user's phone posting signed sandbox webhooks to the live server."""

    def __init__(self, provider):
        self.provider, self.count = provider, 0

    def post(self, **fields) -> Message:
        self.count += 1
        message_id = f"sbx-live-{self.count}-{time.monotonic_ns()}"
        body = inbound_body(from_phone=PHONE, name="Ana", message_id=message_id, **fields)
        response = httpx.post(provider_webhook_url(self.provider), content=body, timeout=10, headers={
            **sandbox_phone.signed_headers(self.provider, body), "Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        return wait_until(lambda: Message.objects.filter(provider_message_id=message_id).first(), 20,
                          message=f"message {message_id} to be stored")

    def say(self, text: str) -> Turn:
        return self.finished(self.post(text=text))

    def tap(self, question: Message, title: str) -> Turn:
        choices = question.content.get("buttons") or question.content["sections"][0]["rows"]
        choice = next(choice for choice in choices if choice["title"] == title)
        kind = "button" if question.content.get("buttons") else "list"
        return self.finished(self.post(kind=kind, reply={"id": choice["id"], "title": title},
                                       reply_to=question.provider_message_id))

    @staticmethod
    def finished(message: Message) -> Turn:
        return wait_until(lambda: Turn.objects.filter(message=message).exclude(status__in=["queued"]).first(), 30,
                          message=f"the assistant's turn on {message.text or message.message_type}")


def sent(provider, **filters) -> list[Message]:
    """The assistant's messages the sandbox phone got (sent by the worker)."""
    return list(Message.objects.filter(provider=provider, direction="outbound", sent_at__isnull=False, **filters)
                .order_by("pk"))


@pytest.fixture
def live(worker_env, fake_openai, sandbox_provider, django_user_model, tmp_path):
    env = {**worker_env, "OPENAI_API_KEY": "sk-test-key", "OPENAI_BASE_URL": fake_openai.url,
           "OPENAI_MODEL": "gpt-4.1-mini", "AI_TIMEOUT_SECONDS": "2", "AI_CIRCUIT_THRESHOLD": "50"}
    workers = [start_worker(env, tmp_path / "worker.log", "assistant"),
               start_worker(env, tmp_path / "ai-worker.log", "assistant-ai", queues="ai")]
    # Classification would take the scripted answers meant for the assistant; it is tested on its own.
    ProviderAiSettings.objects.create(provider=sandbox_provider, classification_enabled=False)
    user = django_user_model.objects.create_user("ana", password="secret-pass-123", first_name="Ana")
    phone = LivePhone(sandbox_provider)
    first = phone.post(text="hi")  # the contact exists once it wrote
    contact_map_to_user(contact=first.conversation.contact, user=user, actor=None, notify_on_ready=True)
    yield phone, user
    for worker in workers:
        stop_worker(worker)


def test_tasks_notes_and_a_clarified_content_request(live, fake_openai, sandbox_provider):
    phone, user = live
    fake_openai.script("chat", tool_calls([("create_task", {"title": "Review marketing budget", **NULLS})]))
    assert phone.say("create a task to review the marketing budget").outcome == "task_created"
    fake_openai.script("chat", tool_calls([("update_task", {**NULLS, "task": "last", "title": None,
                                                            "priority": "high"})]))
    assert phone.say("make it high priority").outcome == "task_updated"
    task = Task.objects.get()
    assert (task.owner, task.title, task.priority) == (user, "Review marketing budget", "high")

    fake_openai.script("chat", tool_calls([("save_note", {"text": "call the printer about the invoice",
                                                          "tags": []})]))
    assert phone.say("note: call the printer about the invoice").outcome == "note_saved"
    assert Note.objects.get().owner == user
    assert sent(sandbox_provider, purpose="assistant") == []  # silent so far

    fake_openai.script("chat", tool_calls([("create_content_request", {
        "brief": "a LinkedIn post about our launch", "platform": "linkedin", "length": None, "tone": None,
        "topic": "our launch"})]))
    phone.say("write a LinkedIn post about our launch")
    length_question = wait_until(lambda: sent(sandbox_provider, message_type=MessageType.INTERACTIVE), 20,
                                 message="the first question to reach the phone")[0]
    assert [button["title"] for button in length_question.content["buttons"]] == ["Short", "Medium", "Long"]
    assert phone.tap(length_question, "Short").outcome == "content_clarify"

    tone_question = wait_until(lambda: sent(sandbox_provider, message_type=MessageType.INTERACTIVE)[1:], 20,
                               message="the second question")[0]
    fake_openai.script("chat", ChatAnswer("Launch day! 🚀 Three things we learned building it."))
    assert phone.tap(tone_question, "Friendly").outcome == "content_requested"

    request = wait_until(lambda: ContentRequest.objects.filter(status="ready").first(), 20,
                         message="the draft to be written")
    assert (request.platform, request.length, request.tone) == ("linkedin", "short", "friendly")
    taps = Message.objects.filter(message_type=MessageType.INTERACTIVE_REPLY).order_by("pk")
    assert [tap.reply_to for tap in taps] == [length_question, tone_question]
    notice = wait_until(lambda: sent(sandbox_provider, message_type="text", purpose="assistant"), 20,
                        message="the ready notice")
    assert [message.text for message in notice] == [
        "📝 Your draft is ready (short LinkedIn post):\n\nLaunch day! 🚀 Three things we learned building it."]


def test_handoff_and_the_ai_down_then_back(live, fake_openai, sandbox_provider, admin_user):
    phone, _user = live
    contact = Contact.objects.get()
    message_send_text(provider=sandbox_provider, contact=contact, text="Hi Ana, Marta here.", actor=admin_user)
    assert phone.say("create a task to call the bank").status == "silenced"
    assert fake_openai.chat_requests == [] and Task.objects.count() == 0

    ConversationState.objects.update(silenced_until=timezone.now())
    fake_openai.always("chat", error(503, None, "overloaded"))
    assert phone.say("create a task to call the bank").status == "waiting"
    later = phone.post(text="create a task to pay rent")  # waits behind the first, in order
    assert wait_until(lambda: Turn.objects.filter(message=later, status="queued").exists(), 10,
                      message="the second message's turn")
    notices = wait_until(lambda: sent(sandbox_provider, purpose="assistant"), 20, message="the outage notice")
    assert len(notices) == 1 and notices[0].text.startswith("⚠️ I can't handle messages right now")

    fake_openai.reset()
    fake_openai.script("chat", tool_calls([("create_task", {"title": "Call the bank", **NULLS})]), ChatAnswer("Done."),
                       tool_calls([("create_task", {"title": "Pay rent", **NULLS})]), ChatAnswer("Done."))
    Turn.objects.filter(status="waiting").update(next_attempt_at=timezone.now())
    retry_waiting_turns_task.delay()
    wait_until(lambda: Task.objects.count() == 2, 20, message="the waiting messages to be handled")
    assert list(Task.objects.order_by("pk").values_list("title", flat=True)) == ["Call the bank", "Pay rent"]


def test_a_voice_note_becomes_a_task(worker_env, fake_openai, django_user_model, client, tmp_path):
    audio = ogg_opus(2.0)
    fake_openai.add_transcript(audio, "Create a task to renew the domain", 2.0)
    with FakeServer() as graph:
        serve_voice_note(graph, audio)
        env = {**worker_env, "META_GRAPH_BASE_URL": graph.url, "META_GRAPH_API_VERSION": "v25.0",
               "OPENAI_API_KEY": "sk-test-key", "OPENAI_BASE_URL": fake_openai.url, "OPENAI_MODEL": "gpt-4.1-mini",
               "OPENAI_TRANSCRIPTION_MODEL": "whisper-1"}
        workers = [start_worker(env, tmp_path / "worker.log", "voice-task"),
                   start_worker(env, tmp_path / "ai-worker.log", "voice-task-ai", queues="ai")]
        try:
            provider = make_meta()
            body = fixture_bytes("meta", "audio_voice.json").replace(b'"1793000003"', f'"{int(time.time())}"'.encode())
            sender = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
            contact = Contact.objects.create(profile_name="Ana")
            contact.identities.create(kind="phone", value=f"+{sender}")
            contact.identities.create(kind="whatsapp_id", value=sender)
            user = django_user_model.objects.create_user("ana", password="secret-pass-123")
            ContactUserMapping.objects.create(contact=contact, user=user)
            fake_openai.script("chat", {"intent": "request", "sentiment": "neutral", "sentiment_score": 0,
                                        "language": "en", "urgency": "normal",
                                        "fields": {"dates": [], "amounts": [], "items": []}},
                               tool_calls([("create_task", {"title": "Renew the domain", **NULLS})]))
            assert post_meta(client, provider, body).status_code == 200
            task = wait_until(lambda: Task.objects.first(), 60, message="the voice note to become a task")
        finally:
            for worker in workers:
                stop_worker(worker)
    assert (task.title, task.owner) == ("Renew the domain", user)
    turn = Turn.objects.get()
    assert turn.message.transcript == "Create a task to renew the domain" and turn.message.message_type == "audio"
