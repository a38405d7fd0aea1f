"""Reading what campaigns need about people, many at a time."""

from __future__ import annotations

from collections.abc import Iterable

from contacts.models import ContactIdentity
from whatsapp.providers.events import IdentityKind

IN_CHUNK = 10_000


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start:start + IN_CHUNK]


def contacts_phones(contact_ids: list[int]) -> dict[int, str]:
    """Each contact's first phone number (E.164), for those that have one."""
    found: dict[int, str] = {}
    for chunk in _chunks(contact_ids):
        rows = (ContactIdentity.objects.filter(contact_id__in=chunk, kind=IdentityKind.PHONE)
                .order_by("-pk").values_list("contact_id", "value"))
        found.update(rows)  # newest first, so the oldest is written last and wins
    return found


def contacts_identity_rows(contact_ids: list[int]) -> dict[int, list[tuple[str, str, str]]]:
    """Each contact's identities as (kind, value, scope), oldest first."""
    found: dict[int, list[tuple[str, str, str]]] = {}
    for chunk in _chunks(contact_ids):
        for contact_id, kind, value, scope in (ContactIdentity.objects.filter(contact_id__in=chunk).order_by("pk")
                                               .values_list("contact_id", "kind", "value", "scope")):
            found.setdefault(contact_id, []).append((kind, value, scope))
    return found
