"""
The conversation page as a chat (direction, ticks, errors, media, quotes, reactions on their message),
the contact's identities, consent and mapping above it, the conversation list by mapped user, and the
provider's unknown-contact settings.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.models import ConsentSource, Contact
from contacts.services.consent import consent_set
from contacts.services.mapping import contact_map_to_user
from core.storage import BucketSpec, get_storage
from templates_app.models import MessageTemplate
from whatsapp.models import Conversation, Media, Message, Provider
from whatsapp.providers.events import Identity, IdentityKind, InboundMessage, MessageType
from whatsapp.services.inbound import inbound_message_apply

pytestmark = pytest.mark.django_db

PHONE = "+16505550101"


@pytest.fixture
def storage_dir(settings, tmp_path):
    settings.STORAGE_BACKEND = "local"
    settings.LOCAL_STORAGE_DIR = tmp_path / "archive"
    return settings.LOCAL_STORAGE_DIR


def inbound(provider: Provider, provider_message_id: str, text: str = "", *, phone: str = PHONE,
            message_type: str = MessageType.TEXT, content: dict | None = None, reply_to: str = "",
            extra_identities: tuple[Identity, ...] = (), at=None) -> Message:
    """A customer's message, stored the way a webhook's is."""
    event = InboundMessage(
        provider_message_id=provider_message_id, timestamp=at or timezone.now(),
        identities=(Identity(IdentityKind.PHONE, phone), *extra_identities), profile_name="Ana",
        message_type=message_type, text=text, content=content or {}, reply_to_provider_message_id=reply_to)
    message, created = inbound_message_apply(provider=provider, event=event)
    assert created
    return message


def outbound(conversation: Conversation, text: str, status: str, **fields) -> Message:
    """One of our messages as the send pipeline leaves it in a given status."""
    now = timezone.now()
    return Message.objects.create(provider=conversation.provider, conversation=conversation, direction="outbound",
                                  message_type=fields.pop("message_type", MessageType.TEXT), text=text,
                                  status=status, queued_at=now, **fields)


def chat_page(client, conversation: Conversation) -> str:
    response = client.get(reverse("admin:whatsapp_conversation_change", args=[conversation.pk]))
    assert response.status_code == 200
    return response.content.decode()


def bubble(html: str, message: Message) -> str:
    """The HTML of one message's row on the page (one line each)."""
    found = re.search(rf'<div class="wa-row wa-(inbound|outbound)" id="message-{message.pk}">.*\n', html)
    assert found, f"message {message.pk} is not on the page"
    return found.group(0)


@pytest.fixture
def conversation(sandbox_provider) -> Conversation:
    return inbound(sandbox_provider, "in-1", "Hi, is my order on its way?").conversation


# --- the chat -----------------------------------------------------------------------------------------

def test_messages_show_their_side_time_and_status_ticks(admin_client_logged, conversation):
    first = conversation.messages.get()
    sent = outbound(conversation, "It left this morning.", "sent", provider_message_id="out-1")
    delivered = outbound(conversation, "Here is the tracking link.", "delivered")
    read = outbound(conversation, "Anything else?", "read")
    queued = outbound(conversation, "Still waiting to go out", "queued")
    html = chat_page(admin_client_logged, conversation)

    assert 'class="wa-transcript"' in html
    assert "wa-row wa-inbound" in bubble(html, first) and "Hi, is my order on its way?" in bubble(html, first)
    assert "wa-status" not in bubble(html, first)  # no ticks on what the customer sent
    assert timezone.localtime(first.received_at).strftime("%Y-%m-%d %H:%M") in bubble(html, first)
    assert "wa-row wa-outbound" in bubble(html, sent)
    assert "✓ sent" in bubble(html, sent)
    assert "✓✓ delivered" in bubble(html, delivered)
    assert "wa-status-read" in bubble(html, read) and "✓✓ read" in bubble(html, read)
    assert "🕓 queued" in bubble(html, queued)
    # Oldest first.
    assert html.index("Hi, is my order") < html.index("It left this morning") < html.index("Still waiting")


def test_failed_and_dead_letter_messages_show_the_error(admin_client_logged, conversation):
    failed = outbound(conversation, "Your code is 1234", "failed", error_code="131026",
                      error_title="Message undeliverable", failed_at=timezone.now())
    dead = outbound(conversation, "Second try", "dead_letter", error_code="http_500",
                    error_title="Provider unavailable", dead_lettered_at=timezone.now())
    html = chat_page(admin_client_logged, conversation)
    assert "⚠ failed" in bubble(html, failed)
    assert "Failed (131026) Message undeliverable" in bubble(html, failed)
    assert "⚠ dead letter" in bubble(html, dead) and "(http_500) Provider unavailable" in bubble(html, dead)


