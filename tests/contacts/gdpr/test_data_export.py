"""
GDPR export through the API against the GCS emulator: the zip holds the user's contacts, conversations,
messages (statuses, AI outputs, template variables) and media files, and lives in the user's own bucket;
an export asked for while the storage is out waits and completes once it is back; a zip larger than one
upload or download chunk goes up and comes back whole, streamed; expired exports, deleted exports and the
exports of a deleted user leave the storage (their contacts and messages stay); refusals answer in the
house format.
"""

import hashlib
import io
import json
import os
import uuid
import zipfile
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from contacts.models import Contact, DataExport
from contacts.services.consent import consent_set
from contacts.services.export import (
    ExportNotReady,
    data_export_build,
    data_export_open,
    data_export_request,
    data_exports_expire,
    data_exports_requeue_due,
)
from contacts.services.mapping import contact_map_to_user
from core.models import AuditLog
from tests.conftest import json_body, token_client, user_with_perms, wait_until
from whatsapp.models import Conversation, Media, Message, StorageDeletion, WebhookEvent
from whatsapp.providers.sandbox import inbound_body
from whatsapp.services.archive import bucket_name, media_store, owner_for_user
from whatsapp.services.archive_jobs import storage_deletion_run
from whatsapp.services.outbound import message_send_text
from whatsapp.services.webhooks import webhook_event_process

ANA_PHONE = "+15551230001"
BEN_PHONE = "+15551230002"
PHOTO = b"\xff\xd8\xff\xe0 receipt photo bytes \x00\x01\xff\xd9" * 50
VOICE = b"OggS voice note bytes" * 30


def _post(post_sandbox, provider, phone: str, text: str, name: str = "") -> int:
    body = inbound_body(from_phone=phone, text=text, name=name, message_id=f"sbx-in-{uuid.uuid4().hex}")
    response = post_sandbox(provider, body)
    assert response.status_code == 200, response.content
    return json_body(response)["event"]


def _say(post_sandbox, provider, phone: str, text: str, name: str = "") -> Message:
    """A contact writes; processed here as a worker would."""
    event_id = _post(post_sandbox, provider, phone, text, name)
    webhook_event_process(event_id)
    return Message.objects.get(text=text)


def _stored_media(message: Message, data: bytes, *, mime_type: str, filename: str) -> Media:
    media = Media.objects.create(message=message, mime_type=mime_type, filename=filename, state=Media.State.FETCHED,
                                 sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
                                 fetched_at=timezone.now())
    media_store(media, data)
    media.save()
    return media


# What the assistant and campaigns add (empty here: this user never used the one nor got the other).
ASSISTANT_SECTIONS = ["projects", "goals", "tasks", "notes", "content_requests", "reminders",
                      "assistant_preferences", "assistant_turns", "campaign_messages", "marketing_suppressions"]


def _zip(data: bytes) -> tuple[zipfile.ZipFile, dict]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    return archive, {name: archive.read(name) for name in archive.namelist()}


def _stored_zip(export: DataExport) -> bytes:
    with data_export_open(export) as zip_file:
        return zip_file.read()


def _streamed(response) -> bytes:
    """A download's body, which must arrive as a stream (never built whole in memory)."""
    assert response.status_code == 200, response
    assert response.streaming
    return b"".join(response.streaming_content)


def _json(files: dict, name: str):
    return json.loads(files[name].decode())


def _check_manifest(files: dict) -> dict:
    manifest = _json(files, "manifest.json")
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for path, entry in listed.items():
        assert entry["size"] == len(files[path])
        assert entry["sha256"] == hashlib.sha256(files[path]).hexdigest()
    return manifest


# --- The whole flow: API, worker, emulator -----------------------------------------------------------

