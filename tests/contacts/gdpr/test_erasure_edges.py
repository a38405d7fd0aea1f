"""
Erasure at its edges, against the GCS emulator: a contact mapped to someone else before the erasure
keeps its archived files (moved to its new owner's bucket before the old one goes); an export being
built refuses the erasure instead of holding it; deleting a Django user erases nothing (see
tests/contacts/test_user_deletion.py); the audit trail of every erased row is scrubbed; new data of an erased user
never lands in the bucket being deleted.
"""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from contacts.models import Contact, ContactIdentity, DataExport
from contacts.services.erasure import ERASED, user_data_erase
from contacts.services.mapping import contact_map_to_user
from core.audit import audit_record
from core.models import AuditLog
from tests.conftest import user_with_perms
from tests.contacts.gdpr.conftest import ANA_PHONE, PHOTO, photo_for, say_archived
from whatsapp.models import ArchiveBucket, StorageDeletion, WebhookEvent
from whatsapp.services.archive import archive_bucket, bucket_name, media_content, owner_for_user
from whatsapp.services.archive_bundles import webhook_body
from whatsapp.services.archive_jobs import storage_deletion_run

pytestmark = pytest.mark.django_db


def _run_deletions() -> None:
    for deletion in StorageDeletion.objects.order_by("pk"):
        assert storage_deletion_run(deletion.pk), StorageDeletion.objects.get(pk=deletion.pk).last_error


def test_files_of_a_contact_mapped_to_someone_else_survive_the_old_users_erasure(
        gcs_storage, sandbox_provider, post_sandbox, superuser):
    first, second = user_with_perms("first-owner"), user_with_perms("second-owner")
    say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "hello")
    ana = Contact.objects.get(identities__value=ANA_PHONE)
    contact_map_to_user(contact=ana, user=first, actor=superuser)
    event = say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "a photo for you")
    photo = photo_for("a photo for you")
    old_bucket = bucket_name(owner_for_user(first.pk))
    assert event.archive_path.startswith(old_bucket + "/") and photo.archive_path.startswith(old_bucket + "/")

    # The contact turns out to be someone else's; then the first user asks to be erased.
    contact_map_to_user(contact=ana, user=second, actor=superuser, replace=True)
    report = user_data_erase(user=first, actor=superuser)
    assert report.contacts == 0 and report.buckets == 1
    _run_deletions()

    assert gcs_storage.client().lookup_bucket(old_bucket) is None
    new_bucket = bucket_name(owner_for_user(second.pk))
    event.refresh_from_db()
    photo.refresh_from_db()
    assert event.archive_path.startswith(new_bucket + "/") and photo.archive_path.startswith(new_bucket + "/")
    assert media_content(photo) == PHOTO
    WebhookEvent.objects.filter(pk=event.pk).update(body=b"", body_pruned_at=event.archived_at)
    event.refresh_from_db()
    assert b"a photo for you" in webhook_body(event)  # read back from its new place


@pytest.mark.django_db(transaction=True)
def test_an_export_being_built_refuses_the_erasure_and_nothing_goes(gcs_storage, sandbox_provider, post_sandbox,
                                                                    superuser, api_client):
    user = user_with_perms("busy")
    say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "hello")
    contact_map_to_user(contact=Contact.objects.get(identities__value=ANA_PHONE), user=user, actor=superuser)
    export = DataExport.objects.create(user=user)
    holding, release = threading.Event(), threading.Event()

    def build_in_progress():
        # What a worker building the zip holds: the export's row, for as long as the build takes.
        with transaction.atomic():
            DataExport.objects.select_for_update().get(pk=export.pk)
            holding.set()
            release.wait(timeout=30)
        connection.close()

    worker = threading.Thread(target=build_in_progress)
    worker.start()
    try:
        assert holding.wait(timeout=10)
        response = api_client.post(f"/api/v1/users/{user.pk}/erase/", {"confirm": "busy"}, format="json")
    finally:
        release.set()
        worker.join(timeout=30)
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "export_in_progress"
    assert Contact.objects.filter(identities__value=ANA_PHONE).exists()
    assert not AuditLog.objects.filter(action="user.erase").exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_django_user_erases_nothing(gcs_storage, sandbox_provider, post_sandbox, superuser):
    user = user_with_perms("leaving")
    say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "hello")
    contact_map_to_user(contact=Contact.objects.get(identities__value=ANA_PHONE), user=user, actor=superuser)
    event = say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "my last words")
    bucket = event.archive_path.split("/")[0]

    user.delete()

    assert Contact.objects.filter(identities__value=ANA_PHONE, user_mapping__isnull=True).exists()
    assert WebhookEvent.objects.filter(pk=event.pk).exists()
    assert not StorageDeletion.objects.exists()
    assert not AuditLog.objects.filter(action="user.erase").exists()
    assert gcs_storage.client().lookup_bucket(bucket) is not None
    assert b"my last words" in webhook_body(WebhookEvent.objects.get(pk=event.pk))


def test_the_audit_trail_of_every_erased_row_is_scrubbed(gcs_storage, sandbox_provider, post_sandbox, superuser):
    user = user_with_perms("scrubbed")
    event = say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "hello")
    contact = Contact.objects.get(identities__value=ANA_PHONE)
    mapping = contact_map_to_user(contact=contact, user=user, actor=superuser)
    identity = ContactIdentity.objects.get(value=ANA_PHONE)
    photo = photo_for("hello")
    for row in (identity, mapping, photo, event):
        audit_record(action="admin.change", obj=row, actor=superuser, before={"value": ANA_PHONE},
                     after={"value": ANA_PHONE})
    kept = audit_record(action="admin.change", obj=superuser, actor=superuser, after={"note": "unrelated"})

    user_data_erase(user=user, actor=superuser)

    for row in (identity, mapping, photo, event, contact):
        for entry in AuditLog.objects.filter(object_type=row._meta.label, object_id=str(row.pk)):
            assert entry.object_repr == ERASED and entry.before == {} and entry.after == {}, entry.action
    assert ANA_PHONE not in str(list(AuditLog.objects.values("object_repr", "before", "after")))
    kept.refresh_from_db()
    assert kept.after == {"note": "unrelated"}


def test_new_data_of_an_erased_user_never_lands_in_the_bucket_being_deleted(gcs_storage, sandbox_provider,
                                                                            post_sandbox, superuser):
    user = user_with_perms("returning")
    say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "hello")
    contact_map_to_user(contact=Contact.objects.get(identities__value=ANA_PHONE), user=user, actor=superuser)
    old = say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "before").archive_path.split("/")[0]
    gcs_storage.stop()  # the bucket's deletion has to wait
    user_data_erase(user=user, actor=superuser)
    gcs_storage.start()

    fresh = archive_bucket(owner_for_user(user.pk))
    assert fresh != old and ArchiveBucket.objects.get(user=user).name == fresh
    _run_deletions()
    assert gcs_storage.client().lookup_bucket(old) is None
    assert gcs_storage.client().lookup_bucket(fresh) is not None
    assert get_user_model().objects.filter(pk=user.pk).exists()
