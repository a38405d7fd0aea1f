"""
The sandbox phone's pages: what the screen shows (the customer's messages on the right, ours on the left
with ticks, media, buttons to tap), the ways in (the provider's page, a sandbox conversation's page), what
sending and tapping answer, and who may use it: staff who may see conversations and change the provider;
any other provider answers 404.
"""

import re
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import user_with_perms
from tests.signing import make_meta
from tests.whatsapp.inbox.test_sandbox_phone_services import png_bytes
from whatsapp.models import Conversation, Media, Message, Provider
from whatsapp.providers.events import Identity, IdentityKind, InboundMessage, MessageType
from whatsapp.services.inbound import inbound_message_apply

pytestmark = pytest.mark.django_db

PHONE = "+15551230077"


def inbound(provider: Provider, provider_message_id: str, text: str = "", *, phone: str = PHONE,
            message_type: str = MessageType.TEXT, content: dict | None = None, reply_to: str = "") -> Message:
    """The customer's message, stored the way a webhook's is."""
    event = InboundMessage(provider_message_id=provider_message_id, timestamp=timezone.now(),
                           identities=(Identity(IdentityKind.PHONE, phone),), profile_name="Marta",
                           message_type=message_type, text=text, content=content or {},
                           reply_to_provider_message_id=reply_to)
    return inbound_message_apply(provider=provider, event=event)[0]


def outbound(conversation: Conversation, text: str, status: str = "read", **fields) -> Message:
    """One of our messages, as the send pipeline leaves it once the sandbox has it."""
    return Message.objects.create(provider=conversation.provider, conversation=conversation, direction="outbound",
                                  message_type=fields.pop("message_type", MessageType.TEXT), text=text,
                                  status=status, queued_at=timezone.now(), **fields)


def urls(provider: Provider, number: str = PHONE) -> dict[str, str]:
    return {"start": reverse("admin:whatsapp_provider_sandbox_phone_start", args=[provider.pk]),
            "phone": reverse("admin:whatsapp_provider_sandbox_phone", args=[provider.pk, number]),
            "screen": reverse("admin:whatsapp_provider_sandbox_phone_screen", args=[provider.pk, number]),
            "send": reverse("admin:whatsapp_provider_sandbox_phone_send", args=[provider.pk, number]),
            "tap": reverse("admin:whatsapp_provider_sandbox_phone_tap", args=[provider.pk, number])}


@pytest.fixture
def conversation(sandbox_provider) -> Conversation:
    return inbound(sandbox_provider, "sbx-in-1", "Hi! Do you deliver on Sundays?").conversation


@pytest.fixture
def offer(conversation) -> Message:
    return outbound(conversation, "Which day suits you?", "delivered", message_type=MessageType.INTERACTIVE,
                    provider_message_id="sbx-offer-1",
                    content={"body": "Which day suits you?", "footer": "Tap one",
                             "buttons": [{"id": "sat", "title": "Saturday"}, {"id": "sun", "title": "Sunday"}]})


def row(html: str, message: Message) -> str:
    """One message's row of the screen."""
    found = re.search(rf'<div class="sbx-row sbx-(customer|business)" id="sbx-message-{message.pk}".*?\n</div>',
                      html, re.S)
    assert found, f"message {message.pk} is not on the screen"
    return found.group(0)


# --- the screen -----------------------------------------------------------------------------------------

