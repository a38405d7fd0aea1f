"""
The sandbox phone's messages through the whole loop: provider_simulate_inbound keeps what the customer
sends, a real Celery worker posts the signed webhook to the live server, processes it, and downloads a
voice note or an image from the simulator's URL on that same server; each kind is stored as the inbound
message it stands for. Then what the phone refuses to send, and who may fetch its files.
"""

import hashlib
import io
import math
import struct
import uuid
import wave
import zlib

import httpx
import pytest
from django.urls import reverse

from contacts.models import Contact
from tests.conftest import customer, wait_until
from whatsapp.models import Media, Message
from whatsapp.providers.events import MessageType
from whatsapp.services.archive import media_content
from whatsapp.services.outbound import SendRequest, message_send
from whatsapp.services.providers import (
    SimulatedFile,
    SimulationRefused,
    provider_create,
    provider_simulate_inbound,
    provider_simulated_file,
    provider_simulated_file_keep,
    simulated_file_kind,
)

PHONE = "+15551230101"


# --- small real files -----------------------------------------------------------------------------------

def png_bytes(width: int = 96, height: int = 64) -> bytes:
    """A real PNG: diagonal stripes of WhatsApp green and white."""
    def pixel(x, y):
        return bytes((37, 211, 102)) if (x + y) // 8 % 2 else bytes((255, 255, 255))

    raw = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def wav_bytes(seconds: float = 0.6, frequency: float = 440.0) -> bytes:
    """A real WAV: a short tone, 8 kHz mono."""
    rate = 8000
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * n / rate)))
                      for n in range(int(seconds * rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def stored(provider_message_id: str) -> Message:
    return wait_until(lambda: Message.objects.filter(provider_message_id=provider_message_id).first(), 30,
                      message=f"the simulated message {provider_message_id} to be stored")


def fetched(message: Message) -> Media:
    def done():
        media = message.media.first()
        return media if media is not None and media.state != Media.State.PENDING else None

    media = wait_until(done, 30, message="the worker to download the file")
    assert media.state == Media.State.FETCHED, media.last_error
    return media


def sent_interactive(provider, contact, interactive: dict) -> Message:
    """Our interactive message, sent by the worker through the sandbox (which gives it its id)."""
    message, _ = message_send(SendRequest(provider=provider, contact=contact, message_type=MessageType.INTERACTIVE,
                                          interactive=interactive))

    def on_the_phone():
        message.refresh_from_db()
        return message.provider_message_id and message.status in ("sent", "delivered", "read")

    wait_until(on_the_phone, 30, message="the interactive message to be sent")
    return message


# --- through a real worker ------------------------------------------------------------------------------

@pytest.fixture
def phone(local_storage, celery_worker):
    """A sandbox provider whose phone's webhooks and files a real worker posts and fetches."""
    return provider_create(kind="sandbox", name="Phone sandbox", options={})


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_text_is_stored_as_an_inbound_text(phone):
    message_id = provider_simulate_inbound(provider=phone, from_phone=PHONE, name="Ana", text="  Hi, is it open?  ")
    message = stored(message_id)
    assert (message.direction, message.message_type, message.text) == ("inbound", "text", "Hi, is it open?")
    contact = Contact.objects.get(identities__kind="phone", identities__value=PHONE)
    assert message.conversation.contact == contact and contact.profile_name == "Ana"
    assert message.session is not None  # an inbound message opens the 24-hour window


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_voice_note_is_stored_with_its_file_fetched_from_the_simulator(phone, live_server):
    audio = wav_bytes()
    message_id = provider_simulate_inbound(provider=phone, from_phone=PHONE, name="Ana",
                                           file=SimulatedFile(audio, "note.wav"))
    message = stored(message_id)
    assert (message.message_type, message.text, message.content) == ("audio", "", {"voice": True})
    media = fetched(message)
    assert (media.mime_type, media.filename, media.size_bytes) == ("audio/wav", "note.wav", len(audio))
    assert media.sha256 == hashlib.sha256(audio).hexdigest()
    assert media_content(media) == audio  # now in our own archive, as any provider's download
    assert media.source_url.startswith(f"{live_server.url}/simulator/{phone.public_id}/media/")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_image_is_stored_with_its_caption_and_file(phone):
    image = png_bytes()
    message_id = provider_simulate_inbound(provider=phone, from_phone=PHONE, name="Ana", text="The damaged box",
                                           file=SimulatedFile(image, "box.png"))
    message = stored(message_id)
    assert (message.message_type, message.text, message.content) == ("image", "The damaged box", {})
    media = fetched(message)
    assert (media.mime_type, media.caption, media_content(media)) == ("image/png", "The damaged box", image)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_button_tap_is_stored_as_an_interactive_reply_quoting_our_message(phone):
    contact = customer(phone, PHONE)  # within the 24-hour window: free-form messages may be sent
    offer = sent_interactive(phone, contact, {"body": "Shall we deliver tomorrow?", "buttons": [
        {"id": "yes", "title": "Yes, tomorrow"}, {"id": "later", "title": "Another day"}]})

    message_id = provider_simulate_inbound(provider=phone, from_phone=PHONE, answered=offer, choice_id="later")
    reply = stored(message_id)
    assert (reply.direction, reply.message_type, reply.text) == ("inbound", "interactive_reply", "Another day")
    assert reply.content == {"kind": "button_reply", "id": "later", "title": "Another day",
                             "quoted_message_id": offer.provider_message_id}
    assert reply.reply_to == offer and reply.conversation == offer.conversation


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_list_row_tap_is_stored_as_a_list_reply(phone):
    contact = customer(phone, PHONE)
    offer = sent_interactive(phone, contact, {"body": "Pick a slot", "button": "Slots", "sections": [
        {"title": "Tomorrow", "rows": [{"id": "t-9", "title": "09:00"},
                                       {"id": "t-14", "title": "14:00", "description": "After lunch"}]}]})

    reply = stored(provider_simulate_inbound(provider=phone, from_phone=PHONE, answered=offer, choice_id="t-14"))
    assert reply.content == {"kind": "list_reply", "id": "t-14", "title": "14:00", "description": "After lunch",
                             "quoted_message_id": offer.provider_message_id}
    assert reply.reply_to == offer


# --- what the phone refuses -----------------------------------------------------------------------------

@pytest.mark.parametrize(("head", "mime_type"), [
    (b"OggS\x00\x02\x00\x00", "audio/ogg"), (b"ID3\x04\x00", "audio/mpeg"), (b"\xff\xfb\x90\x64", "audio/mpeg"),
    (b"\x00\x00\x00\x20ftypM4A \x00\x00", "audio/mp4"), (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"), (b"\x89PNG\r\n\x1a\n\x00", "image/png"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00", None), (b"GIF89a\x01\x00", None), (b"<svg xmlns=", None), (b"", None),
], ids=["ogg", "mp3-id3", "mp3-frame", "m4a", "wav", "jpeg", "png", "webp", "heic", "gif", "svg", "empty"])
def test_a_file_is_known_by_its_first_bytes_not_its_name(head, mime_type):
    kind = simulated_file_kind(head + b"\x00" * 32 if head else b"")
    assert (kind.mime_type if kind else None) == mime_type


@pytest.fixture
def offer(sandbox_provider):
    """Our interactive message to PHONE, on the phone already (the sandbox gave it its id)."""
    contact = customer(sandbox_provider, PHONE)
    message, _ = message_send(SendRequest(provider=sandbox_provider, contact=contact,
                                          message_type=MessageType.INTERACTIVE,
                                          interactive={"body": "Ok?", "buttons": [{"id": "ok", "title": "OK"}]}))
    Message.objects.filter(pk=message.pk).update(provider_message_id=f"sbx-{uuid.uuid4().hex}", status="delivered")
    message.refresh_from_db()
    return message


@pytest.mark.django_db
@pytest.mark.parametrize(("asked", "refusal"), [
    ({}, "Type a message, or attach"),
    ({"text": "   "}, "Type a message, or attach"),
    ({"file": SimulatedFile(b"%PDF-1.7 not a voice note", "doc.pdf")}, "this file is none of them"),
    ({"file": SimulatedFile(b"", "empty.ogg")}, "The file is empty"),
    ({"file": SimulatedFile(b"\x89PNG\r\n\x1a\n" + b"0" * (5 * 1024 * 1024), "huge.png")}, "at most 5 MB"),
    ({"file": SimulatedFile(b"OggS" + b"0" * 64, "note.ogg"), "text": "a caption"}, "A voice note has no caption"),
], ids=["nothing", "blank", "not-media", "empty-file", "image-too-large", "voice-caption"])
def test_what_the_phone_cannot_send_is_refused(sandbox_provider, local_storage, asked, refusal):
    with pytest.raises(SimulationRefused, match=refusal):
        provider_simulate_inbound(provider=sandbox_provider, from_phone=PHONE, **asked)


@pytest.mark.django_db
@pytest.mark.parametrize(("choice", "number", "refusal"), [
    ("nope", PHONE, "offers no such button"),
    ("ok", "+15551230199", "sent to another number"),
])
def test_a_tap_must_answer_a_choice_we_offered_that_number(offer, choice, number, refusal):
    with pytest.raises(SimulationRefused, match=refusal):
        provider_simulate_inbound(provider=offer.provider, from_phone=number, answered=offer, choice_id=choice)


@pytest.mark.django_db
def test_a_tap_on_a_message_not_yet_on_the_phone_or_not_interactive_is_refused(offer):
    Message.objects.filter(pk=offer.pk).update(provider_message_id=None, status="queued")
    offer.refresh_from_db()
    with pytest.raises(SimulationRefused, match="not reached the phone yet"):
        provider_simulate_inbound(provider=offer.provider, from_phone=PHONE, answered=offer, choice_id="ok")
    Message.objects.filter(pk=offer.pk).update(message_type="text")
    offer.refresh_from_db()
    with pytest.raises(SimulationRefused, match="Only a button or list row"):
        provider_simulate_inbound(provider=offer.provider, from_phone=PHONE, answered=offer, choice_id="ok")


@pytest.mark.django_db
def test_only_a_simulator_has_a_phone(meta):
    with pytest.raises(SimulationRefused, match="has no simulated phone"):
        provider_simulate_inbound(provider=meta, from_phone=PHONE, text="hello")


# --- the simulator's files on our own server --------------------------------------------------------------

@pytest.mark.django_db
def test_a_kept_file_is_served_to_whoever_holds_its_token_and_nothing_else(client, sandbox_provider, local_storage):
    image = png_bytes()
    ref = provider_simulated_file_keep(sandbox_provider, SimulatedFile(image, "a.png"))
    path = httpx.URL(ref.url).path
    assert path == reverse("simulated-media", args=[sandbox_provider.public_id, ref.provider_media_id])
    response = client.get(path)
    assert response.status_code == 200
    assert (response.content, response["Content-Type"]) == (image, "image/png")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert provider_simulated_file(sandbox_provider.public_id, ref.provider_media_id) == (image, "image/png", "a.png")
    unnamed = provider_simulated_file_keep(sandbox_provider, SimulatedFile(wav_bytes()))
    assert (unnamed.mime_type, unnamed.filename) == ("audio/wav", "voice-note.wav")

    other = provider_create(kind="sandbox", name="Another sandbox", options={})
    for public_id, token in ((sandbox_provider.public_id, "x" * 43), (other.public_id, ref.provider_media_id),
                             (sandbox_provider.public_id, "..%2F..%2Fsecret"), (uuid.uuid4(), ref.provider_media_id)):
        assert client.get(f"/simulator/{public_id}/media/{token}/").status_code == 404
