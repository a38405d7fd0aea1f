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
from django.db.models import Q
from django.utils import timezone

from contacts.models import ContactUserMapping
from core.queueing import publish_on_commit, task_named
from core.storage import (
    TIERED_PREFIX,
    BucketNotFound,
    BucketSpec,
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


def archive_buckets_configure() -> list[tuple[str, str]]:
    """Apply the current settings (lifecycle rules, labels, access) to every bucket recorded for this
    backend; a bucket gone from the storage is made again. Returns (bucket, outcome) for each."""
    storage = get_storage()
    outcomes = []
    for row in ArchiveBucket.objects.filter(backend=storage.name).order_by("pk"):
        owner = Owner(key=row.owner_key, user_id=row.user_id, provider_id=row.provider_id)
        try:
            storage.create_bucket(_bucket_spec(owner, row.name))
        except StorageError as exc:
            outcomes.append((row.name, f"failed: {exc}"))
        else:
            outcomes.append((row.name, "configured"))
    return outcomes


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


def archive_mark_done(row: WebhookEvent | Media, location: str) -> None:
    row.archive_path = location
    row.archive_status = ArchiveStatus.ARCHIVED
    row.archived_at = timezone.now()
    row.archive_next_at = None
    row.archive_error = ""


def archive_mark_waiting(row: WebhookEvent | Media, exc: Exception) -> None:
    row.archive_status = ArchiveStatus.PENDING
    row.archive_error = f"attempt {row.archive_attempts}: {exc}"[:4000]
    row.archive_next_at = timezone.now() + retry_delay(row.archive_attempts)
    logger.warning("archive attempt failed", extra={"row": f"{type(row).__name__} {row.pk}",
                                                    "attempts": row.archive_attempts, "error": str(exc)})


ARCHIVE_FIELDS = ["archive_status", "archive_path", "archive_attempts", "archive_next_at", "archive_error",
                  "archived_at"]


# --- Media ---

def media_archive_path(media: Media) -> str:
    received = media.message.received_at or media.message.created_at or media.created_at
    extension = mimetypes.guess_extension(media.mime_type.split(";")[0].strip()) or ""
    return (f"whatsapp-messages/{received:%Y-%m-%d}/provider-{media.message.provider_id}/"
            f"message-{media.message_id}/media-{media.pk}{extension}")


def archive_object_path(path: str, size: int) -> str:
    """
    Where an object of `size` bytes goes: under the tiered prefix, which the buckets' lifecycle rules move
    to colder classes, when it is at least ARCHIVE_TIERED_MIN_BYTES; otherwise it stays Standard. GCS
    bills each class transition as one Class A operation per object (Nearline, Coldline and Archive
    together about $0.00008), which a small object never earns back in cheaper storage
    (https://cloud.google.com/storage/pricing#operations-pricing; bench/storage_cost.py prints the
    break-even size).
    """
    return f"{TIERED_PREFIX}{path}" if size >= settings.ARCHIVE_TIERED_MIN_BYTES else path


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
        location = archive_write(owner, archive_object_path(media_archive_path(media), len(data)), data,
                                 content_type=media.mime_type or "application/octet-stream",
                                 metadata=_media_metadata(media, data))
    except StorageError as exc:
        media.pending_content = data
        archive_mark_waiting(media, exc)
    else:
        media.pending_content = None
        archive_mark_done(media, location)


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


def media_archive_enqueue(media_id: int) -> None:
    archive_media_task = task_named("whatsapp.tasks.archive_media_task")

    publish_on_commit(lambda: archive_media_task.delay(media_id), what=f"archive of media {media_id}")


# --- Deletions that must reach the storage (erasure, expired exports) ---

def storage_deletion_request(*, target: str, name: str, reason: str, backend: str = "") -> StorageDeletion:
    """Record a deletion in the caller's transaction; it runs after commit and is retried until done."""
    deletion = StorageDeletion.objects.create(backend=backend or get_storage().name, target=target, name=name,
                                              reason=reason[:100], next_attempt_at=timezone.now() + FIRST_RETRY * 4)
    storage_deletion_enqueue(deletion.pk)
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


def storage_deletion_enqueue(deletion_id: int) -> None:
    run_storage_deletion_task = task_named("whatsapp.tasks.run_storage_deletion_task")

    publish_on_commit(lambda: run_storage_deletion_task.delay(deletion_id), what=f"storage deletion {deletion_id}")


