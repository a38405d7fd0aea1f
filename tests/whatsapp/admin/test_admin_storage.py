"""
The storage issue in the admin, as its users meet it: the archive state of media and webhook events (list
column, filter, "Archive now" after an outage of the GCS emulator), a webhook body read back from the
archive once retention pruned it, the buckets and pending deletions, the GDPR actions on the user list
(erase behind a confirmation page that counts what goes; export, then download the zip), who gets those
actions, and list pages whose query counts do not grow with their rows.
"""

import gzip
import hashlib
import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, DataExport
from contacts.services.export import data_export_build
from contacts.services.identities import contact_resolve
from contacts.services.mapping import contact_map_to_user
from core.storage import split_location
from tests.conftest import fixture_bytes, json_body, page
from whatsapp.models import (
    ArchiveBucket,
    ArchiveStatus,
    AuditLog,
    Conversation,
    Media,
    Message,
    StorageDeletion,
    WebhookEvent,
)
from whatsapp.providers.events import Identity, IdentityKind
from whatsapp.services.archive import (
    archive_bucket,
    media_archive,
    media_store,
    owner_for_provider,
    owner_for_user,
    storage_deletion_request,
)
from whatsapp.services.archive_bundles import webhook_bodies_bundle, webhook_bodies_prune
from whatsapp.services.archive_jobs import storage_deletion_run
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

User = get_user_model()
USERS = reverse("admin:auth_user_changelist")
MEDIA = reverse("admin:whatsapp_media_changelist")
WEBHOOKS = reverse("admin:whatsapp_webhookevent_changelist")
EXPORTS = reverse("admin:contacts_dataexport_changelist")
PHOTO = b"\xff\xd8\xff\xe0 a small photo \xff\xd9" * 20


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def person(provider, user=None, *, phone: str, name: str, texts=("hello",), photo: bytes | None = None):
    """A contact (mapped to `user` if given) with a conversation, its messages and, optionally, a photo
    message whose file went through the archive as a download would put it there."""
    contact = contact_resolve(provider=provider, identities=[Identity(IdentityKind.PHONE, phone)],
                              profile_name=name, seen_at=timezone.now())
    if user is not None:
        contact_map_to_user(contact=contact, user=user, actor=None)
    conversation, _ = Conversation.objects.get_or_create(provider=provider, contact=contact)
    for text in texts:
        Message.objects.create(provider=provider, conversation=conversation, direction="inbound", status="received",
                               text=text, received_at=timezone.now())
    if photo is not None:
        message = Message.objects.create(provider=provider, conversation=conversation, direction="inbound",
                                         status="received", message_type="image", received_at=timezone.now())
        media = Media.objects.create(message=message, mime_type="image/jpeg", filename="photo.jpg")
        store(media, photo)
    return contact


def store(media: Media, data: bytes) -> Media:
    media = Media.objects.select_related("message__provider", "message__conversation").get(pk=media.pk)
    media_store(media, data)
    media.state, media.size_bytes, media.fetched_at = Media.State.FETCHED, len(data), timezone.now()
    media.save()
    return media


def blob_bytes(emulator, location: str) -> bytes | None:
    bucket, path = split_location(location)
    blob = emulator.client().bucket(bucket).get_blob(path)
    return None if blob is None else blob.download_as_bytes()


def bucket_exists(emulator, name: str) -> bool:
    return emulator.client().bucket(name).exists()


def staff_client(username: str, *permissions: str, groups: tuple[str, ...] = ()) -> tuple[Client, object]:
    user = User.objects.create_user(username, f"{username}@example.com", "pw-123456-strong", is_staff=True)
    for label in permissions:
        app_label, codename = label.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    user.groups.add(*Group.objects.filter(name__in=groups))
    client = Client()
    client.force_login(user)
    return client, user


def action_choices(html: str) -> list[str]:
    select = re.search(r'<select name="action"[^>]*>(.*?)</select>', html, re.S)
    return re.findall(r'<option value="([^"]+)"', select.group(1)) if select else []


# --- The archive on the media and webhook pages ---------------------------------------------------