def test_platform_messages_are_labelled(admin_client_logged, conversation):
    confirmation = outbound(conversation, "You will not get more messages.", "sent",
                            purpose=Message.Purpose.CONSENT_CONFIRMATION)
    html = chat_page(admin_client_logged, conversation)
    assert "Consent confirmation" in bubble(html, confirmation)


def test_message_text_is_escaped(admin_client_logged, sandbox_provider, conversation):
    evil = inbound(sandbox_provider, "in-evil", "<script>alert('x')</script><b>bold</b>")
    html = chat_page(admin_client_logged, conversation)
    assert "<script>alert(" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in bubble(html, evil)


def test_a_reply_shows_the_quoted_message(admin_client_logged, sandbox_provider, conversation):
    ours = outbound(conversation, "Which size do you want?", "read", provider_message_id="out-size")
    reply = inbound(sandbox_provider, "in-size", "Medium, please", reply_to="out-size")
    orphan = inbound(sandbox_provider, "in-old-quote", "About that", reply_to="never-stored")
    html = chat_page(admin_client_logged, conversation)
    assert reply.reply_to_id == ours.pk
    assert f'href="#message-{ours.pk}"' in bubble(html, reply) and "You:" in bubble(html, reply)
    assert "Which size do you want?" in bubble(html, reply)
    assert "Reply to a message not stored here" in bubble(html, orphan)


def test_reactions_show_on_the_message_they_react_to(admin_client_logged, sandbox_provider, conversation):
    ours = outbound(conversation, "Your parcel is at the door", "read", provider_message_id="out-parcel")
    theirs = conversation.messages.get(provider_message_id="in-1")
    # The customer's reaction names our message by the provider's id (as Meta's parser passes it on).
    inbound(sandbox_provider, "in-react", "👍", message_type=MessageType.REACTION,
            content={"emoji": "👍", "removed": False}, reply_to="out-parcel")
    # Our reaction names theirs by our id and the provider's (what the send service stores).
    outbound(conversation, "❤", "sent", message_type=MessageType.REACTION,
             content={"emoji": "❤", "target": "in-1", "target_message": theirs.pk})
    html = chat_page(admin_client_logged, conversation)
    assert 'class="wa-reaction"' in bubble(html, ours) and "👍" in bubble(html, ours)
    assert "reaction from customer" in bubble(html, ours)
    assert "❤" in bubble(html, theirs) and "reaction from us" in bubble(html, theirs)
    # Not as bubbles of their own.
    assert html.count('class="wa-row wa-') == 2


def test_a_removed_reaction_is_gone_and_one_to_an_unknown_message_is_a_note(admin_client_logged, sandbox_provider,
                                                                           conversation):
    ours = outbound(conversation, "Thanks for your order", "read", provider_message_id="out-thanks")
    inbound(sandbox_provider, "in-react-1", "😂", message_type=MessageType.REACTION,
            content={"emoji": "😂", "removed": False}, reply_to="out-thanks")
    inbound(sandbox_provider, "in-react-2", "", message_type=MessageType.REACTION,
            content={"emoji": "", "removed": True}, reply_to="out-thanks")
    inbound(sandbox_provider, "in-react-3", "🔥", message_type=MessageType.REACTION,
            content={"emoji": "🔥", "removed": False}, reply_to="sent-before-the-platform")
    html = chat_page(admin_client_logged, conversation)
    assert "😂" not in html and "wa-reaction\"" not in bubble(html, ours)
    assert "🔥" in html and "to a message not shown here" in html


def stored_file(path: str, data: bytes) -> str:
    storage = get_storage()
    storage.create_bucket(BucketSpec(name="test-media"))
    return storage.write("test-media", path, data, content_type="image/jpeg", metadata={})


