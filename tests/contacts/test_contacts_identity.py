"""
The identity ledger: how Meta names a sender (a phone number, and since 2026 a business-scoped user id
with or without the phone) resolved to one contact, driven through signed Meta webhooks processed by
the webhook inbox, and two webhooks for one new person racing in two threads on real PostgreSQL.
(The Meta payload builders and `deliver` are in tests/contacts/conftest.py, `in_threads` in tests/conftest.py.)
"""

import pytest

from contacts.models import Contact
from contacts.phones import phone_parse_e164, phone_to_e164
from contacts.services.identities import contact_resolve
from tests.conftest import in_threads
from tests.contacts.conftest import (
    ANA_BSUID,
    ANA_PARENT_BSUID,
    ANA_PHONE,
    ANA_WA_ID,
    META_WABA,
    contact_named,
    deliver,
    identities_of,
    meta_text,
    other_business,
    webhook_post,
)
from whatsapp.models import Conversation, Message, Provider, Session, WebhookEvent
from whatsapp.providers.events import Identity, IdentityKind
from whatsapp.services.webhooks import webhook_event_process

# --- one message, several identities ------------------------------------------------------------------

@pytest.mark.django_db
def test_phone_and_business_scoped_id_in_one_message_make_one_contact_with_both(meta):
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID, user_id=ANA_BSUID, parent_user_id=ANA_PARENT_BSUID,
                            username="@ana.p"))
    contact = Contact.objects.get()
    assert contact.profile_name == "Ana Pereira"
    assert identities_of(contact) == {
        ("phone", ANA_PHONE, ""), ("whatsapp_id", ANA_WA_ID, ""),
        # Business-scoped ids carry the business account they belong to.
        ("bsuid", ANA_BSUID, META_WABA), ("bsuid_parent", ANA_PARENT_BSUID, META_WABA),
        ("username", "@ana.p", ""),
    }
    message = Message.objects.get()
    assert (message.conversation.contact, message.text) == (contact, "Hello")


@pytest.mark.django_db
def test_business_scoped_id_only_sender_gets_a_contact_without_a_phone(meta):
    deliver(meta, meta_text(meta, "no phone number here", user_id=ANA_BSUID, name="Dani"))
    contact = Contact.objects.get()
    assert identities_of(contact) == {("bsuid", ANA_BSUID, META_WABA)}
    assert not contact.identities.filter(kind__in=["phone", "whatsapp_id"]).exists()
    message = Message.objects.get()
    assert (message.conversation.contact, message.text) == (contact, "no phone number here")
    assert Session.objects.get(conversation__contact=contact).state == "open"

    deliver(meta, meta_text(meta, "still me", user_id=ANA_BSUID, name="Dani"))
    assert Contact.objects.count() == 1
    assert list(Message.objects.order_by("pk").values_list("conversation__contact", flat=True)) == [contact.pk] * 2


@pytest.mark.django_db
def test_the_same_business_scoped_id_at_two_businesses_makes_two_contacts(meta, fake_meta):
    other = other_business()
    deliver(meta, meta_text(meta, "to the first business", user_id=ANA_BSUID))
    deliver(other, meta_text(other, "to the second business", user_id=ANA_BSUID), secret="other-app-secret")

    first, second = contact_named("bsuid", ANA_BSUID, META_WABA), contact_named("bsuid", ANA_BSUID, "300400500600700")
    assert first != second and Contact.objects.count() == 2
    assert Message.objects.get(text="to the first business").conversation.contact == first
    assert Message.objects.get(text="to the second business").conversation.contact == second
    assert set(Conversation.objects.values_list("provider", "contact")) == {(meta.pk, first.pk), (other.pk, second.pk)}


@pytest.mark.django_db
def test_a_phone_number_is_one_person_across_businesses(meta, fake_meta):
    other = other_business()
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID))
    deliver(other, meta_text(other, wa_id=ANA_WA_ID), secret="other-app-secret")
    contact = Contact.objects.get()
    assert Conversation.objects.filter(contact=contact).count() == 2


@pytest.mark.django_db
def test_a_later_message_with_phone_and_business_id_links_the_id_to_the_phone_contact(meta):
    deliver(meta, meta_text(meta, "first, before 2026", wa_id=ANA_WA_ID))
    contact = Contact.objects.get()
    deliver(meta, meta_text(meta, "now with my user id", wa_id=ANA_WA_ID, user_id=ANA_BSUID))

    assert Contact.objects.get() == contact
    assert ("bsuid", ANA_BSUID, META_WABA) in identities_of(contact)
    # One thread and one window for the person.
    assert Conversation.objects.get().contact == contact
    assert Message.objects.filter(conversation__contact=contact).count() == 2
    assert Session.objects.filter(state="open").count() == 1

    # From now on the business-scoped id alone finds the same contact.
    deliver(meta, meta_text(meta, "phone hidden now", user_id=ANA_BSUID))
    assert Contact.objects.count() == 1
    assert Message.objects.get(text="phone hidden now").conversation.contact == contact


