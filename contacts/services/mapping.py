"""
Mapping contacts to the business's own users: the auto rules, manual mapping, the unmapped-contacts
queue and the users it suggests. Every change is audited.

Auto rules (run when a contact gains a phone or email identity, and when a user or their profile is
saved): a user's profile phone equals a contact's phone identity; a user's email equals a contact's
email identity (Chatwoot contacts carry one). A contact that matches more than one user is ambiguous
and is never auto-mapped: it waits in the queue with those users as suggestions.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Lower, Upper

from contacts.models import Contact, ContactIdentity, ContactUserMapping, UserProfile
from contacts.phones import phone_parse_e164
from core.audit import audit_record
from whatsapp.providers.events import IdentityKind

logger = logging.getLogger(__name__)

RULE_PHONE = "same phone"
RULE_EMAIL = "same email"
RULE_NAME = "similar name"
RULE_CREATED = "user created from the contact"
# How alike a contact's name and a user's full name must be to be suggested (difflib ratio).
NAME_SIMILARITY_MIN = 0.8
SUGGESTIONS_MAX = 3


class MappingConflict(Exception):
    """The contact is already mapped to another user."""


@dataclass(frozen=True)
class Suggestion:
    user: Any
    reasons: tuple[str, ...]


def user_label(user) -> str:
    """'Ana Souza <asouza>', or the username alone when the user has no name."""
    full_name = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return f"{full_name} <{user.get_username()}>" if full_name else user.get_username()


def unmapped_contacts() -> QuerySet[Contact]:
    """The queue: contacts with no mapping that nobody chose to ignore, newest first."""
    # NOT EXISTS rather than a LEFT JOIN ... IS NULL: PostgreSQL then walks the queue index newest first
    # and stops at the page's end, instead of sorting every contact (92 ms -> 0.4 ms at 100,000).
    has_mapping = ContactUserMapping.objects.filter(contact=OuterRef("pk"))
    return Contact.objects.filter(~Exists(has_mapping), is_ignored=False).order_by("-created_at", "-id")


# --- matching ----------------------------------------------------------------------------------

def _identity_values(contact: Contact, kind: str) -> list[str]:
    """The contact's identities of a kind, from a prefetch when the caller made one."""
    return [identity.value for identity in contact.identities.all() if identity.kind == kind]


def _users_by_phone(phones: set[str]) -> dict[str, set]:
    found: dict[str, set] = {}
    if phones:
        for profile in UserProfile.objects.select_related("user").filter(phone_number__in=phones,
                                                                           user__is_active=True):
            found.setdefault(profile.phone_number, set()).add(profile.user)
    return found


def _users_by_email(emails: set[str]) -> dict[str, set]:
    found: dict[str, set] = {}
    if emails:
        users = (get_user_model().objects.annotate(email_lower=Lower("email"))
                 .filter(email_lower__in=emails, is_active=True))
        for user in users:
            found.setdefault(user.email_lower, set()).add(user)
    return found


def _matches(contact: Contact, by_phone: dict[str, set], by_email: dict[str, set]) -> dict[Any, list[str]]:
    """The users a contact's phone and email identities point at, with the rules that matched."""
    reasons: dict[Any, list[str]] = {}
    for phone in _identity_values(contact, IdentityKind.PHONE):
        for user in by_phone.get(phone, ()):
            reasons.setdefault(user, []).append(RULE_PHONE)
    for email in _identity_values(contact, IdentityKind.EMAIL):
        for user in by_email.get(email, ()):
            reasons.setdefault(user, []).append(RULE_EMAIL)
    return reasons


def _auto_match(contact: Contact) -> tuple[Any, list[str]] | None:
    phones = set(_identity_values(contact, IdentityKind.PHONE))
    emails = set(_identity_values(contact, IdentityKind.EMAIL))
    matches = _matches(contact, _users_by_phone(phones), _users_by_email(emails))
    if len(matches) != 1:
        if matches:
            logger.info("contact matches several users; left for a person to map",
                        extra={"contact_id": contact.pk, "user_ids": sorted(user.pk for user in matches)})
        return None
    return next(iter(matches.items()))


@transaction.atomic(savepoint=False)
def mapping_auto_for_contact(contact: Contact) -> ContactUserMapping | None:
    """Map an unmapped contact by the auto rules when exactly one user matches."""
    if ContactUserMapping.objects.filter(contact=contact).exists():
        return None
    match = _auto_match(Contact.objects.prefetch_related("identities").get(pk=contact.pk))
    if match is None:
        return None
    user, rules = match
    return _create_mapping(contact=contact, user=user, method=ContactUserMapping.Method.AUTO,
                           rule=" and ".join(dict.fromkeys(rules)), actor=None)


