from collections.abc import Iterable
from datetime import datetime

import phonenumbers
from django.db import IntegrityError, transaction
from django.db.models import Q

from contacts.models import Contact, ContactIdentity
from whatsapp.models import Provider
from whatsapp.providers.events import Identity, IdentityKind

# Business-scoped ids are only unique inside one business account, so they are stored with that
# account as their scope and two businesses' ids never merge. Twilio's ExternalUserId carries the
# business-scoped id too; a Chatwoot contact id is only unique inside its Chatwoot account.
SCOPED_KINDS = frozenset({IdentityKind.BUSINESS_SCOPED_ID, IdentityKind.PARENT_BUSINESS_SCOPED_ID,
                          IdentityKind.TWILIO_EXTERNAL_ID, IdentityKind.CHATWOOT_CONTACT_ID})


def phone_to_e164(raw: str) -> str:
    """'+1 (555) 123-0001' or '15551230001' -> '+15551230001'; unparseable input is kept digits-only."""
    text = raw.strip()
    candidate = text if text.startswith("+") else "+" + text
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in text if ch.isdigit())
        return "+" + digits if digits else text
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_parse_e164(raw: str) -> str:
    """A phone number someone asks us to send to, strictly: E.164 back, or ValueError saying why.
    Only the number's shape is checked (is_possible_number): WhatsApp itself says whether it exists."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text if text.startswith("+") else "+" + text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{raw!r} is not a possible phone number (wrong length for its country code)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


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
    """The stored rows among these identities, in one query."""
    match = Q(pk__in=[])
    for identity in identities:
        match |= Q(kind=identity.kind, value=identity.value, scope=identity.scope)
    rows = ContactIdentity.objects.select_related("contact").filter(match)
    return {Identity(row.kind, row.value, row.scope): row for row in rows}


def _link_identities(contact: Contact, identities: Iterable[Identity]) -> None:
    # ON CONFLICT DO NOTHING: an identity another request linked at the same moment stays with the
    # contact that holds it.
    ContactIdentity.objects.bulk_create(
        [ContactIdentity(contact=contact, kind=i.kind, value=i.value, scope=i.scope) for i in identities],
        ignore_conflicts=True,
    )


def contact_resolve(
    *, provider: Provider, identities: Iterable[Identity], profile_name: str = "", seen_at: datetime | None = None
) -> Contact:
    """
    The one contact these identities name: an existing one if any identity is known (new identities from
    the same message are linked to it), else a new contact. Safe when two webhooks race: the unique
    identity constraint lets only one insert win and the loser re-reads.
    """
    profile_name = profile_name[:255]
    normalized = list(dict.fromkeys(identity_normalize(identity, provider)
                                    for identity in identities if identity.value))
    if not normalized:
        raise ValueError("a contact needs at least one identity")
    known = _known_identities(normalized)
    linked = set(known)
    contact = next((known[identity].contact for identity in normalized if identity in known), None)
    if contact is None:
        try:
            with transaction.atomic():
                contact = Contact.objects.create(profile_name=profile_name, last_seen_at=seen_at)
                first = normalized[0]
                # The unique identity is what makes a race safe: only one of two parallel inserts wins.
                ContactIdentity.objects.create(contact=contact, kind=first.kind, value=first.value, scope=first.scope)
                linked.add(first)
        except IntegrityError:
            known = _known_identities(normalized)
            linked = set(known)
            contact = next((known[identity].contact for identity in normalized if identity in known), None)
            if contact is None:
                raise
    missing = [identity for identity in normalized if identity not in linked]
    if missing:
        _link_identities(contact, missing)
    changed = []
    if profile_name and contact.profile_name != profile_name:
        contact.profile_name = profile_name
        changed.append("profile_name")
    if seen_at and (contact.last_seen_at is None or seen_at > contact.last_seen_at):
        contact.last_seen_at = seen_at
        changed.append("last_seen_at")
    if changed:
        contact.save(update_fields=changed)
    return contact
