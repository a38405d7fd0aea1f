"""The satisfaction survey sent on resolving: what goes out, answers by tap, number and comment, once per
period, the closed window, and the figures in the API and the dashboard."""

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from templates_app.models import MessageTemplate
from tests.conftest import json_body
from whatsapp.models import Conversation, Message, Resolution, Session, Team
from whatsapp.providers.events import TemplateStatus
from whatsapp.services.lifecycle import conversation_set_status
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db
PHONE = "+16505550201"


@pytest.fixture
def surveyed(sandbox_provider):
    team = Team.objects.create(name="Support", csat_survey=True)
    team.providers.add(sandbox_provider)
    return team


@pytest.fixture
def tap(sandbox_provider, post_sandbox):
    """The customer taps a list row on their phone: a signed sandbox webhook, processed."""

    def send(choice_id: str, title: str, phone: str = PHONE):
        event = {"type": "message", "id": f"sbx-in-{uuid.uuid4().hex}", "from": phone, "kind": "list",
                 "reply": {"id": choice_id, "title": title}, "timestamp": time.time()}
        response = post_sandbox(sandbox_provider, json.dumps({"events": [event]}).encode())
        assert response.status_code == 200
        webhook_event_process(json_body(response)["event"])

    return send


def resolve(conversation, user=None) -> Resolution:
    conversation_set_status(conversation, "resolved", actor=user)
    return Resolution.objects.filter(conversation=conversation).order_by("-resolved_at").first()


def test_a_tap_rates_a_comment_follows_and_the_conversation_stays_resolved(say, surveyed, tap, superuser):
    say(PHONE, "My order never came")
    conversation = Conversation.objects.get()
    resolution = resolve(conversation, superuser)
    assert resolution.survey == "asked"
    question = resolution.survey_message
    assert (question.message_type, question.purpose) == ("interactive", "survey")
    rows = question.content["sections"][0]["rows"]
    assert [row["id"] for row in rows] == ["csat:5", "csat:4", "csat:3", "csat:2", "csat:1"]
    assert rows[0]["title"] == "5 Excellent" and "How satisfied" in question.content["body"]

    tap("csat:4", "4 Good")
    resolution.refresh_from_db()
    conversation.refresh_from_db()
    assert (resolution.survey, resolution.rating, resolution.comment) == ("answered", 4, "")
    assert conversation.status == "resolved" and conversation.awaiting_reply_since is None  # nobody needs to reply
    thanks = Message.objects.filter(purpose="survey", message_type="text").get()
    assert thanks.text.startswith("Thank you!")

    say(PHONE, "The courier was very kind")
    resolution.refresh_from_db()
    conversation.refresh_from_db()
    assert resolution.comment == "The courier was very kind" and conversation.status == "resolved"

    say(PHONE, "Now a new question about another order")
    conversation.refresh_from_db()
    assert conversation.status == "open"  # the comment was taken; what follows reopens
    resolution.refresh_from_db()
    assert resolution.comment == "The courier was very kind"


def test_at_most_one_survey_per_conversation_per_period(say, surveyed, settings):
    say(PHONE, "Hello")
    conversation = Conversation.objects.get()
    assert resolve(conversation).survey == "asked"
    say(PHONE, "Me again")
    second = resolve(conversation)
    assert (second.survey, second.survey_note) == ("skipped", "asked already within 7 days")
    Resolution.objects.update(resolved_at=timezone.now() - timedelta(days=8))
    say(PHONE, "And again next week")
    assert resolve(conversation).survey == "asked"
    assert Message.objects.filter(purpose="survey").count() == 2


def test_numbers_answer_too_and_other_words_do_not(say, surveyed):
    say(PHONE, "Hi")
    conversation = Conversation.objects.get()
    resolution = resolve(conversation)
    say(PHONE, "5 more questions please")  # not an answer to a list: it reopens
    conversation.refresh_from_db()
    resolution.refresh_from_db()
    assert (conversation.status, resolution.rating) == ("open", None)
    resolution = resolve(conversation)
    assert resolution.survey == "skipped"  # within the period


