"""Processing stored webhook events: contacts, conversations, sessions, dedup and statuses."""
from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact, ContactIdentity
from tests.conftest import fixture_bytes, json_body
from whatsapp.models import Conversation, Message, MessageStatusEvent, Session, WebhookEvent
from whatsapp.services.sessions import sessions_close_expired
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db


def _deliver(provider, post, fixture):
    response = post(provider, fixture_bytes("sandbox", fixture))
    assert response.status_code == 200
    return webhook_event_process(json_body(response)["event"])


def test_inbound_message_creates_contact_conversation_session_message(sandbox_provider, post_sandbox):
    event = _deliver(sandbox_provider, post_sandbox, "inbound_text.json")
    assert event.status == "processed" and event.event_count == 1
    message = Message.objects.get()
    assert (message.direction, message.status, message.text) == ("inbound", "received",
                                                                 "Hi! Is my order #1042 on its way?")
    assert message.conversation.contact.profile_name == "Ana Souza"
    assert ContactIdentity.objects.get().value == "+15551230001"
    session = Session.objects.get()
    assert session.state == "open" and session.expires_at == message.received_at + timedelta(hours=24)


def test_redelivery_changes_nothing_but_a_counter(sandbox_provider, post_sandbox):
    _deliver(sandbox_provider, post_sandbox, "inbound_text.json")
    _deliver(sandbox_provider, post_sandbox, "inbound_text.json")
    assert Message.objects.count() == 1 and Contact.objects.count() == 1 and Session.objects.count() == 1
    assert Message.objects.get().duplicate_count == 1
    assert WebhookEvent.objects.filter(status="processed").count() == 2


def test_phone_formats_resolve_to_one_contact_and_extend_the_session(sandbox_provider, post_sandbox):
    _deliver(sandbox_provider, post_sandbox, "inbound_two_messages.json")
    assert Contact.objects.count() == 1 and Conversation.objects.count() == 1
    session = Session.objects.get()
    last = Message.objects.order_by("-received_at").first()
    assert session.expires_at == last.received_at + timedelta(hours=24)


def test_nul_characters_are_stored_raw_and_cleaned_before_parsing(sandbox_provider, post_sandbox):
    event = _deliver(sandbox_provider, post_sandbox, "inbound_with_nul.json")
    assert b"\\u0000" in bytes(event.body)
    assert event.status == "processed"
    assert Message.objects.get().text == "nulinside"


def test_statuses_only_move_forward(sandbox_provider, post_sandbox):
    _deliver(sandbox_provider, post_sandbox, "inbound_text.json")
    conversation = Conversation.objects.get()
    outbound = Message.objects.create(provider=sandbox_provider, conversation=conversation, direction="outbound",
                                      status="sent", provider_message_id="sbx-out-0001", sent_at=timezone.now())
    _deliver(sandbox_provider, post_sandbox, "status_read_then_delivered.json")
    outbound.refresh_from_db()
    assert outbound.status == "read"
    assert outbound.delivered_at is not None and outbound.read_at is not None
    events = list(MessageStatusEvent.objects.order_by("id").values_list("status", "applied"))
    assert events == [("read", True), ("delivered", False)]


def test_status_before_the_send_is_recorded_and_applied_later(sandbox_provider, post_sandbox):
    from whatsapp.services.inbound import orphan_statuses_apply

    _deliver(sandbox_provider, post_sandbox, "status_read_then_delivered.json")
    assert MessageStatusEvent.objects.filter(message__isnull=True).count() == 2
    _deliver(sandbox_provider, post_sandbox, "inbound_text.json")
    outbound = Message.objects.create(provider=sandbox_provider, conversation=Conversation.objects.get(),
                                      direction="outbound", status="sent", provider_message_id="sbx-out-0001")
    orphan_statuses_apply(outbound)
    outbound.refresh_from_db()
    assert outbound.status == "read"


def test_expired_sessions_are_closed(sandbox_provider, post_sandbox):
    _deliver(sandbox_provider, post_sandbox, "inbound_text.json")
    assert sessions_close_expired(now=timezone.now() + timedelta(days=3650)) == 1
    assert Session.objects.get().state == "closed"


def test_a_message_after_the_window_opens_a_new_session(sandbox_provider, post_sandbox):
    _deliver(sandbox_provider, post_sandbox, "inbound_text.json")
    _deliver(sandbox_provider, post_sandbox, "inbound_text_two_days_later.json")
    first, second = Session.objects.order_by("opened_at")
    assert (first.state, second.state) == ("closed", "open")
    assert first.closed_at == first.expires_at
    assert Message.objects.get(text="Hello again, two days later").session == second
