"""
AI in the admin: every page with AI on and off (and the notice that says how to turn it on), the usage
page's figures, the intent taxonomy editor, the message list's "Re-run AI" action, the conversation list's
intent and sentiment chips and filters, and the conversation page's AI panel with its buttons.
"""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from ai.guards import budget_day_start
from ai.models import (
    AiCall,
    AiCircuit,
    AiRequest,
    ConversationSummary,
    IntentCategory,
    MessageInsight,
    ProviderAiSettings,
    ReplySuggestion,
)
from ai.services.pipeline import pending_messages
from templates_app.models import MessageTemplate
from tests.conftest import audit_actions, page
from whatsapp.models import Conversation, Message
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

OFF_NOTICE = "AI is off."
PASSWORD = "pw-123456-strong"


@pytest.fixture(params=["off", "on"])
def ai_switch(request, settings):
    settings.OPENAI_API_KEY = "test-key" if request.param == "on" else ""
    return request.param


@pytest.fixture
def ai_on(settings):
    settings.OPENAI_API_KEY = "test-key"


@pytest.fixture
def ai_off(settings):
    settings.OPENAI_API_KEY = ""


def latest_inbound(contact) -> Message:
    return Message.objects.filter(conversation__contact=contact, direction="inbound").latest("created_at", "pk")


def classified(message: Message, intent: str, sentiment: str, score: float = -0.6) -> MessageInsight:
    """The message as the AI pipeline leaves it once classified."""
    Message.objects.filter(pk=message.pk).update(intent=intent, sentiment=sentiment, ai_processed_at=timezone.now())
    return MessageInsight.objects.create(message=message, classification_status="done", intent=intent,
                                         sentiment=sentiment, sentiment_score=score, language="en", urgency="high",
                                         extracted={"amounts": ["40 EUR"], "dates": ["Friday"]},
                                         classification_model="gpt-4.1-mini", prompt_version="classify-1")


@pytest.fixture
def conversation(say) -> Conversation:
    contact = say("+15551230101", "My order arrived broken, I paid 40 EUR", name="Ana")
    return Conversation.objects.get(contact=contact)


@pytest.fixture
def approved_template(sandbox_provider):
    return MessageTemplate.objects.create(provider=sandbox_provider, name="order_update", language="en_US",
                                          status="approved",
                                          components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}}"}])


@pytest.fixture
def stored_ai(conversation, superuser, approved_template):
    """A conversation with everything the AI keeps: an insight, a summary, suggestions, calls, settings."""
    message = latest_inbound(conversation.contact)
    insight = classified(message, "complaint", "negative")
    summary_request = AiRequest.objects.create(conversation=conversation, kind="summary", status="done",
                                               trigger="manual", created_by=superuser, finished_at=timezone.now())
    reply = Message.objects.create(provider=conversation.provider, conversation=conversation, direction="outbound",
                                   text="Sorry! Could you send a photo?", status="delivered")
    summary = ConversationSummary.objects.create(
        conversation=conversation, request=summary_request, text="Ana's order arrived broken; she wants a refund.",
        language="en", first_message=message, last_message=reply, message_count=2, trigger="manual",
        model="gpt-4.1-mini", created_by=superuser)
    request = AiRequest.objects.create(conversation=conversation, kind="suggestions", status="done",
                                       trigger="manual", created_by=superuser, finished_at=timezone.now())
    text = ReplySuggestion.objects.create(conversation=conversation, request=request, for_message=message, position=1,
                                          text="Sorry to hear that, Ana! We'll send a new one today.", language="en")
    template = ReplySuggestion.objects.create(
        conversation=conversation, request=request, for_message=message, position=2, language="en",
        template=approved_template, template_variables={"body": {"1": "Ana", "2": "#1042"}})
    call = AiCall.objects.create(feature="classification", provider=conversation.provider, message=message,
                                 conversation=conversation, status="ok", model="gpt-4.1-mini", input_tokens=120,
                                 output_tokens=30, cost=Decimal("0.000096"), latency_ms=450)
    ai_settings = ProviderAiSettings.objects.create(provider=conversation.provider, daily_budget=Decimal("2.00"))
    return {"message": message, "reply": reply, "insight": insight, "summary": summary,
            "summary_request": summary_request, "request": request, "text": text, "template": template,
            "call": call, "settings": ai_settings}


def staff_user(username: str, *perms: str):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = Client()
    client.force_login(user)
    return client


