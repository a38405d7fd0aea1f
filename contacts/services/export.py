"""
GDPR export of one user's WhatsApp data: a zip with the contacts mapped to the user, their conversations
and messages as JSON, and the media files the platform holds, kept in the user's own archive bucket for
DATA_EXPORT_RETENTION_DAYS and downloadable from the admin and the API.

A request records a pending DataExport and hands it to a worker; the build is one attempt, under the
export row's lock. While the storage cannot be reached the export stays pending and is tried again with
the archive's backoff (a beat job hands due exports back); any other failure marks it failed with the
reason. The zip is built in a temporary file, one entry at a time: messages are read in chunks and media
files copied from the archive in chunks; the finished file is uploaded in chunks and downloads stream it
back, so no zip is ever held in memory whole.

What the zip holds (see README_TEXT): contacts.json, conversations.json, messages.json,
media/<message id>/<media id>-<file name>, manifest.json (counts and a sha256 of every file), README.txt.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mimetypes
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, Prefetch, Q
from django.utils import timezone

from contacts import hooks
from contacts.models import ConsentEvent, Contact, ContactUserMapping, DataExport
from core.audit import audit_record
from core.queueing import publish_on_commit, task_named
from core.storage import ObjectNotFound, StorageError, get_storage
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, StorageDeletion
from whatsapp.services.archive import (
    archive_write_file,
    owner_for_user,
    retry_delay,
    storage_deletion_request,
)

logger = logging.getLogger(__name__)

MESSAGES_CHUNK = 500
COPY_CHUNK = 1024 * 1024  # bytes read at a time from a media file, or from the finished zip to hash it
DOWNLOAD_BLOCK = 256 * 1024  # bytes per chunk of a streamed download
FILENAME_MAX = 100
UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")

README_TEXT = """\
WhatsApp data export
====================

This archive holds what the platform keeps about the person behind one user account: the WhatsApp
contacts mapped to the account and everything exchanged with them.

contacts.json       The contacts: profile name, identities (phone numbers, provider ids, emails), consent
                    state and its history, language, time zone, and how the contact was mapped to the user.
conversations.json  Each conversation with a business number: provider, dates, the 24-hour service
                    windows (sessions) and the AI summary, if one was made.
messages.json       Every message of those conversations, oldest first: direction, type, text, content,
                    delivery status and its times, errors, the template used and its variables, the AI
                    outputs (transcript, intent, sentiment, language) and the media it carried. A media
                    entry's "file" names its file in this archive; a file the platform never obtained
                    (not downloaded, failed, expired) is listed with "file": null and a "note".
projects.json, goals.json, tasks.json, notes.json, content_requests.json, reminders.json,
assistant_preferences.json, assistant_turns.json
                    What the assistant keeps for the user, when it is used: their projects, goals, tasks,
                    notes, content requests with their drafts, reminders and preferences, and what it
                    understood and did with each of their messages.
media/              The media files: media/<message id>/<media id>-<file name>.
manifest.json       When and for whom the export was made, what it counts, and the size and SHA-256 of
                    every other file, to check that nothing was changed or lost.

Times are ISO 8601 in UTC. Ids are the platform's own and link the files together (a message's
"conversation" is a conversation's "id", a conversation's "contact" a contact's "id").
"""


class ExportNotReady(Exception):
    """The export's zip cannot be downloaded (yet, or any more)."""

    def __init__(self, export: DataExport):
        self.export = export
        super().__init__(f"export {export.pk} is {export.status}")


# --- Requesting -----------------------------------------------------------------------------------

def data_export_request(*, user: Any, actor: Any = None) -> DataExport:
    """Record a pending export of `user`'s data and hand it to a worker once committed."""
    with transaction.atomic():
        # Waits for an erasure of the same user in progress (it takes this lock too).
        get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        requested_by = actor if getattr(actor, "is_authenticated", False) else None
        export = DataExport.objects.create(
            user=user, requested_by=requested_by,
            # A lost task is handed out again by the beat job after this.
            next_attempt_at=timezone.now() + timedelta(seconds=settings.ARCHIVE_STALE_AFTER_SECONDS))
        audit_record(action="user.export", obj=user, actor=actor, after={"export": export.pk})
        _enqueue_build(export.pk)
    return export


