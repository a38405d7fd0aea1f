"""Resolving many senders at once gives each message the contact resolving them one by one would."""

from datetime import UTC, datetime, timedelta

import pytest

from contacts.models import Contact
from contacts.services.identities import ContactWanted, contact_resolve, contacts_resolve_many
from whatsapp.providers.events import Identity, IdentityKind

pytestmark = pytest.mark.django_db

PHONE = Identity(IdentityKind.PHONE, "+15551230001")
USERNAME = Identity(IdentityKind.USERNAME, "ana.souza")
T1 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_an_identity_another_contact_owns_stays_with_it(sandbox_provider):
    by_phone = contact_resolve(provider=sandbox_provider, identities=[PHONE])
    by_username = contact_resolve(provider=sandbox_provider, identities=[USERNAME])

    # The first message names both (they are not merged), the second only the username.
    contacts = contacts_resolve_many(provider=sandbox_provider, wanted=[ContactWanted((PHONE, USERNAME)),
                                                                        ContactWanted((USERNAME,))])

    assert [c.pk for c in contacts] == [by_phone.pk, by_username.pk]
    assert Contact.objects.count() == 2


def test_every_change_to_one_contact_is_kept_whichever_identity_named_it(sandbox_provider):
    ana = contact_resolve(provider=sandbox_provider, identities=[PHONE, USERNAME], profile_name="A", seen_at=T1)

    contacts = contacts_resolve_many(provider=sandbox_provider, wanted=[
        ContactWanted((PHONE,), "Ana", T1 + timedelta(minutes=1)),
        ContactWanted((USERNAME,), "Ana Maria", T1 + timedelta(minutes=2)),
        ContactWanted((PHONE,), "", T1 + timedelta(seconds=30)),  # an older message arriving late
    ])

    assert {c.pk for c in contacts} == {ana.pk}
    ana.refresh_from_db()
    assert (ana.profile_name, ana.last_seen_at) == ("Ana Maria", T1 + timedelta(minutes=2))


def test_a_new_person_twice_is_one_new_contact(sandbox_provider):
    contacts = contacts_resolve_many(provider=sandbox_provider, wanted=[
        ContactWanted((Identity(IdentityKind.PHONE, "+1 555 200 0002"),), "Ben", T1),
        ContactWanted((Identity(IdentityKind.PHONE, "15552000002"),), "Ben O.", T1 + timedelta(minutes=1)),
    ])
    assert contacts[0].pk == contacts[1].pk
    assert Contact.objects.get().profile_name == "Ben O."
