"""
An inbound message's AI steps against a local server speaking OpenAI's wire format, through the real
`openai` SDK: classification with a strict schema, its retries and failures, the budget, the rollout, PII
redaction, the circuit breaker, and what reaches the logs.
"""

import json
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ai import guards
from ai.hooks import message_understood
from ai.models import AiCall, AiCircuit, MessageInsight, ProviderAiSettings
from ai.services.pipeline import ai_drain, message_process, pending_messages
from monitoring.health import health_report
from tests.fake_openai import error, slow
from whatsapp.models import Media, Message

pytestmark = pytest.mark.django_db

CLASSIFIED = {"intent": "complaint", "sentiment": "negative", "sentiment_score": -0.7, "language": "es",
              "urgency": "high", "fields": {"dates": ["viernes"], "amounts": ["40 €"], "items": ["caja azul"]}}


def inbound(say, text: str, phone: str = "+34612345678") -> Message:
    contact = say(phone, text)
    return Message.objects.filter(conversation__contact=contact, direction="inbound").latest("pk")


def test_a_message_is_classified_with_the_schema_and_the_call_is_recorded(fake_openai, say):
    fake_openai.script("chat", CLASSIFIED)
    message = inbound(say, "La caja azul llegó rota y pagué 40 €, la necesito el viernes")

    assert message_process(message.pk).retry_in is None

    message.refresh_from_db()
    assert (message.intent, message.sentiment, message.language) == ("complaint", "negative", "es")
    assert message.ai_processed_at is not None
    insight = MessageInsight.objects.get(message=message)
    assert (insight.classification_status, insight.urgency, insight.sentiment_score) == ("done", "high", -0.7)
    assert insight.extracted == {"dates": ["viernes"], "amounts": ["40 €"], "items": ["caja azul"]}
    assert (insight.classification_model, insight.prompt_version) == ("gpt-4.1-mini", "classify-1")
    call = AiCall.objects.get()
    assert (call.feature, call.status, call.model) == ("classification", "ok", "gpt-4.1-mini")
    assert call.input_tokens > 0 and call.output_tokens > 0 and call.cost > 0
    request = fake_openai.chat_requests[0]
    schema = request["response_format"]["json_schema"]
    assert schema["strict"] is True and schema["name"] == "message_classification"
    assert schema["schema"]["properties"]["intent"]["enum"] == [
        "note", "request", "task", "question", "complaint", "greeting", "other"]
    assert request["temperature"] == 0


def test_the_conversation_goes_with_the_call_newest_first_within_the_budget(fake_openai, say, settings):
    settings.AI_CONTEXT_CHARS = 120
    for text in ["first message, long ago " * 3, "second message", "third message"]:
        say("+34612345678", text)
    message = inbound(say, "and the one to label")
    message_process(message.pk)

    user = fake_openai.last_chat_messages()[-1]["content"]
    assert user.index("third message") < user.index("second message")
    assert "first message" not in user  # past the character budget
    assert user.rstrip().endswith("and the one to label")


def test_an_answer_outside_the_schema_is_asked_again_once_with_the_reason(fake_openai, say):
    fake_openai.script("chat", {"intent": "weather", "sentiment": "negative"}, CLASSIFIED)
    message = inbound(say, "hola")
    message_process(message.pk)

    assert MessageInsight.objects.get(message=message).classification_status == "done"
    second = fake_openai.chat_requests[1]["messages"]
    assert "does not match the required JSON schema" in second[-1]["content"]
    assert "weather" in second[-2]["content"]
    assert list(AiCall.objects.order_by("pk").values_list("status", flat=True)) == ["retry", "ok"]


def test_twice_outside_the_schema_is_a_failure_with_the_reason_and_the_message_goes_on(fake_openai, say):
    understood = []

    def receiver(message):
        understood.append(message.pk)

    message_understood.register(receiver)
    try:
        fake_openai.script("chat", "not json at all", {"intent": "complaint"})
        message = inbound(say, "hola")
        assert message_process(message.pk).retry_in is None
    finally:
        message_understood._receivers.remove(receiver)

    insight = MessageInsight.objects.get(message=message)
    assert insight.classification_status == "failed"
    assert "did not match the schema twice" in insight.classification_error
    message.refresh_from_db()
    assert message.ai_processed_at is not None and message.intent == "" and understood == [message.pk]
    assert AiCall.objects.filter(status="failed").count() == 1