def _enqueue_build(export_id: int) -> None:
    data_export_build_task = task_named("contacts.tasks.data_export_build_task")

    publish_on_commit(lambda: data_export_build_task.delay(export_id), what=f"build of data export {export_id}")


def data_exports_requeue_due(*, limit: int = 100) -> int:
    """Beat job: pending exports whose attempt is due (a storage outage, a lost task) go back to the workers."""
    now = timezone.now()
    stale = timedelta(seconds=settings.ARCHIVE_STALE_AFTER_SECONDS)
    with transaction.atomic():
        due = list(DataExport.objects.select_for_update(skip_locked=True)
                   .filter(status=DataExport.Status.PENDING, next_attempt_at__lte=now)
                   .order_by("next_attempt_at").values_list("pk", "attempts")[:limit])
        for pk, attempts in due:
            DataExport.objects.filter(pk=pk).update(next_attempt_at=now + max(retry_delay(attempts), stale))
            _enqueue_build(pk)
    return len(due)


# --- Building -------------------------------------------------------------------------------------

def data_export_build(export_id: int) -> DataExport | None:
    """One attempt to build the export's zip and store it in the user's bucket."""
    with transaction.atomic():
        export = (DataExport.objects.select_for_update(skip_locked=True, of=("self",)).select_related("user")
                  .filter(pk=export_id).first())
        if export is None or export.status != DataExport.Status.PENDING:
            return export
        export.attempts += 1
        waiting: StorageError | None = None
        try:
            with transaction.atomic():  # any other failure leaves the export row usable
                try:
                    _build_and_store(export)
                except StorageError as exc:
                    # Caught inside: a bucket recorded before the write failed stays recorded, so that an
                    # erasure finds it.
                    waiting = exc
        except Exception as exc:  # recorded on the row for the admin to see
            logger.exception("data export failed", extra={"export": export.pk})
            export.status = DataExport.Status.FAILED
            export.error = f"{type(exc).__name__}: {exc}"[:4000]
            export.next_attempt_at = None
            export.finished_at = timezone.now()
        if waiting is not None:
            export.error = f"attempt {export.attempts}: {waiting}"[:4000]
            export.next_attempt_at = timezone.now() + retry_delay(export.attempts)
            logger.warning("data export waits for the storage",
                           extra={"export": export.pk, "attempts": export.attempts, "error": str(waiting)})
        export.save()
    return export


def _build_and_store(export: DataExport) -> None:
    generated_at = timezone.now()
    path = f"exports/{generated_at:%Y-%m-%d}/export-{export.pk}.zip"
    with tempfile.TemporaryFile() as spool:
        counts = _write_zip(spool, export, generated_at)
        size, digest = _measure(spool)
        location = archive_write_file(owner_for_user(export.user_id), path, spool, content_type="application/zip",
                                      metadata={"kind": "data-export", "export_id": str(export.pk),
                                                "user_id": str(export.user_id), "sha256": digest,
                                                "generated_at": generated_at.isoformat()})
    export.status = DataExport.Status.READY
    export.location = location
    export.size_bytes = size
    export.sha256 = digest
    export.counts = counts
    export.error = ""
    export.next_attempt_at = None
    export.finished_at = timezone.now()
    export.expires_at = export.finished_at + timedelta(days=settings.DATA_EXPORT_RETENTION_DAYS)