@transaction.atomic(savepoint=False)
def mapping_auto_for_user(user) -> list[ContactUserMapping]:
    """A user appeared or changed: map the unmapped contacts that now match them (and only them)."""
    if not user.is_active:
        return []
    match = Q(pk__in=[])
    profile = UserProfile.objects.filter(user=user).exclude(phone_number="").first()
    if profile is not None:
        match |= Q(kind=IdentityKind.PHONE, value=profile.phone_number)
    if user.email:
        match |= Q(kind=IdentityKind.EMAIL, value=user.email.lower())
    contact_ids = (ContactIdentity.objects.filter(match, contact__user_mapping__isnull=True)
                   .values_list("contact_id", flat=True).distinct())
    made = []
    for contact in Contact.objects.filter(pk__in=list(contact_ids)):
        mapping = mapping_auto_for_contact(contact)
        if mapping is not None:
            made.append(mapping)
    return made


def user_phone_set(user, phone: str) -> UserProfile:
    """Give a user the phone number the phone rule matches (E.164; ValueError when it is not a number)."""
    profile, _ = UserProfile.objects.get_or_create(user=user)
    profile.phone_number = phone_parse_e164(phone) if phone.strip() else ""
    profile.save()
    return profile


# --- suggestions for the queue -------------------------------------------------------------------

def _name_tokens(name: str) -> set[str]:
    return {token.upper() for token in re.split(r"[\s,.]+", name) if len(token) >= 2}


def _users_by_name(names: list[str]) -> list:
    tokens = set().union(*(_name_tokens(name) for name in names)) if names else set()
    if not tokens:
        return []
    return list(get_user_model().objects.annotate(first=Upper("first_name"), last=Upper("last_name"),
                                                  login=Upper("username"))
                .filter(Q(first__in=tokens) | Q(last__in=tokens) | Q(login__in=tokens), is_active=True)[:500])


def _similar(name: str, user) -> bool:
    if not name.strip():
        return False
    candidates = [user.get_full_name(), user.get_username()]
    return any(difflib.SequenceMatcher(None, name.casefold(), candidate.casefold()).ratio() >= NAME_SIMILARITY_MIN
               for candidate in candidates if candidate)


def suggestions_for(contacts: list[Contact]) -> dict[int, list[Suggestion]]:
    """
    Suggested users for a page of contacts (identities prefetched): same phone, same email, similar
    name, best first. Three queries for the whole page, whatever its size.
    """
    phones = {v for c in contacts for v in _identity_values(c, IdentityKind.PHONE)}
    emails = {v for c in contacts for v in _identity_values(c, IdentityKind.EMAIL)}
    by_phone, by_email = _users_by_phone(phones), _users_by_email(emails)
    named = _users_by_name([c.profile_name for c in contacts])
    result: dict[int, list[Suggestion]] = {}
    for contact in contacts:
        reasons = _matches(contact, by_phone, by_email)
        for user in named:
            if _similar(contact.profile_name, user):
                reasons.setdefault(user, []).append(RULE_NAME)
        ranked = sorted(reasons.items(), key=lambda item: (RULE_NAME in item[1] and len(item[1]) == 1,
                                                           -len(item[1]), item[0].pk))
        result[contact.pk] = [Suggestion(user, tuple(dict.fromkeys(rules))) for user, rules in ranked[:SUGGESTIONS_MAX]]
    return result


# --- changes made by people ----------------------------------------------------------------------

def mapping_state(mapping: ContactUserMapping | None) -> dict[str, Any]:
    if mapping is None:
        return {"user": None}
    return {"user": mapping.user_id, "method": mapping.method, "rule": mapping.rule}


def _create_mapping(*, contact: Contact, user, method: str, rule: str, actor: Any,
                    notify_on_ready: bool = False) -> ContactUserMapping | None:
    try:
        with transaction.atomic():
            mapping = ContactUserMapping.objects.create(
                contact=contact, user=user, method=method, rule=rule[:64], notify_on_ready=notify_on_ready,
                created_by=actor if getattr(actor, "is_authenticated", False) else None)
    except IntegrityError:
        return None  # mapped by someone else at the same moment: theirs stands
    audit_record(action="contact.map", obj=contact, actor=actor, actor_label="" if actor else "auto rule",
                 before={"user": None}, after=mapping_state(mapping))
    return mapping