def conversation_url(conversation) -> str:
    return reverse("admin:whatsapp_conversation_change", args=[conversation.pk])


def flash(response) -> str:
    return " | ".join(str(message) for message in response.context["messages"])


# --- every page, with AI on and off -----------------------------------------------------------------------------

def ai_pages(stored) -> list[str]:
    pages = [reverse("admin:app_list", args=["ai"]), reverse("admin:ai_aicall_usage"),
             reverse("admin:ai_setup_guide"),
             reverse("admin:ai_intentcategory_add"), reverse("admin:ai_provideraisettings_add")]
    for model in ("aicall", "airequest", "conversationsummary", "intentcategory", "messageinsight",
                  "provideraisettings"):
        pages.append(reverse(f"admin:ai_{model}_changelist"))
    rows = {"aicall": stored["call"], "airequest": stored["request"], "conversationsummary": stored["summary"],
            "intentcategory": IntentCategory.objects.get(name="complaint"), "messageinsight": stored["insight"],
            "provideraisettings": stored["settings"]}
    pages += [reverse(f"admin:ai_{model}_change", args=[row.pk]) for model, row in rows.items()]
    pages += [reverse("admin:ai_intentcategory_history", args=[rows["intentcategory"].pk]),
              reverse("admin:ai_intentcategory_delete", args=[rows["intentcategory"].pk])]
    return pages


def test_every_ai_page_answers_and_says_when_ai_is_off(admin_client_logged, stored_ai, ai_switch):
    for url in ai_pages(stored_ai):
        response = admin_client_logged.get(url)
        assert response.status_code == 200, url
        html = page(response)
        assert 'class="ai-status"' in html, url
        assert "AI API circuit:" in html, url
        if ai_switch == "off":
            assert OFF_NOTICE in html and "OPENAI_API_KEY" in html and "OPENAI_BASE_URL" in html, url
            assert "celery -A config worker -Q ai" in html and reverse("admin:ai_setup_guide") in html, url
        else:
            assert OFF_NOTICE not in html and "AI is on" in html, url


def test_the_status_line_shows_an_open_circuit(admin_client_logged, ai_on):
    now = timezone.now()
    AiCircuit.objects.create(state="open", failures=5, opened_at=now, retry_at=now + timedelta(seconds=60),
                             last_error="the AI API could not be reached")
    html = page(admin_client_logged.get(reverse("admin:ai_aicall_changelist")))
    status = re.search(r'<p class="ai-circuit ai-circuit-open">.*?</p>', html, re.S).group(0)
    assert "<strong>open</strong>" in status and "5 failed calls" in status
    assert "the AI API could not be reached" in status


def test_the_calls_list_links_the_usage_page_and_the_app_index_too(admin_client_logged, stored_ai):
    usage = reverse("admin:ai_aicall_usage")
    html = page(admin_client_logged.get(reverse("admin:ai_aicall_changelist")))
    assert f'<li><a href="{usage}">Usage per day</a></li>' in html
    assert usage in page(admin_client_logged.get(reverse("admin:app_list", args=["ai"])))
    # The ledger row: time to the second, tokens, cost and latency.
    call = stored_ai["call"]
    assert timezone.localtime(call.created_at).strftime("%Y-%m-%d %H:%M:%S") in html
    assert "0.000096" in html and "450 ms" in html


def test_the_settings_list_shows_the_spend_of_today_and_the_providers_on_defaults(admin_client_logged, stored_ai):
    provider_create(kind="sandbox", name="Second number", options={})
    AiCall.objects.create(feature="summary", provider=stored_ai["call"].provider, status="ok", model="gpt-4.1-mini",
                          cost=Decimal("0.250000"))
    html = page(admin_client_logged.get(reverse("admin:ai_provideraisettings_changelist")))
    row = re.search(r'<tr>.*?field-spent.*?</tr>', html, re.S).group(0)
    assert '<td class="field-spent">0.2501</td>' in row and '<td class="field-budget">2.00</td>' in row
    assert "On the default settings" in html and "Second number" in html


# --- the usage page ------------------------------------------------------------------------------------------------

def ledger_row(feature, status, *, at, provider, model="gpt-4.1-mini", tokens=(0, 0), cost="0", latency=0):
    call = AiCall.objects.create(feature=feature, status=status, provider=provider, model=model,
                                 input_tokens=tokens[0], output_tokens=tokens[1], cost=Decimal(cost),
                                 latency_ms=latency, reason="budget reached" if status == "skipped" else "")
    AiCall.objects.filter(pk=call.pk).update(created_at=at)
    return call


