"""
GDPR erasure of one user's WhatsApp data: every contact mapped to the user, with their identities,
conversations, sessions, messages (AI outputs included: transcripts, intents, summaries), media, status
reports, consent history, verification codes and the raw webhook bodies that carried them; the user's
archive bucket with all its objects; the objects of theirs kept elsewhere (written to a provider's bucket
before the contact was mapped); and their data exports. Their webhook bodies archived in another bucket's
bundles (shared with other people's) leave them: each such bundle is rewritten without them.

The rows go in one transaction. The storage deletions are recorded in that same transaction and run
after it commits, retried until the storage confirms them, so an outage delays the erasure of the
archive but never loses it. Analytics keep their hourly counts, which name no one. The Django user
account itself is the business's, and is left as it is.
"""

from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import OperationalError, transaction
from django.db.models import Q

from contacts.models import Contact, ContactIdentity, ContactUserMapping, DataExport
from core.audit import audit_record
from core.storage import split_location
from whatsapp.models import (
    ArchiveBucket,
    ArchiveBundle,
    AuditLog,
    Conversation,
    Media,
    Message,
    MessageStatusEvent,
    StorageDeletion,
    WebhookEvent,
)
from whatsapp.services.archive import storage_deletion_request

ERASED = "[erased]"


class ErasureBusy(Exception):
    """The user's data is being written right now (an export build); nothing was erased."""


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
    bundles_rewritten: int = 0

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
        try:
            # A build holds its export's row for the whole zip (many storage calls): rather than keep this
            # request waiting that long, it is refused, to be asked again once the export is done.
            list(exports.select_for_update(nowait=True).values_list("pk", flat=True))
        except OperationalError:
            raise ErasureBusy("an export of this user is being built right now; erase again in a minute") from None
        rows = _ContactRows(contact_ids)
        locations = rows.locations(lock=True)
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


PREVIEW_LABELS = {
    "contacts": "Contacts", "conversations": "Conversations", "messages": "Messages", "media": "Media files",
    "webhook_events": "Raw webhook bodies", "exports": "Data exports", "buckets": "Archive buckets",
    "objects_elsewhere": "Files in other buckets",
    "bundles_rewritten": "Bundles of webhook bodies in other buckets, rewritten without theirs",
}


def erasure_preview(user: Any) -> ErasureReport:
    """What user_data_erase would remove now, counted by the same definition of the user's rows."""
    contact_ids = list(ContactUserMapping.objects.filter(user=user).values_list("contact_id", flat=True))
    rows = _ContactRows(contact_ids)
    buckets = set(ArchiveBucket.objects.filter(user=user).values_list("name", flat=True))
    report = ErasureReport(contacts=len(contact_ids), buckets=len(buckets),
                           exports=DataExport.objects.filter(user=user).count())
    if contact_ids:
        report.conversations = rows.conversations.count()
        report.messages = rows.messages.count()
        report.media = rows.media.count()
        report.webhook_events = rows.webhook_events.count()
        report.objects_elsewhere = len(_outside(rows.locations(), buckets))
        report.bundles_rewritten = len(_outside(rows.bundle_locations(), buckets))
    return report


