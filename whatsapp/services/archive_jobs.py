"""
The archive's background work across media and webhook bodies: handing due attempts back to the workers,
what waits (for /health/ and the admin), "archive now", and the deletions that must reach the storage,
where a bucket that goes first moves out what still belongs to someone else.
"""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, QuerySet
from django.utils import timezone

from core.audit import audit_record
from core.storage import ObjectNotFound, StorageError, get_storage
from whatsapp.models import ArchiveBundle, ArchiveStatus, Media, StorageDeletion, WebhookEvent
from whatsapp.services.archive import (
    FIRST_RETRY,
    Owner,
    archive_bucket,
    contact_owner,
    media_archive_enqueue,
    retry_delay,
    storage_deletion_enqueue,
)
from whatsapp.services.archive_bundles import (
    bundle_rewrites_requeue_due,
    bundles_rehome,
    webhook_bodies_archive_now,
    webhook_event_owners,
)

logger = logging.getLogger(__name__)


# --- The beat job and the backlog ---

def archives_requeue_due(*, limit: int = 500) -> int:
    """Hand media whose archive attempt is due, bundle rewrites and storage deletions back to the workers,
    oldest first, each with a new due time so a slow queue is not flooded with copies. (Webhook bodies have
    a beat job of their own: webhook_bodies_bundle_due.)"""
    now = timezone.now()
    with transaction.atomic():
        due = list(Media.objects.select_for_update(skip_locked=True)
                   .filter(archive_status=ArchiveStatus.PENDING, archive_next_at__lte=now)
                   .order_by("archive_next_at").only("pk", "archive_attempts")[:limit])
        for row in due:
            Media.objects.filter(pk=row.pk).update(
                archive_next_at=now + max(retry_delay(row.archive_attempts), FIRST_RETRY * 4))
            media_archive_enqueue(row.pk)
    return len(due) + bundle_rewrites_requeue_due(limit=limit) + storage_deletions_requeue_due(limit=limit)


def archive_backlog() -> dict[str, Any]:
    """
    What waits for the archive and how late the oldest is (for /health/ and the admin). A webhook body
    waiting for its hour to close is on time and not counted (nor read: a busy hour is many rows); a body
    is due at the latest ARCHIVE_BUNDLE_SECONDS + ARCHIVE_STALE_AFTER_SECONDS after it was processed, and
    its lateness counts from then.
    """
    now = timezone.now()
    pending = WebhookEvent.objects.filter(archive_status=ArchiveStatus.PENDING)
    # Two counts, each served by its own partial index: due now, and failed and waiting for a retry.
    overdue = pending.filter(archive_next_at__lte=now).aggregate(count=Count("pk"), first=Min("processed_at"))
    retrying = pending.filter(archive_attempts__gt=0, archive_next_at__gt=now).aggregate(
        count=Count("pk"), first=Min("processed_at"))
    bodies = {"count": overdue["count"] + retrying["count"],
              "first": min((row["first"] for row in (overdue, retrying) if row["first"]), default=None)}
    media = Media.objects.filter(archive_status=ArchiveStatus.PENDING).aggregate(count=Count("pk"),
                                                                                 first=Min("fetched_at"))
    bundle_delay = timedelta(seconds=settings.ARCHIVE_BUNDLE_SECONDS + settings.ARCHIVE_STALE_AFTER_SECONDS)
    since = [moment for moment in (bodies["first"] and bodies["first"] + bundle_delay, media["first"]) if moment]
    late = max((now - min(since)).total_seconds(), 0) if since else 0
    return {"pending_archive": bodies["count"] + media["count"], "oldest_pending_seconds": int(late),
            "pending_deletions": StorageDeletion.objects.count(),
            "pending_rewrites": ArchiveBundle.objects.filter(rewrite_next_at__isnull=False).count()}


def archive_retry_now(queryset: QuerySet, *, actor: Any = None) -> int:
    """Admin action: archive waiting rows now instead of at their due time (webhook bodies in a bundle of
    their own, whatever their hour)."""
    with transaction.atomic():
        waiting = list(queryset.filter(archive_status=ArchiveStatus.PENDING))
        for row in waiting:
            audit_record(action="archive.retry", obj=row, actor=actor, before={"archive_error": row.archive_error})
        if queryset.model is WebhookEvent:
            webhook_bodies_archive_now([row.pk for row in waiting])
        else:
            for row in waiting:
                media_archive_enqueue(row.pk)
    return len(waiting)


# --- Deletions ---

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
                with transaction.atomic():  # moved whole or not at all
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
    bucket first, and the rows follow them; bundled webhook bodies move into new bundles.
    """
    storage = get_storage()
    survivors: list[tuple[WebhookEvent | Media, Owner]] = [
        (media, contact_owner(media.message.conversation.contact_id, media.message.provider_id))
        for media in Media.objects.filter(archive_path__startswith=f"{bucket}/")
        .select_related("message__conversation").defer("pending_content")]
    events = list(WebhookEvent.objects.filter(archive_path__startswith=f"{bucket}/", archive_bundle__isnull=True)
                  .defer("body"))
    owners = webhook_event_owners(events)
    survivors += [(event, owners[event.pk]) for event in events]
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
    bundles_rehome(bucket)


def storage_deletions_requeue_due(*, limit: int = 500) -> int:
    now = timezone.now()
    with transaction.atomic():
        due = list(StorageDeletion.objects.select_for_update(skip_locked=True)
                   .filter(next_attempt_at__lte=now).order_by("next_attempt_at")[:limit])
        for deletion in due:
            StorageDeletion.objects.filter(pk=deletion.pk).update(
                next_attempt_at=now + max(retry_delay(deletion.attempts), FIRST_RETRY * 4))
            storage_deletion_enqueue(deletion.pk)
    return len(due)
