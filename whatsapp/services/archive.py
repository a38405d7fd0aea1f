"""
The archive: raw webhook bodies and media files in the archive storage, one bucket per user.

Where an object goes: a contact mapped to a user archives into that user's bucket; an unmapped contact's
data goes to the bucket of the provider (the business account) it came through. A webhook body goes to a
user's bucket only when every contact it carried is that user's; a body mixing several people (Meta
batches) goes to the provider's bucket. Objects stay where they were written: when a contact is mapped
later, earlier objects are not moved; each row records its location, which is what the export and the
erasure follow.

Reliability: a row waits as "pending archive" until the storage has its bytes (media bytes wait in the
database), each attempt is a task, failures back off from 30 s up to ARCHIVE_RETRY_MAX_SECONDS and a beat
job hands due rows back; nothing is given up.
"""

import hashlib
import hmac
import logging
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from contacts.models import ContactUserMapping
from core.audit import audit_record
from core.queueing import publish_on_commit, task_named
from core.storage import (
    BucketNotFound,
    BucketSpec,
    ObjectNotFound,
    StorageError,
    get_storage,
    sha256_hex,
    split_location,
)
from whatsapp.models import ArchiveBucket, ArchiveStatus, Media, StorageDeletion, WebhookEvent

logger = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
NAME_HASH_CHARS = 16
# GCS bucket names: 3-63 characters of lowercase letters, digits, dashes (and dots, which we do not use),
# starting and ending with a letter or digit; not starting with "goog", not containing "google" or a
# look-alike. https://cloud.google.com/storage/docs/buckets#naming
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
FORBIDDEN_IN_NAME = re.compile(r"g[o0][o0]gle")
PREFIX_MAX = 63 - len("-u-") - NAME_HASH_CHARS


# --- Bucket names and owners ---

@dataclass(frozen=True)
class Owner:
    """Whose bucket: a user's, or a provider's for contacts no user has."""

    key: str
    user_id: int | None = None
    provider_id: int | None = None

    @property
    def label(self) -> str:
        return "user" if self.user_id else "provider"


def owner_for_user(user_id: int) -> Owner:
    return Owner(key=f"user:{user_id}", user_id=user_id)


def owner_for_provider(provider_id: int) -> Owner:
    return Owner(key=f"provider:{provider_id}", provider_id=provider_id)


def contact_owner(contact_id: int | None, provider_id: int) -> Owner:
    user_id = (ContactUserMapping.objects.filter(contact_id=contact_id).values_list("user_id", flat=True).first()
               if contact_id else None)
    return owner_for_user(user_id) if user_id else owner_for_provider(provider_id)


def bucket_name_problems(name: str) -> list[str]:
    problems = []
    if not BUCKET_NAME.match(name):
        problems.append("3-63 lowercase letters, digits and dashes, starting and ending with a letter or digit")
    if name.startswith("goog") or FORBIDDEN_IN_NAME.search(name):
        problems.append('must not start with "goog" or contain "google"')
    return problems


def prefix_problems(prefix: str) -> list[str]:
    if len(prefix) > PREFIX_MAX:
        return [f"GCS_BUCKET_PREFIX is {len(prefix)} characters; at most {PREFIX_MAX} leave room for the hash"]
    return [f"GCS_BUCKET_PREFIX {prefix!r}: {problem}" for problem in bucket_name_problems(prefix + "-u-0")]


def _name_key() -> bytes:
    key = settings.GCS_BUCKET_NAME_KEY or hmac.new(settings.SECRET_KEY.encode(), b"archive-bucket-names",
                                                   hashlib.sha256).hexdigest()
    return key.encode()


def bucket_name(owner: Owner, generation: int = 0) -> str:
    """<prefix>-u-<hash> or <prefix>-p-<hash>: stable for an owner, distinct between owners, and without
    the user id in it (a bucket name is visible to anyone who guesses it). A later generation names the
    owner's next bucket while an erased one still waits for its deletion."""
    key = owner.key if not generation else f"{owner.key}#{generation}"
    digest = hmac.new(_name_key(), key.encode(), hashlib.sha256).hexdigest()[:NAME_HASH_CHARS]
    return f"{settings.GCS_BUCKET_PREFIX}-{owner.label[0]}-{digest}"