def test_a_429_is_retried_after_the_servers_delay_then_succeeds(fake_openai, say):
    fake_openai.script("chat", error(429, "rate_limit_exceeded", "Slow down", retry_after=7), CLASSIFIED)
    message = inbound(say, "hola")

    outcome = message_process(message.pk)
    assert outcome.retry_in == 7.0
    insight = MessageInsight.objects.get(message=message)
    assert (insight.classification_status, insight.attempts) == ("", 1)
    assert insight.next_attempt_at > timezone.now() + timedelta(seconds=5)
    assert AiCall.objects.get().status == "retry"

    MessageInsight.objects.update(next_attempt_at=timezone.now())  # the countdown is over
    assert message_process(message.pk).retry_in is None
    assert MessageInsight.objects.get(message=message).classification_status == "done"


def test_out_of_quota_is_not_retried(fake_openai, say):
    fake_openai.script("chat", error(429, "insufficient_quota", "You exceeded your current quota"))
    message = inbound(say, "hola")
    assert message_process(message.pk).retry_in is None
    insight = MessageInsight.objects.get(message=message)
    assert insight.classification_status == "failed" and "insufficient_quota" in insight.classification_error


def test_server_errors_and_timeouts_are_retried_then_fail_and_open_the_circuit(fake_openai, say, settings):
    settings.AI_TIMEOUT_SECONDS = 0.3
    fake_openai.script("chat", error(500, "server_error", "boom"), slow(2), error(503, None, "overloaded"))
    message = inbound(say, "hola")

    assert message_process(message.pk).retry_in == 5.0
    MessageInsight.objects.update(next_attempt_at=timezone.now())  # each countdown is over
    assert message_process(message.pk).retry_in == 10.0
    MessageInsight.objects.update(next_attempt_at=timezone.now())
    assert message_process(message.pk).retry_in is None  # the third attempt was the last
    insight = MessageInsight.objects.get(message=message)
    assert insight.classification_status == "failed" and "503" in insight.classification_error
    reasons = list(AiCall.objects.order_by("pk").values_list("status", "reason"))
    assert [status for status, _ in reasons] == ["retry", "retry", "failed"]
    assert "did not answer in time" in reasons[1][1]

    # Three failures in a row: the circuit is open, /health/ says so, and the next call waits.
    assert AiCircuit.objects.get().state == "open"
    assert health_report()[1]["ai"]["circuit"]["state"] == "open"
    other = inbound(say, "otra", phone="+34612345679")
    requests_before = len(fake_openai.chat_requests)
    outcome = message_process(other.pk)
    assert outcome.retry_in and outcome.retry_in > 1 and len(fake_openai.chat_requests) == requests_before

    # After the cooldown one probe goes through; its success closes the circuit.
    AiCircuit.objects.update(retry_at=timezone.now() - timedelta(seconds=1))
    MessageInsight.objects.filter(message=other).update(next_attempt_at=timezone.now())
    fake_openai.script("chat", CLASSIFIED)
    assert message_process(other.pk).retry_in is None
    assert AiCircuit.objects.get().state == "closed"


