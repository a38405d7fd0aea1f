"""
Raw webhook bodies in the archive, bundled: the bodies a bucket receives in one hour go into one
compressed object (an ArchiveBundle), because the storage bills every object's upload and every lifecycle
transition per object, and a body of a kilobyte or two costs more to upload than to keep for years.

A bundle is a series of gzip members, one per body, each holding one JSON line that describes the body
(event id, provider, when received, content type, size, SHA-256) and then the body exactly as received.
Concatenated gzip members are one valid gzip stream, so `zcat` reads a whole bundle; each row records its
member's byte range, so reading one body back is one ranged read of a kilobyte.

When: a processed event waits in the database (where its body already is) until its hour has closed and
ARCHIVE_STALE_AFTER_SECONDS more have passed; the beat job then bundles what is due, claiming rows with
SKIP LOCKED so that several workers share a backlog. A write that fails leaves its rows waiting with the
usual backoff. An erasure (or any deletion of an event) rewrites the bundles that held its bodies
without them, and deletes the old objects; a deleted bucket moves the bundles' surviving bodies to their
owners' buckets first.
"""

import gzip
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from contacts.models import ContactUserMapping
from core.bulk import bulk_update_rows
from core.queueing import publish_on_commit, task_named
from core.storage import ObjectNotFound, StorageError, StorageUnavailable, get_storage, sha256_hex, split_location
from whatsapp.models import ArchiveBundle, ArchiveStatus, StorageDeletion, WebhookEvent
from whatsapp.services.archive import (
    ARCHIVE_FIELDS,
    FIRST_RETRY,
    Owner,
    archive_bucket,
    archive_mark_done,
    archive_mark_waiting,
    archive_object_path,
    archive_write,
    archived_object_forget,
    owner_for_provider,
    owner_for_user,
    retry_delay,
)

logger = logging.getLogger(__name__)

BUNDLE_CONTENT_TYPE = "application/gzip"  # not Content-Encoding: GCS would then ignore ranged reads
BUNDLE_FIELDS = [*ARCHIVE_FIELDS, "archive_bundle", "archive_offset", "archive_length"]
# What bundling reads of an event: everything but the columns it never needs.
CLAIM_FIELDS = ["pk", "provider_id", "kind", "body", "body_size", "content_type", "received_at", *BUNDLE_FIELDS]


# --- Owners ---

def webhook_event_owners(events: Iterable[WebhookEvent]) -> dict[int, Owner]:
    """Whose bucket each event's body goes to: a user's only when every contact it carried is mapped, all
    to that one user; otherwise its provider's (a body mixing several people, or nobody's, e.g. statuses)."""
    events = list(events)
    contacts: dict[int, list[int]] = defaultdict(list)
    for event_id, contact_id in (WebhookEvent.contacts.through.objects
                                 .filter(webhookevent_id__in=[event.pk for event in events])
                                 .values_list("webhookevent_id", "contact_id")):
        contacts[event_id].append(contact_id)
    users = dict(ContactUserMapping.objects.filter(contact_id__in={c for ids in contacts.values() for c in ids})
                 .values_list("contact_id", "user_id"))
    owners = {}
    for event in events:
        user_ids = {users.get(contact_id) for contact_id in contacts[event.pk]}
        one_user = len(user_ids) == 1 and None not in user_ids
        owners[event.pk] = owner_for_user(user_ids.pop()) if one_user else owner_for_provider(event.provider_id)
    return owners


# --- Bundling ---

