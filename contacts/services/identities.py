"""The identity ledger: how providers name a person, resolved to one contact."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from contacts.models import Contact, ContactIdentity
from contacts.phones import phone_to_e164
from contacts.services.mapping import mapping_auto_for_contact
from core.bulk import bulk_update_rows
from core.locks import lock_keys
from whatsapp.models import Provider
from whatsapp.providers.events import Identity, IdentityKind

logger = logging.getLogger(__name__)

# Business-scoped ids are only unique inside one business account, so they are stored with that
# account as their scope and two businesses' ids never merge. Twilio's ExternalUserId carries the
# business-scoped id too; a Chatwoot contact id is only unique inside its Chatwoot account.
SCOPED_KINDS = frozenset({IdentityKind.BUSINESS_SCOPED_ID, IdentityKind.PARENT_BUSINESS_SCOPED_ID,
                          IdentityKind.TWILIO_EXTERNAL_ID, IdentityKind.CHATWOOT_CONTACT_ID})
# The identities the auto-mapping rules look at.
MAPPABLE_KINDS = frozenset({IdentityKind.PHONE, IdentityKind.EMAIL})


def identity_normalize(identity: Identity, provider: Provider) -> Identity:
    value = identity.value.strip()
    if identity.kind == IdentityKind.PHONE:
        value = phone_to_e164(value)
    elif identity.kind == IdentityKind.EMAIL:
        value = value.lower()
    # A provider module may scope an id more finely itself (e.g. a Chatwoot installation and account).
    scope = identity.scope or (provider.business_account_id if identity.kind in SCOPED_KINDS else "")
    return Identity(identity.kind, value[:255], scope[:64])


def _known_identities(identities: list[Identity]) -> dict[Identity, ContactIdentity]:
    """The stored rows among these identities, in one query: an indexed IN on the values, the kinds and
    scopes matched here (cheaper to build than one OR term per identity)."""
    wanted = set(identities)
    rows = ContactIdentity.objects.select_related("contact").filter(value__in={i.value for i in wanted})
    return {key: row for row in rows if (key := Identity(row.kind, row.value, row.scope)) in wanted}


def _link_identities(contact: Contact, identities: Iterable[Identity]) -> None:
    # The identities are locked, so no one else links them meanwhile; ON CONFLICT DO NOTHING keeps a
    # database without advisory locks (SQLite, which serializes writers anyway) just as safe.
    ContactIdentity.objects.bulk_create(
        [ContactIdentity(contact=contact, kind=i.kind, value=i.value, scope=i.scope) for i in identities],
        ignore_conflicts=True,
    )


def _identity_lock_keys(identities: list[Identity]) -> list[tuple[object, ...]]:
    return [("contact-identity", i.kind, i.value, i.scope) for i in identities]


def _owner(normalized: list[Identity], known: dict[Identity, ContactIdentity]) -> Contact | None:
    """The contact the message's identities name: the first known one in the message's order. Two
    different contacts named by one message are left apart (a person merges them in the admin)."""
    owners = {known[i].contact_id: known[i].contact for i in normalized if i in known}
    if len(owners) > 1:
        logger.warning("one message names several contacts; not merged automatically",
                       extra={"contact_ids": sorted(owners)})
    return next((known[i].contact for i in normalized if i in known), None)


# savepoint=False: callers (inbound processing, a send) are already in a transaction and roll back as a whole.
@transaction.atomic(savepoint=False)
def contact_resolve(
    *, provider: Provider, identities: Iterable[Identity], profile_name: str = "", seen_at: datetime | None = None
) -> Contact:
    """
    The one contact these identities name: an existing one if any identity is known (new identities from
    the same message are linked to it), else a new contact. A contact that is new, or gains a phone or an
    email, is offered to the auto-mapping rules.

    Safe when two webhooks race: when anything is to be created, the identities are locked first (in a
    fixed order), so the second of two messages naming one person in different ways sees the first's rows.
    """
    profile_name = profile_name[:255]
    normalized = list(dict.fromkeys(identity_normalize(identity, provider)
                                    for identity in identities if identity.value))
    if not normalized:
        raise ValueError("a contact needs at least one identity")
    known = _known_identities(normalized)
    if len(known) < len(normalized):
        lock_keys(_identity_lock_keys(normalized))
        known = _known_identities(normalized)
    contact = _owner(normalized, known)
    created = contact is None
    if created:
        contact = Contact.objects.create(profile_name=profile_name, last_seen_at=seen_at)
    missing = [identity for identity in normalized if identity not in known]
    if missing:
        _link_identities(contact, missing)
    _refresh(contact, profile_name, seen_at)
    if any(identity.kind in MAPPABLE_KINDS for identity in missing):

        mapping_auto_for_contact(contact)
    return contact


def _refresh(contact: Contact, profile_name: str, seen_at: datetime | None) -> None:
    if changed := _refreshed(contact, profile_name, seen_at):
        contact.save(update_fields=changed)


@dataclass(frozen=True)
class ContactWanted:
    """One message's sender, for contacts_resolve_many."""

    identities: tuple[Identity, ...]
    profile_name: str = ""
    seen_at: datetime | None = None