def test_a_file_waiting_through_an_outage_is_archived_by_the_archive_now_action(admin_client_logged, gcs_storage,
                                                                                sandbox_provider):
    user = User.objects.create_user("ana")
    person(sandbox_provider, user, phone="+15551230001", name="Ana")
    message = Message.objects.create(provider=sandbox_provider, conversation=Conversation.objects.get(),
                                     direction="inbound", status="received", message_type="image")
    media = Media.objects.create(message=message, mime_type="image/jpeg", filename="photo.jpg")

    gcs_storage.stop()
    waiting = store(media, PHOTO)
    assert (waiting.archive_status, waiting.archive_path, bytes(waiting.pending_content)) == ("pending", "", PHOTO)

    listed = page(admin_client_logged.get(MEDIA, {"archive_status": "pending"}))
    assert f"/{media.pk}/change/" in listed
    assert "Waiting for the archive (1 attempt(s))" in listed
    assert "1 waiting for the archive" in listed  # the backlog note
    assert f"/{media.pk}/change/" not in page(admin_client_logged.get(MEDIA, {"archive_status": "archived"}))
    detail = page(admin_client_logged.get(reverse("admin:whatsapp_media_change", args=[media.pk])))
    assert "attempt 1:" in detail and "until the archive storage takes the file" in detail

    gcs_storage.start()
    response = admin_client_logged.post(MEDIA, {"action": "archive_now", "_selected_action": [media.pk]},
                                        follow=True)
    assert "1 of 1 selected row(s) handed to a worker to archive now." in messages_of(response)
    assert AuditLog.objects.filter(action="archive.retry", object_id=str(media.pk), actor_label="root").exists()
    media_archive(media.pk)  # what the worker the action handed it to does

    media.refresh_from_db()
    assert media.archive_status == ArchiveStatus.ARCHIVED and media.pending_content is None
    assert blob_bytes(gcs_storage, media.archive_path) == PHOTO
    bucket = ArchiveBucket.objects.get()
    assert media.archive_path.startswith(f"{bucket.name}/whatsapp-messages/") and bucket.user == user
    listed = page(admin_client_logged.get(MEDIA, {"archive_status": "archived"}))
    assert f"/{media.pk}/change/" in listed and "waiting for the archive (webhook" not in listed

    # A row that is not waiting is left alone, and the page says so.
    response = admin_client_logged.post(MEDIA, {"action": "archive_now", "_selected_action": [media.pk]},
                                        follow=True)
    assert messages_of(response) == ["0 of 1 selected row(s) handed to a worker to archive now. The other 1 were "
                                     "not waiting (archived already, or not due for the archive)."]


def test_a_webhook_body_pruned_by_retention_is_shown_from_the_archive(admin_client_logged, gcs_storage,
                                                                      sandbox_provider, post_sandbox):
    response = post_sandbox(sandbox_provider, fixture_bytes("sandbox", "inbound_text.json"))
    event = webhook_event_process(json_body(response)["event"])
    assert event.archive_status == ArchiveStatus.PENDING
    change = reverse("admin:whatsapp_webhookevent_change", args=[event.pk])

    gcs_storage.stop()
    webhook_bodies_bundle(event_ids=[event.pk])
    listed = page(admin_client_logged.get(WEBHOOKS, {"archive_status": "pending"}))
    assert f"/{event.pk}/change/" in listed and "Waiting for the archive (1 attempt(s))" in listed
    gcs_storage.start()
    response = admin_client_logged.post(WEBHOOKS, {"action": "archive_now", "_selected_action": [event.pk]},
                                        follow=True)
    assert "1 of 1 selected row(s) handed to a worker to archive now." in messages_of(response)
    webhook_bodies_bundle(event_ids=[event.pk])

    assert webhook_bodies_prune(older_than_days=0) == 1
    event.refresh_from_db()
    assert bytes(event.body) == b"" and event.body_pruned_at is not None
    # Its bundle (of one, archived now) holds it as received, after the line that describes it.
    assert gzip.decompress(blob_bytes(gcs_storage, event.archive_path)).endswith(
        b"\n" + fixture_bytes("sandbox", "inbound_text.json"))

    detail = page(admin_client_logged.get(change))
    assert f"Read from the archive at {event.archive_path}" in detail
    assert "Is my order #1042 on its way?" in detail and "&quot;events&quot;: [" in detail
    assert "sbx-in-0001" in detail  # the message ids it carried
    assert "Ana Souza" in detail  # whose data it carried
    listed = page(admin_client_logged.get(WEBHOOKS, {"archive_status": "archived"}))
    assert f"/{event.pk}/change/" in listed and ">Archived<" in listed

    gcs_storage.stop()
    response = admin_client_logged.get(change)
    assert response.status_code == 200
    assert "the archive storage cannot be reached right now" in page(response)
    gcs_storage.start()


