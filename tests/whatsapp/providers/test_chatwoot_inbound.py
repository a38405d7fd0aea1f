"""Chatwoot webhooks: incoming messages, echoes of our own, notes, statuses, conversations, contacts."""

import pytest

from contacts.models import Contact
from tests.conftest import fixture_bytes, json_body
from tests.signing import chatwoot_headers, make_chatwoot, post_chatwoot, webhook_path
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, WebhookEvent
from whatsapp.services.providers import provider_webhook_url
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def chatwoot(db):
    return make_chatwoot()


def deliver(client, provider, fixture: str | bytes) -> WebhookEvent:
    body = fixture_bytes("chatwoot", fixture) if isinstance(fixture, str) else fixture
    response = post_chatwoot(client, provider, body)
    assert response.status_code == 200, response.content
    return webhook_event_process(json_body(response)["event"])


INBOUND = {
    "message_created_text.json": ("text", "Olá! Can I change my delivery address?", {}),
    "message_created_image.json": ("image", "", {}),
    "message_created_voice.json": ("audio", "", {"provider_transcript": "please call me back"}),
    "message_created_location.json": ("location", "", {"latitude": -23.561414, "name": "Av. Paulista"}),
    # Chatwoot drops the button id: a button reply is its title only.
    "message_created_button_title.json": ("text", "Reschedule", {}),
}


@pytest.mark.parametrize("fixture", sorted(INBOUND))
def test_incoming_fixture(client, chatwoot, fixture):
    message_type, text, content = INBOUND[fixture]
    event = deliver(client, chatwoot, fixture)
    assert (event.status, event.last_error) == ("processed", "")
    message = Message.objects.get()
    assert (message.direction, message.message_type, message.text) == ("inbound", message_type, text)
    assert content.items() <= message.content.items()
    assert message.conversation.external_conversation_id == "55"
    contact = message.conversation.contact
    identities = set(contact.identities.values_list("kind", "value", "scope"))
    assert {("chatwoot_contact_id", "412", "chat.example.test/3"), ("phone", "+5511987650001", ""),
            ("email", "beatriz@example.com", ""), ("whatsapp_id", "5511987650001", "")} <= identities


def test_attachment_becomes_a_media_row(client, chatwoot):
    deliver(client, chatwoot, "message_created_image.json")
    media = Media.objects.get()
    assert media.source_url.startswith("https://chat.example.test/rails/active_storage/blobs/redirect/")
    assert (media.mime_type, media.size_bytes, media.state) == ("image/jpeg", 18211, "pending")


def test_reply_links_to_the_quoted_message(client, chatwoot):
    deliver(client, chatwoot, "message_created_text.json")
    deliver(client, chatwoot, "message_created_reply.json")
    assert Message.objects.get(text="Yes, that one").reply_to.text == "Olá! Can I change my delivery address?"


def test_echo_of_our_own_send_is_matched_never_stored_twice(client, chatwoot):
    deliver(client, chatwoot, "message_created_text.json")
    conversation = Conversation.objects.get()
    ours = Message.objects.create(provider=chatwoot, conversation=conversation, direction="outbound", status="sent",
                                  text="Your order 2291 has shipped.")
    body = fixture_bytes("chatwoot", "message_created_outgoing_echo.json").replace(b"EC_HO_ID", str(ours.pk).encode())
    deliver(client, chatwoot, body)
    deliver(client, chatwoot, body)
    ours.refresh_from_db()
    assert ours.provider_message_id == "18007" and ours.duplicate_count == 1
    assert Message.objects.count() == 2
    assert Message.objects.filter(direction="inbound").count() == 1


def test_echo_waits_while_our_send_has_not_recorded_the_id(client, chatwoot):
    deliver(client, chatwoot, "message_created_text.json")
    in_flight = Message.objects.create(provider=chatwoot, conversation=Conversation.objects.get(),
                                       direction="outbound", status="sending", text="Your order 2291 has shipped.")
    event = deliver(client, chatwoot, "message_created_agent_reply.json")
    assert event.status == "failed" and "RetryLater" in event.last_error
    # The send task records Chatwoot's id; the retried event then matches it instead of storing a copy.
    Message.objects.filter(pk=in_flight.pk).update(provider_message_id="18008", status="sent")
    assert webhook_event_process(event.pk).status == "processed"
    assert Message.objects.count() == 2


def test_agent_message_typed_in_chatwoot_is_stored_as_outbound(client, chatwoot):
    deliver(client, chatwoot, "message_created_text.json")
    deliver(client, chatwoot, "message_created_agent_reply.json")
    agent = Message.objects.get(direction="outbound")
    assert (agent.status, agent.provider_message_id, agent.text) == ("sent", "18008",
                                                                     "Hi Beatriz, I am looking into it.")
    assert agent.content["sent_from_provider"] is True and "Paulo Agent" in agent.content["sender"]
    assert agent.conversation == Conversation.objects.get()