def test_media_links_to_the_stored_file(admin_client_logged, client, sandbox_provider, conversation, storage_dir):
    photo = inbound(sandbox_provider, "in-photo", "my receipt", message_type=MessageType.IMAGE)
    location = stored_file("test/receipt.jpg", b"\xff\xd8jpeg-bytes")
    stored = Media.objects.create(message=photo, mime_type="image/jpeg", filename="receipt.jpg", size_bytes=12,
                                  state=Media.State.FETCHED, archive_path=location)
    voice = inbound(sandbox_provider, "in-voice", message_type=MessageType.AUDIO)
    Media.objects.create(message=voice, mime_type="audio/ogg", state=Media.State.FAILED, last_error="HTTP 404")
    html = chat_page(admin_client_logged, conversation)

    url = reverse("admin:whatsapp_conversation_media", args=[conversation.pk, stored.pk])
    assert f'href="{url}"' in bubble(html, photo) and "receipt.jpg" in bubble(html, photo)
    assert "failed: HTTP 404" in bubble(html, voice)
    response = admin_client_logged.get(url)
    assert response.status_code == 200 and response.content == b"\xff\xd8jpeg-bytes"
    assert response["Content-Type"] == "image/jpeg" and 'filename="receipt.jpg"' in response["Content-Disposition"]
    # Another conversation's path does not reach it; a file never downloaded is a 404, not a 500.
    other = inbound(sandbox_provider, "in-other", "hello", phone="+16505550999").conversation
    assert admin_client_logged.get(
        reverse("admin:whatsapp_conversation_media", args=[other.pk, stored.pk])).status_code == 404
    failed = voice.media.get()
    assert admin_client_logged.get(
        reverse("admin:whatsapp_conversation_media", args=[conversation.pk, failed.pk])).status_code == 404