@pytest.mark.django_db
def test_a_business_id_contact_gains_the_phone_when_a_message_names_both(meta):
    deliver(meta, meta_text(meta, "id only", user_id=ANA_BSUID))
    contact = Contact.objects.get()
    deliver(meta, meta_text(meta, "both", wa_id=ANA_WA_ID, user_id=ANA_BSUID))
    assert Contact.objects.get() == contact
    assert {("phone", ANA_PHONE, ""), ("whatsapp_id", ANA_WA_ID, "")} <= identities_of(contact)


@pytest.mark.django_db
def test_a_message_naming_two_existing_contacts_does_not_merge_them(meta):
    deliver(meta, meta_text(meta, "phone contact", wa_id=ANA_WA_ID))
    deliver(meta, meta_text(meta, "id contact", user_id=ANA_BSUID))
    phone_contact, id_contact = contact_named("phone", ANA_PHONE), contact_named("bsuid", ANA_BSUID, META_WABA)
    assert phone_contact != id_contact

    deliver(meta, meta_text(meta, "both at once", wa_id=ANA_WA_ID, user_id=ANA_BSUID))
    # Merging is a person's decision (the admin's merge action); the message goes to the first one named.
    assert Contact.objects.count() == 2
    assert contact_named("bsuid", ANA_BSUID, META_WABA) == id_contact
    assert Message.objects.get(text="both at once").conversation.contact == phone_contact


@pytest.mark.django_db
def test_contact_resolve_normalizes_phones_and_emails(meta):
    contact = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "+1 (650) 555-1234"),
                                                         Identity(IdentityKind.EMAIL, " Ana@Example.COM ")])
    assert identities_of(contact) == {("phone", ANA_PHONE, ""), ("email", "ana@example.com", "")}
    again = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "16505551234")])
    assert again == contact
    with pytest.raises(ValueError):
        contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "")])


def test_phone_helpers():
    assert phone_to_e164("+44 20 7946 0958") == "+442079460958"
    assert phone_to_e164("5511987650001") == "+5511987650001"
    assert phone_parse_e164("  +55 11 98765-0001 ") == "+5511987650001"
    for bad in ("not a number", "+1 23", ""):
        with pytest.raises(ValueError):
            phone_parse_e164(bad)


# --- races: two webhooks for one new person at the same moment ----------------------------------------

def _race_webhooks(provider: Provider, first: bytes, second: bytes) -> list[WebhookEvent]:
    # Both requests are stored (committed) first, as the webhook view does; then two workers take one each.
    events = [webhook_post(provider, first), webhook_post(provider, second)]
    processed = in_threads(*(lambda event_id=event_id: webhook_event_process(event_id) for event_id in events))
    assert [(event.status, event.last_error) for event in processed] == [("processed", "")] * 2
    return processed


@pytest.mark.django_db(transaction=True)
def test_two_webhooks_for_a_new_contact_at_once_make_one_contact(meta):
    for attempt in range(5):
        wa_id, bsuid = f"1650555{attempt:04d}", f"US.9000{attempt}"
        _race_webhooks(meta, meta_text(meta, "first", wa_id=wa_id, user_id=bsuid),
                       meta_text(meta, "second", wa_id=wa_id, user_id=bsuid))
        contact = contact_named("phone", f"+{wa_id}")
        assert Contact.objects.filter(identities__value__in=[f"+{wa_id}", bsuid]).distinct().count() == 1
        assert identities_of(contact) >= {("phone", f"+{wa_id}", ""), ("bsuid", bsuid, META_WABA)}
        conversation = Conversation.objects.get(contact=contact)
        assert conversation.messages.count() == 2
        assert Session.objects.filter(conversation=conversation, state="open").count() == 1
    assert Contact.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_two_webhooks_naming_a_new_contact_differently_make_one_contact(meta):
    for attempt in range(5):
        wa_id, bsuid = f"1650556{attempt:04d}", f"US.9100{attempt}"
        # One message knows only the phone; the other knows the phone and the business-scoped id.
        _race_webhooks(meta, meta_text(meta, "phone only", wa_id=wa_id),
                       meta_text(meta, "phone and id", wa_id=wa_id, user_id=bsuid))
        contact = contact_named("phone", f"+{wa_id}")
        assert contact_named("bsuid", bsuid, META_WABA) == contact
        assert Message.objects.filter(conversation__contact=contact).count() == 2
    assert Contact.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_identities_in_opposite_orders_at_once_resolve_to_one_contact(meta):
    for attempt in range(5):
        phone = Identity(IdentityKind.PHONE, f"+1650557{attempt:04d}")
        bsuid = Identity(IdentityKind.BUSINESS_SCOPED_ID, f"US.9200{attempt}")
        first, second = in_threads(
            lambda phone=phone, bsuid=bsuid: contact_resolve(provider=meta, identities=[phone, bsuid]),
            lambda phone=phone, bsuid=bsuid: contact_resolve(provider=meta, identities=[bsuid, phone]))
        assert first.pk == second.pk
        assert identities_of(first) == {("phone", phone.value, ""), ("bsuid", bsuid.value, META_WABA)}
    assert Contact.objects.count() == 5