def test_buckets_and_pending_deletions_have_read_only_pages(admin_client_logged, gcs_storage, sandbox_provider):
    user = User.objects.create_user("ana")
    user_bucket = archive_bucket(owner_for_user(user.pk))
    provider_bucket = archive_bucket(owner_for_provider(sandbox_provider.pk))
    deletion = storage_deletion_request(target=StorageDeletion.Target.OBJECT, name=f"{provider_bucket}/gone.json",
                                        reason="erasure of user 99")
    StorageDeletion.objects.filter(pk=deletion.pk).update(attempts=2, last_error="attempt 2: HTTP 503 busy")

    buckets = page(admin_client_logged.get(reverse("admin:whatsapp_archivebucket_changelist")))
    assert user_bucket in buckets and provider_bucket in buckets
    assert "user ana" in buckets and "provider Sandbox test (contacts mapped to no user)" in buckets
    row = ArchiveBucket.objects.get(name=user_bucket)
    detail = admin_client_logged.get(reverse("admin:whatsapp_archivebucket_change", args=[row.pk]))
    assert detail.status_code == 200 and "user:" in page(detail)
    assert admin_client_logged.get(reverse("admin:whatsapp_archivebucket_delete", args=[row.pk])).status_code == 403

    deletions = page(admin_client_logged.get(reverse("admin:whatsapp_storagedeletion_changelist")))
    assert f"{provider_bucket}/gone.json" in deletions and "erasure of user 99" in deletions
    assert "attempt 2: HTTP 503 busy" in deletions
    assert "1 storage deletion(s) not yet confirmed" in page(admin_client_logged.get(MEDIA))
    detail = admin_client_logged.get(reverse("admin:whatsapp_storagedeletion_change", args=[deletion.pk]))
    assert detail.status_code == 200
    assert admin_client_logged.get(
        reverse("admin:whatsapp_storagedeletion_delete", args=[deletion.pk])).status_code == 403
    assert admin_client_logged.get(reverse("admin:whatsapp_storagedeletion_add")).status_code == 403


# --- GDPR: erase ----------------------------------------------------------------------------------

def test_erasing_asks_first_with_what_goes_then_erases(admin_client_logged, gcs_storage, sandbox_provider):
    ana = User.objects.create_user("ana", first_name="Ana", last_name="Souza")
    bob = User.objects.create_user("bob")
    person(sandbox_provider, ana, phone="+15551230001", name="Ana", texts=("one", "two"), photo=PHOTO)
    person(sandbox_provider, ana, phone="+15551230002", name="Ana at work", texts=("three",))
    bobs = person(sandbox_provider, bob, phone="+15551230003", name="Bob", photo=PHOTO)
    ana_bucket = ArchiveBucket.objects.get(user=ana).name
    bob_bucket = ArchiveBucket.objects.get(user=bob).name
    ana_photo = Media.objects.get(message__conversation__contact__user_mapping__user=ana).archive_path
    assert blob_bytes(gcs_storage, ana_photo) == PHOTO

    confirm = admin_client_logged.post(USERS, {"action": "erase_whatsapp_data", "_selected_action": [ana.pk]})
    assert confirm.status_code == 200
    html = page(confirm)
    assert "Erase WhatsApp data: are you sure?" in html
    row = re.search(rf'<tr class="wa-erasure-row" data-user="{ana.pk}">(.*?)</tr>', html, re.S).group(1)
    assert "ana (Ana Souza)" in row
    # contacts, conversations, messages (3 texts and the photo), media, webhook bodies, exports, buckets,
    # files in other buckets, bundles rewritten
    assert re.findall(r"<td>(\d+)</td>", row) == ["2", "2", "4", "1", "0", "0", "1", "0", "0"]
    assert 'name="confirm" value="yes"' in html
    assert Contact.objects.filter(user_mapping__user=ana).count() == 2  # nothing erased yet

    response = admin_client_logged.post(USERS, {"action": "erase_whatsapp_data", "_selected_action": [ana.pk],
                                                "confirm": "yes"}, follow=True)
    assert response.status_code == 200
    assert messages_of(response) == [
        "Erased the WhatsApp data of Ana Souza <ana>: 2 contact(s), 2 conversation(s), 4 message(s), 1 media "
        "file(s), 0 webhook event(s), 0 export(s). The archive storage deletes 1 bucket(s) and 0 object(s) kept in "
        "other buckets, and rewrites 0 bundle(s) of webhook bodies without theirs; what it cannot do now is retried "
        "(see Storage deletions and Archive bundles)."]
    assert not Contact.objects.filter(profile_name__startswith="Ana").exists()
    assert not Message.objects.filter(conversation__contact__profile_name__startswith="Ana").exists()
    assert Media.objects.get().message.conversation.contact == bobs  # only Bob's photo is left
    assert User.objects.filter(pk=ana.pk).exists()  # the account stays
    entry = AuditLog.objects.get(action="user.erase")
    assert (entry.object_id, entry.actor_label, entry.after["messages"]) == (str(ana.pk), "root", 4)

    deletion = StorageDeletion.objects.get()
    assert (deletion.target, deletion.name) == ("bucket", ana_bucket)
    assert storage_deletion_run(deletion.pk)  # what the worker does once the erasure has committed
    assert not bucket_exists(gcs_storage, ana_bucket) and bucket_exists(gcs_storage, bob_bucket)


