"""
A message from a contact mapped to no user: the provider's policy (store only, or one registration
reply a day, as text or an approved template). And verification: a one-time code sent on WhatsApp,
answered by the contact through a Meta webhook, marks the mapping verified.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from contacts.models import ContactUserMapping, VerificationChallenge
from contacts.services.mapping import contact_map_to_user, user_phone_set
from contacts.services.verification import MAX_FAILED_ATTEMPTS, VerificationRefused, verification_start
from core.models import AuditLog
from templates_app.models import MessageTemplate
from tests.conftest import customer, in_threads, sent_bodies
from tests.contacts.conftest import (
    ANA_PHONE,
    ANA_WA_ID,
    contact_named,
    deliver,
    meta_text,
    other_business,
    process,
    webhook_post,
)
from whatsapp.models import Message, UnknownContactPolicy
from whatsapp.providers.events import TemplateStatus
from whatsapp.services.delivery import message_deliver
from whatsapp.services.send_rules import SendRefused

pytestmark = pytest.mark.django_db

User = get_user_model()

REGISTRATION_TEXT = "Welcome! Register at https://example.com/join so we can link your account."
THANK_YOU = "Thank you: this WhatsApp account is now verified."


def say(provider, text: str, wa_id: str = ANA_WA_ID) -> Message:
    deliver(provider, meta_text(provider, text, wa_id=wa_id))
    return Message.objects.filter(direction="inbound").latest("pk")


def ana():
    return contact_named("phone", ANA_PHONE)


def platform_messages(purpose: str = "") -> list[Message]:
    sent = Message.objects.filter(direction="outbound").order_by("pk")
    return list(sent.filter(purpose=purpose) if purpose else sent)


@pytest.fixture
def replying(meta):
    """The `meta` provider with the registration-reply policy and a text."""
    meta.unknown_contact_policy = UnknownContactPolicy.REGISTRATION_REPLY
    meta.registration_text = REGISTRATION_TEXT
    meta.save()
    return meta


# --- unknown contacts ----------------------------------------------------------------------------------

def test_store_only_keeps_the_message_and_sends_nothing(meta):
    assert meta.unknown_contact_policy == UnknownContactPolicy.STORE_ONLY
    say(meta, "Hello, who is this?")
    assert Message.objects.filter(direction="inbound").count() == 1
    assert platform_messages() == []


def test_registration_reply_once_a_day(replying, fake_meta):
    say(replying, "Hello")
    (reply,) = platform_messages()
    assert (reply.purpose, reply.message_type, reply.text, reply.conversation.contact) == (
        "registration", "text", REGISTRATION_TEXT, ana())
    assert message_deliver(reply.pk).status == "sent"
    assert sent_bodies(fake_meta)[0]["text"]["body"] == REGISTRATION_TEXT

    say(replying, "Hello? Anyone?")
    assert len(platform_messages()) == 1

    # A day later the contact is still unknown: one more reply.
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    say(replying, "Back again")
    assert [m.purpose for m in platform_messages()] == ["registration", "registration"]


def test_a_mapped_contact_gets_no_registration_reply(replying):
    user_phone_set(User.objects.create_user("ana"), ANA_PHONE)
    say(replying, "Hello")
    assert ContactUserMapping.objects.get(contact=ana()).user.username == "ana"
    assert platform_messages() == []


def test_a_contact_mapped_by_hand_gets_no_more_registration_replies(replying, superuser):
    say(replying, "Hello")
    contact_map_to_user(contact=ana(), user=User.objects.create_user("ana"), actor=superuser)
    Message.objects.filter(purpose="registration").update(created_at=timezone.now() - timedelta(days=2))
    say(replying, "Thanks, done")
    assert len(platform_messages()) == 1


def test_an_opted_out_contact_gets_no_registration_reply(replying):
    say(replying, "STOP")
    say(replying, "hello")
    assert [m.purpose for m in platform_messages()] == ["consent_confirmation"]


def registration_template(provider, status=TemplateStatus.APPROVED,
                          body="Welcome! Reply with your customer number to register.") -> MessageTemplate:
    return MessageTemplate.objects.create(provider=provider, name="registration_welcome", language="en_US",
                                          status=status, components=[{"type": "BODY", "text": body}])


def test_an_approved_registration_template_is_used(replying, fake_meta):
    replying.registration_template = registration_template(replying)
    replying.registration_text = ""  # the template alone is enough
    replying.save()

    say(replying, "Hello")

    (reply,) = platform_messages()
    assert (reply.purpose, reply.message_type, reply.template) == ("registration", "template",
                                                                    replying.registration_template)
    assert message_deliver(reply.pk).status == "sent"
    (body,) = sent_bodies(fake_meta)
    assert body["type"] == "template"
    assert body["template"]["name"] == "registration_welcome"
    assert body["template"]["language"]["code"] == "en_US"


def test_a_template_that_lost_its_approval_falls_back_to_the_text(replying):
    replying.registration_template = registration_template(replying, status=TemplateStatus.PAUSED)
    replying.save()
    say(replying, "Hello")
    (reply,) = platform_messages()
    assert (reply.message_type, reply.text) == ("text", REGISTRATION_TEXT)


def test_a_reply_that_cannot_be_sent_leaves_the_message_stored(replying):
    # A template with a variable the platform has no value for is refused; the inbound message is kept.
    replying.registration_template = registration_template(replying, body="Hi {{1}}, please register.")
    replying.save()
    inbound = say(replying, "Hello")
    assert inbound.text == "Hello" and platform_messages() == []


def test_the_policy_without_a_text_or_a_template_sends_nothing(replying):
    replying.registration_text = ""
    replying.save()
    say(replying, "Hello")
    assert platform_messages() == []


@pytest.mark.django_db(transaction=True)
def test_messages_at_two_numbers_at_once_get_one_registration_reply(replying):
    # The same person writes to two of the business's numbers at the same moment: two conversations, so
    # nothing but the reply's own lock keeps them from both answering.
    second = other_business()
    second.unknown_contact_policy, second.registration_text = replying.unknown_contact_policy, REGISTRATION_TEXT
    second.save()
    say(replying, "Hi")
    Message.objects.filter(purpose="registration").update(created_at=timezone.now() - timedelta(days=1, minutes=1))

    events = [webhook_post(replying, meta_text(replying, "Hello?", wa_id=ANA_WA_ID)),
              webhook_post(second, meta_text(second, "Hello?", wa_id=ANA_WA_ID), secret="other-app-secret")]
    in_threads(*(lambda event_id=event_id: process(event_id) for event_id in events))

    assert Message.objects.filter(direction="inbound", conversation__contact=ana()).count() == 3
    assert [m.purpose for m in platform_messages()] == ["registration", "registration"]


# --- verification --------------------------------------------------------------------------------------

@pytest.fixture
def verifying(meta):
    meta.contact_verification_enabled = True
    meta.save()
    return meta


@pytest.fixture
def ana_user(db):
    return User.objects.create_user("ana", first_name="Ana")


def code_in(message: Message) -> str:
    return re.search(r"\b(\d{6})\b", message.text).group(1)


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_verification_sends_a_code_and_the_right_reply_marks_the_mapping_verified(verifying, fake_meta, ana_user,
                                                                                  superuser):
    say(verifying, "Hi, I am Ana")
    challenge = verification_start(contact=ana(), user=ana_user, actor=superuser)

    (code_message,) = platform_messages("verification")
    assert challenge.message == code_message and challenge.created_by == superuser
    assert timezone.now() + timedelta(minutes=9) < challenge.expires_at <= timezone.now() + timedelta(minutes=10)
    code = code_in(code_message)
    assert message_deliver(code_message.pk).status == "sent"
    assert code in sent_bodies(fake_meta)[0]["text"]["body"]
    assert AuditLog.objects.filter(action="contact.verification_start", actor=superuser).exists()

    say(verifying, wrong(code))
    challenge.refresh_from_db()
    assert (challenge.failed_attempts, challenge.verified_at) == (1, None)
    assert not ContactUserMapping.objects.exists()

    say(verifying, f" {code} ")
    challenge.refresh_from_db()
    assert challenge.verified_at is not None
    mapping = ContactUserMapping.objects.get(contact=ana())
    assert (mapping.user, mapping.method, mapping.verified_at) == (ana_user, "verified", challenge.verified_at)
    assert [m.text for m in platform_messages("verification")][1:] == [THANK_YOU]
    assert AuditLog.objects.filter(action="contact.map").latest("pk").after["method"] == "verified"


def test_verifying_a_mapped_contact_upgrades_its_mapping(verifying, ana_user, superuser):
    say(verifying, "Hi")
    manual = contact_map_to_user(contact=ana(), user=ana_user, actor=superuser)
    challenge = verification_start(contact=ana(), actor=superuser)  # the mapped user by default
    assert challenge.user == ana_user

    say(verifying, code_in(challenge.message))
    mapping = ContactUserMapping.objects.get()
    assert (mapping.pk, mapping.method) == (manual.pk, "verified")
    assert mapping.verified_at is not None


def test_an_expired_code_does_nothing(verifying, ana_user):
    say(verifying, "Hi")
    challenge = verification_start(contact=ana(), user=ana_user)
    VerificationChallenge.objects.filter(pk=challenge.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    say(verifying, code_in(challenge.message))

    challenge.refresh_from_db()
    assert (challenge.verified_at, challenge.failed_attempts) == (None, 0)
    assert not ContactUserMapping.objects.exists()
    assert len(platform_messages("verification")) == 1  # the code, no thank-you


def test_too_many_wrong_codes_spend_the_challenge(verifying, ana_user):
    say(verifying, "Hi")
    challenge = verification_start(contact=ana(), user=ana_user)
    code = code_in(challenge.message)
    for _ in range(MAX_FAILED_ATTEMPTS):
        say(verifying, wrong(code))
    say(verifying, code)
    challenge.refresh_from_db()
    assert (challenge.failed_attempts, challenge.verified_at) == (MAX_FAILED_ATTEMPTS, None)
    assert not ContactUserMapping.objects.exists()


def test_a_new_code_replaces_the_earlier_one(verifying, ana_user):
    say(verifying, "Hi")
    first = verification_start(contact=ana(), user=ana_user)
    second = verification_start(contact=ana(), user=ana_user)
    first.refresh_from_db()
    assert first.expires_at <= timezone.now() < second.expires_at

    say(verifying, code_in(second.message))
    second.refresh_from_db()
    assert second.verified_at is not None


def test_verification_is_refused_where_it_cannot_work(verifying, ana_user, superuser):
    say(verifying, "Hi")
    contact = ana()

    with pytest.raises(VerificationRefused) as refused:
        verification_start(contact=contact)
    assert refused.value.as_dict()["code"] == "no_user"

    other = User.objects.create_user("someone.else")
    contact_map_to_user(contact=contact, user=other, actor=superuser)
    with pytest.raises(VerificationRefused) as refused:
        verification_start(contact=contact, user=ana_user)
    assert refused.value.code == "mapped_elsewhere"

    verifying.contact_verification_enabled = False
    verifying.save()
    with pytest.raises(VerificationRefused) as refused:
        verification_start(contact=contact, user=other)
    assert refused.value.code == "verification_disabled"
    assert not VerificationChallenge.objects.exists()
    assert platform_messages() == []


def test_the_code_needs_the_24_hour_window(verifying, ana_user):
    contact = customer(verifying, in_window=False)
    with pytest.raises(SendRefused) as refused:
        verification_start(contact=contact, user=ana_user)
    assert refused.value.code == "outside_window"
    assert not VerificationChallenge.objects.exists() and platform_messages() == []
