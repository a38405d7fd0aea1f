"""
Merging contacts that are one person: a phone-number contact and a business-scoped-id contact, each
made by a Meta webhook with its own conversation, become one contact with one conversation; mapping
and opt-out carry over; refused when they belong to different users.
"""

import pytest
from django.contrib.auth import get_user_model

from contacts.models import ConsentEvent, Contact, ContactUserMapping
from contacts.services.mapping import contact_map_to_user
from contacts.services.merge import MergeRefused, contacts_merge
from core.models import AuditLog
from tests.contacts.conftest import (
    ANA_BSUID,
    ANA_PHONE,
    ANA_WA_ID,
    contact_named,
    deliver,
    identities_of,
    meta_text,
    other_business,
)
from whatsapp.models import Conversation, Message, Session
from whatsapp.services.delivery import message_deliver
from whatsapp.services.outbound import message_send_text

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def two_contacts(meta):
    """Ana wrote from her phone, then (phone hidden) with her business-scoped id: two contacts so far."""
    deliver(meta, meta_text(meta, "Hi from my phone", wa_id=ANA_WA_ID, name="Ana"))
    deliver(meta, meta_text(meta, "Hi again", user_id=ANA_BSUID, name="Ana P."))
    by_phone, by_id = contact_named("phone", ANA_PHONE), contact_named("bsuid", ANA_BSUID, meta.business_account_id)
    assert by_phone != by_id
    return by_phone, by_id


def test_merging_folds_identities_conversations_messages_mapping_and_opt_out_into_one(meta, two_contacts,
                                                                                    superuser):
    by_phone, by_id = two_contacts
    reply = message_send_text(provider=meta, contact=by_phone, text="How can we help?")
    deliver(meta, meta_text(meta, "STOP", user_id=ANA_BSUID))  # said to the id contact only
    ana = User.objects.create_user("ana")
    contact_map_to_user(contact=by_id, user=ana, actor=superuser)
    assert Session.objects.filter(state="open").count() == 2
    last_message_at_before = list(Conversation.objects.values_list("last_message_at", flat=True))

    survivor = contacts_merge(survivor=by_phone, others=[by_id], actor=superuser)

    assert list(Contact.objects.all()) == [survivor] and survivor.pk == by_phone.pk
    assert identities_of(survivor) == {("phone", ANA_PHONE, ""), ("whatsapp_id", ANA_WA_ID, ""),
                                       ("bsuid", ANA_BSUID, meta.business_account_id)}
    conversation = Conversation.objects.get()
    assert conversation.contact == survivor
    assert sorted(conversation.messages.values_list("text", flat=True)) == sorted(
        ["Hi from my phone", "Hi again", "STOP", "How can we help?"])
    assert conversation.last_message_at >= max(last_message_at_before)
    assert Session.objects.filter(conversation=conversation).count() == 2
    assert Session.objects.filter(state="open").count() == 1
    assert ContactUserMapping.objects.get().contact == survivor
    assert (survivor.consent, survivor.consent_source) == ("opted_out", "keyword")
    assert ConsentEvent.objects.get().contact == survivor
    assert survivor.profile_name == "Ana"

    audit = AuditLog.objects.get(action="contact.merge")
    assert (audit.actor, audit.object_id) == (superuser, str(survivor.pk))
    assert audit.before["merged"][0]["id"] == by_id.pk and audit.before["merged"][0]["consent"] == "opted_out"
    assert audit.after["user"] == ana.pk and len(audit.after["identities"]) == 3

    # The STOP said to the other contact holds: the reply queued before the merge is not sent.
    sent = message_deliver(reply.pk)
    assert (sent.status, sent.error_code) == ("failed", "opted_out")

    # The next message naming her either way reaches the one contact.
    deliver(meta, meta_text(meta, "After the merge", user_id=ANA_BSUID))
    deliver(meta, meta_text(meta, "And by phone", wa_id=ANA_WA_ID, user_id=ANA_BSUID))
    assert Contact.objects.count() == 1 and Conversation.objects.get().messages.count() == 6


def test_contacts_mapped_to_different_users_are_not_merged(two_contacts, superuser):
    by_phone, by_id = two_contacts
    contact_map_to_user(contact=by_phone, user=User.objects.create_user("ana"), actor=superuser)
    contact_map_to_user(contact=by_id, user=User.objects.create_user("bea"), actor=superuser)

    with pytest.raises(MergeRefused, match="different users"):
        contacts_merge(survivor=by_phone, others=[by_id], actor=superuser)

    assert Contact.objects.count() == 2 and Conversation.objects.count() == 2
    assert dict(ContactUserMapping.objects.values_list("contact", "user__username")) == {by_phone.pk: "ana",
                                                                                          by_id.pk: "bea"}
    assert not AuditLog.objects.filter(action="contact.merge").exists()


def test_contacts_mapped_to_the_same_user_merge_keeping_one_mapping(two_contacts, superuser):
    by_phone, by_id = two_contacts
    ana = User.objects.create_user("ana")
    contact_map_to_user(contact=by_phone, user=ana, actor=superuser)
    contact_map_to_user(contact=by_id, user=ana, actor=superuser)
    contacts_merge(survivor=by_id, others=[by_phone], actor=superuser)
    mapping = ContactUserMapping.objects.get()
    assert (mapping.contact_id, mapping.user) == (by_id.pk, ana)
    assert ("phone", ANA_PHONE, "") in identities_of(mapping.contact)


def test_a_contact_cannot_be_merged_with_itself(two_contacts, superuser):
    by_phone, _ = two_contacts
    with pytest.raises(MergeRefused):
        contacts_merge(survivor=by_phone, others=[by_phone], actor=superuser)
    assert Contact.objects.count() == 2


def test_conversations_with_different_numbers_stay_apart_under_the_survivor(meta, fake_meta, superuser):
    other = other_business()
    deliver(meta, meta_text(meta, "To the first number", wa_id=ANA_WA_ID))
    deliver(other, meta_text(other, "To the second number", user_id=ANA_BSUID), secret="other-app-secret")
    by_phone = contact_named("phone", ANA_PHONE)
    by_id = contact_named("bsuid", ANA_BSUID, other.business_account_id)

    survivor = contacts_merge(survivor=by_phone, others=[by_id], actor=superuser)

    assert set(Conversation.objects.values_list("provider", "contact")) == {(meta.pk, survivor.pk),
                                                                             (other.pk, survivor.pk)}
    assert Session.objects.filter(state="open").count() == 2  # one window per number
    assert Message.objects.filter(conversation__contact=survivor).count() == 2
