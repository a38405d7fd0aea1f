"""
GDPR erasure through the API against the GCS emulator: the user's bucket goes with every object in it,
their webhook bodies bundled in a provider's bucket (archived before the contact was mapped) leave the
bundle, which is rewritten with the other people's bodies alone, and their rows go at once; other
people's data stays. While the storage is out the rows still go and the storage
deletions wait until it is back. Refusals answer in the house format.
"""

import gzip
import json

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from contacts.models import (
    ConsentEvent,
    Contact,
    ContactIdentity,
    ContactUserMapping,
    DataExport,
)
from contacts.services.consent import consent_set
from contacts.services.export import data_export_build, data_export_request
from contacts.services.mapping import contact_map_to_user
from tests.conftest import token_client, user_with_perms
from tests.contacts.gdpr.conftest import (
    ANA_PHONE,
    BEN_PHONE,
    CARL_PHONE,
    PHOTO,
    bundle_together,
    photo_for,
    say,
    say_archived,
)
from whatsapp.models import (
    ArchiveBucket,
    ArchiveBundle,
    AuditLog,
    Conversation,
    Media,
    Message,
    Session,
    StorageDeletion,
    WebhookEvent,
)
from whatsapp.services.archive import bucket_name, owner_for_provider, owner_for_user
from whatsapp.services.archive_bundles import bundle_rewrite, webhook_body
from whatsapp.services.archive_jobs import archives_requeue_due, storage_deletion_run

pytestmark = pytest.mark.django_db

def _blob(emulator, location: str):
    bucket, path = location.split("/", 1)
    return emulator.client().bucket(bucket).get_blob(path)


@pytest.fixture
def people(gcs_storage, sandbox_provider, post_sandbox, superuser):
    """Ana (to be erased): a webhook body archived in the provider's bucket while she was unmapped, in one
    bundle with Carl's (unmapped), then in her own bucket a body, a photo and an export. Ben (another user)
    with his own bucket."""
    ana_user, ben_user = user_with_perms("ana"), user_with_perms("ben")
    ana_unmapped, carl_event = bundle_together(
        say(post_sandbox, sandbox_provider, ANA_PHONE, "Where is my parcel?"),
        say(post_sandbox, sandbox_provider, CARL_PHONE, "Carl asks about prices"))
    assert ana_unmapped.archive_path == carl_event.archive_path
    ana = Contact.objects.get(identities__value=ANA_PHONE)
    contact_map_to_user(contact=ana, user=ana_user, actor=superuser)
    consent_set(contact=ana, state=Contact.Consent.OPTED_IN, source="api", actor=superuser)
    ana_mapped = say_archived(post_sandbox, sandbox_provider, ANA_PHONE, "Here is a photo of it")
    ana_photo = photo_for("Here is a photo of it")
    ana_export = data_export_build(data_export_request(user=ana_user, actor=superuser).pk)
    assert ana_export.status == "ready"

    say_archived(post_sandbox, sandbox_provider, BEN_PHONE, "Ben says hello")
    ben = Contact.objects.get(identities__value=BEN_PHONE)
    contact_map_to_user(contact=ben, user=ben_user, actor=superuser)
    ben_event = say_archived(post_sandbox, sandbox_provider, BEN_PHONE, "Ben sends a photo")
    ben_photo = photo_for("Ben sends a photo")

    provider_bucket = bucket_name(owner_for_provider(sandbox_provider.pk))
    ana_bucket, ben_bucket = bucket_name(owner_for_user(ana_user.pk)), bucket_name(owner_for_user(ben_user.pk))
    assert ana_unmapped.archive_path.startswith(provider_bucket + "/")
    assert carl_event.archive_path.startswith(provider_bucket + "/")
    assert ana_mapped.archive_path.startswith(ana_bucket + "/") and ana_photo.archive_path.startswith(ana_bucket)
    assert ana_export.location.startswith(ana_bucket + "/")
    assert ben_event.archive_path.startswith(ben_bucket + "/") and ben_photo.archive_path.startswith(ben_bucket)
    return {
        "ana_user": ana_user, "ben_user": ben_user, "ana": ana, "ben": ben,
        "ana_events": [ana_unmapped.pk, ana_mapped.pk], "ana_unmapped": ana_unmapped.archive_path,
        "carl": carl_event.pk, "carl_body": bytes(carl_event.body),
        "ben_objects": [ben_event.archive_path, ben_photo.archive_path],
        "ana_bucket": ana_bucket, "ben_bucket": ben_bucket,
        "ana_objects": [ana_mapped.archive_path, ana_photo.archive_path, ana_export.location],
        "ana_conversations": list(Conversation.objects.filter(contact=ana).values_list("pk", flat=True)),
    }