def test_the_screen_shows_the_conversation_as_the_customer_sees_it(admin_client_logged, sandbox_provider,
                                                                     conversation, offer, local_storage):
    first = conversation.messages.get(direction="inbound")
    reply = inbound(sandbox_provider, "sbx-in-2", "Sunday", message_type=MessageType.INTERACTIVE_REPLY,
                    content={"kind": "button_reply", "id": "sun", "title": "Sunday"}, reply_to="sbx-offer-1")
    answer = outbound(conversation, "Sunday it is, see you then.", "read", provider_message_id="sbx-2")
    queued = outbound(conversation, "One more thing", "queued")
    photo = inbound(sandbox_provider, "sbx-in-3", "The gate code", message_type=MessageType.IMAGE)
    image = Media.objects.create(message=photo, mime_type="image/png", filename="gate.png", state="fetched")
    note = inbound(sandbox_provider, "sbx-in-4", message_type=MessageType.AUDIO, content={"voice": True})
    voice = Media.objects.create(message=note, mime_type="audio/ogg", filename="note.ogg", state="fetched")
    waiting = inbound(sandbox_provider, "sbx-in-5", message_type=MessageType.IMAGE)
    Media.objects.create(message=waiting, mime_type="image/jpeg", filename="later.jpg", state="pending")
    listed = outbound(conversation, "Pick a slot", "sent", message_type=MessageType.INTERACTIVE,
                      provider_message_id="sbx-list-1",
                      content={"body": "Pick a slot", "button": "Slots", "sections": [
                          {"title": "Sunday", "rows": [{"id": "s-9", "title": "09:00", "description": "Morning"}]}]})

    response = admin_client_logged.get(urls(sandbox_provider)["screen"])
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "csrfmiddlewaretoken" not in html  # fetched every 1.5 s: nothing in it changes between fetches
    assert html == admin_client_logged.get(urls(sandbox_provider)["screen"]).content.decode()

    assert f'sbx-customer" id="sbx-message-{first.pk}" data-provider-id="sbx-in-1"' in row(html, first)
    assert "Do you deliver on Sundays?" in row(html, first) and "sbx-status" not in row(html, first)
    buttons = re.findall(r'<button type="submit" class="sbx-choice" form="sbx-tap-form" name="choice" '
                         r'value="([^"]+)"[^>]*>↩ ([^<]+)</button>', row(html, offer))
    assert buttons == [(f"{offer.pk}:sat", "Saturday"), (f"{offer.pk}:sun", "Sunday")]
    assert "sbx-business" in row(html, offer) and "Tap one" in row(html, offer)
    assert "disabled" not in row(html, offer)  # on the phone: it can be tapped
    assert "sbx-quote" in row(html, reply) and "Business</span> Which day suits you?" in row(html, reply)
    assert "tapped" in row(html, reply)
    assert 'sbx-status-read" title="read">✓✓' in row(html, answer)
    assert 'sbx-status-queued" title="queued">◷' in row(html, queued)
    media_url = reverse("admin:whatsapp_conversation_media", args=[conversation.pk, image.pk])
    assert f'<img class="sbx-image" src="{media_url}" alt="Image: gate.png">' in row(html, photo)
    assert "The gate code" in row(html, photo)
    voice_url = reverse("admin:whatsapp_conversation_media", args=[conversation.pk, voice.pk])
    assert f'src="{voice_url}" aria-label="Voice note note.ogg"></audio>' in row(html, note)
    assert "later.jpg · downloading…" in row(html, waiting)
    assert f'<summary class="sbx-choice" data-focus-key="list-{listed.pk}">☰ Slots</summary>' in row(html, listed)
    assert f'value="{listed.pk}:s-9"' in row(html, listed) and "Morning" in row(html, listed)
    order = [int(pk) for pk in re.findall(r'id="sbx-message-(\d+)"', html)]
    assert order == sorted(order)  # oldest first, newest at the bottom


def test_buttons_of_a_message_not_yet_on_the_phone_cannot_be_tapped(admin_client_logged, sandbox_provider, offer):
    Message.objects.filter(pk=offer.pk).update(status="queued", provider_message_id=None)
    html = admin_client_logged.get(urls(sandbox_provider)["screen"]).content.decode()
    assert row(html, offer).count('disabled title="Not on the phone yet"') == 2


def test_the_phone_page_has_the_screen_a_composer_and_no_inline_script(admin_client_logged, sandbox_provider,
                                                                         conversation):
    response = admin_client_logged.get(urls(sandbox_provider)["phone"])
    assert response.status_code == 200
    html = response.content.decode()
    pages = urls(sandbox_provider)
    assert f'data-screen-url="{pages["screen"]}" data-poll-ms="1500"' in html
    assert "Hi! Do you deliver on Sundays?" in html
    assert (f'<form class="sbx-composer" id="sbx-composer" method="post" action="{pages["send"]}" '
            'enctype="multipart/form-data">') in html
    assert '<input type="hidden" name="name" value="Marta"' in html  # the profile name sent with each message
    assert f'<form id="sbx-tap-form" method="post" action="{pages["tap"]}" hidden>' in html
    assert "whatsapp/sandbox_phone.js" in html and "whatsapp/sandbox_phone.css" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "a script without src"
    conversation_url = reverse("admin:whatsapp_conversation_change", args=[conversation.pk])
    assert f'<a href="{conversation_url}">Open this conversation in the admin</a>' in html