@transaction.atomic
def contact_map_to_user(*, contact: Contact, user, actor: Any, method: str = ContactUserMapping.Method.MANUAL,
                        rule: str = "", notify_on_ready: bool = False, replace: bool = False) -> ContactUserMapping:
    """
    Map a contact to a user. A contact mapped to someone else raises MappingConflict unless `replace`;
    mapping it again to the same user updates how (e.g. now verified), but never undoes a verification.
    """
    contact = Contact.objects.select_for_update().get(pk=contact.pk)
    existing = ContactUserMapping.objects.filter(contact=contact).first()
    if existing is not None and existing.user_id != user.pk and not replace:
        raise MappingConflict(f"{contact} is already mapped to {user_label(existing.user)}; "
                              "remove that mapping first")
    before = mapping_state(existing)
    if (existing is not None and existing.user_id == user.pk and existing.method == ContactUserMapping.Method.VERIFIED
            and method != ContactUserMapping.Method.VERIFIED):
        # Mapping a contact again to the user it was verified as never undoes the verification.
        method, rule = existing.method, existing.rule
    mapping = existing or ContactUserMapping(contact=contact)
    mapping.user, mapping.method, mapping.rule = user, method, rule[:64]
    mapping.notify_on_ready = notify_on_ready or (existing is not None and existing.user_id == user.pk
                                                  and existing.notify_on_ready)
    mapping.created_by = actor if getattr(actor, "is_authenticated", False) else mapping.created_by
    if method != ContactUserMapping.Method.VERIFIED:
        mapping.verified_at = None
    mapping.save()
    if contact.is_ignored:
        Contact.objects.filter(pk=contact.pk).update(is_ignored=False)
    audit_record(action="contact.map", obj=contact, actor=actor, before=before, after=mapping_state(mapping))
    return mapping


@transaction.atomic
def mapping_delete(*, mapping: ContactUserMapping, actor: Any) -> None:
    """Remove a mapping: the contact goes back to the unmapped queue."""
    before = mapping_state(mapping)
    contact = mapping.contact
    mapping.delete()
    audit_record(action="contact.unmap", obj=contact, actor=actor, before=before, after={"user": None})


def mapping_notify_set(*, mapping: ContactUserMapping, notify_on_ready: bool, actor) -> bool:
    """Turn the mapped user's notify-on-ready preference on or off, audited; False when unchanged."""
    if mapping.notify_on_ready == notify_on_ready:
        return False
    ContactUserMapping.objects.filter(pk=mapping.pk).update(notify_on_ready=notify_on_ready)
    audit_record(action="contact.mapping_notify", obj=mapping.contact, actor=actor,
                 before={"notify_on_ready": mapping.notify_on_ready}, after={"notify_on_ready": notify_on_ready})
    mapping.notify_on_ready = notify_on_ready
    return True


@transaction.atomic
def contacts_ignore(*, contacts: list[Contact], actor: Any, ignored: bool = True) -> int:
    """Take contacts out of the unmapped queue (or put them back)."""
    changed = 0
    for contact in Contact.objects.select_for_update().filter(pk__in=[c.pk for c in contacts],
                                                              is_ignored=not ignored):
        contact.is_ignored = ignored
        contact.save(update_fields=["is_ignored"])
        audit_record(action="contact.ignore" if ignored else "contact.unignore", obj=contact, actor=actor,
                     before={"is_ignored": not ignored}, after={"is_ignored": ignored})
        changed += 1
    return changed


def _free_username(base: str) -> str:
    user_model = get_user_model()
    base = (re.sub(r"[^\w.@+-]", "", base.replace(" ", ".").lower()) or "contact")[:140]
    candidate, suffix = base, 1
    while user_model.objects.filter(username=candidate).exists():
        suffix += 1
        candidate = f"{base}{suffix}"
    return candidate


@transaction.atomic
def contact_create_user(*, contact: Contact, actor: Any) -> ContactUserMapping:
    """Make a user from what the contact tells us (name, phone, email) and map the contact to it."""
    contact = Contact.objects.prefetch_related("identities").get(pk=contact.pk)
    phones = _identity_values(contact, IdentityKind.PHONE)
    emails = _identity_values(contact, IdentityKind.EMAIL)
    first, _, last = contact.profile_name.strip().partition(" ")
    base = contact.profile_name or (phones[0].lstrip("+") if phones else f"contact{contact.pk}")
    user = get_user_model()(username=_free_username(base), first_name=first[:150], last_name=last[:150],
                            email=emails[0] if emails else "")
    user.set_unusable_password()
    user.save()
    if phones:
        UserProfile.objects.update_or_create(user=user, defaults={"phone_number": phones[0]})
    audit_record(action="user.create_from_contact", obj=user, actor=actor, after={
        "username": user.username, "contact": contact.pk})
    return contact_map_to_user(contact=contact, user=user, actor=actor, rule=RULE_CREATED)
