"""
Mapping contacts to the business's own users: the auto rules (same phone, same email) whichever of
the two appears first, the ambiguous case, suggestions for the unmapped queue, and the changes people
make (map, unmap, ignore, create a user), each audited.
"""

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.models import Contact, ContactIdentity, ContactUserMapping, UserProfile
from contacts.services.identities import contact_resolve
from contacts.services.mapping import (
    MappingConflict,
    contact_create_user,
    contact_map_to_user,
    contacts_ignore,
    mapping_delete,
    suggestions_for,
    unmapped_contacts,
    user_phone_set,
)
from core.models import AuditLog
from tests.contacts.conftest import (
    ANA_PHONE,
    ANA_WA_ID,
    contact_named,
    deliver,
    meta_text,
    process,
    webhook_receive,
)
from tests.signing import chatwoot_headers, make_chatwoot
from whatsapp.providers.events import Identity, IdentityKind

pytestmark = pytest.mark.django_db

User = get_user_model()


def make_user(username: str, *, phone: str = "", email: str = "", first: str = "", last: str = "",
              active: bool = True):
    user = User.objects.create_user(username, email=email, first_name=first, last_name=last, is_active=active)
    if phone:
        user_phone_set(user, phone)
    return user


def map_audits(contact: Contact) -> list[AuditLog]:
    return list(AuditLog.objects.filter(action="contact.map", object_type="contacts.Contact",
                                        object_id=str(contact.pk)).order_by("pk"))


def suggested(contact: Contact) -> list[tuple[str, tuple[str, ...]]]:
    page = list(Contact.objects.filter(pk=contact.pk).prefetch_related("identities"))
    return [(s.user.username, s.reasons) for s in suggestions_for(page)[contact.pk]]


# --- the phone rule ------------------------------------------------------------------------------------

def test_a_contact_writing_from_a_users_phone_is_mapped_to_that_user(meta):
    ana = make_user("ana", phone="+1 650-555-1234")
    assert UserProfile.objects.get(user=ana).phone_number == ANA_PHONE

    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID))

    contact = contact_named("phone", ANA_PHONE)
    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.method, mapping.rule, mapping.created_by) == (ana, "auto", "same phone", None)
    assert contact not in unmapped_contacts()
    (audit,) = map_audits(contact)
    assert (audit.actor, audit.actor_label) == (None, "auto rule")
    assert (audit.before, audit.after) == ({"user": None}, {"user": ana.pk, "method": "auto", "rule": "same phone"})


def test_a_user_given_the_phone_later_gets_the_contact_that_was_waiting(meta):
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID))
    contact = contact_named("phone", ANA_PHONE)
    assert list(unmapped_contacts()) == [contact]

    ana = make_user("ana")
    assert not ContactUserMapping.objects.exists()
    user_phone_set(ana, "+16505551234")  # saving the profile runs the rules

    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.method, mapping.rule) == (ana, "auto", "same phone")
    assert list(unmapped_contacts()) == []
    assert len(map_audits(contact)) == 1


def test_a_business_id_contact_is_mapped_once_a_message_brings_its_phone(meta):
    ana = make_user("ana", phone=ANA_PHONE)
    deliver(meta, meta_text(meta, user_id="US.555"))
    contact = contact_named("bsuid", "US.555", meta.business_account_id)
    assert not ContactUserMapping.objects.filter(contact=contact).exists()

    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID, user_id="US.555"))
    assert ContactUserMapping.objects.get(contact=contact).user == ana


# --- the email rule ------------------------------------------------------------------------------------

def chatwoot_contact_event(provider, *, contact_id: int, email: str, name: str = "Beatriz Lima") -> int:
    body = json.dumps({"event": "contact_created", "id": contact_id, "name": name, "email": email,
                       "phone_number": None, "identifier": None, "account": {"id": 3, "name": "Acme Support"},
                       "additional_attributes": {}, "custom_attributes": {}}).encode()
    return webhook_receive(provider, body, chatwoot_headers(body))


def test_a_chatwoot_contact_with_a_users_email_is_mapped_to_that_user():
    chatwoot = make_chatwoot()
    beatriz = make_user("beatriz", email="Beatriz@Example.com")

    process(chatwoot_contact_event(chatwoot, contact_id=412, email="beatriz@example.COM"))

    contact = ContactIdentity.objects.get(kind="chatwoot_contact_id", value="412").contact
    assert set(contact.identities.values_list("kind", "value")) == {("chatwoot_contact_id", "412"),
                                                                    ("email", "beatriz@example.com")}
    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.method, mapping.rule) == (beatriz, "auto", "same email")
    assert map_audits(contact)[0].after["rule"] == "same email"


