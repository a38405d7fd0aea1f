"""
Who sees which rows: the one place where a user's teams narrow what every admin list, page, action,
search, autocomplete, export, API endpoint and figure shows.

A model says how its rows belong to a provider (`team_scope = ProviderPath("conversation__provider")`);
a user sees the rows of the providers of their teams. The messaging core, which owns teams, tells this
module which providers a user may see (`provider_ids_resolver`); this module knows no app.

`scoped(queryset, user)` is what the admin's and the API's base classes call for every queryset they
serve, and what a selector calls when it is given a user. `None` as the user means the system itself
(a worker, beat, a command): it sees everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Model, Q, QuerySet

# Resolves a user to the provider ids they may see, or None for every provider. Set once at start-up by the
# app that owns teams; until then (and for the system) everything is visible.
_resolver: Callable[[Any], frozenset[int] | None] | None = None
_CACHE_ATTR = "_team_provider_ids"
_SEEN_ATTR = "_team_rows_seen"


@dataclass(frozen=True)
class ProviderPath:
    """How a model's rows reach their provider. `many`: the path crosses a to-many relation (a contact has
    conversations with several numbers), so a row is visible when any of them is. `shared_when_empty`: a
    row with no provider (a saved reply offered on every number) is everyone's."""

    path: str
    many: bool = False
    shared_when_empty: bool = False


def provider_ids_resolver(resolver: Callable[[Any], frozenset[int] | None]) -> None:
    global _resolver
    _resolver = resolver


def visible_provider_ids(user) -> frozenset[int] | None:
    """The ids of the providers `user` may see, or None when they see every provider. Worked out once per
    user object (one request, one token call)."""
    if user is None or _resolver is None:
        return None
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    if not hasattr(user, _CACHE_ATTR):
        setattr(user, _CACHE_ATTR, _resolver(user))
    return getattr(user, _CACHE_ATTR)


def scope_of(model: type[Model]) -> ProviderPath | None:
    return getattr(model, "team_scope", None)


def scoped(queryset: QuerySet, user) -> QuerySet:
    """`queryset` narrowed to the rows `user` may see. Models without a `team_scope` are shared by all."""
    return narrowed(queryset, visible_provider_ids(user))


def narrowed(queryset: QuerySet, ids: frozenset[int] | None) -> QuerySet:
    """`queryset` narrowed to the rows of these providers (None: all of them)."""
    scope = scope_of(queryset.model)
    if scope is None or ids is None:
        return queryset
    if scope.many:
        return queryset.filter(_through_many(queryset.model, scope.path, sorted(ids)))
    condition = Q(**{f"{scope.path}__in": sorted(ids)})
    if scope.shared_when_empty:
        condition |= Q(**{f"{scope.path}__isnull": True})
    return queryset.filter(condition)


def _through_many(model: type[Model], path: str, ids: list[int]) -> Q:
    """A path across a to-many relation as a semi-join on the related table alone: a contact is visible when
    `id IN (SELECT contact_id FROM conversation WHERE provider_id IN (...))`, listed once however many of its
    conversations match, and without joining the contact table a second time inside."""
    parts, current = path.split("__"), model
    for index, part in enumerate(parts):
        field = current._meta.get_field(part)
        if field.one_to_many:
            inner = field.related_model._base_manager.filter(**{f"{'__'.join(parts[index + 1:])}__in": ids})
            outer = "__".join([*parts[:index], "pk"])
            return Q(**{f"{outer}__in": inner.values(field.field.attname)})
        current = field.related_model
    raise ValueError(f"{model.__name__}.team_scope {path!r} crosses no to-many relation")


def related_rows_of(user, path: str) -> Q:
    """A condition on a related path (for a Count's filter): the rows of the user's numbers (no condition
    when they see every number). E.g. a label's conversations: Count("conversations",
    filter=related_rows_of(user, "conversations__provider"))."""
    ids = visible_provider_ids(user)
    return Q() if ids is None else Q(**{f"{path}__in": sorted(ids)})


def can_see(user, obj: Model) -> bool:
    """Whether `user` may see this one row (asked once per row and request: pages check it several times)."""
    if scope_of(type(obj)) is None or visible_provider_ids(user) is None:
        return True
    seen = user.__dict__.setdefault(_SEEN_ATTR, {})
    key = (obj._meta.label, obj.pk)
    if key not in seen:
        seen[key] = scoped(type(obj)._base_manager.filter(pk=obj.pk), user).exists()
    return seen[key]


def sees_everything(user) -> bool:
    return visible_provider_ids(user) is None