def test_the_usage_page_adds_up_the_ledger_per_day_and_feature(admin_client_logged, sandbox_provider):
    other = provider_create(kind="sandbox", name="Other number", options={})
    today = budget_day_start() + timedelta(minutes=1)
    yesterday = budget_day_start() - timedelta(hours=12)
    p = sandbox_provider
    ledger_row("classification", "ok", at=today, provider=p, tokens=(100, 20), cost="0.001000", latency=400)
    ledger_row("classification", "ok", at=today, provider=p, tokens=(200, 30), cost="0.002500", latency=600)
    ledger_row("classification", "failed", at=today, provider=p, latency=1000)
    ledger_row("classification", "retry", at=today, provider=p, latency=2000)
    ledger_row("suggestions", "skipped", at=today, provider=p, model="")
    ledger_row("summary", "ok", at=yesterday, provider=p, model="my-local-model", tokens=(1000, 100),
               cost="0.012345", latency=2000)
    ledger_row("summary", "ok", at=yesterday, provider=other, tokens=(10, 10), cost="0.000100", latency=100)
    ledger_row("classification", "ok", at=budget_day_start() - timedelta(days=40), provider=p, cost="5")

    response = admin_client_logged.get(reverse("admin:ai_aicall_usage"))
    assert response.status_code == 200
    report = response.context["report"]
    figures = [(row.day, row.feature, row.calls, row.ok, row.failed, row.skipped, row.input_tokens,
                row.output_tokens, row.cost, row.average_latency_ms) for row in report.rows]
    day, before = today.date(), yesterday.date()
    assert figures == [
        (day, "classification", 4, 2, 2, 0, 300, 50, Decimal("0.003500"), 1000),
        (day, "suggestions", 1, 0, 0, 1, 0, 0, Decimal("0"), None),
        (before, "summary", 2, 2, 0, 0, 1010, 110, Decimal("0.012445"), 1050),
    ]
    total = report.total
    assert (total.calls, total.ok, total.failed, total.skipped, total.input_tokens, total.output_tokens,
            total.cost, total.average_latency_ms) == (7, 4, 2, 1, 1310, 160, Decimal("0.015945"), 1017)
    assert report.unpriced_models == ["my-local-model"]

    html = page(response)
    assert '<td class="ai-num ai-cost">0.0035</td>' in html and '<td class="ai-num ai-cost">0.0159</td>' in html
    assert html.index(day.strftime("%Y-%m-%d")) < html.index(before.strftime("%Y-%m-%d"))  # newest first
    assert "<code>my-local-model</code> <span class=\"ai-unpriced\"" in html
    assert "AI_PRICES" in html

    # One provider only.
    report = admin_client_logged.get(reverse("admin:ai_aicall_usage"), {"provider": other.pk}).context["report"]
    assert [(row.feature, row.calls, row.cost) for row in report.rows] == [("summary", 1, Decimal("0.000100"))]
    assert report.unpriced_models == []


def test_the_usage_page_runs_one_query_for_its_figures(admin_client_logged, sandbox_provider):
    for day in range(5):
        ledger_row("classification", "ok", at=budget_day_start() - timedelta(days=day), provider=sandbox_provider,
                   cost="0.001")
    with CaptureQueriesContext(connection) as queries:
        admin_client_logged.get(reverse("admin:ai_aicall_usage"))
    assert len([q for q in queries if 'FROM "ai_aicall"' in q["sql"]]) == 1


# --- the intent taxonomy -------------------------------------------------------------------------------------------

