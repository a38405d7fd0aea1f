"""
The sandbox phone's messages on the wire, one test per fixture: what a signed POST of each kind (voice
note, image, button tap, list tap, a kind nobody knows) leaves in the database; and every kind the phone
simulates reads back, through the sandbox's own parser, as what was asked for.
"""

import pytest

from tests.conftest import customer, fixture_bytes, json_body
from whatsapp.models import Media, Message
from whatsapp.providers import backend_for
from whatsapp.providers.base import WebhookRequest
from whatsapp.providers.events import InboundMessage, MediaRef, MessageType, StoredWebhook
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

QUOTED_BUTTONS = "sbx-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
QUOTED_LIST = "sbx-1a2b3c4d5e6f708192a3b4c5d6e7f809"

INBOUND = {
    # fixture: (type, text, content, the quoted message's id, the file: (mime type, file name, size))
    "inbound_voice_note.json": ("audio", "", {"voice": True}, "", ("audio/ogg", "note.ogg", 5120)),
    "inbound_image.json": ("image", "The damaged box", {}, "", ("image/jpeg", "box.jpg", 48213)),
    "inbound_button_reply.json": ("interactive_reply", "Reschedule",
                                  {"kind": "button_reply", "id": "reschedule", "title": "Reschedule",
                                   "quoted_message_id": QUOTED_BUTTONS}, QUOTED_BUTTONS, None),
    "inbound_list_reply.json": ("interactive_reply", "14:00",
                                {"kind": "list_reply", "id": "slot-14h", "title": "14:00",
                                 "description": "Tomorrow afternoon", "quoted_message_id": QUOTED_LIST},
                                QUOTED_LIST, None),
    "inbound_unknown_kind.json": ("unsupported", "", {"unsupported_type": "poll"}, "", None),
}


@pytest.mark.parametrize("fixture", sorted(INBOUND))
def test_inbound_fixture(sandbox_provider, post_sandbox, fixture):
    message_type, text, content, quoted, file = INBOUND[fixture]
    conversation = customer(sandbox_provider, "+15551230001").conversations.get()
    # The business's interactive messages the taps answer, as the sandbox recorded their sends.
    offers = {provider_id: Message.objects.create(
        provider=sandbox_provider, conversation=conversation, direction=Message.Direction.OUTBOUND,
        message_type=MessageType.INTERACTIVE, provider_message_id=provider_id, status="read", text="Pick one")
        for provider_id in (QUOTED_BUTTONS, QUOTED_LIST)}

    response = post_sandbox(sandbox_provider, fixture_bytes("sandbox", fixture))
    assert response.status_code == 200, response.content
    event = webhook_event_process(json_body(response)["event"])
    assert (event.status, event.event_count, event.last_error) == ("processed", 1, "")

    message = Message.objects.get(direction="inbound")
    assert (message.message_type, message.text, message.content) == (message_type, text, content)
    assert message.conversation == conversation
    assert message.reply_to == offers.get(quoted)
    if file is None:
        assert not message.media.exists()
        return
    media = message.media.get()
    assert (media.mime_type, media.filename, media.size_bytes) == file
    assert media.state == Media.State.PENDING and media.sha256 and media.caption == text
    assert media.source_url.startswith("http://127.0.0.1:8000/simulator/") and media.provider_media_id


def _parsed(backend, body: bytes, headers: dict) -> InboundMessage:
    backend.verify_webhook(WebhookRequest(method="POST", public_url="", body=body,
                                          headers={name.lower(): value for name, value in headers.items()}))
    (event,) = backend.parse_webhook(StoredWebhook(body=body, headers={}, content_type="application/json",
                                                   received_at=None))
    return event


FILE = MediaRef(provider_media_id="tok", url="http://web:8000/simulator/x/media/tok/", mime_type="image/png",
                sha256="ab" * 32, filename="shot.png", size_bytes=321)


@pytest.mark.parametrize(("asked", "expected"), [
    ({"message_type": "text", "text": "Hello"}, ("text", "Hello", {"text": "Hello"}, ())),
    ({"message_type": "audio", "media": FILE}, ("audio", "", {"voice": True}, (FILE,))),
    ({"message_type": "image", "text": "A caption", "media": FILE},
     ("image", "A caption", {}, (MediaRef(**{**FILE.__dict__, "caption": "A caption"}),))),
    ({"message_type": "interactive_reply", "content": {"kind": "button_reply", "id": "yes", "title": "Yes"},
      "reply_to_provider_message_id": "sbx-9"},
     ("interactive_reply", "Yes", {"kind": "button_reply", "id": "yes", "title": "Yes"}, ())),
    ({"message_type": "interactive_reply", "content": {"kind": "list_reply", "id": "r2", "title": "Two",
                                                       "description": "The second"}},
     ("interactive_reply", "Two", {"kind": "list_reply", "id": "r2", "title": "Two", "description": "The second"},
      ())),
], ids=["text", "voice", "image", "button", "list"])
def test_each_simulated_kind_reads_back_as_asked(sandbox_provider, asked, expected):
    backend = backend_for(sandbox_provider)
    body, headers, message_id = backend.simulated_inbound(from_phone="+15551230001", name="Ana", **asked)
    event = _parsed(backend, body, headers)
    assert (event.message_type, event.text, event.content, event.media) == expected
    assert event.provider_message_id == message_id and event.profile_name == "Ana"
    assert event.reply_to_provider_message_id == asked.get("reply_to_provider_message_id", "")


def test_a_message_the_phone_cannot_send_is_refused(sandbox_provider):
    with pytest.raises(ValueError, match="cannot send a location"):
        backend_for(sandbox_provider).simulated_inbound(from_phone="+15551230001", name="", message_type="location")
