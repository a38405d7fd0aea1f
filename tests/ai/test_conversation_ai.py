"""Reply suggestions and summaries, asked for through the API and made as the worker makes them; the
transcription's refusals; the insight and usage endpoints."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from ai.client import AiError
from ai.models import AiRequest, ConversationSummary, ReplySuggestion
from ai.services.pipeline import message_process
from ai.services.suggestions import suggestions_make
from ai.services.summaries import idle_conversations_summarize, summary_make
from ai.services.transcription import transcribe_audio
from templates_app.models import MessageTemplate
from tests.conftest import json_body, token_client
from whatsapp.models import Conversation, Message, Session
from whatsapp.providers.events import TemplateStatus

pytestmark = pytest.mark.django_db


def conversation_of(say, *texts: str, phone: str = "+5511987650001") -> Conversation:
    for text in texts:
        contact = say(phone, text)
    return Conversation.objects.get(contact=contact)


def ask(api_client, conversation: Conversation, what: str) -> AiRequest:
    response = api_client.post(f"/api/v1/conversations/{conversation.pk}/{what}/")
    assert response.status_code == 202, response.content
    body = json_body(response)
    assert body["request"]["status"] == "pending"
    return AiRequest.objects.get(pk=body["request"]["id"])


def test_suggestions_inside_the_window_are_free_text_in_the_customers_language(fake_openai, say, api_client):
    conversation = conversation_of(say, "Olá, vocês entregam em Campinas?", "E quanto custa o frete?")
    fake_openai.script("chat", {"language": "pt", "suggestions": [
        {"text": "Olá! Sim, entregamos em Campinas."}, {"text": "O frete para Campinas custa R$ 25."}]})
    request = ask(api_client, conversation, "suggestions")

    suggestions_make(request.pk)

    body = json_body(api_client.get(f"/api/v1/conversations/{conversation.pk}/suggestions/"))
    assert body["request"]["status"] == "done"
    assert [(s["kind"], s["text"], s["language"]) for s in body["suggestions"]] == [
        ("text", "Olá! Sim, entregamos em Campinas.", "pt"), ("text", "O frete para Campinas custa R$ 25.", "pt")]
    sent = fake_openai.chat_requests[0]
    assert sent["response_format"]["json_schema"]["name"] == "reply_suggestions"
    assert "E quanto custa o frete?" in sent["messages"][-1]["content"]


def test_outside_the_window_suggestions_are_approved_templates_with_their_variables(fake_openai, say, api_client,
                                                                                     sandbox_provider):
    conversation = conversation_of(say, "My order 4411 has not arrived")
    Session.objects.filter(conversation=conversation).update(expires_at=timezone.now() - timedelta(minutes=1))
    MessageTemplate.objects.create(provider=sandbox_provider, name="order_update", language="en_US",
                                   status=TemplateStatus.APPROVED,
                                   components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}} ships today."}])
    MessageTemplate.objects.create(provider=sandbox_provider, name="promo", language="en_US",
                                   status=TemplateStatus.REJECTED, components=[{"type": "BODY", "text": "Sale!"}])
    fake_openai.script("chat", {"language": "en", "suggestions": [
        {"template": "order_update:en_US", "variables": ["Ana", "4411"]},
        {"template": "order_update:en_US", "variables": ["only one"]}]})  # wrongly filled: dropped
    request = ask(api_client, conversation, "suggestions")

    suggestions_make(request.pk)

    offered = fake_openai.chat_requests[0]["response_format"]["json_schema"]["schema"]
    assert offered["properties"]["suggestions"]["items"]["properties"]["template"]["enum"] == ["order_update:en_US"]
    suggestion = ReplySuggestion.objects.get()
    assert suggestion.text == "" and suggestion.template.name == "order_update"
    assert suggestion.template_variables == {"body": {"1": "Ana", "2": "4411"}}
    body = json_body(api_client.get(f"/api/v1/conversations/{conversation.pk}/suggestions/"))
    assert body["suggestions"][0]["kind"] == "template" and body["suggestions"][0]["template_name"] == "order_update"


def test_a_summary_covers_the_messages_it_read_and_updates_the_conversation(fake_openai, say, api_client, settings):
    conversation = conversation_of(say, "one", "two", "three")
    messages = list(Message.objects.filter(conversation=conversation).order_by("created_at"))
    fake_openai.script("chat", {"summary": "The customer counted to three.", "language": "en"})
    request = ask(api_client, conversation, "summaries")

    summary_make(request.pk)

    summary = ConversationSummary.objects.get()
    assert (summary.first_message_id, summary.last_message_id, summary.message_count) == (
        messages[0].pk, messages[-1].pk, 3)
    assert summary.trigger == "api" and summary.text == "The customer counted to three."
    conversation.refresh_from_db()
    assert conversation.ai_summary == "The customer counted to three."
    told = fake_openai.chat_requests[0]["messages"][-1]["content"]
    assert told.index("one") < told.index("two") < told.index("three")  # oldest first
    body = json_body(api_client.get(f"/api/v1/conversations/{conversation.pk}/summaries/"))
    assert body["summaries"][0]["message_count"] == 3 and body["request"]["status"] == "done"


def test_idle_conversations_with_enough_new_messages_get_a_summary(fake_openai, say, settings):
    settings.AI_SUMMARY_MIN_MESSAGES = 3
    busy = conversation_of(say, "a", "b", "c", phone="+5511987650001")
    short = conversation_of(say, "hi", phone="+5511987650002")
    Conversation.objects.update(last_message_at=timezone.now() - timedelta(hours=2))

    assert idle_conversations_summarize() == 1
    assert AiRequest.objects.get().conversation == busy
    assert not AiRequest.objects.filter(conversation=short).exists()
    assert idle_conversations_summarize() == 0  # one is pending already


def test_asking_without_a_key_is_refused_with_how_to_turn_it_on(fake_openai, say, api_client, settings):
    conversation = conversation_of(say, "hola")
    settings.OPENAI_API_KEY = ""
    response = api_client.post(f"/api/v1/conversations/{conversation.pk}/suggestions/")
    assert response.status_code == 409
    assert json_body(response)["code"] == "ai_unavailable" and "OPENAI_API_KEY" in json_body(response)["detail"]


def test_asking_needs_change_permission_on_conversations(fake_openai, say, django_user_model):
    conversation = conversation_of(say, "hola")
    reader = django_user_model.objects.create_user("reader")
    reader.user_permissions.add(*_perms("view_conversation"))
    client = token_client(reader)
    assert client.get(f"/api/v1/conversations/{conversation.pk}/suggestions/").status_code == 200
    assert client.post(f"/api/v1/conversations/{conversation.pk}/suggestions/").status_code == 403
    assert client.post("/api/v1/conversations/999999/summaries/").status_code in (403, 404)


def _perms(*codenames):
    return Permission.objects.filter(codename__in=codenames, content_type__app_label="whatsapp")


def test_the_insight_and_the_ledger_are_in_the_api(fake_openai, say, api_client):
    contact = say("+5511987650001", "Quero cancelar meu pedido, chegou quebrado")
    message = Message.objects.get(conversation__contact=contact)
    fake_openai.script("chat", {"intent": "complaint", "sentiment": "negative", "sentiment_score": -0.8,
                                "language": "pt", "urgency": "high", "fields": {"dates": [], "amounts": [],
                                                                                "items": ["pedido"]}})
    message_process(message.pk)

    insight = json_body(api_client.get(f"/api/v1/message-insights/{message.pk}/"))
    assert (insight["intent"], insight["sentiment_score"], insight["urgency"]) == ("complaint", -0.8, "high")
    listed = json_body(api_client.get("/api/v1/message-insights/?intent=complaint"))
    assert [row["message"] for row in listed["results"]] == [message.pk]
    shown = json_body(api_client.get(f"/api/v1/messages/{message.pk}/"))
    assert (shown["intent"], shown["sentiment"], shown["language"]) == ("complaint", "negative", "pt")
    calls = json_body(api_client.get("/api/v1/ai-calls/?feature=classification"))
    assert calls["results"][0]["status"] == "ok" and float(calls["results"][0]["cost"]) > 0
    intents = json_body(api_client.get("/api/v1/ai-intents/"))
    assert [row["name"] for row in intents["results"]][:2] == ["note", "request"]


def test_transcription_refuses_files_over_the_limit_and_formats_the_api_does_not_take(fake_openai, settings):
    settings.AI_MAX_AUDIO_BYTES = 1000
    with pytest.raises(AiError, match="at most") as too_large:
        transcribe_audio(b"x" * 1001, mime_type="audio/ogg")
    assert too_large.value.code == "file_too_large" and not too_large.value.retryable
    with pytest.raises(AiError, match="does not accept audio/amr"):
        transcribe_audio(b"x" * 10, mime_type="audio/amr")
    assert not fake_openai.transcription_requests
