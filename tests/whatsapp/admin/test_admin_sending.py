"""The admin's side of sending: the dead-letter view, the send log, provider buttons and the conversation form."""

import json
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact
from core.models import AuditLog
from templates_app.models import MessageTemplate
from tests.conftest import fixture_bytes, json_body
from whatsapp.models import CircuitState, Conversation, Message, SendAttempt
from whatsapp.services.outbound import message_send_text
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

CUSTOMER_PHONE = "+15551230001"  # who writes in the sandbox fixture


@pytest.fixture
def customer(sandbox_provider, post_sandbox):
    """The fixture's customer writes now, so their 24-hour window is open whatever today's date."""
    body = json.loads(fixture_bytes("sandbox", "inbound_text.json"))
    body["events"][0]["timestamp"] = time.time()
    webhook_event_process(json_body(post_sandbox(sandbox_provider, json.dumps(body).encode()))["event"])
    return Conversation.objects.get(provider=sandbox_provider)


@pytest.fixture
def approved_template(sandbox_provider):
    return MessageTemplate.objects.create(provider=sandbox_provider, name="order_update", language="en_US",
                                          status="approved",
                                          components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}}"}])


def _dead_letter(conversation, text="undeliverable"):
    now = timezone.now()
    message = Message.objects.create(
        provider=conversation.provider, conversation=conversation, direction="outbound", message_type="text",
        text=text, status="dead_letter", attempts=5, error_code="500", error_title="Provider unavailable",
        error_detail="HTTP 500 from the provider, five times", dead_lettered_at=now, queued_at=now)
    SendAttempt.objects.create(message=message, number=5, started_at=now, finished_at=now, outcome="dead_letter",
                               error_code="500", error_title="Provider unavailable", http_status=500)
    return message


def _messages(response) -> str:
    return " | ".join(str(m) for m in response.context["messages"])


def _close_window(conversation):
    conversation.sessions.update(state="closed", closed_at=timezone.now())


# --- the dead-letter view ------------------------------------------------------------------------

def test_dead_letter_list_shows_only_dead_letters(admin_client_logged, customer):
    dead = _dead_letter(customer, "this one is dead")
    alive = message_send_text(provider=customer.provider, contact=customer.contact, text="this one is queued")
    page = admin_client_logged.get(reverse("admin:whatsapp_deadletter_changelist")).content.decode()
    assert f"/deadletter/{dead.pk}/change/" in page and "this one is dead" in page
    assert "this one is queued" not in page and f"/deadletter/{alive.pk}/change/" not in page
    assert "Ana Souza" in page and "Provider unavailable" in page