def test_past_the_daily_budget_calls_are_skipped_with_the_reason(fake_openai, say, sandbox_provider):
    ProviderAiSettings.objects.create(provider=sandbox_provider, daily_budget=Decimal("0.01"))
    fake_openai.always("chat", CLASSIFIED)
    first = inbound(say, "hola")
    message_process(first.pk)
    assert MessageInsight.objects.get(message=first).classification_status == "done"

    # The day's spending reaches the budget (another call, recorded as the ledger does).
    AiCall.objects.create(feature="classification", provider=sandbox_provider, status="ok", cost=Decimal("0.0099"))
    second = inbound(say, "y otra cosa")
    requests_before = len(fake_openai.chat_requests)
    message_process(second.pk)

    insight = MessageInsight.objects.get(message=second)
    assert insight.classification_status == "skipped" and "daily budget reached" in insight.classification_error
    assert len(fake_openai.chat_requests) == requests_before  # no call made
    skipped = AiCall.objects.get(status="skipped")
    assert "daily budget" in skipped.reason and skipped.cost == 0
    assert second.__class__.objects.get(pk=second.pk).ai_processed_at is not None  # nothing left waiting

    # Yesterday's spending does not count today.
    AiCall.objects.filter(status="ok").update(created_at=guards.budget_day_start() - timedelta(minutes=1))
    third = inbound(say, "mañana")
    message_process(third.pk)
    assert MessageInsight.objects.get(message=third).classification_status == "done"


def test_the_rollout_keeps_each_contact_in_or_out_for_good(fake_openai, say, sandbox_provider):
    settings_row = ProviderAiSettings.objects.create(provider=sandbox_provider, rollout_percent=30)
    fake_openai.always("chat", CLASSIFIED)
    phones = [f"+3461200{n:04d}" for n in range(40)]
    first = {}
    for phone in phones:
        message = inbound(say, "hola", phone=phone)
        message_process(message.pk)
        first[phone] = MessageInsight.objects.get(message=message).classification_status
    included = {phone for phone, status in first.items() if status == "done"}
    assert 0 < len(included) < len(phones)
    assert all(status in ("done", "skipped") for status in first.values())

    # The same contacts again: the same answer. A larger share keeps everyone it had.
    for phone in phones:
        message = inbound(say, "otra vez", phone=phone)
        message_process(message.pk)
        assert (MessageInsight.objects.get(message=message).classification_status == "done") == (phone in included)
    settings_row.rollout_percent = 60
    settings_row.save()
    wider = {phone for phone in phones
             if guards.in_rollout(settings_row, Message.objects.filter(
                 conversation__contact__identities__value=phone).first().conversation.contact_id)}
    assert included < wider
    # Skips for the rollout are not usage: the ledger keeps only the calls made.
    assert not AiCall.objects.filter(status="skipped").exists()


def test_pii_never_reaches_the_api_and_is_restored_in_what_is_shown(fake_openai, say):
    text = ("Soy Ana, mi número es +34 612 345 678 y mi correo ana.lopez@example.com; "
            "pagué con 4111 1111 1111 1111, devolución a ES91 2100 0418 4502 0005 1332")

    def echo_placeholders(request):
        labelled = request["messages"][-1]["content"]
        placeholders = [word.strip(",;") for word in labelled.split() if word.startswith("[")]
        return {**CLASSIFIED, "fields": {"dates": [], "amounts": [], "items": placeholders}}

    fake_openai.script("chat", echo_placeholders)
    message = inbound(say, text)
    message_process(message.pk)

    sent = fake_openai.all_prompt_text()
    for secret in ["612 345 678", "ana.lopez@example.com", "4111 1111 1111 1111", "ES91 2100 0418 4502 0005 1332"]:
        assert secret not in sent
    for placeholder in ["[PHONE_1]", "[EMAIL_1]", "[CARD_1]", "[IBAN_1]"]:
        assert placeholder in sent
    items = MessageInsight.objects.get(message=message).extracted["items"]
    assert "ana.lopez@example.com" in items and "4111 1111 1111 1111" in items
    assert any("612 345 678" in item for item in items)


def test_with_redaction_off_the_text_goes_as_written(fake_openai, say, sandbox_provider):
    ProviderAiSettings.objects.create(provider=sandbox_provider, redact_pii=False)
    message = inbound(say, "escríbeme a ana.lopez@example.com")
    message_process(message.pk)
    assert "ana.lopez@example.com" in fake_openai.all_prompt_text()


def test_no_prompt_or_completion_text_reaches_the_logs(fake_openai, say, caplog):
    secret_words = "zebra-quartz-lantern"
    fake_openai.script("chat", {**CLASSIFIED, "fields": {"dates": [], "amounts": [], "items": [secret_words]}})
    with caplog.at_level(logging.DEBUG):
        message = inbound(say, f"please remember {secret_words} for me")
        message_process(message.pk)
    assert MessageInsight.objects.get(message=message).classification_status == "done"
    logged = "\n".join(f"{record.getMessage()} {json.dumps(record.__dict__, default=str)}"
                       for record in caplog.records if record.name.startswith(("ai", "openai", "httpx")))
    assert secret_words not in logged