def _assert_ana_rows_gone(data) -> None:
    ana = data["ana"]
    assert not Contact.objects.filter(pk=ana.pk).exists()
    assert not ContactIdentity.objects.filter(value=ANA_PHONE).exists()
    assert not ContactUserMapping.objects.filter(user=data["ana_user"]).exists()
    assert not ConsentEvent.objects.filter(contact_id=ana.pk).exists()
    assert not Conversation.objects.filter(pk__in=data["ana_conversations"]).exists()
    assert not Session.objects.filter(conversation_id__in=data["ana_conversations"]).exists()
    assert not Message.objects.filter(text__in=["Where is my parcel?", "Here is a photo of it"]).exists()
    assert not Media.objects.filter(message__conversation_id__in=data["ana_conversations"]).exists()
    assert not WebhookEvent.objects.filter(pk__in=data["ana_events"]).exists()
    assert not DataExport.objects.filter(user=data["ana_user"]).exists()
    assert not ArchiveBucket.objects.filter(user=data["ana_user"]).exists()
    assert get_user_model().objects.filter(pk=data["ana_user"].pk).exists()  # the account itself stays


def _assert_others_untouched(data, emulator) -> None:
    assert Contact.objects.filter(pk=data["ben"].pk).exists()
    assert ContactUserMapping.objects.filter(user=data["ben_user"]).exists()
    assert Message.objects.filter(text__in=["Ben says hello", "Ben sends a photo", "Carl asks about prices"]).count() \
        == 3
    assert Media.objects.filter(message__text="Ben sends a photo").exists()
    assert emulator.client().lookup_bucket(data["ben_bucket"]) is not None
    for location in data["ben_objects"]:
        assert _blob(emulator, location) is not None, location
    assert _blob(emulator, data["ben_objects"][1]).download_as_bytes() == PHOTO
    # Carl's body, alone in the provider's rewritten bundle, read back with a ranged read.
    carl = WebhookEvent.objects.get(pk=data["carl"])
    assert carl.archive_path != data["ana_unmapped"]
    assert bundle_records(_blob(emulator, carl.archive_path).download_as_bytes()) == [(carl.pk, data["carl_body"])]
    WebhookEvent.objects.filter(pk=carl.pk).update(body=b"", body_pruned_at=timezone.now())
    assert webhook_body(WebhookEvent.objects.get(pk=carl.pk)) == data["carl_body"]


def bundle_records(data: bytes) -> list[tuple[int, bytes]]:
    stream, records = gzip.decompress(data), []
    while stream:
        line, _, rest = stream.partition(b"\n")
        header = json.loads(line)
        records.append((header["webhook_event_id"], rest[:header["size"]]))
        stream = rest[header["size"]:]
    return records


def test_erase_removes_the_users_bucket_objects_elsewhere_and_rows(gcs_storage, people, api_client, superuser):
    data = people
    for location in [data["ana_unmapped"], *data["ana_objects"]]:
        assert _blob(gcs_storage, location) is not None

    response = api_client.post(f"/api/v1/users/{data['ana_user'].pk}/erase/", {"confirm": "ana"}, format="json")
    assert response.status_code == 200, response.content
    report = response.json()
    assert report == {"contacts": 1, "conversations": 1, "messages": 2, "media": 1, "webhook_events": 2,
                      "exports": 1, "buckets": 1, "objects_elsewhere": 0, "bundles_rewritten": 1}
    _assert_ana_rows_gone(data)
    audit = AuditLog.objects.get(action="user.erase", object_id=str(data["ana_user"].pk))
    assert audit.actor == superuser and audit.after == report

    # The storage deletions and the rewrite were recorded with the erasure and run after it (here by hand,
    # as a worker would); the rewrite has the old bundle deleted.
    deletions = {(deletion.target, deletion.name): deletion.pk for deletion in StorageDeletion.objects.all()}
    assert set(deletions) == {("bucket", data["ana_bucket"])}
    bundle = ArchiveBundle.objects.get(rewrite_next_at__isnull=False)
    assert bundle.location == data["ana_unmapped"] and bundle.members == 2
    assert bundle_rewrite(bundle.pk) is True
    rewritten = ArchiveBundle.objects.get(webhook_events=data["carl"])
    assert rewritten.members == 1 and rewritten.rewrite_next_at is None
    deletions = {(deletion.target, deletion.name): deletion.pk for deletion in StorageDeletion.objects.all()}
    assert set(deletions) == {("bucket", data["ana_bucket"]), ("object", data["ana_unmapped"])}
    for pk in deletions.values():
        assert storage_deletion_run(pk) is True
    assert not StorageDeletion.objects.exists()

    assert gcs_storage.client().lookup_bucket(data["ana_bucket"]) is None
    assert _blob(gcs_storage, data["ana_unmapped"]) is None
    _assert_others_untouched(data, gcs_storage)


