"""
Segments: an audience described by filters over contacts, evaluated when a campaign launches (so a saved
segment always means "who matches now").

    {"labels": ["vip"], "consent": ["opted_in"], "providers": [3], "mapped": false,
     "last_seen_within_days": 30, "not_seen_for_days": 90, "languages": ["pt", "es"],
     "countries": ["BR", "MX"], "attributes": {"plan": "gold"}, "intents": ["purchase"],
     "intent_within_days": 60}

Every filter narrows the audience (AND); a list matches any of its values (OR). Unknown filters and values
of the wrong type are refused with a reason, never ignored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import phonenumbers
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from contacts.models import Contact, ContactIdentity, ContactUserMapping
from core.access import scoped
from whatsapp.models import Message
from whatsapp.providers.events import IdentityKind

DEFAULT_INTENT_DAYS = 90

FILTERS: dict[str, str] = {
    "labels": "conversation labels (names; any of them)",
    "consent": "consent states: unknown, opted_in, opted_out",
    "providers": "provider ids the person has a conversation with (any)",
    "mapped": "true: mapped to one of the business's users; false: not mapped",
    "last_seen_within_days": "wrote to us within this many days",
    "not_seen_for_days": "has not written for at least this many days (or never)",
    "languages": "language codes (\"pt\" matches pt_BR too)",
    "countries": "ISO country codes of the phone number (by its calling code: US and CA share +1)",
    "attributes": "custom attributes that must equal these values",
    "intents": "AI intents of a message they sent (within intent_within_days)",
    "intent_within_days": "how far back intents count (default 90)",
}


class SegmentInvalid(ValueError):
    pass


def _list_of_text(filters: dict[str, Any], name: str) -> list[str]:
    value = filters[name]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value) or not value:
        raise SegmentInvalid(f"{name} must be a non-empty list of text")
    return [item.strip() for item in value]


def _days(filters: dict[str, Any], name: str) -> int:
    value = filters[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 3650:
        raise SegmentInvalid(f"{name} must be a whole number of days between 1 and 3650")
    return value


def segment_validate(filters: Any) -> dict[str, Any]:
    """The filters, checked: raises SegmentInvalid naming the first problem."""
    if not isinstance(filters, dict):
        raise SegmentInvalid("filters must be an object")
    unknown = sorted(set(filters) - FILTERS.keys())
    if unknown:
        raise SegmentInvalid(f"unknown filter(s): {', '.join(unknown)}; known: {', '.join(FILTERS)}")
    segment_contacts(filters)  # every value checked on the way
    return filters


def segment_contacts(filters: dict[str, Any]) -> QuerySet[Contact]:
    """The contacts that match the filters now."""
    contacts = Contact.objects.all()
    now = timezone.now()
    if "labels" in filters:
        contacts = contacts.filter(conversations__labels__name__in=_list_of_text(filters, "labels"))
    if "consent" in filters:
        states = _list_of_text(filters, "consent")
        if bad := set(states) - set(Contact.Consent.values):
            raise SegmentInvalid(f"unknown consent state(s): {', '.join(sorted(bad))}")
        contacts = contacts.filter(consent__in=states)
    if "providers" in filters:
        ids = filters["providers"]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise SegmentInvalid("providers must be a non-empty list of provider ids")
        contacts = contacts.filter(conversations__provider_id__in=ids)
    if "mapped" in filters:
        if not isinstance(filters["mapped"], bool):
            raise SegmentInvalid("mapped must be true or false")
        mapped = Exists(ContactUserMapping.objects.filter(contact=OuterRef("pk")))
        contacts = contacts.filter(mapped if filters["mapped"] else ~mapped)
    if "last_seen_within_days" in filters:
        contacts = contacts.filter(last_seen_at__gte=now - timedelta(days=_days(filters, "last_seen_within_days")))
    if "not_seen_for_days" in filters:
        cutoff = now - timedelta(days=_days(filters, "not_seen_for_days"))
        contacts = contacts.filter(Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True))
    if "languages" in filters:
        match = Q()
        for language in _list_of_text(filters, "languages"):
            match |= Q(language__iexact=language) | Q(language__istartswith=f"{language}_") | Q(
                language__istartswith=f"{language}-")
        contacts = contacts.filter(match)
    if "countries" in filters:
        contacts = contacts.filter(_in_countries(_list_of_text(filters, "countries")))
    if "attributes" in filters:
        attributes = filters["attributes"]
        if not isinstance(attributes, dict) or not attributes:
            raise SegmentInvalid("attributes must be an object of attribute: value")
        contacts = contacts.filter(attributes__contains=attributes)
    if "intent_within_days" in filters and "intents" not in filters:
        raise SegmentInvalid("intent_within_days needs intents")
    if "intents" in filters:
        days = _days(filters, "intent_within_days") if "intent_within_days" in filters else DEFAULT_INTENT_DAYS
        said = Message.objects.filter(conversation__contact=OuterRef("pk"), direction=Message.Direction.INBOUND,
                                      intent__in=_list_of_text(filters, "intents"),
                                      created_at__gte=now - timedelta(days=days))
        contacts = contacts.filter(Exists(said))
    return contacts.distinct() if {"labels", "providers"} & filters.keys() else contacts


def _in_countries(countries: list[str]) -> Exists:
    prefixes = set()
    for country in countries:
        code = phonenumbers.country_code_for_region(country.upper())
        if not code:
            raise SegmentInvalid(f"{country!r} is not an ISO country code")
        prefixes.add(f"+{code}")
    match = Q()
    for prefix in sorted(prefixes):
        match |= Q(value__startswith=prefix)
    return Exists(ContactIdentity.objects.filter(match, contact=OuterRef("pk"), kind=IdentityKind.PHONE))


def segment_count(filters: dict[str, Any], *, user=None) -> int:
    """How many contacts match now, of those `user` may see (None: all)."""
    return scoped(segment_contacts(filters), user).count()