def test_a_user_created_with_the_email_of_a_waiting_contact_gets_it(meta):
    contact = contact_resolve(provider=meta, identities=[Identity(IdentityKind.EMAIL, "carla@example.com")],
                              profile_name="Carla")
    assert not ContactUserMapping.objects.exists()

    carla = make_user("carla", email="CARLA@example.com")  # saving the user runs the rules

    assert ContactUserMapping.objects.get(contact=contact).user == carla
    assert len(map_audits(contact)) == 1


def test_phone_and_email_of_one_user_give_one_mapping_naming_both_rules(meta):
    ana = make_user("ana", phone=ANA_PHONE, email="ana@example.com")
    contact = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, ANA_PHONE),
                                                         Identity(IdentityKind.EMAIL, "ana@example.com")])
    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.rule) == (ana, "same phone and same email")


# --- ambiguous, inactive, already mapped ------------------------------------------------------------

def test_two_users_with_the_same_phone_map_neither_and_both_are_suggested(meta):
    first = make_user("ana.home", phone=ANA_PHONE)
    second = make_user("ana.work", phone=ANA_PHONE)

    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID, name="Someone"))

    contact = contact_named("phone", ANA_PHONE)
    assert not ContactUserMapping.objects.exists()
    assert list(unmapped_contacts()) == [contact]
    assert suggested(contact) == [("ana.home", ("same phone",)), ("ana.work", ("same phone",))]
    assert {first.pk, second.pk} == {s.user.pk for s in suggestions_for([contact])[contact.pk]}
    assert not AuditLog.objects.filter(action="contact.map").exists()


def test_a_phone_and_an_email_pointing_at_different_users_map_neither(meta):
    make_user("ana", phone=ANA_PHONE)
    make_user("bea", email="bea@example.com")
    contact = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, ANA_PHONE),
                                                         Identity(IdentityKind.EMAIL, "bea@example.com")])
    assert not ContactUserMapping.objects.exists()
    assert suggested(contact) == [("ana", ("same phone",)), ("bea", ("same email",))]


def test_a_second_user_taking_the_phone_later_does_not_touch_the_existing_mapping(meta):
    ana = make_user("ana", phone=ANA_PHONE)
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID))
    make_user("ana.twin", phone=ANA_PHONE)
    assert ContactUserMapping.objects.get().user == ana
    assert len(AuditLog.objects.filter(action="contact.map")) == 1


def test_a_similar_name_is_suggested_but_never_mapped(meta):
    make_user("blima", first="Beatriz", last="Lima")
    make_user("cmendes", first="Carlos", last="Mendes")
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID, name="Beatriz Lima"))

    contact = contact_named("phone", ANA_PHONE)
    assert not ContactUserMapping.objects.exists()
    assert suggested(contact) == [("blima", ("similar name",))]


def test_inactive_users_are_neither_mapped_nor_suggested_until_they_are_active_again(meta):
    ana = make_user("ana", phone=ANA_PHONE, email="ana@example.com", first="Ana", last="Pereira", active=False)
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID, name="Ana Pereira"))
    contact = contact_named("phone", ANA_PHONE)
    assert not ContactUserMapping.objects.exists()
    assert suggested(contact) == []

    ana.is_active = True
    ana.save(update_fields=["is_active"])
    assert ContactUserMapping.objects.get(contact=contact).user == ana


def test_a_login_does_not_run_the_rules(meta):
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID))
    ana = make_user("ana")
    UserProfile.objects.bulk_create([UserProfile(user=ana, phone_number=ANA_PHONE)])  # no save, no signal
    ana.save(update_fields=["last_login"])
    assert not ContactUserMapping.objects.exists()


def test_suggestions_for_a_page_take_the_same_few_queries_whatever_its_size(meta):
    for index in range(12):
        make_user(f"user{index}", phone=f"+1650555{index:04d}", email=f"user{index}@example.com",
                  first=f"Name{index}", last="Surname")
        contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, f"+1650555{index:04d}"),
                                                   Identity(IdentityKind.EMAIL, f"user{index}@example.com")],
                        profile_name=f"Name{index} Surname")
    ContactUserMapping.objects.all().delete()  # back to the queue, with suggestions to find

    def queries_for(size: int) -> int:
        page = list(unmapped_contacts().prefetch_related("identities")[:size])
        with CaptureQueriesContext(connection) as queries:
            found = suggestions_for(page)
        assert all(found[contact.pk] for contact in page)
        return len(queries)

    assert queries_for(2) == queries_for(12) <= 3


# --- changes made by people --------------------------------------------------------------------------

@pytest.fixture
def waiting_contact(meta):
    deliver(meta, meta_text(meta, wa_id=ANA_WA_ID, name="Ana Pereira"))
    return contact_named("phone", ANA_PHONE)


