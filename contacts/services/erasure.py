"""
GDPR erasure of one user's WhatsApp data: every contact mapped to the user, with their identities,
conversations, sessions, messages (AI outputs included: transcripts, intents, summaries), media, status
reports, consent history, verification codes and the raw webhook bodies that carried them; the user's
archive bucket with all its objects; the objects of theirs kept elsewhere (written to a provider's bucket
before the contact was mapped); and their data exports.

The rows go in one transaction. The storage deletions are recorded in that same transaction and run
after it commits, retried until the storage confirms them, so an outage delays the erasure of the
archive but never loses it. Analytics keep their hourly counts, which name no one. The Django user
account itself is the business's, and is left as it is.
"""

from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q

from contacts.models import Contact, ContactUserMapping, DataExport
from whatsapp.models import (
    ArchiveBucket,
    AuditLog,
    Conversation,
    Media,
    Message,
    MessageStatusEvent,
    StorageDeletion,
    WebhookEvent,
)
from whatsapp.services.archive import storage_deletion_request
from whatsapp.services.audit import audit_record
from whatsapp.storage import split_location

ERASED = "[erased]"


@dataclass
class ErasureReport:
    contacts: int = 0
    conversations: int = 0
    messages: int = 0
    media: int = 0
    webhook_events: int = 0
    exports: int = 0
    buckets: int = 0
    objects_elsewhere: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def user_data_erase(*, user: Any, actor: Any = None) -> ErasureReport:
    """Erase everything this platform holds about the person behind `user` (see the module docstring)."""
    reason = f"erasure of user {user.pk}"
    with transaction.atomic():
        # One erasure (or export request) of a user at a time. FOR NO KEY UPDATE: a row that only refers to
        # the user (a worker recording the user's new bucket while it holds a row this erasure waits for)
        # is not blocked by it, so the two cannot deadlock.
        get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        contact_ids = list(ContactUserMapping.objects.filter(user=user).values_list("contact_id", flat=True))
        # Wait for the workers writing into the archive for this user (an export being built, a media file or
        # webhook body being archived: each holds its row), so that what they wrote, and a bucket they made,
        # is seen below.
        exports = DataExport.objects.filter(user=user)
        list(exports.select_for_update().values_list("pk", flat=True))
        rows = _ContactRows(contact_ids)
        locations = rows.lock()
        # The bucket deletions are recorded before any row goes, so a row's own deletion of its object
        # (whatsapp.signals) sees that its whole bucket goes anyway.
        buckets = list(ArchiveBucket.objects.filter(user=user))
        whole_buckets = {bucket.name for bucket in buckets}
        for bucket in buckets:
            storage_deletion_request(target=StorageDeletion.Target.BUCKET, name=bucket.name, backend=bucket.backend,
                                     reason=reason)
            bucket.delete()
        report = _contacts_erase(rows, locations, reason=reason, whole_buckets=whole_buckets)
        report.buckets = len(buckets)
        _delete_objects(exports.exclude(location="").values_list("location", flat=True),
                        whole_buckets=whole_buckets, reason=reason)
        report.exports, _ = exports.delete()
        audit_record(action="user.erase", obj=user, actor=actor, after=report.as_dict())
    return report


class _ContactRows:
    """The rows of some contacts that the erasure deletes."""

    def __init__(self, contact_ids: list[int]):
        self.contact_ids = contact_ids
        self.conversations = Conversation.objects.filter(contact_id__in=contact_ids)
        self.messages = Message.objects.filter(conversation__contact_id__in=contact_ids)
        self.media = Media.objects.filter(message__in=self.messages)
        self.webhook_events = WebhookEvent.objects.filter(pk__in=WebhookEvent.contacts.through.objects.filter(
            contact_id__in=contact_ids).values("webhookevent_id"))

    def lock(self) -> list[str]:
        """Lock every archived row (not only those archived already: a worker archiving one now finishes
        first, and its new location is the one read); returns their archive locations."""
        if not self.contact_ids:
            return []
        locations = [*self.media.select_for_update(of=("self",)).values_list("archive_path", flat=True),
                     *self.webhook_events.select_for_update().values_list("archive_path", flat=True)]
        return [location for location in locations if location]


def _contacts_erase(rows: _ContactRows, locations: list[str], *, reason: str,
                    whole_buckets: set[str]) -> ErasureReport:
    contact_ids = rows.contact_ids
    report = ErasureReport(contacts=len(contact_ids))
    if not contact_ids:
        return report
    report.objects_elsewhere = _delete_objects(locations, whole_buckets=whole_buckets, reason=reason)
    report.conversations = rows.conversations.count()
    report.messages = rows.messages.count()
    report.media = rows.media.count()
    message_ids = list(rows.messages.values_list("pk", flat=True))
    provider_message_ids = list(rows.messages.exclude(provider_message_id=None)
                                .values_list("provider_id", "provider_message_id"))
    _scrub_audit_trail(contact_ids, list(rows.conversations.values_list("pk", flat=True)), message_ids)
    # Status reports that arrived before their message was recorded carry the recipient's id, not a link.
    by_provider: dict[int, list[str]] = {}
    for provider_id, provider_message_id in provider_message_ids:
        by_provider.setdefault(provider_id, []).append(provider_message_id)
    for provider_id, ids in by_provider.items():
        for start in range(0, len(ids), 1000):
            MessageStatusEvent.objects.filter(provider_id=provider_id, provider_message_id__in=ids[start:start + 1000],
                                              message__isnull=True).delete()
    _, deleted = rows.webhook_events.delete()
    report.webhook_events = deleted.get(WebhookEvent._meta.label, 0)
    Contact.objects.filter(pk__in=contact_ids).delete()  # identities, mapping, conversations, messages, ...
    return report


def _delete_objects(locations, *, whole_buckets: set[str], reason: str) -> int:
    """Schedule the deletion of each object not in a bucket that goes whole anyway; returns how many."""
    count = 0
    for location in locations:
        bucket, _ = split_location(location)
        if bucket not in whole_buckets:
            storage_deletion_request(target=StorageDeletion.Target.OBJECT, name=location, reason=reason)
            count += 1
    return count


def _scrub_audit_trail(contact_ids: list[int], conversation_ids: list[int], message_ids: list[int]) -> None:
    """The audit trail keeps that something happened, by whom and when, but no longer what it said."""
    scope = Q()
    for label, ids in (("contacts.Contact", contact_ids), ("whatsapp.Conversation", conversation_ids),
                       ("whatsapp.Message", message_ids)):
        if ids:
            scope |= Q(object_type=label, object_id__in=[str(pk) for pk in ids])
    if scope:
        AuditLog.objects.filter(scope).update(object_repr=ERASED, before={}, after={})