class _ContactRows:
    """The rows of some contacts that the erasure deletes."""

    def __init__(self, contact_ids: list[int]):
        self.contact_ids = contact_ids
        self.conversations = Conversation.objects.filter(contact_id__in=contact_ids)
        self.messages = Message.objects.filter(conversation__contact_id__in=contact_ids)
        self.media = Media.objects.filter(message__in=self.messages)
        # The bodies that carried their data: linked when processed, and those carrying a status report of
        # one of their messages (in case a link is missing).
        self.webhook_events = WebhookEvent.objects.filter(
            Q(pk__in=WebhookEvent.contacts.through.objects.filter(contact_id__in=contact_ids)
              .values("webhookevent_id"))
            | Q(pk__in=MessageStatusEvent.objects.filter(message__in=self.messages, webhook_event__isnull=False)
                .values("webhook_event_id")))

    def locations(self, *, lock: bool = False) -> list[str]:
        """Where their archived files are. With `lock`, every such row is locked first (not only those
        archived already: a worker archiving one now finishes first, and its new location is the one read)."""
        if not self.contact_ids:
            return []
        media, webhook_events = self.media, self.webhook_events
        if lock:
            media, webhook_events = media.select_for_update(of=("self",)), webhook_events.select_for_update()
        # A bundled body shares its object with others' bodies: its row's deletion has the bundle rewritten
        # without it (whatsapp.signals), so its object is not one of theirs.
        locations = [*media.values_list("archive_path", flat=True),
                     *(path for path, bundle_id in webhook_events.values_list("archive_path", "archive_bundle_id")
                       if bundle_id is None)]
        return [location for location in locations if location]

    def bundle_locations(self) -> list[str]:
        """The bundles holding their webhook bodies (each once)."""
        if not self.contact_ids:
            return []
        return list(ArchiveBundle.objects.filter(webhook_events__in=self.webhook_events)
                    .values_list("location", flat=True).distinct())


def _contacts_erase(rows: _ContactRows, locations: list[str], *, reason: str,
                    whole_buckets: set[str]) -> ErasureReport:
    contact_ids = rows.contact_ids
    report = ErasureReport(contacts=len(contact_ids))
    if not contact_ids:
        return report
    report.objects_elsewhere = _delete_objects(locations, whole_buckets=whole_buckets, reason=reason)
    report.bundles_rewritten = len(_outside(rows.bundle_locations(), whole_buckets))
    report.conversations = rows.conversations.count()
    report.messages = rows.messages.count()
    report.media = rows.media.count()
    message_ids = list(rows.messages.values_list("pk", flat=True))
    provider_message_ids = list(rows.messages.exclude(provider_message_id=None)
                                .values_list("provider_id", "provider_message_id"))
    _scrub_audit_trail({
        Contact: contact_ids,
        ContactIdentity: list(ContactIdentity.objects.filter(contact_id__in=contact_ids).values_list("pk", flat=True)),
        ContactUserMapping: list(ContactUserMapping.objects.filter(contact_id__in=contact_ids)
                                 .values_list("pk", flat=True)),
        Conversation: list(rows.conversations.values_list("pk", flat=True)),
        Message: message_ids,
        Media: list(rows.media.values_list("pk", flat=True)),
        WebhookEvent: list(rows.webhook_events.values_list("pk", flat=True)),
    })
    # Status reports recorded before their message (matched later by the provider's message id) that no
    # message took up; reports for messages this platform never recorded name nobody it can tell.
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


def _outside(locations, buckets: set[str]) -> list[str]:
    """The locations not in these buckets (which go whole anyway)."""
    return [location for location in locations if split_location(location)[0] not in buckets]


def _delete_objects(locations, *, whole_buckets: set[str], reason: str) -> int:
    """Schedule the deletion of each object not in a bucket that goes whole anyway; returns how many. (The
    rows' own deletion would schedule them too, whatsapp.signals; here they carry the erasure as reason.)"""
    elsewhere = _outside(locations, whole_buckets)
    for location in elsewhere:
        storage_deletion_request(target=StorageDeletion.Target.OBJECT, name=location, reason=reason)
    return len(elsewhere)


def _scrub_audit_trail(ids_by_model: dict) -> None:
    """The audit trail keeps that something happened to these rows, by whom and when, but no longer what
    they said (names, numbers, texts in object_repr, before and after)."""
    scope = Q()
    for model, ids in ids_by_model.items():
        if ids:
            scope |= Q(object_type=model._meta.label, object_id__in=[str(pk) for pk in ids])
    if scope:
        AuditLog.objects.filter(scope).update(object_repr=ERASED, before={}, after={})