def test_erase_while_the_storage_is_out_deletes_rows_now_and_storage_later(gcs_storage, people, api_client):
    data = people
    gcs_storage.stop()

    response = api_client.post(f"/api/v1/users/{data['ana_user'].pk}/erase/", {"confirm": "ana"}, format="json")
    assert response.status_code == 200, response.content
    _assert_ana_rows_gone(data)
    (deletion,) = StorageDeletion.objects.values_list("pk", flat=True)
    assert storage_deletion_run(deletion) is False
    bundle = ArchiveBundle.objects.get(rewrite_next_at__isnull=False)
    assert bundle_rewrite(bundle.pk) is False
    waiting = StorageDeletion.objects.get()
    assert waiting.attempts == 1 and "attempt 1" in waiting.last_error and waiting.next_attempt_at > timezone.now()
    bundle.refresh_from_db()
    assert bundle.rewrite_attempts == 1 and "attempt 1" in bundle.rewrite_error
    assert bundle.rewrite_next_at > timezone.now()

    gcs_storage.start()
    assert gcs_storage.client().lookup_bucket(data["ana_bucket"]) is not None  # nothing happened yet
    StorageDeletion.objects.update(next_attempt_at=timezone.now())
    ArchiveBundle.objects.filter(pk=bundle.pk).update(rewrite_next_at=timezone.now())
    assert archives_requeue_due() == 2  # the bucket's deletion and the bundle's rewrite
    assert storage_deletion_run(deletion) is True
    assert bundle_rewrite(bundle.pk) is True
    (old_bundle,) = StorageDeletion.objects.values_list("pk", flat=True)
    assert storage_deletion_run(old_bundle) is True
    assert not StorageDeletion.objects.exists()
    assert gcs_storage.client().lookup_bucket(data["ana_bucket"]) is None
    assert _blob(gcs_storage, data["ana_unmapped"]) is None
    _assert_others_untouched(data, gcs_storage)


def test_erase_refusals(gcs_storage, people, api_client):
    url = f"/api/v1/users/{people['ana_user'].pk}/erase/"
    for body in ({"confirm": "Ana"}, {"confirm": " ana"}, {"confirm": "ben"}):
        refused = api_client.post(url, body, format="json")
        assert refused.status_code == 400
        assert refused.json()["code"] == "confirmation_mismatch" and "nothing was erased" in refused.json()["detail"]
    missing = api_client.post(url, {}, format="json")
    assert missing.status_code == 400 and missing.json()["code"] == "invalid_request"
    assert "confirm" in missing.json()["errors"]
    for body in (["ana"], "ana", {"confirm": None}, {"confirm": ["ana"]}):
        assert api_client.post(url, body, format="json").status_code == 400
    assert api_client.post(url, "{not json", content_type="application/json").status_code == 400

    assert api_client.post("/api/v1/users/999999/erase/", {"confirm": "x"}, format="json").status_code == 404
    assert api_client.post("/api/v1/users/nope/erase/", {"confirm": "x"}, format="json").status_code == 404
    assert api_client.get(url).status_code == 405

    for client in (token_client(user_with_perms("clerk")),
                   token_client(user_with_perms("exporter", "contacts.add_dataexport", "contacts.view_dataexport"))):
        refused = client.post(url, {"confirm": "ana"}, format="json")
        assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    assert APIClient().post(url, {"confirm": "ana"}, format="json").status_code in (401, 403)

    # Nothing was erased by any of these.
    assert Contact.objects.filter(pk=people["ana"].pk).exists() and not StorageDeletion.objects.exists()
    assert not AuditLog.objects.filter(action="user.erase").exists()

    eraser = token_client(user_with_perms("dpo", "contacts.erase_user_data"))
    assert eraser.post(url, {"confirm": "ana"}, format="json").status_code == 200
    again = eraser.post(url, {"confirm": "ana"}, format="json")  # nothing left: an empty report
    assert again.status_code == 200 and set(again.json().values()) == {0}
