"""
Read-side queries that serve the contacts pages (merging, the map page, user deletion): plain functions
that take what they need and return querysets or values. They only read.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from contacts.models import Contact, ContactUserMapping
from core.access import scoped


def oldest_first_with_identities(contacts: QuerySet[Contact]) -> QuerySet[Contact]:
    """The contacts, first seen first, with their identities read in one more query."""
    return contacts.prefetch_related("identities").order_by("created_at", "pk")


def contacts_by_pk_oldest_first(pks: Iterable[int]) -> QuerySet[Contact]:
    """These contacts, first seen first, with their identities."""
    return oldest_first_with_identities(Contact.objects.filter(pk__in=list(pks)))


def contacts_to_map(pks: Iterable[int], *, user=None) -> list[Contact]:
    """These contacts (those `user` may see), newest first, with their mapping's user and their identities."""
    return list(scoped(Contact.objects.filter(pk__in=list(pks)), user).select_related("user_mapping__user")
                .prefetch_related("identities").order_by("-created_at", "-id"))


def active_users() -> QuerySet:
    """The users that may sign in (those contacts can be mapped to)."""
    return get_user_model().objects.filter(is_active=True)


def mapped_contact_count(users) -> int:
    """How many contacts are mapped to these users (a list or a queryset of them): the contacts
    deleting them sends back to the unmapped queue."""
    return ContactUserMapping.objects.filter(user__in=users).count()