def _measure(spool: BinaryIO) -> tuple[int, str]:
    """Size and sha256 of the finished zip, read in chunks; leaves the file rewound for the upload."""
    spool.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := spool.read(COPY_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    spool.seek(0)
    return size, digest.hexdigest()


class _Entry:
    """One file being written into the zip, hashed and measured as it goes."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)


class _ZipWriter:
    def __init__(self, fileobj: BinaryIO, generated_at: datetime):
        self.zip = zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED)
        self.date_time = generated_at.timetuple()[:6]
        self.files: list[dict[str, Any]] = []

    def add(self, path: str, chunks: Iterable[bytes], *, compress: bool = True) -> None:
        with self._entry(path, compress) as entry:
            for chunk in chunks:
                entry.write(chunk)

    def add_file(self, path: str, source: BinaryIO, *, compress: bool = True) -> None:
        """An entry copied from an open file a chunk at a time."""
        with self._entry(path, compress) as entry:
            shutil.copyfileobj(source, entry, COPY_CHUNK)

    @contextmanager
    def _entry(self, path: str, compress: bool) -> Iterator[_Entry]:
        info = zipfile.ZipInfo(path, date_time=self.date_time)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with self.zip.open(info, "w", force_zip64=True) as handle:
            entry = _Entry(handle)
            yield entry
        self.files.append({"path": path, "size": entry.size, "sha256": entry.digest.hexdigest()})

    def close(self) -> None:
        self.zip.close()


def _json(value: Any) -> bytes:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2).encode()


def _json_list(items: Iterable[dict[str, Any]], counter: dict[str, int], key: str) -> Iterator[bytes]:
    """A JSON array written item by item (the messages of a long history never sit in memory at once)."""
    yield b"["
    for index, item in enumerate(items):
        text = json.dumps(item, cls=DjangoJSONEncoder, ensure_ascii=False)
        yield (b"\n  " if index == 0 else b",\n  ") + text.encode()
        counter[key] = counter.get(key, 0) + 1
    yield b"\n]\n"


def _write_zip(fileobj: BinaryIO, export: DataExport, generated_at: datetime) -> dict[str, int]:
    user = export.user
    contact_ids = list(ContactUserMapping.objects.filter(user=user).order_by("contact_id")
                       .values_list("contact_id", flat=True))
    counts = {"contacts": 0, "conversations": 0, "messages": 0, "media": 0, "media_files": 0}
    writer = _ZipWriter(fileobj, generated_at)
    try:
        writer.add("contacts.json", _json_list(_contacts(contact_ids), counts, "contacts"))
        writer.add("conversations.json", _json_list(_conversations(contact_ids), counts, "conversations"))
        media_files = _write_media(writer, contact_ids, counts)
        writer.add("messages.json", _json_list(_messages(contact_ids, media_files), counts, "messages"))
        for sections in hooks.user_export_sections.fire(user=user):
            for name, rows in sections:
                counts[name] = 0
                writer.add(f"{name}.json", _json_list(rows, counts, name))
        writer.add("README.txt", [README_TEXT.encode()])
        manifest = {
            "format": "whatsapp-data-export", "version": 1, "export_id": export.pk, "generated_at": generated_at,
            "user": {"id": user.pk, "username": user.get_username()}, "counts": counts, "files": writer.files,
        }
        writer.add("manifest.json", [_json(manifest)])
    finally:
        writer.close()
    return counts


# --- What goes in ---------------------------------------------------------------------------------

def _contacts(contact_ids: list[int]) -> Iterator[dict[str, Any]]:
    history = Prefetch("consent_events", queryset=ConsentEvent.objects.order_by("created_at", "id"))
    contacts = (Contact.objects.filter(pk__in=contact_ids).select_related("user_mapping")
                .prefetch_related("identities", history).order_by("pk"))
    for contact in contacts:
        mapping = getattr(contact, "user_mapping", None)
        yield {
            "id": contact.pk,
            "profile_name": contact.profile_name,
            "identities": [{"kind": identity.kind, "value": identity.value, "scope": identity.scope,
                            "created_at": identity.created_at}
                           for identity in sorted(contact.identities.all(), key=lambda identity: identity.pk)],
            "consent": {"state": contact.consent, "changed_at": contact.consent_changed_at,
                        "source": contact.consent_source},
            "consent_history": [{"previous_state": event.previous_state, "state": event.state,
                                 "source": event.source, "detail": event.detail, "message": event.message_id,
                                 "at": event.created_at} for event in contact.consent_events.all()],
            "language": contact.language,
            "time_zone": contact.time_zone,
            "last_seen_at": contact.last_seen_at,
            "created_at": contact.created_at,
            "mapping": None if mapping is None else {
                "method": mapping.method, "rule": mapping.rule, "verified_at": mapping.verified_at,
                "notify_on_ready": mapping.notify_on_ready, "created_at": mapping.created_at},
        }


def _conversations(contact_ids: list[int]) -> Iterator[dict[str, Any]]:
    conversations = (Conversation.objects.filter(contact_id__in=contact_ids).select_related("provider")
                     .prefetch_related("sessions", "resolutions").order_by("pk"))
    for conversation in conversations:
        provider = conversation.provider
        yield {
            "id": conversation.pk,
            "contact": conversation.contact_id,
            "provider": {"id": provider.pk, "kind": provider.kind, "name": provider.name,
                         "business_phone_number": provider.phone_number},
            "external_conversation_id": conversation.external_conversation_id,
            "external_state": conversation.external_state,
            "status": conversation.status,
            "status_changed_at": conversation.status_changed_at,
            "snoozed_until": conversation.snoozed_until,
            "created_at": conversation.created_at,
            "last_message_at": conversation.last_message_at,
            "ai_summary": conversation.ai_summary,
            "context": conversation.context,
            "sessions": [{"state": session.state, "opened_at": session.opened_at,
                          "last_inbound_at": session.last_inbound_at, "expires_at": session.expires_at,
                          "closed_at": session.closed_at}
                         for session in sorted(conversation.sessions.all(), key=lambda session: session.opened_at)],
            # What the person answered to satisfaction surveys, and when each round was resolved.
            "resolutions": [{"resolved_at": resolution.resolved_at, "survey": resolution.survey,
                             "rating": resolution.rating, "comment": resolution.comment,
                             "answered_at": resolution.answered_at}
                            for resolution in sorted(conversation.resolutions.all(), key=lambda r: r.resolved_at)],
        }


def _media_filename(media: Media) -> str:
    name = UNSAFE_IN_FILENAME.sub("_", media.filename.rsplit("/", 1)[-1]).strip("._")[:FILENAME_MAX]
    if not name:
        extension = mimetypes.guess_extension((media.mime_type or "").split(";")[0].strip()) or ".bin"
        name = f"file{extension}"
    return f"media/{media.message_id}/{media.pk}-{name}"


def _write_media(writer: _ZipWriter, contact_ids: list[int], counts: dict[str, int]) -> dict[int, dict[str, Any]]:
    """Each file the platform holds goes in; returns, per media id, its path in the zip or why it is not there.
    A StorageError other than a missing object (the storage is out) stops the build, to be tried again."""
    placed: dict[int, dict[str, Any]] = {}
    media_rows = (Media.objects.filter(message__conversation__contact_id__in=contact_ids).defer("pending_content")
                  .annotate(waiting=ExpressionWrapper(Q(pending_content__isnull=False), output_field=BooleanField()))
                  .order_by("message_id", "pk"))
    for media in media_rows.iterator(chunk_size=MESSAGES_CHUNK):
        counts["media"] += 1
        # In the archive, or in the database while it waits for the archive (read one file at a time).
        if not (media.archive_path or media.waiting):
            placed[media.pk] = {"file": None, "note": f"not included: the file was not obtained ({media.state})"}
            continue
        try:
            source = _media_file(media)
        except ObjectNotFound:
            logger.error("media file missing from the archive; left out of the export",
                         extra={"media": media.pk, "location": media.archive_path})
            placed[media.pk] = {"file": None, "note": "not included: the file is missing from the archive"}
            continue
        path = _media_filename(media)
        with source:
            writer.add_file(path, source, compress=False)
        counts["media_files"] += 1
        placed[media.pk] = {"file": path, "note": ""}
    return placed


def _media_file(media: Media) -> BinaryIO:
    """The file, open for reading: from the database while it waits for the archive (bytes there already),
    else from the archive, read a range at a time. ObjectNotFound when the archive does not have it."""
    if media.waiting:
        content = media.pending_content  # loads the deferred field, this file only
        if content is not None:
            return io.BytesIO(content)
        media.refresh_from_db(fields=["archive_path"])  # archived since the rows were read
    return get_storage().open(media.archive_path)


def _messages(contact_ids: list[int], media_files: dict[int, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    messages = (Message.objects.filter(conversation__contact_id__in=contact_ids).select_related("template")
                .prefetch_related(
                    Prefetch("status_events", queryset=MessageStatusEvent.objects.order_by("occurred_at", "id")),
                    Prefetch("media", queryset=Media.objects.defer("pending_content").order_by("pk")))
                .order_by("created_at", "pk"))
    for message in messages.iterator(chunk_size=MESSAGES_CHUNK):
        template = message.template
        yield {
            "id": message.pk,
            "conversation": message.conversation_id,
            "direction": message.direction,
            "type": message.message_type,
            "text": message.text,
            "content": message.content,
            "provider_message_id": message.provider_message_id,
            "reply_to": message.reply_to_id,
            "status": message.status,
            "times": {"created": message.created_at, "received": message.received_at, "queued": message.queued_at,
                      "sent": message.sent_at, "delivered": message.delivered_at, "read": message.read_at,
                      "played": message.played_at, "failed": message.failed_at},
            "status_history": [{"status": event.status, "at": event.occurred_at, "error_code": event.error_code,
                                "error_title": event.error_title} for event in message.status_events.all()],
            "error": None if not (message.error_code or message.error_title or message.error_detail) else {
                "code": message.error_code, "title": message.error_title, "detail": message.error_detail},
            "template": None if template is None else {
                "name": template.name, "language": template.language, "version": template.version,
                "variables": message.template_variables},
            "ai": {"transcript": message.transcript, "intent": message.intent, "sentiment": message.sentiment,
                   "language": message.language, "processed_at": message.ai_processed_at},
            "media": [{"id": media.pk, "mime_type": media.mime_type, "filename": media.filename,
                       "caption": media.caption, "size_bytes": media.size_bytes, "sha256": media.sha256,
                       "state": media.state,
                       **media_files.get(media.pk, {"file": None, "note": "not included"})}
                      for media in message.media.all()],
        }


# --- Downloading and expiry -----------------------------------------------------------------------

def data_export_downloadable(export: DataExport) -> bool:
    """Ready, and not yet past its expiry (the hourly job deletes it a little later)."""
    return (export.status == DataExport.Status.READY and bool(export.location)
            and (export.expires_at is None or export.expires_at > timezone.now()))


def data_export_expired(export: DataExport) -> bool:
    return export.status == DataExport.Status.EXPIRED or (
        export.status == DataExport.Status.READY and not data_export_downloadable(export))


def data_export_open(export: DataExport) -> BinaryIO:
    """The zip, open for reading in chunks (the caller closes it); ExportNotReady unless it is downloadable,
    ObjectNotFound when the storage no longer has it, StorageError when it cannot be reached. Streamed as it
    is read, it cannot be checked against export.sha256 first: downloads carry the sha256 for the client."""
    if not data_export_downloadable(export):
        raise ExportNotReady(export)
    return get_storage().open(export.location)


def data_exports_expire(*, limit: int = 500) -> int:
    """Ready exports past their expiry: their zip is scheduled for deletion and they are marked expired."""
    now = timezone.now()
    with transaction.atomic():
        due = list(DataExport.objects.select_for_update(skip_locked=True)
                   .filter(status=DataExport.Status.READY, expires_at__lte=now).order_by("expires_at")[:limit])
        for export in due:
            if export.location:
                storage_deletion_request(target=StorageDeletion.Target.OBJECT, name=export.location,
                                         reason=f"data export {export.pk} expired")
            export.status = DataExport.Status.EXPIRED
            export.location = ""
            export.save(update_fields=["status", "location"])
    if due:
        logger.info("data exports expired", extra={"count": len(due)})
    return len(due)


def data_exports_delete_for_user(user: Any) -> int:
    """
    The user is being deleted: their exports go, and with them their zips (the post_delete receiver in
    contacts.signals schedules each zip's deletion). Returns how many went. Call inside a transaction.
    """
    exports = DataExport.objects.filter(user=user)
    # Waits for a build in progress (it holds its export's row for the whole zip): the rows are then read
    # as the build left them, so a zip it has just written is deleted too, not left behind unowned.
    pks = list(exports.select_for_update().values_list("pk", flat=True))
    deleted, _ = DataExport.objects.filter(pk__in=pks).delete()
    return deleted
