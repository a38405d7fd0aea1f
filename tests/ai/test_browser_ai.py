"""
A real browser (Debian's chromium, headless) on the AI pages: "Use" puts a stored suggestion into the send
form (a text into the text box; a template into the template choice and its values), the panel follows a
request from "working…" to its summary without a reload, and the usage page shows the ledger. Screenshots
of the panel and of the usage page go to /tmp/shots/.
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from ai.guards import budget_day_start
from ai.models import AiCall, AiRequest, ConversationSummary, MessageInsight, ReplySuggestion
from templates_app.models import MessageTemplate
from tests.conftest import admin_log_in, sandbox_message_stored
from whatsapp.models import Message
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-123456-strong"
SHOTS = Path("/tmp/shots")
TEXT_REPLY = "Sorry about the delay, Ana! Order #1042 leaves our warehouse today and arrives on Friday."


def stored_ai(conversation, user):
    message = conversation.messages.filter(direction="inbound").latest("pk")
    Message.objects.filter(pk=message.pk).update(intent="question", sentiment="neutral", ai_processed_at=timezone.now())
    MessageInsight.objects.create(message=message, classification_status="done", intent="question",
                                  sentiment="neutral", sentiment_score=-0.1, language="en", urgency="normal",
                                  classification_model="gpt-4.1-mini", prompt_version="classify-1")
    request = AiRequest.objects.create(conversation=conversation, kind="suggestions", status="done", trigger="manual",
                                       created_by=user, finished_at=timezone.now())
    ReplySuggestion.objects.create(conversation=conversation, request=request, for_message=message, position=1,
                                   text=TEXT_REPLY, language="en")
    ReplySuggestion.objects.create(conversation=conversation, request=request, for_message=message, position=2,
                                   text="Hi Ana, it is on its way: you will have it by Friday.", language="en")
    template = MessageTemplate.objects.create(provider=conversation.provider, name="order_update", language="en_US",
                                              status="approved",
                                              components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}} is on "
                                                                                   "its way."}])
    ReplySuggestion.objects.create(conversation=conversation, request=request, for_message=message, position=3,
                                   template=template, template_variables={"body": {"1": "Ana", "2": "#1042"}})
    return message, template


def ledger(provider):
    start = budget_day_start()
    rows = [("classification", "ok", 0, (820, 95), "0.000480", 640, "gpt-4.1-mini"),
            ("classification", "failed", 0, (0, 0), "0", 30000, "gpt-4.1-mini"),
            ("suggestions", "ok", 0, (1450, 210), "0.000916", 1900, "gpt-4.1-mini"),
            ("transcription", "ok", 1, (0, 0), "0.001200", 2300, "whisper-1"),
            ("summary", "ok", 1, (2100, 160), "0", 2600, "llama3.1:8b"),
            ("summary", "skipped", 2, (0, 0), "0", 0, "")]
    for feature, status, days_ago, (tokens_in, tokens_out), cost, latency, model in rows:
        call = AiCall.objects.create(feature=feature, status=status, provider=provider, model=model,
                                     input_tokens=tokens_in, output_tokens=tokens_out, cost=Decimal(cost),
                                     latency_ms=latency, reason="daily budget reached" if status == "skipped" else "")
        AiCall.objects.filter(pk=call.pk).update(created_at=start + timedelta(minutes=5) - timedelta(days=days_ago))


def test_use_fills_the_send_form_and_the_panel_follows_a_request(browser, live_server, settings):
    settings.OPENAI_API_KEY = "test-key"
    SHOTS.mkdir(parents=True, exist_ok=True)
    user = get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)
    provider = provider_create(kind="sandbox", name="Browser sandbox", options={})
    conversation = sandbox_message_stored(provider)
    message, template = stored_ai(conversation, user)
    ledger(provider)

    browser.set_window_size(1400, 1000)
    wait = WebDriverWait(browser, 10)
    admin_log_in(browser, live_server, "operator", PASSWORD)
    browser.get(f"{live_server.url}/admin/whatsapp/conversation/{conversation.pk}/change/")
    panel = wait.until(expected_conditions.presence_of_element_located((By.ID, "ai-panel")))
    assert "question" in panel.text and TEXT_REPLY in panel.text

    # A text: into the message box.
    uses = panel.find_elements(By.CSS_SELECTOR, "button.ai-use")
    assert len(uses) == 3
    uses[0].click()
    send_form = browser.find_element(By.CSS_SELECTOR, "#send-message form")
    text_box = send_form.find_element(By.NAME, "text")
    wait.until(lambda _: text_box.get_attribute("value") == TEXT_REPLY)
    assert Message.objects.filter(direction="outbound").count() == 0  # nothing sent

    # A template: chosen, with its values in the template's own fields and the preview filled in.
    uses[2].click()
    wait.until(lambda _: Select(send_form.find_element(By.NAME, "template")).first_selected_option
               .get_attribute("value") == str(template.pk))
    wait.until(lambda _: browser.find_elements(By.NAME, "body__2")
               and browser.find_element(By.NAME, "body__2").get_attribute("value") == "#1042")
    assert browser.find_element(By.NAME, "body__1").get_attribute("value") == "Ana"
    assert browser.find_element(By.ID, "wa-template-preview").text == "Hi Ana, order #1042 is on its way."

    # "Summarise": working… until the worker's summary appears, without reloading the page.
    panel.find_element(By.CSS_SELECTOR, 'button[name="summarise"]').click()
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#ai-panel .ai-working")))
    request = AiRequest.objects.get(conversation=conversation, kind="summary")
    assert request.status == "pending"
    ConversationSummary.objects.create(conversation=conversation, request=request, first_message=message,
                                       last_message=message, message_count=1, trigger="manual", created_by=user,
                                       text="Ana asks whether order #1042 is on its way.")
    AiRequest.objects.filter(pk=request.pk).update(status="done", finished_at=timezone.now())
    WebDriverWait(browser, 10).until(lambda driver: "Ana asks whether order #1042 is on its way."
                                     in driver.find_element(By.ID, "ai-panel").text)
    assert not browser.find_elements(By.CSS_SELECTOR, "#ai-panel .ai-working")
    transcript = browser.find_element(By.ID, "transcript")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", transcript)
    browser.save_screenshot(str(SHOTS / "ai_panel.png"))

    browser.get(f"{live_server.url}/admin/ai/aicall/usage/")
    table = wait.until(expected_conditions.presence_of_element_located((By.ID, "ai-usage")))
    assert "llama3.1:8b" in table.text and "no price" in table.text
    total = table.find_element(By.CSS_SELECTOR, "tfoot .ai-cost").text
    assert total == "0.0026"
    browser.save_screenshot(str(SHOTS / "ai_usage.png"))
