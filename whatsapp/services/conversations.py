"""
Finding or making a contact's conversation with a number, and what operators do to a conversation besides
writing in it: assign it to a staff user (or take it back) and put labels on it. Each change is audited
with its before and after; the admin page and the API both come here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower

from contacts.models import Contact
from core.access import sees_everything
from core.audit import audit_record
from whatsapp.models import Conversation, Label, Provider, Team
from whatsapp.selectors import SEE_ALL_TEAMS_CODENAME


class AssignmentRefused(ValueError):
    """The user cannot take conversations (inactive, or not staff)."""


def assignable_users(provider_id: int | None = None):
    """The users a conversation can be assigned to: active staff, by username. With a provider, once teams
    exist, those who can see its conversations: its teams' members, superusers and holders of "see all"."""
    user_model = get_user_model()
    users = user_model.objects.filter(is_active=True, is_staff=True).order_by(user_model.USERNAME_FIELD)
    if provider_id is None or not Team.objects.exists():
        return users
    sees_all = (Q(is_superuser=True) | Q(user_permissions__codename=SEE_ALL_TEAMS_CODENAME)
                | Q(groups__permissions__codename=SEE_ALL_TEAMS_CODENAME))
    return users.filter(pk__in=user_model.objects.filter(sees_all | Q(teams__providers=provider_id)).values("pk"))


def saved_reply_writable(user, provider_id: int | None) -> bool:
    """A reply offered on every number (no provider) is every team's: only those who see every team write
    one; a reply for one number is written by whoever may see that number."""
    return provider_id is not None or sees_everything(user)


def _who(user) -> str:
    return user.get_username() if user is not None else ""


# `expected` left out: the assignment is made whoever handled the conversation before.
ANYONE = object()


@transaction.atomic
def conversation_assign(conversation: Conversation, assignee: Any, *, actor: Any, expected: Any = ANYONE) -> bool:
    """Assign the conversation to `assignee` (None: unassign). Returns whether anything changed. With
    `expected` (a user id, or None for nobody) it is refused when someone else changed the assignment since
    the caller looked."""
    if assignee is not None and not assignable_users(conversation.provider_id).filter(pk=assignee.pk).exists():
        raise AssignmentRefused(f"{_who(assignee)} is not an active staff user of a team of this number and "
                                "cannot take its conversations.")
    # of=self: the assignee is joined (nullable, an outer join), and PostgreSQL locks no outer join's nullable side.
    locked = (Conversation.objects.select_for_update(no_key=True, of=("self",)).select_related("assignee")
              .get(pk=conversation.pk))
    if expected is not ANYONE and locked.assignee_id != expected:
        now = _who(locked.assignee) or "nobody"
        raise AssignmentRefused(f"Meanwhile the conversation was assigned to {now}; nothing was changed.")
    if locked.assignee_id == (assignee.pk if assignee is not None else None):
        return False
    before = _who(locked.assignee)
    Conversation.objects.filter(pk=locked.pk).update(assignee=assignee)
    conversation.assignee = assignee
    audit_record(action="conversation.assign" if assignee is not None else "conversation.unassign",
                 obj=conversation, actor=actor, before={"assignee": before}, after={"assignee": _who(assignee)})
    return True


@transaction.atomic
def conversation_set_labels(conversation: Conversation, labels: Iterable[Label], *, actor: Any) -> bool:
    """Make the conversation's labels exactly `labels`. Returns whether anything changed."""
    wanted = {label.pk for label in labels}
    return _labels_change(conversation, lambda current: wanted, actor=actor)


@transaction.atomic
def conversation_change_labels(conversation: Conversation, *, add: Iterable[Label] = (),
                               remove: Iterable[Label] = (), actor: Any) -> bool:
    """Add and remove labels, keeping the others, as they are when the conversation is locked: a label
    someone else put on meanwhile stays. Returns whether anything changed."""
    added, removed = {label.pk for label in add}, {label.pk for label in remove}
    return _labels_change(conversation, lambda current: (current | added) - removed, actor=actor)


def _labels_change(conversation: Conversation, new_labels, *, actor: Any) -> bool:
    Conversation.objects.select_for_update(no_key=True).filter(pk=conversation.pk).first()
    # Read after the lock, from the table: a caller's prefetched labels may be older than the last change.
    current = dict(Label.objects.filter(conversations=conversation.pk).values_list("pk", "name"))
    wanted = set(new_labels(set(current)))
    if wanted == set(current):
        return False
    through = Conversation.labels.through
    through.objects.filter(conversation_id=conversation.pk).exclude(label_id__in=wanted).delete()
    through.objects.bulk_create([through(conversation_id=conversation.pk, label_id=pk) for pk in wanted
                                 if pk not in current])
    # A prefetched copy on the caller's object would now be stale.
    getattr(conversation, "_prefetched_objects_cache", {}).pop("labels", None)
    names = dict(Label.objects.filter(pk__in=wanted).values_list("pk", "name"))
    audit_record(action="conversation.labels", obj=conversation, actor=actor,
                 before={"labels": sorted(current.values())}, after={"labels": sorted(names.values())})
    return True


def labels_named(names: Iterable[str]) -> tuple[list[Label], list[str]]:
    """The labels with these names (in any case), and the names that match none."""
    wanted = list(dict.fromkeys(name.strip() for name in names if name and name.strip()))
    found = {label.name.lower(): label for label in
             Label.objects.annotate(lower_name=Lower("name")).filter(lower_name__in=[n.lower() for n in wanted])}
    return ([found[name.lower()] for name in wanted if name.lower() in found],
            [name for name in wanted if name.lower() not in found])


def conversation_get_or_create(*, provider: Provider, contact: Contact, external_id: str = "",
                               lock: bool = False) -> Conversation:
    """
    The conversation of this contact with this provider. With `lock`, the row stays locked until the
    transaction ends (the caller is about to open or extend its session).
    """
    rows = Conversation.objects.filter(provider=provider, contact=contact)
    # NO KEY: lockers take turns, while rows that merely point at the conversation (messages, AI calls, the
    # assistant's state) can still be written meanwhile.
    conversation = (rows.select_for_update(no_key=True) if lock else rows).first()
    if conversation is None:
        try:
            with transaction.atomic():
                conversation = Conversation.objects.create(provider=provider, contact=contact)
        except IntegrityError:
            conversation = (rows.select_for_update(no_key=True) if lock else rows).get()
    external_id = external_id[:64]
    if external_id and conversation.external_conversation_id != external_id:
        # The provider's own thread id (Chatwoot's conversation), needed to reply in that thread.
        conversation.external_conversation_id = external_id
        conversation.save(update_fields=["external_conversation_id"])
    return conversation


def conversations_for_contacts(provider: Provider, contact_ids: Iterable[int], *,
                               lock: bool = True) -> dict[int, Conversation]:
    """Each contact's conversation with this provider (by contact id), made where missing. With `lock`,
    locked (NO KEY, in id order, as conversation_get_or_create locks one) until the transaction ends."""
    wanted = set(contact_ids)

    def found_rows() -> dict[int, Conversation]:
        rows = Conversation.objects.filter(provider=provider, contact_id__in=wanted).order_by("pk")
        if lock:
            rows = rows.select_for_update(no_key=True)
        return {conversation.contact_id: conversation for conversation in rows}

    found = found_rows()
    if missing := wanted - found.keys():
        # Another transaction may make the same conversation meanwhile: the unique constraint keeps one.
        Conversation.objects.bulk_create([Conversation(provider=provider, contact_id=contact_id)
                                          for contact_id in sorted(missing)], ignore_conflicts=True)
        found = found_rows()
    return found