@pytest.mark.slow
def test_export_zip_holds_what_the_user_had_media_included(gcs_storage, celery_worker, api_client, post_sandbox,
                                                            superuser):
    provider = sandbox_phone_provider()
    ana_user, ben_user = user_with_perms("ana"), user_with_perms("ben")

    # Ana writes before anyone knows who she is; then she is mapped to her user and writes again.
    first_event = _post(post_sandbox, provider, ANA_PHONE, "Hi! Is my order #1042 on its way?", "Ana Souza")
    wait_until(lambda: WebhookEvent.objects.get(pk=first_event).status == "processed", 30,
               message="the first webhook to be processed")
    ana = Contact.objects.get(identities__value=ANA_PHONE)
    contact_map_to_user(contact=ana, user=ana_user, actor=superuser)
    second_event = _post(post_sandbox, provider, ANA_PHONE, "Here is the receipt", "Ana Souza")
    wait_until(lambda: WebhookEvent.objects.get(pk=second_event).status == "processed", 30,
               message="the second webhook to be processed")
    consent_set(contact=ana, state=Contact.Consent.OPTED_IN, source="api", detail="asked at the counter",
                actor=superuser)

    receipt = Message.objects.get(text="Here is the receipt")
    Message.objects.filter(pk=receipt.pk).update(intent="order_status", sentiment="neutral", language="en",
                                                 transcript="", ai_processed_at=timezone.now())
    Conversation.objects.filter(contact=ana).update(ai_summary="Ana asks where order #1042 is.")
    photo = _stored_media(receipt, PHOTO, mime_type="image/jpeg", filename="receipt photo.jpg")
    assert photo.archive_status == "archived"
    lost = Media.objects.create(message=receipt, mime_type="audio/ogg", state=Media.State.EXPIRED,
                                last_error="the provider no longer has it")

    reply = message_send_text(provider=provider, contact=ana, text="It ships today.")
    wait_until(lambda: Message.objects.get(pk=reply.pk).status == "read", 60, message="the reply to be read")

    # Ben is another user: nothing of his may be in Ana's export.
    _post(post_sandbox, provider, BEN_PHONE, "Ben's private question", "Ben Okafor")
    wait_until(lambda: Contact.objects.filter(identities__value=BEN_PHONE).exists(), 30, message="Ben's message")
    contact_map_to_user(contact=Contact.objects.get(identities__value=BEN_PHONE), user=ben_user, actor=superuser)

    response = api_client.post(f"/api/v1/users/{ana_user.pk}/exports/")
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["status"] == "pending" and created["user"] == ana_user.pk and created["download_url"] is None
    assert response["Location"] == f"/api/v1/exports/{created['id']}/"
    assert AuditLog.objects.filter(action="user.export", object_id=str(ana_user.pk), actor=superuser).exists()

    def ready():
        shown = api_client.get(response["Location"]).json()
        return shown if shown["status"] == "ready" else None

    shown = wait_until(ready, 60, message="the export to be built")
    assert shown["download_url"] == f"/api/v1/exports/{created['id']}/download/"
    download = api_client.get(shown["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert download["Content-Disposition"] == f'attachment; filename="whatsapp-export-{created["id"]}.zip"'
    assert download["Content-Length"] == str(shown["size_bytes"])
    assert download["X-Checksum-SHA256"] == shown["sha256"]
    data = _streamed(download)
    assert len(data) == shown["size_bytes"] and hashlib.sha256(data).hexdigest() == shown["sha256"]

    _, files = _zip(data)
    photo_path = f"media/{receipt.pk}/{photo.pk}-receipt_photo.jpg"
    assistant_files = {f"{name}.json" for name in ASSISTANT_SECTIONS}
    assert set(files) == {"contacts.json", "conversations.json", "messages.json", "manifest.json", "README.txt",
                          photo_path, *assistant_files}
    assert files[photo_path] == PHOTO
    manifest = _check_manifest(files)
    assert manifest["user"] == {"id": ana_user.pk, "username": "ana"}
    assert manifest["counts"] == {"contacts": 1, "conversations": 1, "messages": 3, "media": 2, "media_files": 1,
                                  **dict.fromkeys(ASSISTANT_SECTIONS, 0)}
    assert shown["counts"] == manifest["counts"]
    assert "messages.json" in files["README.txt"].decode()

    [contact] = _json(files, "contacts.json")
    assert contact["id"] == ana.pk and contact["profile_name"] == "Ana Souza"
    assert {(identity["kind"], identity["value"]) for identity in contact["identities"]} >= {("phone", ANA_PHONE)}
    assert contact["consent"]["state"] == "opted_in"
    assert [(event["previous_state"], event["state"], event["detail"]) for event in contact["consent_history"]] \
        == [("unknown", "opted_in", "asked at the counter")]
    assert contact["mapping"]["method"] == "manual"

    [conversation] = _json(files, "conversations.json")
    assert conversation["contact"] == ana.pk and conversation["provider"]["kind"] == "sandbox"
    assert conversation["ai_summary"] == "Ana asks where order #1042 is."
    assert conversation["sessions"] and conversation["sessions"][0]["state"] == "open"

    messages = {message["text"]: message for message in _json(files, "messages.json")}
    assert set(messages) == {"Hi! Is my order #1042 on its way?", "Here is the receipt", "It ships today."}
    assert all(message["conversation"] == conversation["id"] for message in messages.values())
    inbound = messages["Here is the receipt"]
    assert inbound["direction"] == "inbound" and inbound["type"] == "text"
    assert inbound["ai"]["intent"] == "order_status" and inbound["ai"]["sentiment"] == "neutral"
    assert inbound["ai"]["language"] == "en"
    media = {entry["id"]: entry for entry in inbound["media"]}
    assert media[photo.pk]["file"] == photo_path and media[photo.pk]["sha256"] == hashlib.sha256(PHOTO).hexdigest()
    assert media[lost.pk]["file"] is None and "expired" in media[lost.pk]["note"]
    outbound = messages["It ships today."]
    assert outbound["direction"] == "outbound" and outbound["status"] == "read"
    assert outbound["times"]["sent"] and outbound["times"]["delivered"] and outbound["times"]["read"]
    assert {entry["status"] for entry in outbound["status_history"]} == {"sent", "delivered", "read"}
    assert not any(b"Ben" in content for content in files.values())

    # The zip lives in Ana's own bucket.
    export = DataExport.objects.get(pk=created["id"])
    ana_bucket = bucket_name(owner_for_user(ana_user.pk))
    assert export.location.startswith(f"{ana_bucket}/exports/")
    blob = gcs_storage.client().bucket(ana_bucket).get_blob(export.location.split("/", 1)[1])
    assert blob is not None and blob.size == len(data) and blob.content_type == "application/zip"
    assert blob.metadata["sha256"] == export.sha256
    assert export.expires_at - export.finished_at == timedelta(days=7)


def sandbox_phone_provider():
    from whatsapp.services.providers import provider_create

    return provider_create(kind="sandbox", name=f"Export sandbox {uuid.uuid4().hex[:6]}", options={})


# --- Outage, expiry, refusals (services called directly, no worker) ---------------------------------

@pytest.fixture
def ana_data(db, gcs_storage, sandbox_provider, post_sandbox, superuser):
    """Ana's user with one conversation, two messages and a photo in the emulator."""
    user = user_with_perms("ana")
    _say(post_sandbox, sandbox_provider, ANA_PHONE, "First question", "Ana Souza")
    contact = Contact.objects.get(identities__value=ANA_PHONE)
    contact_map_to_user(contact=contact, user=user, actor=superuser)
    message = _say(post_sandbox, sandbox_provider, ANA_PHONE, "A voice note for you", "Ana Souza")
    media = _stored_media(message, VOICE, mime_type="audio/ogg", filename="")
    return user, message, media


@pytest.mark.django_db
def test_export_while_the_storage_is_out_waits_and_completes_once_it_is_back(gcs_storage, ana_data):
    user, message, media = ana_data
    export = data_export_request(user=user)
    gcs_storage.stop()

    waiting = data_export_build(export.pk)
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert "attempt 1" in waiting.error and waiting.next_attempt_at > timezone.now()
    with pytest.raises(ExportNotReady):
        data_export_open(waiting)
    assert data_exports_requeue_due() == 0  # backing off
    DataExport.objects.filter(pk=export.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert data_exports_requeue_due() == 1
    assert DataExport.objects.get(pk=export.pk).next_attempt_at > timezone.now()  # not handed out twice
    again = data_export_build(export.pk)
    assert (again.status, again.attempts) == ("pending", 2)

    gcs_storage.start()
    done = data_export_build(export.pk)
    assert (done.status, done.attempts, done.error, done.next_attempt_at) == ("ready", 3, "", None)
    _, files = _zip(_stored_zip(done))
    assert files[f"media/{message.pk}/{media.pk}-file.oga"] == VOICE
    assert [m["text"] for m in _json(files, "messages.json")] == ["First question", "A voice note for you"]
    _check_manifest(files)
    assert data_export_build(export.pk).attempts == 3  # done: another run changes nothing


@pytest.mark.django_db
def test_media_waiting_for_the_archive_is_exported_from_the_database(gcs_storage, ana_data):
    user, message, _ = ana_data
    gcs_storage.stop()
    waiting = _stored_media(message, PHOTO, mime_type="image/jpeg", filename="late.jpg")
    assert waiting.archive_status == "pending" and bytes(waiting.pending_content) == PHOTO
    gcs_storage.start()
    export = data_export_build(data_export_request(user=user).pk)
    assert export.status == "ready"
    _, files = _zip(_stored_zip(export))
    assert files[f"media/{message.pk}/{waiting.pk}-late.jpg"] == PHOTO
    assert export.counts["media_files"] == 2


@pytest.mark.django_db
def test_a_zip_larger_than_the_transfer_chunks_goes_up_and_comes_back_whole(gcs_storage, ana_data, api_client):
    """12 MiB of random bytes (they do not compress): more than one 8 MiB chunk on the way up (the resumable
    upload from the build's temporary file) and on the way down (ranged reads streamed to the client)."""
    user, message, _ = ana_data
    video = os.urandom(12 * 1024 * 1024)
    clip = _stored_media(message, video, mime_type="video/mp4", filename="clip.mp4")
    assert clip.archive_status == "archived"

    export = data_export_build(data_export_request(user=user).pk)
    assert export.status == "ready" and export.size_bytes > len(video)
    bucket, path = export.location.split("/", 1)
    blob = gcs_storage.client().bucket(bucket).get_blob(path)
    assert blob.size == export.size_bytes and blob.content_type == "application/zip"
    assert blob.metadata["sha256"] == export.sha256

    download = api_client.get(f"/api/v1/exports/{export.pk}/download/")
    assert download["Content-Length"] == str(export.size_bytes)
    data = _streamed(download)
    assert len(data) == export.size_bytes and hashlib.sha256(data).hexdigest() == export.sha256
    archive, files = _zip(data)
    clip_path = f"media/{message.pk}/{clip.pk}-clip.mp4"
    assert files[clip_path] == video
    assert archive.getinfo(clip_path).compress_type == zipfile.ZIP_STORED
    assert _check_manifest(files)["counts"]["media_files"] == 2


@pytest.mark.django_db
def test_deleting_an_export_or_its_user_deletes_the_zip(gcs_storage, ana_data):
    user, _, _ = ana_data
    first = data_export_build(data_export_request(user=user).pk)
    second = data_export_build(data_export_request(user=user).pk)

    def stored(export: DataExport) -> bool:
        bucket, path = export.location.split("/", 1)
        return gcs_storage.client().bucket(bucket).get_blob(path) is not None

    assert stored(first) and stored(second) and first.location != second.location

    # A script deleting an export row (no admin involved).
    DataExport.objects.filter(pk=first.pk).delete()
    deletion = StorageDeletion.objects.get(target="object", name=first.location)
    assert str(first.pk) in deletion.reason
    assert storage_deletion_run(deletion.pk) is True
    assert not stored(first) and stored(second)

    # The user deleted with Django's own delete: their exports go, their zips with them (the zip holds the
    # person's data), while their contact and messages stay, back in the unmapped queue.
    get_user_model().objects.get(pk=user.pk).delete()
    assert not DataExport.objects.exists()
    deletion = StorageDeletion.objects.get(target="object", name=second.location)
    assert not StorageDeletion.objects.filter(target="bucket").exists()
    assert storage_deletion_run(deletion.pk) is True
    assert not stored(second)
    assert Message.objects.filter(text="A voice note for you").exists()


@pytest.mark.django_db
def test_expired_exports_are_deleted_from_the_storage(gcs_storage, ana_data, api_client):
    user, _, _ = ana_data
    export = data_export_build(data_export_request(user=user).pk)
    location = export.location
    bucket, path = location.split("/", 1)
    assert gcs_storage.client().bucket(bucket).get_blob(path) is not None
    assert data_exports_expire() == 0  # not yet

    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    # Past its expiry and not yet deleted by the hourly job: no longer downloadable, nor offered.
    late = api_client.get(f"/api/v1/exports/{export.pk}/download/")
    assert late.status_code == 410 and late.json()["code"] == "export_expired"
    assert api_client.get(f"/api/v1/exports/{export.pk}/").json()["download_url"] is None
    assert data_exports_expire() == 1
    export.refresh_from_db()
    assert (export.status, export.location) == ("expired", "")
    [deletion] = StorageDeletion.objects.all()
    assert (deletion.target, deletion.name) == ("object", location)
    assert storage_deletion_run(deletion.pk) is True
    assert gcs_storage.client().bucket(bucket).get_blob(path) is None
    assert gcs_storage.client().lookup_bucket(bucket) is not None  # only the zip went

    gone = api_client.get(f"/api/v1/exports/{export.pk}/download/")
    assert gone.status_code == 410 and gone.json()["code"] == "export_expired"


@pytest.mark.django_db
def test_export_api_refusals_and_filters(gcs_storage, ana_data, api_client):
    user, _, _ = ana_data
    pending = api_client.post(f"/api/v1/users/{user.pk}/exports/").json()
    not_ready = api_client.get(f"/api/v1/exports/{pending['id']}/download/", HTTP_ACCEPT="application/zip")
    assert not_ready.status_code == 409
    assert not_ready.json()["code"] == "export_not_ready" and not_ready.json()["detail"]

    failed = DataExport.objects.create(user=user, status=DataExport.Status.FAILED, error="boom")
    refused = api_client.get(f"/api/v1/exports/{failed.pk}/download/")
    assert (refused.status_code, refused.json()["code"]) == (409, "export_failed")

    assert api_client.post("/api/v1/users/999999/exports/").status_code == 404
    assert api_client.post("/api/v1/users/not-a-number/exports/").status_code == 404
    assert api_client.get("/api/v1/exports/999999/download/").status_code == 404

    listed = api_client.get(f"/api/v1/exports/?user={user.pk}&status=pending").json()
    assert [row["id"] for row in listed["results"]] == [pending["id"]]
    assert api_client.get("/api/v1/exports/?status=failed").json()["count"] == 1
    bad = api_client.get("/api/v1/exports/?status=nonsense")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
    assert api_client.get("/api/v1/exports/?user=999999").json()["count"] == 0
    assert api_client.get("/api/v1/exports/?user=abc").status_code == 400

    nobody = token_client(user_with_perms("clerk"))
    for response in (nobody.post(f"/api/v1/users/{user.pk}/exports/"), nobody.get("/api/v1/exports/"),
                     nobody.get(f"/api/v1/exports/{pending['id']}/"),
                     nobody.get(f"/api/v1/exports/{pending['id']}/download/")):
        assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    viewer = token_client(user_with_perms("viewer", "contacts.view_dataexport"))
    assert viewer.get("/api/v1/exports/").status_code == 200
    assert viewer.post(f"/api/v1/users/{user.pk}/exports/").status_code == 403
    maker = token_client(user_with_perms("maker", "contacts.add_dataexport"))
    made = maker.post(f"/api/v1/users/{user.pk}/exports/")
    assert made.status_code == 202 and made.json()["requested_by_username"] == "maker"
    assert DataExport.objects.filter(user=user).count() == 3