def test_dead_letter_page_shows_the_error_and_the_send_attempts(admin_client_logged, customer):
    dead = _dead_letter(customer)
    page = admin_client_logged.get(reverse("admin:whatsapp_deadletter_change", args=[dead.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "HTTP 500 from the provider, five times" in html
    assert "Retries exhausted" in html  # the attempt's outcome, from the send-log inline


def test_retry_action_queues_again_with_fresh_attempts(admin_client_logged, customer):
    dead = _dead_letter(customer)
    response = admin_client_logged.post(reverse("admin:whatsapp_deadletter_changelist"),
                                        {"action": "retry", "_selected_action": [dead.pk]}, follow=True)
    assert "1 of 1 message(s) queued again" in _messages(response)
    dead.refresh_from_db()
    assert (dead.status, dead.attempts, dead.error_code, dead.dead_lettered_at) == ("queued", 0, "", None)
    assert AuditLog.objects.filter(action="message.retry", object_id=str(dead.pk), actor_label="root").exists()


def test_discard_action_fails_the_message_and_audits(admin_client_logged, customer):
    dead = _dead_letter(customer)
    response = admin_client_logged.post(reverse("admin:whatsapp_deadletter_changelist"),
                                        {"action": "discard", "_selected_action": [dead.pk]}, follow=True)
    assert "1 of 1 message(s) discarded" in _messages(response)
    dead.refresh_from_db()
    assert dead.status == "failed" and dead.failed_at is not None
    assert AuditLog.objects.filter(action="message.discard", object_id=str(dead.pk), actor_label="root").exists()
    page = admin_client_logged.get(reverse("admin:whatsapp_deadletter_changelist")).content.decode()
    assert f"/deadletter/{dead.pk}/change/" not in page


def test_message_page_shows_lane_and_send_log(admin_client_logged, customer):
    dead = _dead_letter(customer)
    html = admin_client_logged.get(reverse("admin:whatsapp_message_change", args=[dead.pk])).content.decode()
    assert "Retries exhausted" in html and "Provider unavailable" in html and "Reply (open conversation)" in html
    listing = admin_client_logged.get(reverse("admin:whatsapp_message_changelist"), {"lane__exact": "reply"})
    assert listing.status_code == 200
    log = admin_client_logged.get(reverse("admin:whatsapp_sendattempt_changelist"), {"outcome__exact": "dead_letter"})
    assert log.status_code == 200 and "Retries exhausted" in log.content.decode()


# --- the provider page's buttons -----------------------------------------------------------------

def test_provider_page_shows_the_buttons_as_post_forms(admin_client_logged, sandbox_provider):
    html = admin_client_logged.get(reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])).content
    html = html.decode()
    assert "Simulate an inbound message" in html and "Send a test message" in html
    for name in ("test_connection", "pause"):
        url = reverse(f"admin:whatsapp_provider_{name}", args=[sandbox_provider.pk])
        assert f'<form method="post" action="{url}">' in html
    assert "Reset circuit" not in html  # only while the circuit is not closed
    assert "Closed (sending)" in html  # the Sending fieldset


def test_test_connection_reports_and_audits(admin_client_logged, sandbox_provider):
    url = reverse("admin:whatsapp_provider_test_connection", args=[sandbox_provider.pk])
    assert admin_client_logged.get(url).status_code == 405  # state-changing buttons are POST-only
    response = admin_client_logged.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])
    assert "the sandbox simulator is always reachable" in _messages(response)
    entry = AuditLog.objects.get(action="provider.test_connection", object_id=str(sandbox_provider.pk))
    assert entry.actor_label == "root" and entry.after == {"ok": True,
                                                           "detail": "the sandbox simulator is always reachable"}


def test_test_send_to_a_number_that_wrote_queues_a_message(admin_client_logged, customer):
    url = reverse("admin:whatsapp_provider_test_send", args=[customer.provider.pk])
    page = admin_client_logged.get(url)
    assert page.status_code == 200 and "last 24 hours" in page.content.decode()
    response = admin_client_logged.post(url, {"to_phone": "+1 555 123 0001", "text": "ping from admin"})
    message = Message.objects.get(direction="outbound")
    assert response.status_code == 302 and response["Location"] == reverse("admin:whatsapp_message_change",
                                                                          args=[message.pk])
    assert (message.status, message.text, message.lane, message.conversation_id) == (
        "queued", "ping from admin", "reply", customer.pk)
    assert message.created_by.username == "root"


def test_test_send_to_a_new_number_is_refused_with_the_window_reason(admin_client_logged, sandbox_provider):
    url = reverse("admin:whatsapp_provider_test_send", args=[sandbox_provider.pk])
    response = admin_client_logged.post(url, {"to_phone": "+15557654321", "text": "hello?"})
    assert response.status_code == 200
    assert "outside_window" in _messages(response) and "not written in the last 24 hours" in _messages(response)
    assert not Message.objects.exists()
    assert not Contact.objects.exists()  # the refused send left no contact behind


def test_test_send_validates_the_phone(admin_client_logged, sandbox_provider):
    url = reverse("admin:whatsapp_provider_test_send", args=[sandbox_provider.pk])
    response = admin_client_logged.post(url, {"to_phone": "12", "text": "hello?"})
    assert response.status_code == 200 and "country code" in response.content.decode()


