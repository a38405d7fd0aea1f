"""
Consent: keywords from the contact in two languages (through Meta webhooks) opt them out or back in with
one confirmation in that language, which really goes out while everything else is refused; provider
errors that mean the person blocked us (a refused send, a failed status report) opt them out; people
change it with a history and an audit entry.
"""

import pytest

from contacts.models import ConsentEvent, ConsentKeyword, ConsentSource, Contact
from contacts.services.consent import consent_set
from core.models import AuditLog
from tests.conftest import customer, sent_bodies
from tests.contacts.conftest import ANA_PHONE, ANA_WA_ID, contact_named, deliver, meta_failed_status, meta_text
from tests.fakes import meta_error
from whatsapp.models import Message
from whatsapp.services.delivery import message_deliver
from whatsapp.services.outbound import message_send_text
from whatsapp.services.send_rules import SendRefused

pytestmark = pytest.mark.django_db


EN_OPT_OUT = "You will not receive any more messages from us. Reply START to subscribe again."
EN_OPT_IN = "You are subscribed again. Reply STOP at any time to unsubscribe."
ES_OPT_OUT = "No recibirás más mensajes nuestros. Responde ALTA para suscribirte de nuevo."
ES_OPT_IN = "Te has suscrito de nuevo. Responde BAJA cuando quieras darte de baja."


def say(meta, text: str) -> Message:
    """The contact (Ana, by phone) writes `text`; the stored inbound message."""
    deliver(meta, meta_text(meta, text, wa_id=ANA_WA_ID))
    return Message.objects.filter(direction="inbound").latest("pk")


def ana() -> Contact:
    return contact_named("phone", ANA_PHONE)


def platform_messages() -> list[tuple[str, str]]:
    return list(Message.objects.filter(direction="outbound").order_by("pk").values_list("purpose", "text"))


# --- keywords ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "keyword", "confirmation"), [
    ("STOP", "STOP (en)", EN_OPT_OUT),
    ("BAJA", "BAJA (es)", ES_OPT_OUT),
    ("stop!", "STOP (en)", EN_OPT_OUT),
    ("  sToP. ", "STOP (en)", EN_OPT_OUT),
    ("¡Baja!", "BAJA (es)", ES_OPT_OUT),
    ("Unsubscribe", "UNSUBSCRIBE (en)", EN_OPT_OUT),
])
def test_an_opt_out_keyword_opts_out_with_one_confirmation_in_its_language(meta, text, keyword, confirmation):
    inbound = say(meta, text)

    contact = ana()
    assert (contact.consent, contact.consent_source) == ("opted_out", "keyword")
    assert contact.consent_changed_at is not None
    event = ConsentEvent.objects.get(contact=contact)
    assert (event.previous_state, event.state, event.source, event.detail, event.message) == (
        "unknown", "opted_out", "keyword", keyword, inbound)
    assert platform_messages() == [("consent_confirmation", confirmation)]
    audit = AuditLog.objects.get(action="contact.consent")
    assert (audit.actor, audit.actor_label, audit.after["consent"]) == (None, "keyword from the contact", "opted_out")


def test_the_confirmation_goes_out_and_every_other_send_is_refused(meta, fake_meta):
    say(meta, "Hi, when does my order arrive?")
    queued_before = message_send_text(provider=meta, contact=ana(), text="Also: 20% off this week!")
    say(meta, "STOP")

    # The message queued before the STOP is not sent; the confirmation is.
    earlier = message_deliver(queued_before.pk)
    assert (earlier.status, earlier.error_code) == ("failed", "opted_out")
    confirmation = Message.objects.get(purpose="consent_confirmation")
    assert message_deliver(confirmation.pk).status == "sent"
    (body,) = sent_bodies(fake_meta)
    assert (body["to"], body["text"]["body"]) == (ANA_PHONE, EN_OPT_OUT)

    with pytest.raises(SendRefused) as refused:
        message_send_text(provider=meta, contact=ana(), text="Are you sure?")
    assert refused.value.code == "opted_out"
    assert len(fake_meta.requests) == 1


def test_stop_twice_confirms_once(meta):
    say(meta, "STOP")
    say(meta, "stop")
    assert ConsentEvent.objects.count() == 1
    assert platform_messages() == [("consent_confirmation", EN_OPT_OUT)]


@pytest.mark.parametrize(("opt_out", "opt_in", "texts"), [
    ("STOP", "START", [EN_OPT_OUT, EN_OPT_IN]),
    ("BAJA", "alta", [ES_OPT_OUT, ES_OPT_IN]),
])
def test_opting_back_in_lets_messages_through_again(meta, fake_meta, opt_out, opt_in, texts):
    say(meta, opt_out)
    say(meta, opt_in)

    contact = ana()
    assert (contact.consent, contact.consent_source) == ("opted_in", "keyword")
    assert list(ConsentEvent.objects.order_by("pk").values_list("previous_state", "state")) == [
        ("unknown", "opted_out"), ("opted_out", "opted_in")]
    assert platform_messages() == [("consent_confirmation", text) for text in texts]
    message = message_send_text(provider=meta, contact=contact, text="Welcome back")
    assert message.status == "queued"