def archive_bucket(owner: Owner) -> str:
    """
    The owner's bucket, made on first use (with its lifecycle rules) and recorded. The record is the
    existence cache: a message costs one indexed query, never a storage call. (A cache in process memory
    would outlive an erasure in the other workers and send new files into a bucket being deleted.)
    """
    storage = get_storage()
    name = (ArchiveBucket.objects.filter(backend=storage.name, owner_key=owner.key)
            .values_list("name", flat=True).first())
    if name is not None:
        return name
    name = _unused_bucket_name(owner)
    storage.create_bucket(_bucket_spec(owner, name))
    try:
        with transaction.atomic():
            ArchiveBucket.objects.create(backend=storage.name, owner_key=owner.key, name=name,
                                         user_id=owner.user_id, provider_id=owner.provider_id)
    except IntegrityError:  # another worker recorded it first
        return ArchiveBucket.objects.get(backend=storage.name, owner_key=owner.key).name
    return name


def _bucket_spec(owner: Owner, name: str) -> BucketSpec:
    return BucketSpec(name=name, labels={"app": "whatsapp-archive", "owner": owner.label})


def _unused_bucket_name(owner: Owner) -> str:
    """The owner's bucket name, unless an erasure's deletion of that bucket is still waiting (the storage
    was out): new data must not land in a bucket about to be deleted, so it takes the next generation."""
    generation = 0
    while StorageDeletion.objects.filter(target=StorageDeletion.Target.BUCKET,
                                         name=bucket_name(owner, generation)).exists():
        generation += 1
    return bucket_name(owner, generation)


def archive_write(owner: Owner, path: str, data: bytes, *, content_type: str, metadata: dict[str, str]) -> str:
    """Write into the owner's bucket; a bucket deleted behind our back is made again once."""
    return _into_owner_bucket(owner, lambda storage, bucket: storage.write(
        bucket, path, data, content_type=content_type, metadata=metadata))


def archive_write_file(owner: Owner, path: str, file: BinaryIO, *, content_type: str,
                       metadata: dict[str, str]) -> str:
    """archive_write from an open file, sent in chunks (a large zip never sits in memory whole)."""
    start = file.tell()

    def send(storage, bucket: str) -> str:
        file.seek(start)  # a second try sends the file from where the first began
        return storage.write_file(bucket, path, file, content_type=content_type, metadata=metadata)

    return _into_owner_bucket(owner, send)


def _into_owner_bucket(owner: Owner, send: Callable[[Any, str], str]) -> str:
    storage = get_storage()
    bucket = archive_bucket(owner)
    try:
        return send(storage, bucket)
    except BucketNotFound:
        logger.warning("archive bucket was gone; making it again", extra={"bucket": bucket})
        storage.create_bucket(_bucket_spec(owner, bucket))
        return send(storage, bucket)


# --- Retry bookkeeping shared by webhook events and media ---

def retry_delay(attempts: int) -> timedelta:
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), timedelta(seconds=settings.ARCHIVE_RETRY_MAX_SECONDS))


def _mark_archived(row: WebhookEvent | Media, location: str) -> None:
    row.archive_path = location
    row.archive_status = ArchiveStatus.ARCHIVED
    row.archived_at = timezone.now()
    row.archive_next_at = None
    row.archive_error = ""


def _mark_waiting(row: WebhookEvent | Media, exc: Exception) -> None:
    row.archive_status = ArchiveStatus.PENDING
    row.archive_error = f"attempt {row.archive_attempts}: {exc}"[:4000]
    row.archive_next_at = timezone.now() + retry_delay(row.archive_attempts)
    logger.warning("archive attempt failed", extra={"row": f"{type(row).__name__} {row.pk}",
                                                    "attempts": row.archive_attempts, "error": str(exc)})


ARCHIVE_FIELDS = ["archive_status", "archive_path", "archive_attempts", "archive_next_at", "archive_error",
                  "archived_at"]


# --- Webhook events ---

def _webhook_path(event: WebhookEvent) -> str:
    extension = ".json" if "json" in event.content_type else ".body"
    return (f"whatsapp-messages/{event.received_at:%Y-%m-%d}/webhooks/{event.kind}-{event.provider_id}/"
            f"event-{event.pk}{extension}")


def webhook_event_owner(event: WebhookEvent) -> Owner:
    contact_ids = list(event.contacts.values_list("pk", flat=True))
    user_ids = list(ContactUserMapping.objects.filter(contact_id__in=contact_ids).values_list("user_id", flat=True))
    # A user's bucket only when every contact it carried is mapped, all to that one user.
    if len(set(user_ids)) == 1 and len(user_ids) == len(contact_ids):
        return owner_for_user(user_ids[0])
    return owner_for_provider(event.provider_id)


