"""Twilio WhatsApp webhooks (form-encoded, X-Twilio-Signature), one test per fixture."""

import json

import pytest

from contacts.models import Contact
from tests.conftest import FIXTURES, event_id
from tests.signing import TWILIO_ACCOUNT_SID, make_twilio, post_twilio, twilio_headers, webhook_path
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, WebhookEvent
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def twilio(db):
    return make_twilio()


def form(name: str) -> dict[str, str]:
    return json.loads((FIXTURES / "twilio" / name).read_text())


def deliver(client, provider, name: str) -> WebhookEvent:
    response = post_twilio(client, provider, form(name))
    assert response.status_code == 200, response.content
    return webhook_event_process(event_id(response))


INBOUND = {
    "inbound_text.json": ("text", "Olá! Can I change my delivery address?", {}),
    "inbound_image.json": ("image", "The damaged box", {}),
    "inbound_two_documents.json": ("document", "", {}),
    "inbound_voice.json": ("audio", "", {}),
    "inbound_location.json": ("location", "", {"latitude": -23.561414, "longitude": -46.655881, "label": "Office"}),
    "inbound_interactive_button.json": ("interactive_reply", "Reschedule", {"kind": "button_reply",
                                                                            "id": "reschedule"}),
    "inbound_list_reply.json": ("interactive_reply", "Tuesday morning", {"kind": "list_reply", "id": "slot-tue-am",
                                                                         "title": "Tuesday morning"}),
    "inbound_template_button.json": ("button", "Confirm", {"payload": "CONFIRM_ORDER_2291"}),
    "inbound_forwarded.json": ("text", "Look at this deal", {"forwarded": True, "frequently_forwarded": True}),
    "inbound_referral.json": ("text", "Is this still available?", {}),
    "inbound_reply.json": ("text", "Yes, that one", {}),
}


@pytest.mark.parametrize("name", sorted(INBOUND))
def test_inbound_fixture(client, twilio, name):
    message_type, text, content = INBOUND[name]
    event = deliver(client, twilio, name)
    assert (event.status, event.event_count, event.last_error) == ("processed", 1, "")
    message = Message.objects.get()
    assert (message.provider_message_id, message.direction) == (form(name)["MessageSid"], "inbound")
    assert (message.message_type, message.text) == (message_type, text)
    assert content.items() <= message.content.items()
    contact = message.conversation.contact
    assert contact.profile_name == "Beatriz Lima"
    assert {("phone", "+5511987650001"), ("whatsapp_id", "5511987650001")} <= set(
        contact.identities.values_list("kind", "value"))


def test_media_rows_one_per_attachment(client, twilio):
    deliver(client, twilio, "inbound_two_documents.json")
    media = list(Media.objects.order_by("id"))
    assert [m.mime_type for m in media] == ["application/pdf", "application/pdf"]
    assert all(m.source_url.startswith("https://api.twilio.com/") and m.state == "pending" for m in media)


def test_referral_fields_are_kept(client, twilio):
    deliver(client, twilio, "inbound_referral.json")
    assert Message.objects.get().content["referral"]["CtwaClid"] == "ARAkLkA8rmlF"


def test_a_quoted_reply_links_to_the_quoted_message(client, twilio):
    deliver(client, twilio, "inbound_text.json")
    deliver(client, twilio, "inbound_reply.json")
    assert Message.objects.get(text="Yes, that one").reply_to.text == "Olá! Can I change my delivery address?"


def test_sender_known_only_by_external_user_id(client, twilio):
    deliver(client, twilio, "inbound_bsuid.json")
    contact = Message.objects.get().conversation.contact
    assert set(contact.identities.values_list("kind", "value", "scope")) == {
        ("twilio_external_id", "BR.1349887766554433", TWILIO_ACCOUNT_SID), ("username", "@dani.r", "")}


@pytest.fixture
def sent_message(twilio):
    conversation = Conversation.objects.create(provider=twilio, contact=Contact.objects.create())
    return Message.objects.create(provider=twilio, conversation=conversation, direction="outbound", status="sending",
                                  provider_message_id=form("status_sent.json")["MessageSid"])


def test_status_callbacks_move_forward_only(client, twilio, sent_message):
    for name in ("status_sent.json", "status_read.json", "status_delivered.json"):
        deliver(client, twilio, name)
    sent_message.refresh_from_db()
    assert sent_message.status == "read"
    assert sent_message.sent_at and sent_message.delivered_at and sent_message.read_at
    assert MessageStatusEvent.objects.count() == 3


def test_undelivered_keeps_twilio_error(client, twilio, sent_message):
    deliver(client, twilio, "status_undelivered.json")
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.error_code) == ("failed", "63016")
    assert "outside the allowed window" in sent_message.error_detail


def test_signature_is_checked_over_the_public_url(client, twilio, settings):
    """Behind a TLS proxy Twilio signs https://public.example/...; Django sees http://internal."""
    settings.PUBLIC_BASE_URL = "https://public.example"
    data = form("inbound_text.json")
    path = webhook_path(twilio)
    from urllib.parse import urlencode

    response = client.post(path, data=urlencode(data), content_type="application/x-www-form-urlencoded",
                           headers=twilio_headers(path, data))
    assert response.status_code == 200
    tampered = {**data, "Body": "changed"}
    response = client.post(path, data=urlencode(tampered), content_type="application/x-www-form-urlencoded",
                           headers=twilio_headers(path, data))
    assert response.status_code == 403


def test_twilio_gets_an_empty_twiml_answer(client, twilio):
    response = post_twilio(client, twilio, form("inbound_text.json"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
    assert response.content.endswith(b"<Response/>")
    assert WebhookEvent.objects.get().pk == event_id(response)