# savepoint=False: like contact_resolve, called inside the caller's transaction.
@transaction.atomic(savepoint=False)
def contacts_resolve_many(*, provider: Provider, wanted: list[ContactWanted]) -> list[Contact]:
    """
    contact_resolve for many messages at once, in their order: one query finds every stored identity, the
    senders whose identities are all stored and name one contact are refreshed in one statement, and only
    the others (new people, new identities) go through contact_resolve one by one.
    """
    normalized = [list(dict.fromkeys(identity_normalize(identity, provider)
                                     for identity in want.identities if identity.value)) for want in wanted]
    known = _known_identities([identity for identities in normalized for identity in identities])
    contacts: list[Contact] = []
    unsaved: dict[int, tuple[Contact, set[str]]] = {}

    def save_refreshed() -> None:
        if unsaved:
            fields = sorted(set().union(*(changed for _, changed in unsaved.values())))
            bulk_update_rows([contact for contact, _ in unsaved.values()], fields)
            unsaved.clear()

    # One instance per contact, however many identity rows name it: each change lands on the one that is saved.
    instances: dict[int, Contact] = {}
    for want, identities in zip(wanted, normalized, strict=True):
        owners = {known[identity].contact_id for identity in identities if identity in known}
        if identities and len(owners) == 1 and all(identity in known for identity in identities):
            contact = instances.setdefault(owners.pop(), known[identities[0]].contact)
            if changed := _refreshed(contact, want.profile_name[:255], want.seen_at):
                unsaved.setdefault(contact.pk, (contact, set()))[1].update(changed)
        else:
            save_refreshed()  # contact_resolve reads the contact afresh: it must see what came before
            contact = contact_resolve(provider=provider, identities=want.identities, profile_name=want.profile_name,
                                      seen_at=want.seen_at)
            # From here on this batch knows the contact as contact_resolve left it, by the identities it linked
            # (an identity another contact owns stays that contact's: contact_resolve never merges two).
            instances[contact.pk] = contact
            for identity in identities:
                known.setdefault(identity, ContactIdentity(contact=contact, kind=identity.kind, value=identity.value,
                                                           scope=identity.scope))
        contacts.append(contact)
    save_refreshed()
    return contacts


def _refreshed(contact: Contact, profile_name: str, seen_at: datetime | None) -> list[str]:
    """_refresh without the save: the fields changed, for the caller to save with others."""
    changed = []
    if profile_name and contact.profile_name != profile_name:
        contact.profile_name = profile_name
        changed.append("profile_name")
    if seen_at and (contact.last_seen_at is None or seen_at > contact.last_seen_at):
        contact.last_seen_at = seen_at
        changed.append("last_seen_at")
    return changed
