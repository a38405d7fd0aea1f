"""
Merging contacts that are one person (e.g. a phone-number contact and a business-scoped-id contact
created before Meta sent both together): identities, conversations, messages, sessions, mapping, consent
history and verification codes move to the contact that stays; the others are deleted. Audited.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from contacts.models import ConsentEvent, Contact, ContactIdentity, ContactUserMapping, VerificationChallenge
from core.audit import audit_record
from whatsapp.models import Conversation, Message, Session, WebhookEvent


class MergeRefused(Exception):
    pass


def _move_conversation(conversation: Conversation, survivor: Contact) -> None:
    """One conversation per (provider, contact): a second thread with the same provider is folded into
    the survivor's, keeping at most one open session (the later-expiring one)."""
    target = (Conversation.objects.select_for_update()
              .filter(provider_id=conversation.provider_id, contact=survivor).first())
    if target is None:
        conversation.contact = survivor
        conversation.save(update_fields=["contact"])
        return
    open_sessions = list(Session.objects.select_for_update()
                         .filter(conversation__in=[target, conversation], state=Session.State.OPEN)
                         .order_by("-expires_at"))
    for session in open_sessions[1:]:
        session.state, session.closed_at = Session.State.CLOSED, timezone.now()
        session.save(update_fields=["state", "closed_at"])
    Session.objects.filter(conversation=conversation).update(conversation=target)
    Message.objects.filter(conversation=conversation).update(conversation=target)
    latest = Message.objects.filter(conversation=target).aggregate(at=Max("created_at"))["at"]
    target.last_message_at = max(filter(None, [target.last_message_at, conversation.last_message_at, latest]),
                                 default=None)
    target.external_conversation_id = target.external_conversation_id or conversation.external_conversation_id
    target.save(update_fields=["last_message_at", "external_conversation_id"])
    conversation.delete()


def _snapshot(contact: Contact) -> dict[str, Any]:
    mapping = ContactUserMapping.objects.filter(contact=contact).first()
    return {"id": contact.pk, "profile_name": contact.profile_name, "consent": contact.consent,
            "identities": [f"{kind}:{value}" + (f"@{scope}" if scope else "")
                           for kind, value, scope in contact.identities.values_list("kind", "value", "scope")],
            "user": mapping.user_id if mapping else None}


@transaction.atomic
def contacts_merge(*, survivor: Contact, others: list[Contact], actor: Any) -> Contact:
    """Fold `others` into `survivor`. An opt-out on any of them carries over: nobody who said STOP is
    messaged again because of a merge. Raises MergeRefused when two of them are mapped to different users."""
    ids = sorted({survivor.pk, *(other.pk for other in others)})
    if len(ids) < 2:
        raise MergeRefused("choose at least two different contacts to merge")
    locked = {contact.pk: contact for contact in Contact.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    survivor = locked[survivor.pk]
    others = [locked[pk] for pk in ids if pk != survivor.pk]
    mapped_users = set(ContactUserMapping.objects.filter(contact_id__in=ids).values_list("user_id", flat=True))
    if len(mapped_users) > 1:
        raise MergeRefused("these contacts are mapped to different users; remove the wrong mapping first")
    before = {"survivor": _snapshot(survivor), "merged": [_snapshot(other) for other in others]}
    for other in others:
        ContactIdentity.objects.filter(contact=other).update(contact=survivor)
        for conversation in Conversation.objects.select_for_update().filter(contact=other).order_by("pk"):
            _move_conversation(conversation, survivor)
        if not ContactUserMapping.objects.filter(contact=survivor).exists():
            ContactUserMapping.objects.filter(contact=other).update(contact=survivor)
        ConsentEvent.objects.filter(contact=other).update(contact=survivor)
        # An open code was sent to (and its digest keyed by) the merged contact: it stops working.
        VerificationChallenge.objects.filter(contact=other, verified_at__isnull=True,
                                             expires_at__gt=timezone.now()).update(expires_at=timezone.now())
        VerificationChallenge.objects.filter(contact=other).update(contact=survivor)
        _move_webhook_links(other, survivor)
        _merge_fields(survivor, other)
        other.delete()
    survivor.save()
    audit_record(action="contact.merge", obj=survivor, actor=actor, before=before, after=_snapshot(survivor))
    return survivor


def _move_webhook_links(other: Contact, survivor: Contact) -> None:
    """The webhook bodies that carried the merged contact's data now count as the survivor's (an erasure
    of the survivor removes them)."""
    links = WebhookEvent.contacts.through.objects
    already = links.filter(contact=survivor).values("webhookevent_id")
    links.filter(contact=other).exclude(webhookevent_id__in=already).update(contact=survivor)


def _merge_fields(survivor: Contact, other: Contact) -> None:
    survivor.profile_name = survivor.profile_name or other.profile_name
    survivor.language = survivor.language or other.language
    survivor.time_zone = survivor.time_zone or other.time_zone
    survivor.last_seen_at = max(filter(None, [survivor.last_seen_at, other.last_seen_at]), default=None)
    survivor.created_at = min(survivor.created_at, other.created_at)
    takes_opt_out = other.consent == Contact.Consent.OPTED_OUT != survivor.consent
    if takes_opt_out or survivor.consent == Contact.Consent.UNKNOWN:
        survivor.consent, survivor.consent_source = other.consent, other.consent_source
        survivor.consent_changed_at = other.consent_changed_at