def test_manual_mapping_is_recorded_with_who_made_it(waiting_contact, superuser):
    ana = make_user("ana")
    mapping = contact_map_to_user(contact=waiting_contact, user=ana, actor=superuser, notify_on_ready=True)
    assert (mapping.method, mapping.created_by, mapping.notify_on_ready) == ("manual", superuser, True)
    (audit,) = map_audits(waiting_contact)
    assert (audit.actor, audit.before, audit.after) == (superuser, {"user": None},
                                                        {"user": ana.pk, "method": "manual", "rule": ""})
    assert waiting_contact not in unmapped_contacts()


def test_mapping_to_another_user_needs_replace(waiting_contact, superuser):
    ana, bea = make_user("ana"), make_user("bea")
    contact_map_to_user(contact=waiting_contact, user=ana, actor=superuser)
    with pytest.raises(MappingConflict, match="already mapped to ana"):
        contact_map_to_user(contact=waiting_contact, user=bea, actor=superuser)
    assert ContactUserMapping.objects.get().user == ana

    contact_map_to_user(contact=waiting_contact, user=bea, actor=superuser, replace=True)
    assert ContactUserMapping.objects.get().user == bea
    assert [(a.before["user"], a.after["user"]) for a in map_audits(waiting_contact)] == [(None, ana.pk),
                                                                                          (ana.pk, bea.pk)]


def test_mapping_again_to_the_verified_user_keeps_the_verification(waiting_contact, superuser):
    ana = make_user("ana")
    verified = contact_map_to_user(contact=waiting_contact, user=ana, actor=None, method="verified",
                                   rule="one-time code")
    ContactUserMapping.objects.filter(pk=verified.pk).update(verified_at=verified.created_at)
    again = contact_map_to_user(contact=waiting_contact, user=ana, actor=superuser, notify_on_ready=True)
    again.refresh_from_db()
    assert (again.method, again.rule, again.verified_at, again.notify_on_ready) == (
        "verified", "one-time code", verified.created_at, True)


def test_removing_a_mapping_puts_the_contact_back_in_the_queue(waiting_contact, superuser):
    mapping = contact_map_to_user(contact=waiting_contact, user=make_user("ana"), actor=superuser)
    mapping_delete(mapping=mapping, actor=superuser)
    assert list(unmapped_contacts()) == [waiting_contact]
    audit = AuditLog.objects.get(action="contact.unmap")
    assert (audit.actor, audit.object_id, audit.after) == (superuser, str(waiting_contact.pk), {"user": None})


def test_ignoring_takes_contacts_out_of_the_queue_and_mapping_brings_them_back_in_view(meta, waiting_contact,
                                                                                        superuser):
    other = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "+16505559999")])
    assert contacts_ignore(contacts=[waiting_contact, other], actor=superuser) == 2
    assert contacts_ignore(contacts=[waiting_contact], actor=superuser) == 0  # already ignored: no change
    assert list(unmapped_contacts()) == []
    assert AuditLog.objects.filter(action="contact.ignore", actor=superuser).count() == 2

    assert contacts_ignore(contacts=[other], actor=superuser, ignored=False) == 1
    assert list(unmapped_contacts()) == [other]
    assert AuditLog.objects.filter(action="contact.unignore").count() == 1

    contact_map_to_user(contact=waiting_contact, user=make_user("ana"), actor=superuser)
    waiting_contact.refresh_from_db()
    assert not waiting_contact.is_ignored


def test_creating_a_user_from_a_contact_maps_it_to_the_new_user(meta, waiting_contact, superuser):
    mapping = contact_create_user(contact=waiting_contact, actor=superuser)
    user = mapping.user
    assert (user.username, user.first_name, user.last_name, user.has_usable_password()) == (
        "ana.pereira", "Ana", "Pereira", False)
    assert UserProfile.objects.get(user=user).phone_number == ANA_PHONE
    assert (mapping.contact, mapping.method, mapping.rule, mapping.created_by) == (
        waiting_contact, "manual", "user created from the contact", superuser)
    assert AuditLog.objects.filter(action="user.create_from_contact", actor=superuser,
                                   object_id=str(user.pk)).exists()
    assert map_audits(waiting_contact)[-1].after == {"user": user.pk, "method": "manual",
                                                     "rule": "user created from the contact"}

    namesake = contact_resolve(provider=meta, identities=[Identity(IdentityKind.PHONE, "+16505550000")],
                               profile_name="Ana Pereira")
    assert contact_create_user(contact=namesake, actor=superuser).user.username == "ana.pereira2"


def test_creating_a_user_from_a_contact_with_an_email_gives_the_user_that_email(meta, superuser):
    contact = contact_resolve(provider=meta, identities=[Identity(IdentityKind.EMAIL, "dora@example.com")],
                              profile_name="Dora")
    mapping = contact_create_user(contact=contact, actor=superuser)
    assert (mapping.user.username, mapping.user.email, mapping.method) == ("dora", "dora@example.com", "manual")
    assert ContactUserMapping.objects.count() == 1