def webhook_events_archive_request(events: list[WebhookEvent]) -> None:
    """Processing went through: the raw bodies are due for the archive (once; a replay does not archive
    again). The rows' fields are set for the caller to save; one task takes them all once it commits."""
    due = [event for event in events if event.status == WebhookEvent.Status.PROCESSED
           and event.archive_status == ArchiveStatus.NONE and event.provider_id is not None]
    for event in due:
        event.archive_status = ArchiveStatus.PENDING
        event.archive_next_at = timezone.now() + timedelta(seconds=settings.ARCHIVE_STALE_AFTER_SECONDS)
    if due:
        ids = [event.pk for event in due]
        archive_webhook_events_task = task_named("whatsapp.tasks.archive_webhook_events_task")
        publish_on_commit(lambda: archive_webhook_events_task.delay(ids), what=f"archive of {len(ids)} webhook events")


def _enqueue_webhook_archive(event_id: int) -> None:
    archive_webhook_event_task = task_named("whatsapp.tasks.archive_webhook_event_task")

    publish_on_commit(lambda: archive_webhook_event_task.delay(event_id), what=f"archive of webhook event {event_id}")


def webhook_event_archive(event_id: int) -> WebhookEvent | None:
    """One attempt to archive a webhook event's raw body exactly as received."""
    with transaction.atomic():
        event = (WebhookEvent.objects.select_for_update(skip_locked=True, of=("self",))
                 .select_related("provider").filter(pk=event_id).first())
        if event is None or event.archive_status != ArchiveStatus.PENDING:
            return event
        event.archive_attempts += 1
        body = bytes(event.body)
        ids = event.message_ids.split()
        metadata = {"provider": event.kind, "provider_id": str(event.provider_id or ""),
                    "message_id": ids[0] if ids else "", "message_count": str(len(ids)),
                    "content_type": event.content_type, "sha256": sha256_hex(body),
                    "webhook_event_id": str(event.pk), "received_at": event.received_at.isoformat()}
        try:
            location = archive_write(webhook_event_owner(event), _webhook_path(event), body,
                                     content_type=event.content_type or "application/octet-stream",
                                     metadata=metadata)
        except StorageError as exc:
            _mark_waiting(event, exc)
        else:
            _mark_archived(event, location)
        event.save(update_fields=ARCHIVE_FIELDS)
    return event


def webhook_events_archive(event_ids: list[int]) -> int:
    """webhook_event_archive for each; one that raises is left for the requeue job, the others go on. Returns
    how many were archived."""
    archived = 0
    for event_id in event_ids:
        try:
            event = webhook_event_archive(event_id)
        except Exception:
            logger.exception("archiving a webhook event failed; the requeue job tries again",
                             extra={"webhook_event": event_id})
            continue
        archived += bool(event and event.archive_status == ArchiveStatus.ARCHIVED)
    return archived


def webhook_body(event: WebhookEvent) -> bytes:
    """The raw body, from the database or, once retention pruned it there, from the archive."""
    if event.body_pruned_at is None:
        return bytes(event.body)
    return get_storage().read(event.archive_path)


def webhook_bodies_prune(*, older_than_days: int | None = None, limit: int = 1000) -> int:
    """
    Retention: raw bodies older than WEBHOOK_BODY_RETENTION_DAYS leave the database once the archive holds
    them. Each object is checked in the storage first (present, same size); while the storage cannot be
    reached nothing is pruned.
    """
    days = settings.WEBHOOK_BODY_RETENTION_DAYS if older_than_days is None else older_than_days
    if days <= 0 and older_than_days is None:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    storage = get_storage()
    candidates = (WebhookEvent.objects.filter(archive_status=ArchiveStatus.ARCHIVED, body_pruned_at__isnull=True,
                                              received_at__lt=cutoff)
                  .order_by("received_at").values_list("pk", "archive_path", "body_size")[:limit])
    safe = []
    for pk, location, size in candidates:
        try:
            stored = storage.stat(location)
        except ObjectNotFound:
            _archive_again(pk, location, "is missing from the storage")
            continue
        except StorageError as exc:
            logger.warning("retention paused: the storage does not answer", extra={"error": str(exc)})
            break
        if stored.size != size:
            # Not the body we wrote (overwritten or cut short): the database copy is the one received.
            _archive_again(pk, location, f"has {stored.size} bytes in the storage, not {size}")
            continue
        safe.append(pk)
    return WebhookEvent.objects.filter(pk__in=safe, body_pruned_at__isnull=True).update(
        body=b"", body_pruned_at=timezone.now())


def _archive_again(event_id: int, location: str, problem: str) -> None:
    logger.error("archived webhook body %s; archiving it again", problem,
                 extra={"webhook_event": event_id, "location": location})
    WebhookEvent.objects.filter(pk=event_id).update(archive_status=ArchiveStatus.PENDING,
                                                    archive_next_at=timezone.now(), archive_path="")
    _enqueue_webhook_archive(event_id)