def test_only_users_allowed_to_erase_get_the_erase_action(sandbox_provider):
    viewer, _ = staff_client("viewer", "auth.view_user", "auth.change_user", "contacts.add_dataexport")
    target = User.objects.create_user("ana")
    person(sandbox_provider, target, phone="+15551230001", name="Ana")

    choices = action_choices(page(viewer.get(USERS)))
    assert "export_whatsapp_data" in choices and "erase_whatsapp_data" not in choices
    response = viewer.post(USERS, {"action": "erase_whatsapp_data", "_selected_action": [target.pk],
                                   "confirm": "yes"}, follow=True)
    assert response.status_code == 200
    assert Contact.objects.filter(user_mapping__user=target).exists()
    assert not AuditLog.objects.filter(action="user.erase").exists()

    # The Admin group may (the default groups' migration gives it the permission and the user list).
    admin_member, _ = staff_client("boss", groups=("Admin",))
    choices = action_choices(page(admin_member.get(USERS)))
    assert "erase_whatsapp_data" in choices and "export_whatsapp_data" in choices
    # Operators see neither the user list nor the exports.
    operator, _ = staff_client("op", groups=("Operator",))
    assert operator.get(USERS).status_code == 403 and operator.get(EXPORTS).status_code == 403


def test_default_groups_get_the_storage_permissions():
    admin_group = Group.objects.get(name="Admin")
    codenames = set(admin_group.permissions.values_list("codename", flat=True))
    assert {"erase_user_data", "view_dataexport", "delete_dataexport", "view_archivebucket",
            "view_storagedeletion", "view_user"} <= codenames
    operator = set(Group.objects.get(name="Operator").permissions.values_list("codename", flat=True))
    assert not {"erase_user_data", "view_dataexport", "view_user"} & operator


# --- GDPR: export ---------------------------------------------------------------------------------

def test_export_action_then_download_the_zip(admin_client_logged, gcs_storage, sandbox_provider):
    ana = User.objects.create_user("ana", first_name="Ana")
    person(sandbox_provider, ana, phone="+15551230001", name="Ana", texts=("where is my parcel?",), photo=PHOTO)

    response = admin_client_logged.post(USERS, {"action": "export_whatsapp_data", "_selected_action": [ana.pk]},
                                        follow=True)
    export = DataExport.objects.get()
    assert (export.user, export.status, export.requested_by.username) == (ana, "pending", "root")
    [message] = messages_of(response)
    assert message.startswith("Export of Ana &lt;ana&gt;'s WhatsApp data requested (<a href=")
    assert f"export {export.pk}</a>" in message and "once it is ready" in message
    download = reverse("admin:contacts_dataexport_download", args=[export.pk])
    assert admin_client_logged.get(download).status_code == 404  # not built yet
    assert "Download the zip" not in page(admin_client_logged.get(EXPORTS))

    export = data_export_build(export.pk)
    assert export.status == DataExport.Status.READY
    listed = page(admin_client_logged.get(EXPORTS, {"status": "ready"}))
    assert f'href="{download}">Download the zip</a>' in listed and "Ready" in listed
    assert f"/{export.pk}/change/" not in page(admin_client_logged.get(EXPORTS, {"status": "pending"}))
    detail = admin_client_logged.get(reverse("admin:contacts_dataexport_change", args=[export.pk]))
    assert detail.status_code == 200 and "&quot;media_files&quot;: 1" in page(detail)

    response = admin_client_logged.get(download)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="whatsapp-data-ana-')
    assert response["Content-Length"] == str(export.size_bytes)
    assert response.streaming  # sent as the storage gives it, never whole in memory
    data = b"".join(response.streaming_content)
    assert len(data) == export.size_bytes and hashlib.sha256(data).hexdigest() == export.sha256
    archive = zipfile.ZipFile(io.BytesIO(data))
    texts = [message["text"] for message in json.loads(archive.read("messages.json"))]
    assert "where is my parcel?" in texts
    [photo] = [name for name in archive.namelist() if name.startswith("media/")]
    assert archive.read(photo) == PHOTO
    assert AuditLog.objects.filter(action="data_export.download", object_id=str(export.pk)).exists()

    gcs_storage.stop()
    response = admin_client_logged.get(download)
    assert response.status_code == 503
    assert "The archive storage could not give the zip right now" in page(response)
    gcs_storage.start()

    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert admin_client_logged.get(download).status_code == 404