def test_pause_and_resume_buttons_flip_and_audit(admin_client_logged, sandbox_provider):
    change = reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])
    response = admin_client_logged.post(reverse("admin:whatsapp_provider_pause", args=[sandbox_provider.pk]))
    assert response["Location"] == change
    sandbox_provider.refresh_from_db()
    assert sandbox_provider.is_paused
    assert "Resume sending" in admin_client_logged.get(change).content.decode()
    admin_client_logged.post(reverse("admin:whatsapp_provider_resume", args=[sandbox_provider.pk]))
    sandbox_provider.refresh_from_db()
    assert not sandbox_provider.is_paused
    actions = set(AuditLog.objects.filter(object_id=str(sandbox_provider.pk)).values_list("action", "actor_label"))
    assert {("provider.pause", "root"), ("provider.resume", "root")} <= actions


def test_reset_circuit_closes_it_and_audits(admin_client_logged, sandbox_provider):
    now = timezone.now()
    type(sandbox_provider).objects.filter(pk=sandbox_provider.pk).update(
        circuit_state=CircuitState.OPEN, circuit_failures=5, circuit_opened_at=now, circuit_retry_at=now,
        circuit_last_error="connection refused")
    change = reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])
    html = admin_client_logged.get(change).content.decode()
    assert "Reset circuit" in html and "connection refused" in html
    admin_client_logged.post(reverse("admin:whatsapp_provider_reset_circuit", args=[sandbox_provider.pk]))
    sandbox_provider.refresh_from_db()
    assert (sandbox_provider.circuit_state, sandbox_provider.circuit_failures) == ("closed", 0)
    entry = AuditLog.objects.get(action="provider.circuit_reset", object_id=str(sandbox_provider.pk))
    assert entry.before["circuit_state"] == "open" and entry.after["circuit_state"] == "closed"


def test_provider_list_filters_on_the_circuit(admin_client_logged, sandbox_provider):
    response = admin_client_logged.get(reverse("admin:whatsapp_provider_changelist"), {"circuit_state": "closed"})
    assert response.status_code == 200 and "Sandbox test" in response.content.decode()


# --- the conversation page's send form ------------------------------------------------------------

def _send_url(conversation):
    return reverse("admin:whatsapp_conversation_send", args=[conversation.pk])


def test_conversation_page_embeds_the_send_form(admin_client_logged, customer, approved_template):
    html = admin_client_logged.get(reverse("admin:whatsapp_conversation_change", args=[customer.pk])).content
    html = html.decode()
    assert f'action="{_send_url(customer)}"' in html and "Window open</span>" in html
    assert "order_update [en_US] v1" in html  # the approved template in the select
    # The page changes nothing itself: no Save, no Delete; the send box sits right under the transcript.
    assert 'name="_save"' not in html and "deletelink" not in html
    assert html.index('id="transcript"') < html.index('id="send-message"')
    assert admin_client_logged.get(_send_url(customer)).status_code == 302  # back to the page


