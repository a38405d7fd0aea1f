"""The satisfaction survey end to end through a real Celery worker: a customer writes from the sandbox phone,
an operator resolves the conversation in the API, the worker sends the question, and the customer taps a rating
on the sandbox phone's screen; the answer reaches the dashboard's figure."""

import httpx
import pytest
from django.urls import reverse

from tests.conftest import sandbox_fixture_now, wait_until
from whatsapp import sandbox_phone
from whatsapp.models import Conversation, Message, Resolution, Team
from whatsapp.services.providers import provider_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_tap_on_the_sandbox_phone_answers_the_survey(celery_worker, live_server, api_client, admin_client_logged):
    provider = provider_create(kind="sandbox", name="Survey sandbox", options={})
    team = Team.objects.create(name="Support", csat_survey=True)
    team.providers.add(provider)
    body = sandbox_fixture_now("inbound_text.json")
    response = httpx.post(f"{live_server.url}/webhooks/sandbox/{provider.public_id}/", content=body,
                          headers=sandbox_phone.signed_headers(provider, body))
    assert response.status_code == 200
    conversation = wait_until(lambda: Conversation.objects.filter(provider=provider).first(), 30,
                              message="the worker to store the customer's message")

    response = api_client.post(f"/api/v1/conversations/{conversation.pk}/status/", {"status": "resolved"},
                               format="json")
    assert response.status_code == 200 and response.json()["status"] == "resolved"
    question = Resolution.objects.get().survey_message
    wait_until(lambda: Message.objects.get(pk=question.pk).status in ("delivered", "read"), 30,
               message="the question on the customer's phone")

    number = conversation.contact.identities.get(kind="phone").value
    tap = reverse("admin:whatsapp_provider_sandbox_phone_tap", args=[provider.pk, number])
    response = admin_client_logged.post(tap, {"choice": f"{question.pk}:csat:5"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 202, response.content

    answered = wait_until(lambda: Resolution.objects.filter(rating__isnull=False).first(), 30,
                          message="the tap to reach the resolution")
    assert (answered.rating, answered.survey) == (5, "answered")
    conversation.refresh_from_db()
    assert conversation.status == "resolved"  # an answer does not reopen it
    wait_until(lambda: Message.objects.filter(purpose="survey", message_type="text", status__in=("sent", "delivered",
                                                                                                  "read")).exists(),
               30, message="the thank-you to go out")
    rows = api_client.get("/api/v1/analytics/satisfaction/?by=team").json()["rows"]
    assert [(row["name"], row["answered"], row["csat"]) for row in rows] == [("Support", 1, 1.0)]