def test_a_new_number_starts_with_an_empty_screen_and_its_name(admin_client_logged, sandbox_provider):
    response = admin_client_logged.get(urls(sandbox_provider, "+15551230042")["phone"], {"name": "Rui"})
    html = response.content.decode()
    assert "No messages yet" in html and '<input type="hidden" name="name" value="Rui"' in html


def test_the_start_page_opens_the_phone_of_a_new_number_or_of_one_that_wrote(admin_client_logged, sandbox_provider,
                                                                             conversation):
    start = urls(sandbox_provider)["start"]
    html = admin_client_logged.get(start).content.decode()
    assert re.search(r'name="number" value="\+1555123\d{4}"', html)
    assert f'<a href="{urls(sandbox_provider)["phone"]}">{PHONE}</a> · Marta' in html
    response = admin_client_logged.get(start, {"number": "+1 (555) 123-0042", "name": "Rui Costa"})
    assert response.status_code == 302
    assert response["Location"] == urls(sandbox_provider, "+15551230042")["phone"] + "?name=Rui+Costa"
    assert "Give it with its country code" in admin_client_logged.get(start, {"number": "12"}).content.decode()


# --- sending and tapping ------------------------------------------------------------------------------

def test_sending_answers_at_once_and_leaves_the_webhook_to_a_worker(admin_client_logged, sandbox_provider,
                                                                    local_storage, django_capture_on_commit_callbacks):
    send = urls(sandbox_provider)["send"]
    with django_capture_on_commit_callbacks() as posts:
        response = admin_client_logged.post(send, {"text": "Hello!", "name": "Marta"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 202
    assert response.json()["ok"] is True and response.json()["id"].startswith("sbx-in-")
    assert len(posts) == 1 and not Message.objects.exists()  # posted by a worker once this request is over

    png = png_bytes()
    upload = {"text": "A photo", "file": _upload("shot.png", png)}
    with django_capture_on_commit_callbacks() as posts:
        response = admin_client_logged.post(send, upload, HTTP_ACCEPT="application/json")
    assert response.status_code == 202 and len(posts) == 1

    # Without JavaScript: back to the phone, with a word on what happened.
    with django_capture_on_commit_callbacks():
        response = admin_client_logged.post(send, {"text": "No script here"}, follow=True)
    assert response.redirect_chain[-1][0] == urls(sandbox_provider)["phone"]
    assert "Sent from the phone" in response.content.decode()


def _upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


@pytest.mark.parametrize(("data", "problem"), [
    ({}, "Type a message, or attach a voice note or an image."),
    ({"file": ("doc.pdf", b"%PDF-1.7")}, "this file is none of them"),
    ({"file": ("note.ogg", b"OggS" + b"0" * 32), "text": "hi"}, "A voice note has no caption"),
], ids=["nothing", "not-media", "voice-caption"])
def test_what_cannot_be_sent_is_refused_with_the_reason(admin_client_logged, sandbox_provider, local_storage,
                                                        data, problem):
    if "file" in data:
        data = {**data, "file": _upload(*data["file"])}
    response = admin_client_logged.post(urls(sandbox_provider)["send"], data, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["ok"] is False and problem in response.json()["error"]


def test_a_tap_answers_at_once_and_a_bad_one_says_why(admin_client_logged, sandbox_provider, offer,
                                                      django_capture_on_commit_callbacks):
    tap = urls(sandbox_provider)["tap"]
    with django_capture_on_commit_callbacks() as posts:
        response = admin_client_logged.post(tap, {"choice": f"{offer.pk}:sun"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 202 and len(posts) == 1

    other = make_meta()
    elsewhere = outbound(Conversation.objects.create(provider=other, contact=offer.conversation.contact), "x",
                         message_type=MessageType.INTERACTIVE, provider_message_id="wamid.1",
                         content={"body": "x", "buttons": [{"id": "sun", "title": "Sunday"}]})
    for choice, problem in ((f"{offer.pk}:mon", "offers no such button"),
                            (f"{elsewhere.pk}:sun", "not one of this provider's"),
                            ("sun", "Not a button of a message")):
        response = admin_client_logged.post(tap, {"choice": choice}, HTTP_ACCEPT="application/json")
        assert response.status_code == 400 and problem in response.json()["error"], choice
    response = admin_client_logged.post(urls(sandbox_provider, "+15551230099")["tap"], {"choice": f"{offer.pk}:sun"},
                                        HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and "sent to another number" in response.json()["error"]


def test_sending_and_tapping_are_post_only(admin_client_logged, sandbox_provider):
    for name in ("send", "tap"):
        assert admin_client_logged.get(urls(sandbox_provider)[name]).status_code == 405


def test_sending_checks_the_csrf_token(superuser, sandbox_provider):
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    response = client.post(urls(sandbox_provider)["send"], {"text": "hi"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 403


# --- who may use it, and for which provider -------------------------------------------------------------

def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _staff(username: str, *perms: str):
    user = user_with_perms(username, *perms)
    user.is_staff = True
    user.save()
    return user


@pytest.mark.parametrize(("perms", "allowed"), [
    (("whatsapp.view_conversation", "whatsapp.change_provider"), True),
    (("whatsapp.change_conversation", "whatsapp.change_provider"), True),
    (("whatsapp.view_conversation", "whatsapp.view_provider"), False),
    (("whatsapp.change_provider",), False),
    ((), False),
], ids=["view-conversations-and-change-provider", "change-both", "view-provider-only", "provider-only", "none"])
def test_only_staff_who_see_conversations_and_may_simulate_use_the_phone(sandbox_provider, conversation, offer,
                                                                         local_storage, perms, allowed):
    client = _client_for(_staff("someone", *perms))
    pages = urls(sandbox_provider)
    for name in ("start", "phone", "screen"):
        assert client.get(pages[name]).status_code == (200 if allowed else 403), name
    for name, data in (("send", {"text": "hi"}), ("tap", {"choice": f"{offer.pk}:sat"})):
        status = client.post(pages[name], data, HTTP_ACCEPT="application/json").status_code
        assert status == (202 if allowed else 403), name


def test_the_default_operator_may_not_and_a_non_staff_user_is_sent_to_log_in(sandbox_provider, operator_client):
    pages = urls(sandbox_provider)
    assert operator_client.get(pages["phone"]).status_code == 403  # operators do not change providers
    outsider = get_user_model().objects.create_user("outsider", password="pw-123456-strong")
    outsider.groups.add(Group.objects.get(name="Admin"))
    response = _client_for(outsider).get(pages["phone"])
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert Client().get(pages["screen"]).status_code == 302


def test_other_providers_and_other_shapes_of_number_are_not_found(admin_client_logged, sandbox_provider):
    meta = make_meta()
    for name, url in urls(meta).items():
        response = (admin_client_logged.post(url, {"text": "hi"}) if name in ("send", "tap")
                    else admin_client_logged.get(url))
        assert response.status_code == 404, name
    base = urls(sandbox_provider)["start"]
    for number in ("15551230077", "hello", quote("+1 555 123 0077"), "+1"):
        assert admin_client_logged.get(f"{base}{number}/").status_code == 404, number
    assert admin_client_logged.get(reverse("admin:whatsapp_provider_sandbox_phone_start", args=[999999])
                                   ).status_code == 404


# --- the ways in ----------------------------------------------------------------------------------------

def test_a_sandbox_conversation_page_opens_its_customers_phone(admin_client_logged, sandbox_provider, conversation):
    html = admin_client_logged.get(reverse("admin:whatsapp_conversation_change", args=[conversation.pk])
                                   ).content.decode()
    assert f'<a class="button" id="open-sandbox-phone" href="{urls(sandbox_provider)["phone"]}">' in html
    # Right under the transcript.
    assert html.index('id="transcript"') < html.index('id="sandbox-phone-panel"')


def test_no_phone_link_for_other_providers_or_for_who_may_not_use_it(admin_client_logged, sandbox_provider,
                                                                      conversation, operator_client):
    meta = make_meta()
    other = inbound(meta, "wamid.in-1", "Hello").conversation
    html = admin_client_logged.get(reverse("admin:whatsapp_conversation_change", args=[other.pk])).content.decode()
    assert "sandbox-phone-panel" not in html
    html = operator_client.get(reverse("admin:whatsapp_conversation_change", args=[conversation.pk])
                               ).content.decode()
    assert "Hi! Do you deliver on Sundays?" in html and "sandbox-phone-panel" not in html


def test_the_sandbox_providers_page_opens_the_phone(admin_client_logged, sandbox_provider):
    html = admin_client_logged.get(reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])
                                   ).content.decode()
    assert f'<li><a href="{urls(sandbox_provider)["start"]}"' in html and "Open the sandbox phone" in html
    meta = make_meta()
    html = admin_client_logged.get(reverse("admin:whatsapp_provider_change", args=[meta.pk])).content.decode()
    assert "Open the sandbox phone" not in html