def test_text_inside_the_window_is_queued(admin_client_logged, customer):
    response = admin_client_logged.post(_send_url(customer), {"kind": "text", "text": "Your order ships today",
                                                              "send_key": "k1"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:whatsapp_conversation_change",
                                                     args=[customer.pk]) + "#send-message"
    message = Message.objects.get(direction="outbound")
    assert "queued" in _messages(response)
    assert (message.status, message.text, message.created_by.username) == ("queued", "Your order ships today", "root")
    # The same form sent twice (a double click) queues the message once.
    again = admin_client_logged.post(_send_url(customer), {"kind": "text", "text": "Your order ships today",
                                                           "send_key": "k1"}, follow=True)
    assert "already queued" in _messages(again) and Message.objects.filter(direction="outbound").count() == 1


def test_template_preview_renders_without_sending(admin_client_logged, customer, approved_template):
    response = admin_client_logged.post(_send_url(customer), {
        "template": approved_template.pk, "body__1": "Ana", "body__2": "1042", "_preview": "Preview"})
    assert response.status_code == 200
    assert "Hi Ana, order 1042" in response.content.decode()
    assert not Message.objects.filter(direction="outbound").exists()


def test_template_preview_names_missing_variables(admin_client_logged, customer, approved_template):
    response = admin_client_logged.post(_send_url(customer), {
        "template": approved_template.pk, "body__1": "Ana", "_preview": "1"})
    html = response.content.decode()
    # The field is required: the form says so beside it, with the template's fields shown again.
    assert response.status_code == 400 and 'name="body__2"' in html and "This field is required." in html


def test_template_send_with_missing_variables_is_refused(admin_client_logged, customer, approved_template):
    response = admin_client_logged.post(_send_url(customer), {
        "template": approved_template.pk, "body__1": "Ana", "body__2": "  ", "_send": "Send"})
    assert response.status_code == 400 and 'value="Ana"' in response.content.decode()  # kept as typed
    assert not Message.objects.filter(direction="outbound").exists()


def test_template_send_queues_the_rendered_template(admin_client_logged, customer, approved_template):
    _close_window(customer)  # templates go out whether or not the window is open
    response = admin_client_logged.post(_send_url(customer), {
        "template": approved_template.pk, "body__1": "Ana", "body__2": "1042", "_send": "Send"})
    assert response.status_code == 302
    message = Message.objects.get(direction="outbound")
    assert (message.status, message.template_id, message.text) == ("queued", approved_template.pk,
                                                                   "Hi Ana, order 1042")


def test_text_outside_the_window_is_refused_naming_the_templates(admin_client_logged, customer, approved_template):
    _close_window(customer)
    html = admin_client_logged.get(reverse("admin:whatsapp_conversation_change", args=[customer.pk])).content
    assert "Window closed</span>" in html.decode()
    response = admin_client_logged.post(_send_url(customer), {"kind": "text", "text": "Are you there?"})
    assert response.status_code == 200
    shown = _messages(response)
    assert "outside_window" in shown and "order_update [en_US]" in shown
    assert not Message.objects.filter(direction="outbound").exists()


def test_send_form_checks_its_fields(admin_client_logged, customer):
    response = admin_client_logged.post(_send_url(customer), {"text": "  "})
    assert response.status_code == 400
    assert "Write a message, attach a file or choose a template." in response.content.decode()
    unknown = admin_client_logged.post(_send_url(customer), {"template": "99999", "text": "hi"})
    assert unknown.status_code == 400 and "Select a valid choice" in unknown.content.decode()


def test_operators_may_send_from_conversations_but_not_press_provider_buttons(operator_client, customer):
    provider = customer.provider
    assert operator_client.post(reverse("admin:whatsapp_provider_pause", args=[provider.pk])).status_code == 403
    assert operator_client.get(reverse("admin:whatsapp_provider_test_send", args=[provider.pk])).status_code == 403
    html = operator_client.get(reverse("admin:whatsapp_provider_change", args=[provider.pk])).content.decode()
    assert "Pause sending" not in html and "Send a test message" not in html
    response = operator_client.post(_send_url(customer), {"kind": "text", "text": "from an operator"})
    assert response.status_code == 302
    assert Message.objects.get(direction="outbound").created_by.username == "op"


def test_operators_see_dead_letters_without_retry_or_discard(operator_client, customer):
    dead = _dead_letter(customer)
    page = operator_client.get(reverse("admin:whatsapp_deadletter_changelist"))
    assert page.status_code == 200 and f"/deadletter/{dead.pk}/change/" in page.content.decode()
    assert 'value="retry"' not in page.content.decode()
    operator_client.post(reverse("admin:whatsapp_deadletter_changelist"),
                         {"action": "retry", "_selected_action": [dead.pk]})
    dead.refresh_from_db()
    assert dead.status == "dead_letter"