@pytest.mark.parametrize("text", [
    "Please stop sending me the same invoice twice, thank you",  # too long to be a keyword
    "please stop",  # short, but not the keyword alone
    "STOP IT",
])
def test_a_message_that_only_contains_a_keyword_changes_nothing(meta, text):
    say(meta, text)
    assert ana().consent == "unknown"
    assert not ConsentEvent.objects.exists()
    assert platform_messages() == []


@pytest.mark.parametrize("language", ["pt", "pt_BR", "pt-BR", "PT"])
def test_a_word_in_two_languages_answers_in_the_contacts_language(meta, language):
    say(meta, "Hola")
    # CANCELAR is a keyword in Spanish and in Portuguese.
    Contact.objects.filter(pk=ana().pk).update(language=language)
    say(meta, "Cancelar")
    pt = ConsentKeyword.objects.get(language="pt", keyword="CANCELAR")
    assert platform_messages() == [("consent_confirmation", pt.confirmation)]
    assert ConsentEvent.objects.get().detail == "CANCELAR (pt)"


def test_keywords_are_configurable(meta):
    ConsentKeyword.objects.filter(keyword="STOP").update(is_active=False)
    keyword = ConsentKeyword.objects.create(language="it", keyword=" Basta! ", action="opt_out",
                                            confirmation="Non riceverai più messaggi da noi.")
    assert keyword.keyword == "BASTA"

    say(meta, "STOP")
    assert ana().consent == "unknown"
    say(meta, "basta")
    assert ana().consent == "opted_out"
    assert platform_messages() == [("consent_confirmation", "Non riceverai più messaggi da noi.")]


# --- provider errors ----------------------------------------------------------------------------------

def test_a_send_refused_with_131026_opts_the_contact_out(meta, fake_meta):
    contact = customer(meta)
    fake_meta.routes[fake_meta.send_path] = [meta_error(131026, 400, "Message undeliverable")]

    message = message_deliver(message_send_text(provider=meta, contact=contact, text="Your order shipped").pk)

    assert (message.status, message.error_code) == ("failed", "131026")
    contact.refresh_from_db()
    assert (contact.consent, contact.consent_source) == ("opted_out", "provider_error")
    event = ConsentEvent.objects.get(contact=contact)
    assert (event.source, event.message) == ("provider_error", message)
    assert event.detail.startswith("131026: undeliverable")
    with pytest.raises(SendRefused) as refused:
        message_send_text(provider=meta, contact=contact, text="Hello?")
    assert refused.value.code == "opted_out"
    assert len(fake_meta.requests) == 1


def test_other_permanent_errors_leave_consent_alone(meta, fake_meta):
    contact = customer(meta)
    fake_meta.routes[fake_meta.send_path] = [meta_error(131009, 400, "Parameter value is not valid")]
    message = message_deliver(message_send_text(provider=meta, contact=contact, text="x").pk)
    assert message.status == "failed"
    contact.refresh_from_db()
    assert contact.consent == "unknown" and not ConsentEvent.objects.exists()


@pytest.mark.parametrize(("code", "consent"), [(131026, "opted_out"), (131047, "unknown")])
def test_a_failed_status_report_with_131026_opts_the_contact_out(meta, fake_meta, code, consent):
    say(meta, "Hello")
    message = message_deliver(message_send_text(provider=meta, contact=ana(), text="Hi Ana").pk)
    assert message.status == "sent"

    deliver(meta, meta_failed_status(meta, message.provider_message_id, recipient=ANA_WA_ID, code=code))

    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", str(code))
    contact = ana()
    assert contact.consent == consent
    if consent == "opted_out":
        assert contact.consent_source == "provider_error"
        assert ConsentEvent.objects.get().message == message
    else:
        assert not ConsentEvent.objects.exists()


# --- people ---------------------------------------------------------------------------------------------

def test_an_admin_changes_consent_with_a_history_and_an_audit_entry(meta, superuser):
    contact = customer(meta)
    assert consent_set(contact=contact, state="opted_out", source=ConsentSource.ADMIN,
                       detail="asked by phone", actor=superuser)
    assert not consent_set(contact=contact, state="opted_out", source=ConsentSource.ADMIN, actor=superuser)
    assert consent_set(contact=contact, state="opted_in", source=ConsentSource.API, actor=superuser)

    contact.refresh_from_db()
    assert (contact.consent, contact.consent_source) == ("opted_in", "api")
    assert list(ConsentEvent.objects.order_by("pk").values_list("state", "source", "detail", "actor")) == [
        ("opted_out", "admin", "asked by phone", superuser.pk), ("opted_in", "api", "", superuser.pk)]
    audits = AuditLog.objects.filter(action="contact.consent").order_by("pk")
    assert [(a.actor, a.before, a.after["consent"]) for a in audits] == [
        (superuser, {"consent": "unknown"}, "opted_out"), (superuser, {"consent": "opted_out"}, "opted_in")]