def test_media_download_needs_permission(client, sandbox_provider, conversation, storage_dir):
    photo = inbound(sandbox_provider, "in-photo", message_type=MessageType.IMAGE)
    location = stored_file("test/p.jpg", b"bytes")
    media = Media.objects.create(message=photo, mime_type="image/jpeg", state=Media.State.FETCHED,
                                 archive_path=location)
    url = reverse("admin:whatsapp_conversation_media", args=[conversation.pk, media.pk])
    assert client.get(url).status_code == 302  # not logged in: to the login page

    staff = get_user_model().objects.create_user("clerk", password="pw-123456-strong", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client.force_login(staff)
    assert client.get(url).status_code == 403  # sees conversations, not their files
    staff.user_permissions.add(Permission.objects.get(codename="view_media"))
    client.force_login(get_user_model().objects.get(pk=staff.pk))  # a fresh permission cache
    assert client.get(url).status_code == 200


def test_only_the_newest_messages_are_shown(admin_client_logged, conversation, monkeypatch):
    from whatsapp.admin import chat as whatsapp_admin

    monkeypatch.setattr(whatsapp_admin, "CHAT_MESSAGE_LIMIT", 3)
    for number in range(5):
        outbound(conversation, f"numbered message {number}", "sent")
    html = chat_page(admin_client_logged, conversation)
    assert "older ones are hidden" in html and "6 messages in all" in html
    assert "numbered message 1" not in html and "Hi, is my order" not in html
    assert html.index("numbered message 2") < html.index("numbered message 3") < html.index("numbered message 4")
    listing = admin_client_logged.get(reverse("admin:whatsapp_message_changelist"),
                                      {"conversation__id__exact": conversation.pk})
    assert listing.status_code == 200 and "6 messages" in listing.content.decode()


# --- the contact above the chat -----------------------------------------------------------------------

def test_identities_consent_and_the_mapped_user(admin_client_logged, sandbox_provider, superuser):
    sandbox_provider.business_account_id = "waba-1"
    sandbox_provider.save()
    conversation = inbound(sandbox_provider, "in-1", "hola", extra_identities=(
        Identity(IdentityKind.BUSINESS_SCOPED_ID, "US.13491208655302741918"),)).conversation
    contact = conversation.contact
    consent_set(contact=contact, state=Contact.Consent.OPTED_OUT, source=ConsentSource.KEYWORD, detail="STOP")
    user = get_user_model().objects.create_user("ana.lima", email="ana@example.com", first_name="Ana",
                                                last_name="Lima")
    contact_map_to_user(contact=contact, user=user, actor=superuser)
    html = chat_page(admin_client_logged, conversation)

    assert f"Phone number (E.164): <code>{PHONE}</code>" in html
    assert "Business-scoped user id: <code>US.13491208655302741918</code> (business account waba-1)" in html
    assert "Opted out" in html and "keyword from the contact" in html
    user_url = reverse("admin:auth_user_change", args=[user.pk])
    assert f'<a class="wa-mapped-user" href="{user_url}">ana.lima</a>' in html
    assert "(Ana Lima)" in html and "manual" in html and "Not mapped" not in html


def test_an_unmapped_contact_links_to_where_it_can_be_mapped(admin_client_logged, conversation):
    html = chat_page(admin_client_logged, conversation)
    assert "Not mapped" in html
    try:
        queue = reverse("admin:contacts_unmappedcontact_changelist")
    except Exception:  # the queue's admin is not registered: the contact's own page instead
        queue = reverse("admin:contacts_contact_change", args=[conversation.contact_id])
    assert f'class="wa-unmapped-link" href="{queue}"' in html


# --- a constant number of queries -----------------------------------------------------------------------

def _fill(provider: Provider, phone: str, count: int) -> Conversation:
    """`count` messages of every kind the page draws: replies, media, reactions, failures."""
    conversation = inbound(provider, f"{phone}-0", "first", phone=phone).conversation
    rows = []
    for number in range(1, count):
        side = "inbound" if number % 2 else "outbound"
        rows.append(Message(provider=provider, conversation=conversation, direction=side,
                            message_type=MessageType.IMAGE if number % 5 == 0 else MessageType.TEXT,
                            text=f"message {number}", provider_message_id=f"{phone}-{number}",
                            status="received" if side == "inbound" else ("failed" if number % 3 == 0 else "read"),
                            error_code="131026" if number % 3 == 0 else ""))
    messages = Message.objects.bulk_create(rows)
    for number, message in enumerate(messages, start=1):
        if number % 4 == 0:
            message.reply_to = messages[number - 2]
            message.save(update_fields=["reply_to"])
    Media.objects.bulk_create([Media(message=m, mime_type="image/png", state=Media.State.FETCHED,
                                     archive_path=f"whatsapp-media/x/{m.pk}") for m in messages
                               if m.message_type == MessageType.IMAGE])
    Message.objects.bulk_create([
        Message(provider=provider, conversation=conversation, direction="inbound", message_type=MessageType.REACTION,
                text="👍", content={"emoji": "👍", "quoted_message_id": m.provider_message_id}, reply_to=m,
                status="received")
        for m in messages[::6]
    ])
    return conversation


def test_the_page_runs_the_same_queries_for_10_and_200_messages(admin_client_logged, sandbox_provider, superuser):
    small = _fill(sandbox_provider, "+16505550110", 10)
    large = _fill(sandbox_provider, "+16505550200", 200)
    contact_map_to_user(contact=large.contact, user=superuser, actor=superuser)
    contact_map_to_user(contact=small.contact, user=get_user_model().objects.create_user("other"), actor=superuser)
    chat_page(admin_client_logged, small)  # warm the per-process caches (content types, sites)
    counts = {}
    for name, conversation in (("small", small), ("large", large)):
        with CaptureQueriesContext(connection) as queries:
            html = chat_page(admin_client_logged, conversation)
        counts[name] = len(queries)
    assert html.count('class="wa-reaction"') == 34  # the reactions to messages 1, 7, 13... of 199
    assert counts["small"] == counts["large"], counts
    assert counts["large"] <= 29, counts


# --- the conversation list ------------------------------------------------------------------------------

def test_conversations_filter_by_mapped_user(admin_client_logged, sandbox_provider, superuser):
    ana = get_user_model().objects.create_user("ana.lima")
    bruno = get_user_model().objects.create_user("bruno.costa")
    of_ana = inbound(sandbox_provider, "a-1", "a", phone="+16505550301").conversation
    inbound(sandbox_provider, "a-2", "a again", phone="+16505550301")
    of_bruno = inbound(sandbox_provider, "b-1", "b", phone="+16505550302").conversation
    nobody = inbound(sandbox_provider, "n-1", "n", phone="+16505550303").conversation
    contact_map_to_user(contact=of_ana.contact, user=ana, actor=superuser)
    contact_map_to_user(contact=of_bruno.contact, user=bruno, actor=superuser)
    changelist = reverse("admin:whatsapp_conversation_changelist")

    def listed(**params) -> set[int]:
        response = admin_client_logged.get(changelist, params)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert listed(mapped_user=ana.pk) == {of_ana.pk}
    assert listed(mapped_user="none") == {nobody.pk}
    assert listed(mapped_user="any") == {of_ana.pk, of_bruno.pk}
    assert listed(q="bruno.costa") == {of_bruno.pk}
    page = admin_client_logged.get(changelist).content.decode()
    assert "ana.lima" in page and "bruno.costa" in page  # under the contact's name and the filter's choices
    row = re.search(rf'href="[^"]*/{of_ana.pk}/change/.*?</tr>', page, re.S).group(0)
    assert "ana.lima" in row and "a again" in row  # the mapped user and the last message
    # A bad value is a readable redirect, never a 500.
    assert admin_client_logged.get(changelist, {"mapped_user": "abc"}).status_code == 302


def test_the_list_runs_the_same_queries_for_few_and_many_conversations(admin_client_logged, sandbox_provider,
                                                                      superuser):
    changelist = reverse("admin:whatsapp_conversation_changelist")

    def add(start: int, count: int) -> None:
        for number in range(start, start + count):
            conversation = inbound(sandbox_provider, f"list-{number}", "hi", phone=f"+165055504{number:02d}")
            user = get_user_model().objects.create_user(f"user{number}")
            contact_map_to_user(contact=conversation.conversation.contact, user=user, actor=superuser)

    add(0, 2)
    admin_client_logged.get(changelist)
    with CaptureQueriesContext(connection) as few:
        admin_client_logged.get(changelist)
    add(2, 20)
    with CaptureQueriesContext(connection) as many:
        admin_client_logged.get(changelist)
    assert len(few) == len(many), (len(few), len(many))


# --- the provider's unknown-contact settings ------------------------------------------------------------

def _provider_post(provider: Provider, **fields) -> dict:
    return {"name": provider.name, "is_active": "on", "rate_limit_per_second": "20",
            "verification_status": "unverified", "phone_number": provider.phone_number, "webhook_secret": "",
            **fields}


def test_provider_form_has_the_contacts_settings(admin_client_logged, sandbox_provider):
    mine = MessageTemplate.objects.create(provider=sandbox_provider, name="welcome_mine", language="en",
                                          status="approved", components=[{"type": "BODY", "text": "Welcome!"}])
    draft = MessageTemplate.objects.create(provider=sandbox_provider, name="welcome_draft", language="en",
                                           components=[{"type": "BODY", "text": "Welcome!"}])
    other = Provider.objects.create(kind="sandbox", name="Other number")
    theirs = MessageTemplate.objects.create(provider=other, name="welcome_theirs", language="en", status="approved",
                                            components=[{"type": "BODY", "text": "Welcome!"}])
    response = admin_client_logged.get(reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk]))
    html = response.content.decode()
    assert 'class="fieldset-heading">Contacts</h2>' in html and "Contact verification enabled" in html
    choices = set(response.context["adminform"].form.fields["registration_template"].queryset)
    assert choices == {mine}, (draft, theirs)