def test_a_feature_switched_off_makes_no_call_and_no_ledger_row(fake_openai, say, sandbox_provider):
    ProviderAiSettings.objects.create(provider=sandbox_provider, classification_enabled=False)
    message = inbound(say, "hola")
    message_process(message.pk)
    insight = MessageInsight.objects.get(message=message)
    assert insight.classification_status == "skipped" and "off for this provider" in insight.classification_error
    assert not fake_openai.chat_requests and not AiCall.objects.exists()


def test_without_a_key_nothing_is_called(fake_openai, say, settings):
    settings.OPENAI_API_KEY = ""
    message = inbound(say, "hola")
    message_process(message.pk)
    assert not fake_openai.chat_requests
    assert ai_drain() == 0
    assert health_report()[1]["ai"] == {"enabled": False, "circuit": {"state": "closed", "failures": 0}}


def test_the_drain_runs_every_pending_message_once(fake_openai, say):
    fake_openai.always("chat", CLASSIFIED)
    messages = [inbound(say, f"hola {n}", phone=f"+3461234500{n}") for n in range(3)]
    older = inbound(say, "from yesterday", phone="+34612345009")
    Message.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(hours=7))
    assert list(pending_messages().values_list("pk", flat=True)) == [m.pk for m in messages]

    assert ai_drain() == 3
    assert MessageInsight.objects.filter(classification_status="done").count() == 3
    assert not pending_messages().exists() and ai_drain() == 0
    assert len(fake_openai.chat_requests) == 3


def test_a_message_waiting_for_its_retry_is_not_pending_and_an_early_call_does_nothing(fake_openai, say):
    fake_openai.script("chat", error(429, "rate_limit_exceeded", "Slow down", retry_after=90), CLASSIFIED)
    message = inbound(say, "hola")

    outcome = message_process(message.pk)
    assert outcome.retry_in == 90.0
    assert Message.objects.get(pk=message.pk).ai_processed_at is None
    assert not pending_messages().exists()  # not due yet
    requests_before = len(fake_openai.chat_requests)
    message_process(message.pk)  # a copy of the task arriving early
    assert len(fake_openai.chat_requests) == requests_before

    MessageInsight.objects.filter(message=message).update(next_attempt_at=timezone.now())
    assert ai_drain() == 1
    assert MessageInsight.objects.get(message=message).classification_status == "done"


def test_one_message_that_breaks_a_step_does_not_stop_the_drain(fake_openai, say, local_storage):
    fake_openai.always("chat", CLASSIFIED)
    broken = inbound(say, "first", phone="+34612345001")
    fine = inbound(say, "second", phone="+34612345002")
    # A voice note whose stored file has gone missing: reading it raises, which no API error covers.
    Message.objects.filter(pk=broken.pk).update(message_type="audio", text="")
    Media.objects.create(message=broken, state="fetched", mime_type="audio/ogg", archive_path="gone/voice.ogg")

    assert ai_drain() == 2
    assert MessageInsight.objects.get(message=fine).classification_status == "done"
    insight = MessageInsight.objects.get(message=broken)
    assert (insight.transcription_status, insight.attempts) == ("", 1)  # counted, retried later
    assert insight.next_attempt_at > timezone.now() and insight.claimed_until is None


def test_while_the_circuit_is_open_steps_wait_without_using_their_attempts(fake_openai, say):
    AiCircuit.objects.create(state="open", failures=5, retry_at=timezone.now() + timedelta(seconds=40))
    message = inbound(say, "hola")
    outcome = message_process(message.pk)
    assert outcome.retry_in == pytest.approx(40, abs=2)
    insight = MessageInsight.objects.get(message=message)
    assert insight.attempts == 0 and insight.classification_status == ""
    assert not fake_openai.chat_requests