def bundle_window(received_at: datetime) -> datetime:
    """The start of the bundle window (ARCHIVE_BUNDLE_SECONDS, an hour by default) a body belongs to."""
    seconds = settings.ARCHIVE_BUNDLE_SECONDS
    return datetime.fromtimestamp(int(received_at.timestamp()) // seconds * seconds, tz=received_at.tzinfo)


def bundle_due_at(received_at: datetime) -> datetime:
    return (bundle_window(received_at) + timedelta(seconds=settings.ARCHIVE_BUNDLE_SECONDS)
            + timedelta(seconds=settings.ARCHIVE_STALE_AFTER_SECONDS))


def webhook_events_archive_request(events: list[WebhookEvent]) -> None:
    """Processing went through: the raw bodies are due for the archive once their hour has closed (once; a
    replay does not archive again). The rows' fields are set for the caller to save; no task is sent: the
    beat job bundles what is due."""
    for event in events:
        if (event.status == WebhookEvent.Status.PROCESSED and event.archive_status == ArchiveStatus.NONE
                and event.provider_id is not None):
            event.archive_status = ArchiveStatus.PENDING
            event.archive_next_at = bundle_due_at(event.received_at)


def bundle_member(event: WebhookEvent, body: bytes) -> bytes:
    """One body as a gzip member of its own: a line describing it, then its bytes as received."""
    header = {"webhook_event_id": event.pk, "provider": event.kind, "provider_id": event.provider_id,
              "received_at": event.received_at.isoformat(), "content_type": event.content_type,
              "size": len(body), "sha256": sha256_hex(body)}
    return gzip.compress(json.dumps(header, separators=(",", ":")).encode() + b"\n" + body, mtime=0)


def bundle_member_body(member: bytes, event_id: int) -> bytes:
    """The body back from its member, checked against the line that describes it."""
    try:
        line, _, body = gzip.decompress(member).partition(b"\n")
        header = json.loads(line)
    except (OSError, EOFError, ValueError) as exc:
        raise StorageError(f"bundle member of webhook event {event_id} is not readable: {exc}") from exc
    if header.get("webhook_event_id") != event_id or header.get("sha256") != sha256_hex(body):
        raise StorageError(f"bundle member of webhook event {event_id} holds another body "
                           f"(event {header.get('webhook_event_id')}) or a damaged one")
    return body


@dataclass
class BundleRun:
    bundles: int = 0
    bodies: int = 0
    waiting: int = 0


def webhook_bodies_bundle(*, now: datetime | None = None, event_ids: list[int] | None = None,
                          limit: int | None = None) -> BundleRun:
    """
    One claim: up to ARCHIVE_BUNDLE_MAX_BODIES waiting bodies whose hour has closed (or the given events,
    whenever they were received: "archive now"), oldest first, locked with SKIP LOCKED, written as one
    bundle per bucket and hour. A bucket that cannot take its bundle leaves those rows waiting with the
    usual backoff; the others are archived.
    """
    now = now or timezone.now()
    run = BundleRun()
    with transaction.atomic():
        claim = (WebhookEvent.objects.select_for_update(skip_locked=True, of=("self",))
                 .filter(archive_status=ArchiveStatus.PENDING, body_pruned_at__isnull=True))
        claim = claim.filter(pk__in=event_ids) if event_ids is not None else claim.filter(archive_next_at__lte=now)
        events = list(claim.order_by("received_at", "id").only(*CLAIM_FIELDS)
                      [:limit or settings.ARCHIVE_BUNDLE_MAX_BODIES])
        if not events:
            return run
        owners = webhook_event_owners(events)
        groups: dict[tuple[str, datetime], list[WebhookEvent]] = defaultdict(list)
        for event in events:
            groups[owners[event.pk].key, bundle_window(event.received_at)].append(event)
        owner_by_key = {owner.key: owner for owner in owners.values()}
        unavailable: StorageUnavailable | None = None
        for (owner_key, window), members in groups.items():
            for event in members:
                event.archive_attempts += 1
            owner = owner_by_key[owner_key]
            try:
                if unavailable:  # the storage is out: the other buckets wait too, rather than each time out
                    raise unavailable
                _bundle_store(lambda path, data, metadata, owner=owner: archive_write(
                    owner, path, data, content_type=BUNDLE_CONTENT_TYPE, metadata=metadata),
                    window, members, [bundle_member(event, bytes(event.body)) for event in members])
            except StorageError as exc:
                unavailable = exc if isinstance(exc, StorageUnavailable) else unavailable
                for event in members:
                    archive_mark_waiting(event, exc)
                run.waiting += len(members)
            else:
                run.bundles += 1
                run.bodies += len(members)
        bulk_update_rows(events, BUNDLE_FIELDS)
    return run


def webhook_bodies_bundle_due(*, budget_seconds: float = 50.0) -> BundleRun:
    """The beat job: claim after claim until nothing is due or the time is spent (the next run goes on)."""
    total = BundleRun()
    started = time.monotonic()
    while time.monotonic() - started < budget_seconds:
        run = webhook_bodies_bundle()
        total.bundles, total.bodies, total.waiting = (total.bundles + run.bundles, total.bodies + run.bodies,
                                                      total.waiting + run.waiting)
        if run.bodies + run.waiting < settings.ARCHIVE_BUNDLE_MAX_BODIES:
            break
    return total


Writer = Callable[[str, bytes, dict[str, str]], str]


def _bundle_store(write: Writer, window: datetime, events: list[WebhookEvent], members: list[bytes]) -> ArchiveBundle:
    """
    Write these members as one object and point each event at its byte range (the caller saves them).
    The object is named after its members: a write retried after a rollback (a worker killed after the
    upload, a timeout the storage had in fact completed) overwrites the same object instead of leaving a
    copy no row knows of, which an erasure could not find; a rewrite, holding fewer members, gets another
    name than the bundle it replaces.
    """
    data = b"".join(members)
    name = sha256_hex(",".join(str(event.pk) for event in sorted(events, key=lambda event: event.pk)).encode())
    path = archive_object_path(f"whatsapp-messages/{window:%Y-%m-%d}/webhooks/{window:%H%M}-{name[:20]}.jsonl.gz",
                               len(data))
    body_bytes = sum(event.body_size or 0 for event in events)
    location = write(path, data, {"kind": "webhook-bundle", "members": str(len(members)),
                                  "window_start": window.isoformat(), "sha256": sha256_hex(data)})
    # The same members bundled before (their bundle was lost or altered, and they were archived again):
    # the same name, so the same row.
    bundle, _ = ArchiveBundle.objects.update_or_create(location=location, defaults={
        "backend": get_storage().name, "bucket": split_location(location)[0], "window_start": window,
        "members": len(members), "size_bytes": len(data), "body_bytes": body_bytes, "rewrite_next_at": None})
    offset = 0
    for event, member in zip(events, members, strict=True):
        archive_mark_done(event, location)
        event.archive_bundle, event.archive_offset, event.archive_length = bundle, offset, len(member)
        offset += len(member)
    return bundle


# --- Reading a body back ---

def webhook_body(event: WebhookEvent) -> bytes:
    """The raw body, from the database or, once retention pruned it there, from the archive."""
    if event.body_pruned_at is None:
        return bytes(event.body)
    if event.archive_bundle_id is None:  # archived on its own, before bodies were bundled
        return get_storage().read(event.archive_path)
    member = get_storage().read_range(event.archive_path, event.archive_offset, event.archive_length)
    return bundle_member_body(member, event.pk)


# --- Retention ---

def webhook_bodies_prune(*, older_than_days: int | None = None, limit: int = 1000) -> int:
    """
    Retention: raw bodies older than WEBHOOK_BODY_RETENTION_DAYS leave the database once the archive holds
    them. Each object is checked in the storage first (present, the size written): one check per bundle,
    whatever the number of bodies in it. While the storage cannot be reached nothing is pruned.
    """
    days = settings.WEBHOOK_BODY_RETENTION_DAYS if older_than_days is None else older_than_days
    if days <= 0 and older_than_days is None:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    candidates = list(WebhookEvent.objects.filter(archive_status=ArchiveStatus.ARCHIVED, body_pruned_at__isnull=True,
                                                  received_at__lt=cutoff)
                      .order_by("received_at").values_list("pk", "archive_path", "body_size", "archive_bundle_id")
                      [:limit])
    bundle_sizes = dict(ArchiveBundle.objects.filter(pk__in={row[3] for row in candidates if row[3]})
                        .values_list("pk", "size_bytes"))
    by_object: dict[str, list[int]] = defaultdict(list)
    expected: dict[str, int] = {}
    for pk, location, size, bundle_id in candidates:
        by_object[location].append(pk)
        expected[location] = bundle_sizes.get(bundle_id, 0) if bundle_id else size
    storage = get_storage()
    safe: dict[str, list[int]] = {}
    for location, event_ids in by_object.items():
        try:
            stored = storage.stat(location)
        except ObjectNotFound:
            _archive_again(event_ids, location, "is missing from the storage")
            continue
        except StorageError as exc:
            logger.warning("retention paused: the storage does not answer", extra={"error": str(exc)})
            break
        if stored.size != expected[location]:
            # Not what we wrote (overwritten or cut short): the database copies are the ones received.
            _archive_again(event_ids, location, f"has {stored.size} bytes in the storage, not {expected[location]}")
            continue
        safe[location] = event_ids
    # Only rows still pointing where they were checked (a bundle rewrite may have moved them meanwhile).
    return sum(WebhookEvent.objects.filter(pk__in=event_ids, archive_path=location, body_pruned_at__isnull=True)
               .update(body=b"", body_pruned_at=timezone.now()) for location, event_ids in safe.items())


def _archive_again(event_ids: list[int], location: str, problem: str) -> None:
    logger.error("archived webhook bodies' object %s; archiving them again", problem,
                 extra={"webhook_events": len(event_ids), "location": location})
    # Only rows still pointing there and still holding their body (a rewrite may have moved them meanwhile).
    WebhookEvent.objects.filter(pk__in=event_ids, archive_path=location, body_pruned_at__isnull=True).update(
        archive_status=ArchiveStatus.PENDING, archive_next_at=timezone.now(), archive_path="", archive_bundle=None,
        archive_offset=None, archive_length=None)


# --- Deleted bodies: rewriting their bundles ---

def bundle_member_forget(bundle_id: int) -> None:
    """An event archived in this bundle was deleted: the bundle is rewritten without it once this commits
    (and retried until it is)."""
    due = timezone.now() + FIRST_RETRY * 4
    # Not when its whole bucket is due for deletion (an erasure records that first): nothing to rewrite.
    bucket_goes = StorageDeletion.objects.filter(target=StorageDeletion.Target.BUCKET, name=OuterRef("bucket"))
    if ArchiveBundle.objects.filter(~Exists(bucket_goes), pk=bundle_id, rewrite_next_at__isnull=True).update(
            rewrite_next_at=due):
        bundle_rewrite_enqueue(bundle_id)


def bundle_rewrite_enqueue(bundle_id: int) -> None:
    rewrite_archive_bundle_task = task_named("whatsapp.tasks.rewrite_archive_bundle_task")
    publish_on_commit(lambda: rewrite_archive_bundle_task.delay(bundle_id), what=f"rewrite of bundle {bundle_id}")


def bundle_rewrite(bundle_id: int) -> bool:
    """
    One attempt to rewrite a bundle with only the bodies whose rows still exist (an erasure deleted the
    others): the surviving members are copied byte for byte into a new object, the rows follow, and the
    old object is deleted after commit. A bundle left with no body is deleted. True when done.
    """
    with transaction.atomic():
        bundle = ArchiveBundle.objects.select_for_update(skip_locked=True).filter(pk=bundle_id).first()
        if bundle is None or bundle.rewrite_next_at is None:
            return False
        if StorageDeletion.objects.filter(target=StorageDeletion.Target.BUCKET, name=bundle.bucket).exists():
            # Its whole bucket goes: the bucket's deletion moves what survives first.
            ArchiveBundle.objects.filter(pk=bundle.pk).update(rewrite_next_at=None)
            return True
        survivors = _members(bundle)
        if not survivors:
            archived_object_forget(bundle.location, reason="webhook bundle emptied by deletions")
            bundle.delete()
            return True
        bundle.rewrite_attempts += 1
        storage = get_storage()
        try:
            old = bundle.location
            moved = _bundle_copy(bundle, survivors, lambda path, data, metadata: storage.write(
                bundle.bucket, path, data, content_type=BUNDLE_CONTENT_TYPE, metadata=metadata))
        except StorageError as exc:
            bundle.rewrite_error = f"attempt {bundle.rewrite_attempts}: {exc}"[:4000]
            bundle.rewrite_next_at = timezone.now() + retry_delay(bundle.rewrite_attempts)
            bundle.save(update_fields=["rewrite_attempts", "rewrite_error", "rewrite_next_at"])
            logger.warning("bundle rewrite failed", extra={"bundle": bundle.pk, "error": str(exc)})
            return False
        bulk_update_rows(survivors, BUNDLE_FIELDS)
        ArchiveBundle.objects.filter(pk=moved.pk).update(rewritten_at=timezone.now())
        archived_object_forget(old, reason="webhook bundle rewritten without deleted bodies")
        bundle.delete()  # the new bundle's row replaces it
        logger.info("bundle rewritten", extra={"bundle": moved.pk, "members": moved.members})
    return True


def _members(bundle: ArchiveBundle) -> list[WebhookEvent]:
    return list(WebhookEvent.objects.select_for_update(of=("self",)).filter(archive_bundle=bundle)
                .order_by("archive_offset").only("pk", "kind", "provider_id", "received_at", "body_size",
                                                  *BUNDLE_FIELDS))


def _bundle_copy(bundle: ArchiveBundle, events: list[WebhookEvent], write: Writer) -> ArchiveBundle:
    """A new bundle of these events' members, read from the old bundle in one request."""
    data = get_storage().read(bundle.location)
    members = [data[event.archive_offset:event.archive_offset + event.archive_length] for event in events]
    for event, member in zip(events, members, strict=True):
        bundle_member_body(member, event.pk)  # a damaged bundle is not copied as if it were sound
    return _bundle_store(write, bundle.window_start, events, members)


def bundles_rehome(bucket: str) -> None:
    """
    Before a bucket goes: the bodies of its bundles whose rows still exist belong to someone else now (a
    contact mapped to another user, unmapped or merged before the erasure), so they are written into
    bundles in their owners' buckets first, and the rows follow them.
    """
    for bundle in ArchiveBundle.objects.filter(bucket=bucket).select_for_update():
        survivors = _members(bundle)
        owners = webhook_event_owners(survivors)
        by_owner: dict[str, list[WebhookEvent]] = defaultdict(list)
        for event in survivors:
            by_owner[owners[event.pk].key].append(event)
        for members in by_owner.values():  # all checked before anything is written
            if archive_bucket(owners[members[0].pk]) == bucket:
                raise StorageError(f"webhook event {members[0].pk} still belongs in bucket {bucket}; it is not deleted")
        for members in by_owner.values():
            owner = owners[members[0].pk]
            _bundle_copy(bundle, members, lambda path, data, metadata, owner=owner: archive_write(
                owner, path, data, content_type=BUNDLE_CONTENT_TYPE, metadata=metadata))
        bulk_update_rows(survivors, BUNDLE_FIELDS)
        bundle.delete()


# --- The beat job's share ---

def bundle_rewrites_requeue_due(*, limit: int = 500) -> int:
    now = timezone.now()
    with transaction.atomic():
        due = list(ArchiveBundle.objects.select_for_update(skip_locked=True)
                   .filter(rewrite_next_at__lte=now).order_by("rewrite_next_at").only("pk", "rewrite_attempts")[:limit])
        for bundle in due:
            ArchiveBundle.objects.filter(pk=bundle.pk).update(
                rewrite_next_at=now + max(retry_delay(bundle.rewrite_attempts), FIRST_RETRY * 4))
            bundle_rewrite_enqueue(bundle.pk)
    return len(due)


def webhook_bodies_archive_now(event_ids: list[int]) -> None:
    """These waiting events, handed to a worker to bundle now once the caller commits ("archive now")."""
    if event_ids:
        bundle_webhook_bodies_task = task_named("whatsapp.tasks.bundle_webhook_bodies_task")
        publish_on_commit(lambda: bundle_webhook_bodies_task.delay(event_ids),
                          what=f"archive of {len(event_ids)} webhook bodies")