def test_downloads_need_the_view_permission_and_deleting_an_export_deletes_its_zip(admin_client_logged,
                                                                                   gcs_storage, sandbox_provider):
    ana = User.objects.create_user("ana")
    person(sandbox_provider, ana, phone="+15551230001", name="Ana")
    admin_client_logged.post(USERS, {"action": "export_whatsapp_data", "_selected_action": [ana.pk]})
    export = data_export_build(DataExport.objects.get().pk)
    download = reverse("admin:contacts_dataexport_download", args=[export.pk])

    stranger, _ = staff_client("stranger", "auth.view_user")
    assert stranger.get(download).status_code == 403
    viewer, _ = staff_client("viewer", "contacts.view_dataexport")
    viewed = viewer.get(download)
    assert viewed.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(b"".join(viewed.streaming_content))).testzip() is None
    assert viewer.get(reverse("admin:contacts_dataexport_delete", args=[export.pk])).status_code == 403

    for _ in range(2):
        admin_client_logged.post(USERS, {"action": "export_whatsapp_data", "_selected_action": [ana.pk]})
    others = [data_export_build(other.pk) for other in DataExport.objects.exclude(pk=export.pk).order_by("pk")]
    assert [other.status for other in others] == ["ready", "ready"]

    # One from its delete page, the others with the list's "Delete selected" action: each zip goes too.
    response = admin_client_logged.post(reverse("admin:contacts_dataexport_delete", args=[export.pk]),
                                        {"post": "yes"})
    assert response.status_code == 302
    response = admin_client_logged.post(EXPORTS, {"action": "delete_selected", "post": "yes",
                                                  "_selected_action": [other.pk for other in others]})
    assert response.status_code == 302
    assert not DataExport.objects.exists()
    for gone in (export, *others):
        deletion = StorageDeletion.objects.get(target="object", name=gone.location)
        assert storage_deletion_run(deletion.pk)
        assert blob_bytes(gcs_storage, gone.location) is None
        assert AuditLog.objects.filter(action="data_export.delete", object_id=str(gone.pk)).exists()
    assert not StorageDeletion.objects.exists()


# --- Pages whose query counts do not grow with their rows -----------------------------------------

def _queries(client, url: str, **params) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(captured)


def _add_rows(provider, start: int, stop: int) -> None:
    contact = Contact.objects.first() or Contact.objects.create(profile_name="someone")
    conversation, _ = Conversation.objects.get_or_create(provider=provider, contact=contact)
    for index in range(start, stop):
        user = User.objects.create_user(f"user{index}")
        status = [ArchiveStatus.NONE, ArchiveStatus.PENDING, ArchiveStatus.ARCHIVED][index % 3]
        event = WebhookEvent.objects.create(provider=provider, kind="sandbox", body=b"{}", archive_status=status,
                                            archive_error="attempt 1: down" if status == "pending" else "",
                                            message_ids=f"sbx-{index}")
        event.contacts.add(contact)
        message = Message.objects.create(provider=provider, conversation=conversation, direction="inbound",
                                         status="received", message_type="image")
        Media.objects.create(message=message, mime_type="image/jpeg", archive_status=status,
                             pending_content=PHOTO if status == "pending" else None)
        ArchiveBucket.objects.create(backend="gcs", owner_key=f"user:{user.pk}", name=f"wa-archive-u-{index:016x}",
                                     user=user)
        StorageDeletion.objects.create(backend="gcs", target="object", name=f"b/o-{index}", reason="test",
                                       next_attempt_at=timezone.now())
        DataExport.objects.create(user=user, requested_by=user, status="ready", location=f"b/e-{index}.zip",
                                  size_bytes=1000 + index, expires_at=timezone.now() + timedelta(days=7))


@pytest.mark.parametrize("url", [WEBHOOKS, MEDIA, EXPORTS, reverse("admin:whatsapp_archivebucket_changelist"),
                                 reverse("admin:whatsapp_storagedeletion_changelist")])
def test_list_pages_run_the_same_number_of_queries_for_3_and_30_rows(admin_client_logged, sandbox_provider, url):
    _add_rows(sandbox_provider, 0, 3)
    small = _queries(admin_client_logged, url)
    _add_rows(sandbox_provider, 3, 30)
    large = _queries(admin_client_logged, url)
    assert small == large, f"{url}: {small} queries for 3 rows, {large} for 30"
    assert large <= 20