def test_the_taxonomy_editor_adds_an_intent_and_audits_it(admin_client_logged):
    changelist = page(admin_client_logged.get(reverse("admin:ai_intentcategory_changelist")))
    assert "complaint" in changelist and 'name="form-0-is_active"' in changelist  # active and position editable
    response = admin_client_logged.post(reverse("admin:ai_intentcategory_add"), {
        "name": "refund", "description": "Asks for money back.", "examples": "I want my money back\n\nReembolso ya",
        "is_active": "on", "position": "75"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    intent = IntentCategory.objects.get(name="refund")
    assert intent.example_lines() == ["I want my money back", "Reembolso ya"]
    assert audit_actions(intent) == [("admin.add", "root")]

    response = admin_client_logged.post(reverse("admin:ai_intentcategory_change", args=[intent.pk]), {
        "name": "refund", "description": "Asks for money back.", "examples": "I want my money back",
        "position": "75"})
    assert response.status_code == 302
    assert IntentCategory.objects.get(pk=intent.pk).is_active is False
    assert audit_actions(intent) == [("admin.add", "root"), ("admin.change", "root")]

    # Switched on again and moved from the list itself.
    changelist_url = reverse("admin:ai_intentcategory_changelist")
    formset = admin_client_logged.get(changelist_url).context["cl"].formset
    data = {f"form-{key}": value for key, value in formset.management_form.initial.items()}
    for number, form in enumerate(formset.forms):
        row = form.instance
        data[f"form-{number}-id"] = row.pk
        data[f"form-{number}-position"] = 5 if row.pk == intent.pk else row.position
        if row.is_active or row.pk == intent.pk:
            data[f"form-{number}-is_active"] = "on"
    response = admin_client_logged.post(changelist_url, {**data, "_save": "Save"})
    assert response.status_code == 302
    intent.refresh_from_db()
    assert (intent.is_active, intent.position) == (True, 5)
    assert audit_actions(intent)[-1] == ("admin.change", "root")
    assert list(IntentCategory.objects.values_list("name", flat=True)[:2]) == ["note", "refund"]  # by position


# --- re-running AI on messages -------------------------------------------------------------------------------------

def rerun(client, *messages):
    return client.post(reverse("admin:whatsapp_message_changelist"),
                       {"action": "rerun_ai", "_selected_action": [m.pk for m in messages]}, follow=True)


def test_rerun_forgets_the_insight_and_queues_the_message_again(admin_client_logged, conversation, ai_on):
    message = latest_inbound(conversation.contact)
    classified(message, "complaint", "negative")
    reply = Message.objects.create(provider=message.provider, conversation=conversation, direction="outbound",
                                   text="Sorry!", status="sent")
    response = rerun(admin_client_logged, message, reply)
    assert list(pending_messages().values_list("pk", flat=True)) == [message.pk]  # the next drain takes it
    assert "1 inbound message(s) queued for AI again" in flash(response)
    assert "1 outbound message(s) left alone" in flash(response)
    insight = MessageInsight.objects.get(message=message)  # a fresh one, due now, whatever the message's age
    assert (insight.classification_status, insight.intent) == ("", "") and insight.next_attempt_at is not None
    message.refresh_from_db()
    assert (message.ai_processed_at, message.intent, message.sentiment) == (None, "", "")


def test_rerun_says_so_when_ai_is_off(admin_client_logged, conversation, ai_off):
    message = latest_inbound(conversation.contact)
    classified(message, "complaint", "negative")
    response = rerun(admin_client_logged, message)
    assert "AI is off" in flash(response)
    assert MessageInsight.objects.filter(message=message).exists()


def test_rerun_is_offered_only_to_who_may_change_insights(conversation):
    changelist = reverse("admin:whatsapp_message_changelist")
    viewer = staff_user("viewer", "whatsapp.view_message")
    assert 'value="rerun_ai"' not in page(viewer.get(changelist))
    operator = staff_user("operator", "whatsapp.view_message", "ai.change_messageinsight")
    assert 'value="rerun_ai"' in page(operator.get(changelist))


# --- the conversation list: chips and filters ----------------------------------------------------------------------

def test_the_list_shows_the_latest_inbound_intent_and_sentiment_and_filters_by_them(admin_client_logged, say):
    angry = Conversation.objects.get(contact=say("+15551230201", "This is the third time it breaks"))
    classified(latest_inbound(angry.contact), "complaint", "negative")
    happy = Conversation.objects.get(contact=say("+15551230202", "Do you open on Saturday?"))
    classified(latest_inbound(happy.contact), "question", "positive", 0.4)
    # Was a complaint; its latest message is not classified yet, so the list shows nothing for it.
    calmer = Conversation.objects.get(contact=say("+15551230203", "Broken again"))
    classified(latest_inbound(calmer.contact), "complaint", "negative")
    say("+15551230203", "ok, thanks")
    unread = Conversation.objects.get(contact=say("+15551230204", "hello"))
    changelist = reverse("admin:whatsapp_conversation_changelist")

    def listed(**params) -> set[int]:
        response = admin_client_logged.get(changelist, params)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    html = page(admin_client_logged.get(changelist))
    row = re.search(rf'href="[^"]*/{angry.pk}/change/.*?</tr>', html, re.S).group(0)
    assert '<span class="wa-chip wa-chip-negative" title="intent complaint, sentiment negative">' \
           'complaint · negative</span>' in row
    row = re.search(rf'href="[^"]*/{happy.pk}/change/.*?</tr>', html, re.S).group(0)
    assert 'wa-chip-positive' in row and "question · positive" in row
    for quiet in (calmer, unread):
        row = re.search(rf'href="[^"]*/{quiet.pk}/change/.*?</tr>', html, re.S).group(0)
        assert '<td class="field-latest_insight"></td>' in row
    assert "?intent=complaint" in html and "?sentiment=negative" in html  # the filters' choices

    assert listed() == {angry.pk, happy.pk, calmer.pk, unread.pk}
    assert listed(intent="complaint") == {angry.pk}
    assert listed(intent="question") == {happy.pk}
    assert listed(sentiment="negative") == {angry.pk}
    assert listed(sentiment="positive", intent="question") == {happy.pk}
    assert listed(sentiment="neutral") == set()


def test_the_list_runs_the_same_queries_for_1_and_5_conversations(admin_client_logged, say):
    changelist = reverse("admin:whatsapp_conversation_changelist")

    def add(number: int) -> None:
        contact = say(f"+155512303{number:02d}", f"message {number}")
        classified(latest_inbound(contact), "complaint" if number % 2 else "question", "negative")

    add(0)
    admin_client_logged.get(changelist)  # warm the per-process caches
    with CaptureQueriesContext(connection) as one:
        admin_client_logged.get(changelist)
    for number in range(1, 5):
        add(number)
    with CaptureQueriesContext(connection) as five:
        html = page(admin_client_logged.get(changelist))
    assert html.count('class="wa-chip ') == 5
    assert len(one) == len(five), (len(one), len(five))


def test_inbound_bubbles_show_their_intent_and_sentiment(admin_client_logged, stored_ai, conversation):
    html = page(admin_client_logged.get(conversation_url(conversation)))
    bubble = re.search(rf'<div class="wa-row wa-inbound" id="message-{stored_ai["message"].pk}">.*\n', html).group(0)
    assert '<div class="wa-ai-tags"><span class="wa-chip wa-chip-negative"' in bubble
    assert "complaint · negative" in bubble


# --- the conversation page's AI panel -----------------------------------------------------------------------------

def panel_of(html: str) -> str:
    found = re.search(r'<fieldset class="module ai-panel" id="ai-panel">.*?</fieldset>', html, re.S)
    assert found, "the AI panel is not on the page"
    return found.group(0)


def test_the_panel_shows_the_insight_summary_and_suggestions_with_use_buttons(admin_client_logged, stored_ai,
                                                                               conversation, ai_on):
    html = page(admin_client_logged.get(conversation_url(conversation)))
    panel = panel_of(html)
    # Under the transcript and its send box.
    assert html.index('id="transcript"') < html.index('id="send-message"') < html.index('id="ai-panel"')
    message = stored_ai["message"]
    assert f'<a href="#message-{message.pk}">#{message.pk}</a>' in panel
    assert 'ai-chip-intent' in panel and ">complaint<" in panel and "negative -0.60" in panel
    assert "high urgency" in panel
    # The summary with the range it covers.
    assert "Ana&#x27;s order arrived broken; she wants a refund." in panel
    reply = stored_ai["reply"]
    assert re.search(rf"Covers messages\s*<a href=\"#message-{message.pk}\">#{message.pk}</a>–"
                     rf"<a href=\"#message-{reply.pk}\">#{reply.pk}</a>,\s*2 messages ·", panel)
    assert "asked for in the admin by root" in panel
    # The suggestions, each with its Use button.
    assert 'data-text="Sorry to hear that, Ana! We&#x27;ll send a new one today."' in panel
    template = stored_ai["template"].template
    assert f'data-template="{template.pk}"' in panel
    assert 'data-variables="{&quot;body&quot;: {&quot;1&quot;: &quot;Ana&quot;, &quot;2&quot;: &quot;#1042&quot;}}"' \
        in panel
    assert "Hi Ana, order #1042" in panel  # the template filled in
    assert panel.count("data-ai-use") == 2
    # The buttons post through the page's panel form, which carries the CSRF token.
    form = re.search(r'<form id="conversation-panel-form" method="post" hidden>.*?</form>', html, re.S).group(0)
    assert "csrfmiddlewaretoken" in form
    suggest_url = reverse("admin:ai_airequest_suggest", args=[conversation.pk])
    assert f'form="conversation-panel-form" formaction="{suggest_url}"' in panel
    assert "Suggest replies" in panel and "Summarise again" in panel
    assert 'data-pending="false"' in panel and OFF_NOTICE not in panel


def test_the_panel_says_ai_is_off_and_hides_the_buttons(admin_client_logged, stored_ai, conversation, ai_off):
    panel = panel_of(page(admin_client_logged.get(conversation_url(conversation))))
    assert OFF_NOTICE in panel and "OPENAI_API_KEY" in panel and "celery -A config worker -Q ai" in panel
    assert "Suggest replies" not in panel and "Summarise" not in panel
    assert "she wants a refund" in panel  # what was made before stays readable


def test_a_feature_off_for_the_provider_says_why_and_where_to_turn_it_on(admin_client_logged, stored_ai,
                                                                        conversation, ai_on):
    ProviderAiSettings.objects.filter(pk=stored_ai["settings"].pk).update(suggestions_enabled=False)
    panel = panel_of(page(admin_client_logged.get(conversation_url(conversation))))
    assert "Reply suggestions cannot be made for this conversation: suggestions is off for this provider." in panel
    assert reverse("admin:ai_provideraisettings_change", args=[stored_ai["settings"].pk]) in panel
    assert "Suggest replies" not in panel and "Summarise again" in panel


def test_a_pending_request_says_working_and_the_panel_endpoint_follows_it(admin_client_logged, conversation,
                                                                         superuser, ai_on):
    pending = AiRequest.objects.create(conversation=conversation, kind="suggestions", trigger="manual",
                                       created_by=superuser)
    panel = panel_of(page(admin_client_logged.get(conversation_url(conversation))))
    assert "Working…" in panel and 'data-pending="true"' in panel and "Suggest replies" not in panel
    poll_url = reverse("admin:ai_airequest_panel", args=[conversation.pk])
    assert f'data-poll-url="{poll_url}"' in panel
    assert "ai/ai_panel.js" in page(admin_client_logged.get(conversation_url(conversation)))

    response = admin_client_logged.get(poll_url)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert 'data-pending="true"' in page(response)

    AiRequest.objects.filter(pk=pending.pk).update(status="failed", error="429 insufficient_quota: pay up",
                                                   finished_at=timezone.now())
    body = page(admin_client_logged.get(poll_url))
    assert 'data-pending="false"' in body and "The last request failed" in body and "pay up" in body
    assert "Suggest replies" in body


def test_asking_creates_a_pending_request_and_goes_back_to_the_conversation(admin_client_logged, conversation,
                                                                           superuser, ai_on):
    for name, kind in (("suggest", "suggestions"), ("summarise", "summary")):
        response = admin_client_logged.post(reverse(f"admin:ai_airequest_{name}", args=[conversation.pk]))
        assert response.status_code == 302
        assert response["Location"] == conversation_url(conversation) + "#ai-panel"
        request = AiRequest.objects.get(conversation=conversation, kind=kind)
        assert (request.status, request.trigger, request.created_by) == ("pending", "manual", superuser)
    assert admin_client_logged.get(reverse("admin:ai_airequest_suggest", args=[conversation.pk])).status_code == 405


def test_asking_while_ai_is_off_says_why_and_asks_nothing(admin_client_logged, conversation, ai_off):
    response = admin_client_logged.post(reverse("admin:ai_airequest_suggest", args=[conversation.pk]), follow=True)
    assert "Not asked: AI is off" in flash(response)
    assert not AiRequest.objects.exists()


def test_asking_needs_the_change_permission_on_conversations(conversation, ai_on):
    viewer = staff_user("viewer", "whatsapp.view_conversation")
    for name in ("suggest", "summarise"):
        assert viewer.post(reverse(f"admin:ai_airequest_{name}", args=[conversation.pk])).status_code == 403
    assert not AiRequest.objects.exists()
    # Who may only look sees the panel without its buttons, and may poll it.
    panel = panel_of(page(viewer.get(conversation_url(conversation))))
    assert "Suggest replies" not in panel and "Summarise" not in panel
    assert viewer.get(reverse("admin:ai_airequest_panel", args=[conversation.pk])).status_code == 200
    stranger = staff_user("stranger")
    assert stranger.get(reverse("admin:ai_airequest_panel", args=[conversation.pk])).status_code == 403