def test_private_note_is_never_a_message(client, chatwoot):
    event = deliver(client, chatwoot, "message_created_private_note.json")
    assert event.status == "processed" and "private note" in event.notes
    assert not Message.objects.exists()


def test_status_updates_of_outgoing_messages(client, chatwoot):
    deliver(client, chatwoot, "message_created_text.json")
    deliver(client, chatwoot, "message_created_agent_reply.json")
    deliver(client, chatwoot, "message_updated_sent.json")
    deliver(client, chatwoot, "message_updated_failed.json")
    agent = Message.objects.get(direction="outbound")
    assert (agent.status, agent.error_code) == ("failed", "131047")
    assert "Re-engagement message" in agent.error_detail
    assert MessageStatusEvent.objects.count() == 2


def test_conversation_and_contact_events(client, chatwoot):
    deliver(client, chatwoot, "conversation_created.json")
    conversation = Conversation.objects.get()
    assert (conversation.external_conversation_id, conversation.external_state) == ("55", "open")
    deliver(client, chatwoot, "conversation_status_changed.json")
    conversation.refresh_from_db()
    assert conversation.external_state == "resolved"
    deliver(client, chatwoot, "contact_updated.json")
    assert Contact.objects.get().profile_name == "Beatriz L. Lima"


def test_event_of_another_inbox_goes_to_its_provider_or_is_flagged(client, chatwoot):
    event = deliver(client, chatwoot, "message_created_other_inbox.json")
    assert event.unrouted_to == "8" and not Message.objects.exists()
    sales = make_chatwoot(name="Chatwoot sales", inbox_id="8")
    # Adding the inbox's provider replays the flagged event.
    assert WebhookEvent.objects.get(pk=event.pk).status == "pending"
    webhook_event_process(event.pk)
    assert Message.objects.get().provider == sales


def test_unknown_events_are_kept_as_notes(client, chatwoot):
    event = deliver(client, chatwoot, "webwidget_triggered.json")
    assert event.status == "processed" and "webwidget_triggered" in event.notes


def test_unsigned_versions_can_opt_in_to_a_url_token(client, db):
    provider = make_chatwoot(name="Old Chatwoot", webhook_secret="", url_token="url-token-0123456789")
    assert provider_webhook_url(provider).endswith("?token=url-token-0123456789")
    body = fixture_bytes("chatwoot", "message_created_text.json")
    ok = client.post(webhook_path(provider, {"token": "url-token-0123456789"}), data=body,
                     content_type="application/json")
    assert ok.status_code == 200
    assert client.post(webhook_path(provider), data=body, content_type="application/json").status_code == 401
    wrong = client.post(webhook_path(provider, {"token": "guess"}), data=body, content_type="application/json")
    assert wrong.status_code == 403


def test_signed_provider_ignores_a_url_token(client, chatwoot):
    body = fixture_bytes("chatwoot", "message_created_text.json")
    response = client.post(webhook_path(chatwoot, {"token": "anything"}), data=body, content_type="application/json")
    assert response.status_code == 401


def test_same_delivery_id_is_one_event(client, chatwoot):
    body = fixture_bytes("chatwoot", "message_created_text.json")
    first = client.post(webhook_path(chatwoot), data=body, content_type="application/json",
                        headers=chatwoot_headers(body, delivery="5d3c2f9e-1111-4c1e-9a55-000000000001"))
    second = client.post(webhook_path(chatwoot), data=body, content_type="application/json",
                         headers=chatwoot_headers(body, delivery="5d3c2f9e-1111-4c1e-9a55-000000000001"))
    assert json_body(first)["status"] == "accepted" and json_body(second)["status"] == "duplicate"
    assert WebhookEvent.objects.get().duplicate_count == 1


def test_button_reply_title_is_matched_to_the_choice_we_offered(client, chatwoot):
    deliver(client, chatwoot, "message_created_text.json")
    Message.objects.create(provider=chatwoot, conversation=Conversation.objects.get(), direction="outbound",
                           status="read", message_type="interactive", text="Pick one",
                           content={"buttons": [{"id": "keep", "title": "Keep"},
                                                {"id": "resched-1", "title": "Reschedule"}]})
    deliver(client, chatwoot, "message_created_button_title.json")
    reply = Message.objects.get(text="Reschedule")
    assert reply.message_type == "interactive_reply"
    assert (reply.content["id"], reply.content["matched_by"]) == ("resched-1", "title")


def test_failure_without_a_code_keeps_the_sentence(client, chatwoot):
    deliver(client, chatwoot, "message_created_text.json")
    deliver(client, chatwoot, "message_created_agent_reply.json")
    body = fixture_bytes("chatwoot", "message_updated_failed.json").replace(
        b"131047: Re-engagement message", b"Template not found or invalid template name")
    assert deliver(client, chatwoot, body).status == "processed"
    agent = Message.objects.get(direction="outbound")
    assert (agent.status, agent.error_code, agent.error_detail) == (
        "failed", "", "Template not found or invalid template name")