def test_a_closed_window_needs_the_template(say, surveyed, settings, sandbox_provider):
    say(PHONE, "Hi")
    conversation = Conversation.objects.get()
    Session.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    skipped = resolve(conversation)
    assert skipped.survey == "skipped" and "CSAT_TEMPLATE_NAME" in skipped.survey_note

    settings.CSAT_TEMPLATE_NAME = "csat_question"
    MessageTemplate.objects.create(
        provider=sandbox_provider, name="csat_question", language="en_US", category=MessageTemplate.Category.UTILITY,
        status=TemplateStatus.APPROVED, components=[{"type": "BODY", "text": "How did we do? Reply 1 to 5."}],
        provider_template_name="csat_question", provider_template_id="tpl-csat")
    Resolution.objects.all().delete()
    conversation_set_status(conversation, "open")
    asked = resolve(conversation)
    assert asked.survey == "asked" and asked.survey_message.message_type == "template"
    say(PHONE, "2 of my 3 items are broken")  # a sentence, not an answer: it reopens the conversation
    asked.refresh_from_db()
    conversation.refresh_from_db()
    assert (asked.rating, conversation.status) == (None, "open")
    conversation_set_status(conversation, "resolved")
    Resolution.objects.exclude(pk=asked.pk).delete()
    say(PHONE, "3 - slow but fine")
    asked.refresh_from_db()
    assert (asked.rating, asked.comment) == (3, "slow but fine")


def test_no_team_asking_means_no_survey(say):
    say(PHONE, "Hi")
    assert resolve(Conversation.objects.get()).survey == "not_asked"
    assert not Message.objects.filter(purpose="survey").exists()


def test_csat_in_the_api_and_the_dashboard(say, surveyed, tap, superuser, api_client, admin_client_logged):
    operator = superuser
    for index, rating in enumerate((5, 4, 2)):
        phone = f"+1650555030{index}"
        say(phone, "Help please")
        resolve(Conversation.objects.get(contact__identities__value=phone), operator)
        tap(f"csat:{rating}", f"{rating}", phone=phone)
    rows = api_client.get("/api/v1/analytics/satisfaction/?by=team").json()["rows"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["name"], row["resolved"], row["surveys_sent"], row["answered"]) == ("Support", 3, 3, 3)
    assert row["csat"] == round(2 / 3, 4) and row["rating_avg"] == round(11 / 3, 2)
    by_operator = api_client.get("/api/v1/analytics/satisfaction/?by=operator").json()["rows"]
    assert [(r["name"], r["answered"]) for r in by_operator] == [("root", 3)]
    weeks = api_client.get("/api/v1/analytics/satisfaction/").json()["rows"]
    assert sum(r["resolved"] for r in weeks) == 3 and "week" in weeks[0]
    csv = api_client.get("/api/v1/analytics/satisfaction/?by=provider&format=csv")
    assert csv.status_code == 200 and b"Sandbox test" in csv.content
    assert api_client.get("/api/v1/analytics/satisfaction/?by=planet").status_code == 400
    page = admin_client_logged.get("/admin/").content.decode()
    assert "Resolutions and satisfaction" in page and "66.7 %" in page and "By operator" in page


def test_a_tap_on_another_menu_or_a_number_in_an_open_conversation_is_no_rating(say, surveyed, tap, settings):
    say(PHONE, "Hi")
    conversation = Conversation.objects.get()
    resolution = resolve(conversation)
    tap("menu:2", "2 Opening hours")  # a row of some other list: reopens, no rating
    conversation.refresh_from_db()
    resolution.refresh_from_db()
    assert (conversation.status, resolution.rating) == ("open", None)
    say(PHONE, "4")  # answers the operator now that it is open again
    resolution.refresh_from_db()
    assert resolution.rating is None
    tap("csat:4", "4 Good")  # the survey's own choice still counts
    resolution.refresh_from_db()
    assert resolution.rating == 4

    settings.CSAT_THANKS = ""  # no thank-you, no invitation: the next text is a message like any other
    Resolution.objects.all().delete()
    conversation_set_status(conversation, "resolved")
    Resolution.objects.update(resolved_at=timezone.now() - timedelta(days=30))
    say(PHONE, "Hello again")
    resolution = resolve(conversation)
    tap("csat:5", "5 Excellent")
    say(PHONE, "What about my refund?")
    resolution.refresh_from_db()
    conversation.refresh_from_db()
    assert (resolution.rating, resolution.comment, conversation.status) == (5, "", "open")