def test_registration_reply_needs_a_template_or_a_text(admin_client_logged, sandbox_provider):
    url = reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])
    response = admin_client_logged.post(url, _provider_post(sandbox_provider,
                                                            unknown_contact_policy="registration_reply"))
    assert response.status_code == 200
    assert "A registration reply needs an approved template or a text" in response.content.decode()
    assert response.context["adminform"].form.errors["unknown_contact_policy"]
    sandbox_provider.refresh_from_db()
    assert sandbox_provider.unknown_contact_policy == "store_only"

    response = admin_client_logged.post(url, _provider_post(
        sandbox_provider, unknown_contact_policy="registration_reply", contact_verification_enabled="on",
        registration_text="Hi! Register at https://example.com/join to use this number."))
    assert response.status_code == 302, response.content.decode()[:3000]
    sandbox_provider.refresh_from_db()
    assert sandbox_provider.unknown_contact_policy == "registration_reply"
    assert sandbox_provider.registration_text.startswith("Hi! Register")
    assert sandbox_provider.contact_verification_enabled is True


def test_registration_template_must_need_no_values(admin_client_logged, sandbox_provider):
    url = reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])
    with_values = MessageTemplate.objects.create(provider=sandbox_provider, name="hello_name", language="en",
                                                 status="approved", components=[{"type": "BODY", "text": "Hi {{1}}"}])
    plain = MessageTemplate.objects.create(provider=sandbox_provider, name="hello_plain", language="en",
                                           status="approved", components=[{"type": "BODY", "text": "Hi there"}])
    response = admin_client_logged.post(url, _provider_post(
        sandbox_provider, unknown_contact_policy="registration_reply", registration_template=with_values.pk))
    assert response.status_code == 200
    assert "choose a template without parameters" in response.content.decode()
    response = admin_client_logged.post(url, _provider_post(
        sandbox_provider, unknown_contact_policy="registration_reply", registration_template=plain.pk))
    assert response.status_code == 302, response.content.decode()[:3000]
    sandbox_provider.refresh_from_db()
    assert sandbox_provider.registration_template == plain


def test_a_form_without_the_policy_keeps_the_stored_one(admin_client_logged, sandbox_provider):
    Provider.objects.filter(pk=sandbox_provider.pk).update(unknown_contact_policy="registration_reply",
                                                          registration_text="Register first")
    url = reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk])
    response = admin_client_logged.post(url, _provider_post(sandbox_provider, registration_text="Register first"))
    assert response.status_code == 302, response.content.decode()[:3000]
    sandbox_provider.refresh_from_db()
    assert sandbox_provider.unknown_contact_policy == "registration_reply"