# --- Media ---

def media_archive_path(media: Media) -> str:
    received = media.message.received_at or media.message.created_at or media.created_at
    extension = mimetypes.guess_extension(media.mime_type.split(";")[0].strip()) or ""
    return (f"whatsapp-messages/{received:%Y-%m-%d}/provider-{media.message.provider_id}/"
            f"message-{media.message_id}/media-{media.pk}{extension}")


def _media_metadata(media: Media, data: bytes) -> dict[str, str]:
    message = media.message
    return {"provider": message.provider.kind, "provider_id": str(message.provider_id),
            "message_id": message.provider_message_id or "", "direction": message.direction,
            "content_type": media.mime_type, "sha256": sha256_hex(data), "media_id": str(media.pk)}


def media_store(media: Media, data: bytes) -> None:
    """
    Put a file's bytes in the archive now, or keep them on the row as pending when the storage cannot take
    them (the beat job tries again). The caller saves the row.
    """
    media.archive_attempts += 1
    try:
        owner = contact_owner(media.message.conversation.contact_id, media.message.provider_id)
        location = archive_write(owner, media_archive_path(media), data,
                                 content_type=media.mime_type or "application/octet-stream",
                                 metadata=_media_metadata(media, data))
    except StorageError as exc:
        media.pending_content = data
        _mark_waiting(media, exc)
    else:
        media.pending_content = None
        _mark_archived(media, location)


def media_archive(media_id: int) -> Media | None:
    """One attempt to move a waiting file from the database into the archive."""
    with transaction.atomic():
        media = (Media.objects.select_for_update(skip_locked=True, of=("self",))
                 .select_related("message__provider", "message__conversation").filter(pk=media_id).first())
        if media is None or media.archive_status != ArchiveStatus.PENDING or media.pending_content is None:
            return media
        media_store(media, bytes(media.pending_content))
        media.save(update_fields=[*ARCHIVE_FIELDS, "pending_content"])
    return media


def media_content(media: Media) -> bytes:
    """A file's bytes, from the archive or, while it waits for the archive, from the database."""
    if media.pending_content is not None:
        return bytes(media.pending_content)
    return get_storage().read(media.archive_path)


def _enqueue_media_archive(media_id: int) -> None:
    archive_media_task = task_named("whatsapp.tasks.archive_media_task")

    publish_on_commit(lambda: archive_media_task.delay(media_id), what=f"archive of media {media_id}")


# How a waiting row of each kind is handed to a worker.
ENQUEUE_ARCHIVE = {WebhookEvent: _enqueue_webhook_archive, Media: _enqueue_media_archive}


# --- The beat job and the backlog ---

def archives_requeue_due(*, limit: int = 500) -> int:
    """Hand rows whose archive attempt is due back to the workers, oldest first, each with a new due time
    so a slow queue is not flooded with copies."""
    now = timezone.now()
    count = 0
    for model, enqueue in ENQUEUE_ARCHIVE.items():
        with transaction.atomic():
            due = list(model.objects.select_for_update(skip_locked=True)
                       .filter(archive_status=ArchiveStatus.PENDING, archive_next_at__lte=now)
                       .order_by("archive_next_at").only("pk", "archive_attempts")[:limit])
            for row in due:
                model.objects.filter(pk=row.pk).update(
                    archive_next_at=now + max(retry_delay(row.archive_attempts), FIRST_RETRY * 4))
                enqueue(row.pk)
            count += len(due)
    count += storage_deletions_requeue_due(limit=limit)
    return count


def archive_backlog() -> dict[str, Any]:
    """How many rows wait for the archive and for how long the oldest has (for /health/ and the admin)."""
    waiting = [model.objects.filter(archive_status=ArchiveStatus.PENDING).aggregate(count=Count("pk"),
                                                                                     first=Min(since))
               for model, since in ((WebhookEvent, "processed_at"), (Media, "fetched_at"))]
    oldest = min((row["first"] for row in waiting if row["first"]), default=None)
    return {"pending_archive": sum(row["count"] for row in waiting),
            "oldest_pending_seconds": int((timezone.now() - oldest).total_seconds()) if oldest else 0,
            "pending_deletions": StorageDeletion.objects.count()}


def archive_retry_now(queryset: QuerySet, *, actor: Any = None) -> int:
    """Admin action: try the archive of waiting rows now instead of at their due time."""
    enqueue = ENQUEUE_ARCHIVE[queryset.model]
    count = 0
    with transaction.atomic():
        for row in queryset.filter(archive_status=ArchiveStatus.PENDING):
            audit_record(action="archive.retry", obj=row, actor=actor, before={"archive_error": row.archive_error})
            enqueue(row.pk)
            count += 1
    return count


# --- Deletions that must reach the storage (erasure, expired exports) ---

def storage_deletion_request(*, target: str, name: str, reason: str, backend: str = "") -> StorageDeletion:
    """Record a deletion in the caller's transaction; it runs after commit and is retried until done."""
    deletion = StorageDeletion.objects.create(backend=backend or get_storage().name, target=target, name=name,
                                              reason=reason[:100], next_attempt_at=timezone.now() + FIRST_RETRY * 4)
    _enqueue_deletion(deletion.pk)
    return deletion


def archived_object_forget(location: str, *, reason: str) -> StorageDeletion | None:
    """A row holding this object is gone: delete the object too, unless its whole bucket or the object
    itself is already due for deletion."""
    try:
        bucket, _ = split_location(location)
    except StorageError:
        logger.error("archive location not understood; its object is not deleted", extra={"location": location})
        return None
    pending = StorageDeletion.objects.filter(
        Q(target=StorageDeletion.Target.BUCKET, name=bucket) | Q(target=StorageDeletion.Target.OBJECT, name=location))
    if pending.exists():
        return None
    return storage_deletion_request(target=StorageDeletion.Target.OBJECT, name=location, reason=reason)


def _enqueue_deletion(deletion_id: int) -> None:
    run_storage_deletion_task = task_named("whatsapp.tasks.run_storage_deletion_task")

    publish_on_commit(lambda: run_storage_deletion_task.delay(deletion_id), what=f"storage deletion {deletion_id}")


def storage_deletion_run(deletion_id: int) -> bool:
    """One attempt; True when the storage no longer holds the object or bucket (the row is then gone)."""
    with transaction.atomic():
        deletion = StorageDeletion.objects.select_for_update(skip_locked=True).filter(pk=deletion_id).first()
        if deletion is None:
            return False
        deletion.attempts += 1
        storage = get_storage()
        try:
            if deletion.backend != storage.name:
                raise StorageError(f"recorded for the {deletion.backend} backend; STORAGE_BACKEND is {storage.name}")
            if deletion.target == StorageDeletion.Target.BUCKET:
                _rehome_survivors(deletion.name)
                storage.delete_bucket(deletion.name)
            else:
                storage.delete(deletion.name)
        except StorageError as exc:
            deletion.last_error = f"attempt {deletion.attempts}: {exc}"[:4000]
            deletion.next_attempt_at = timezone.now() + retry_delay(deletion.attempts)
            deletion.save(update_fields=["attempts", "last_error", "next_attempt_at"])
            logger.warning("storage deletion failed", extra={"deletion": deletion.pk, "error": str(exc)})
            return False
        deletion.delete()
    return True


def _rehome_survivors(bucket: str) -> None:
    """
    Before a bucket goes: rows that still point into it belong to someone else now (a contact mapped to
    another user, unmapped or merged before the erasure), so their objects are copied to their owner's
    bucket first, and the rows follow them.
    """
    storage = get_storage()
    survivors: list[tuple[WebhookEvent | Media, Owner]] = [
        (media, contact_owner(media.message.conversation.contact_id, media.message.provider_id))
        for media in Media.objects.filter(archive_path__startswith=f"{bucket}/")
        .select_related("message__conversation").defer("pending_content")]
    survivors += [(event, webhook_event_owner(event))
                  for event in WebhookEvent.objects.filter(archive_path__startswith=f"{bucket}/").defer("body")]
    for row, owner in survivors:
        target = archive_bucket(owner)
        if target == bucket:
            raise StorageError(f"{row} still belongs in bucket {bucket}; it is not deleted")
        try:
            location = storage.copy(row.archive_path, target)
        except ObjectNotFound:
            logger.error("archived object missing while moving it out of a deleted bucket",
                         extra={"row": f"{type(row).__name__} {row.pk}", "location": row.archive_path})
            continue
        type(row).objects.filter(pk=row.pk, archive_path=row.archive_path).update(archive_path=location)


def storage_deletions_requeue_due(*, limit: int = 500) -> int:
    now = timezone.now()
    with transaction.atomic():
        due = list(StorageDeletion.objects.select_for_update(skip_locked=True)
                   .filter(next_attempt_at__lte=now).order_by("next_attempt_at")[:limit])
        for deletion in due:
            StorageDeletion.objects.filter(pk=deletion.pk).update(
                next_attempt_at=now + max(retry_delay(deletion.attempts), FIRST_RETRY * 4))
            _enqueue_deletion(deletion.pk)
    return len(due)
