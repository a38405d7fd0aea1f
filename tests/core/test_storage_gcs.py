"""
The archive storage through the real google-cloud-storage client against the GCS emulator: bucket names,
buckets made with their lifecycle rules, the bucket existence cache (counted in the emulator's own request
log), objects written and read back with their metadata; and the local-directory backend giving the same
answers to the same calls.
"""

import gzip
import hashlib
import io
import json
import logging
import re
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.core import checks

from core.storage import BucketNotFound, BucketSpec, ObjectNotFound, StorageUnavailable, get_storage
from tests.conftest import fixture_bytes, json_body, sandbox_fixture_now
from tests.fakes import Reply
from tests.signing import make_meta, post_meta
from whatsapp.models import ArchiveBucket, Media, WebhookEvent
from whatsapp.services.archive import (
    PREFIX_MAX,
    archive_bucket,
    archive_object_path,
    archive_write,
    bucket_name,
    bucket_name_problems,
    media_store,
    owner_for_provider,
    owner_for_user,
    prefix_problems,
)
from whatsapp.services.archive_bundles import webhook_bodies_bundle, webhook_body
from whatsapp.services.media import media_download
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

EMULATOR_LOGGER = "gcp_storage_emulator.server"
# Only objects under "tiered/" (those large enough to earn their transitions back) move to colder classes.
TIERED = ["tiered/"]


def rule(storage_class: str, age: int) -> dict:
    return {"action": {"type": "SetStorageClass", "storageClass": storage_class},
            "condition": {"age": age, "matchesPrefix": TIERED}}


DEFAULT_RULES = [rule("NEARLINE", 30), rule("COLDLINE", 90), rule("ARCHIVE", 365)]


def gcs_name_is_valid(name: str) -> bool:
    """GCS's bucket naming rules for names without dots, written out independently of the code under test
    (https://cloud.google.com/storage/docs/buckets#naming)."""
    return (3 <= len(name) <= 63 and re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name) is not None
            and not name.startswith("goog") and "google" not in name and "g00gle" not in name)


@pytest.fixture
def emulator_log(caplog):
    """The emulator's request log ("METHOD /path"), as it writes it for every request it answers."""
    caplog.set_level(logging.INFO, logger=EMULATOR_LOGGER)

    def requests() -> list[str]:
        lines = []
        for record in caplog.records:
            message = record.getMessage()
            if record.name == EMULATOR_LOGGER and message.startswith('"'):
                method, target = message[1:].split(" ")[:2]
                lines.append(f"{method} {target.split('?')[0]}")
        return lines

    requests.clear = caplog.clear
    return requests


def _users(*ids: int) -> list:
    return [get_user_model().objects.create_user(f"user-{pk}", id=pk) for pk in ids]


# --- Bucket names ---

def test_bucket_names_are_valid_stable_distinct_and_hide_the_user_id(gcs_storage, settings):
    providers = [provider_create(kind="sandbox", name=f"Sandbox {n}", options={}) for n in range(3)]
    # The last user has the id of the first provider: a user and a provider with the same id are two owners.
    users = _users(987654321, 123456789, 55555, providers[0].pk)
    owners = [owner_for_user(user.pk) for user in users] + [owner_for_provider(p.pk) for p in providers]
    names = [bucket_name(owner) for owner in owners]

    assert all(gcs_name_is_valid(name) for name in names), names
    assert all(bucket_name_problems(name) == [] for name in names)
    assert all(name.startswith(settings.GCS_BUCKET_PREFIX + "-") for name in names)
    assert len(set(names)) == len(names)
    assert bucket_name(owner_for_user(providers[0].pk)) != bucket_name(owner_for_provider(providers[0].pk))
    for user in users[:3]:  # (a small id's digits turn up in a hex hash by chance)
        name = bucket_name(owner_for_user(user.pk))
        assert str(user.pk) not in name and user.username not in name

    # Stable: the same name every time, once made, and in GCS.
    made = {owner: archive_bucket(owner) for owner in owners}
    assert [made[owner] for owner in owners] == names
    assert [archive_bucket(owner) for owner in owners] == names
    assert [bucket_name(owner) for owner in owners] == names
    in_gcs = {bucket.name for bucket in gcs_storage.client().list_buckets()}
    assert in_gcs == set(names)
    assert ArchiveBucket.objects.filter(backend="gcs").count() == len(names)


def test_a_new_naming_key_leaves_existing_buckets_where_they_are(gcs_storage, settings):
    old_user, new_user = _users(7001, 7002)
    before = archive_bucket(owner_for_user(old_user.pk))
    settings.GCS_BUCKET_NAME_KEY = "a-rotated-naming-key"
    # The recorded bucket stays the user's bucket; only owners without one get a name from the new key.
    assert archive_bucket(owner_for_user(old_user.pk)) == before
    assert bucket_name(owner_for_user(old_user.pk)) != before
    assert archive_bucket(owner_for_user(new_user.pk)) == bucket_name(owner_for_user(new_user.pk))


@pytest.mark.parametrize("prefix", [
    "x" * (PREFIX_MAX + 1),  # too long for the hash that follows
    "WA-Archive",  # uppercase
    "goog-archive",  # reserved start
    "my-google-archive",  # reserved word
    "wa_archive",  # underscore
    "-wa-archive",  # must start with a letter or digit
    "",
])
def test_bad_prefixes_are_caught_and_the_system_check_reports_them(settings, prefix):
    assert prefix_problems(prefix)
    settings.STORAGE_BACKEND = "gcs"
    settings.GCS_BUCKET_PREFIX = prefix
    errors = [message for message in checks.run_checks() if message.id == "whatsapp.E003"]
    assert errors and all(message.level == checks.ERROR for message in errors)
    # The local backend needs no bucket names.
    settings.STORAGE_BACKEND = "local"
    assert not [message for message in checks.run_checks() if message.id == "whatsapp.E003"]


@pytest.mark.parametrize("prefix", ["wa-archive", "acme-prod-7", "x" * PREFIX_MAX])
def test_good_prefixes_pass_and_give_valid_names(gcs_storage, settings, prefix):
    settings.GCS_BUCKET_PREFIX = prefix
    assert prefix_problems(prefix) == []
    assert not [message for message in checks.run_checks() if message.id == "whatsapp.E003"]
    for owner in (owner_for_user(1), owner_for_provider(1)):
        name = bucket_name(owner)
        assert gcs_name_is_valid(name) and len(name) <= 63


# --- Buckets made on first use ---

def test_bucket_is_made_with_lifecycle_rules_uniform_access_labels_and_class(gcs_storage):
    (user,) = _users(31337)
    provider = provider_create(kind="sandbox", name="Sandbox", options={})
    user_bucket = archive_bucket(owner_for_user(user.pk))
    provider_bucket = archive_bucket(owner_for_provider(provider.pk))

    client = gcs_storage.client()
    for name, owner_label in ((user_bucket, "user"), (provider_bucket, "provider")):
        bucket = client.get_bucket(name)
        assert [dict(item) for item in bucket.lifecycle_rules] == DEFAULT_RULES
        assert bucket.iam_configuration.uniform_bucket_level_access_enabled is True
        assert bucket.iam_configuration.public_access_prevention == "enforced"
        assert bucket.labels == {"app": "whatsapp-archive", "owner": owner_label}
        assert bucket.storage_class == "STANDARD"
        assert bucket.location == "US"
        assert bucket.soft_delete_policy.retention_duration_seconds == 0
    rows = {row.name: row for row in ArchiveBucket.objects.all()}
    assert rows[user_bucket].user_id == user.pk and rows[user_bucket].owner_key == f"user:{user.pk}"
    assert rows[provider_bucket].provider_id == provider.pk and rows[provider_bucket].user_id is None


def test_configured_rules_and_storage_class_are_applied(gcs_storage, settings):
    settings.GCS_NEARLINE_AFTER_DAYS = 14
    settings.GCS_COLDLINE_AFTER_DAYS = 0  # a zero age drops the step
    settings.GCS_ARCHIVE_AFTER_DAYS = 200
    settings.GCS_STORAGE_CLASS = "NEARLINE"
    (user,) = _users(8080)
    bucket = gcs_storage.client().get_bucket(archive_bucket(owner_for_user(user.pk)))
    assert [dict(item) for item in bucket.lifecycle_rules] == [rule("NEARLINE", 14), rule("ARCHIVE", 200)]
    assert bucket.storage_class == "NEARLINE"
    assert get_storage().bucket_info(bucket.name).lifecycle_rules == [dict(item) for item in bucket.lifecycle_rules]


def test_a_second_write_for_the_same_owner_costs_no_bucket_call(gcs_storage, emulator_log):
    (user,) = _users(2024)
    owner = owner_for_user(user.pk)
    first = archive_write(owner, "whatsapp-messages/2026-01-01/a.json", b"{}", content_type="application/json",
                          metadata={})
    made = emulator_log()
    assert any(line == "POST /storage/v1/b" for line in made), made  # created on first use
    assert sum(line.startswith("POST /upload/") for line in made) == 1

    emulator_log.clear()
    second = archive_write(owner, "whatsapp-messages/2026-01-01/b.json", b"{}", content_type="application/json",
                           metadata={})
    # The upload alone: every process finds the bucket in its ArchiveBucket row, not in GCS.
    assert emulator_log() == [f"POST /upload/storage/v1/b/{first.split('/')[0]}/o"]
    assert ArchiveBucket.objects.count() == 1
    assert first.split("/")[0] == second.split("/")[0] == bucket_name(owner)


def test_a_bucket_deleted_behind_our_back_is_made_again_on_the_next_write(gcs_storage, emulator_log):
    (user,) = _users(5150)
    owner = owner_for_user(user.pk)
    first = archive_write(owner, "whatsapp-messages/2026-01-01/one.json", b"1", content_type="application/json",
                          metadata={})
    client = gcs_storage.client()
    name = first.split("/")[0]
    for blob in client.list_blobs(name):
        blob.delete()
    client.bucket(name).delete()
    assert not client.bucket(name).exists()

    second = archive_write(owner, "whatsapp-messages/2026-01-02/two.json", b"2", content_type="application/json",
                           metadata={})
    assert second == f"{name}/whatsapp-messages/2026-01-02/two.json"
    bucket = client.get_bucket(name)
    assert [dict(item) for item in bucket.lifecycle_rules] == DEFAULT_RULES
    assert bucket.labels == {"app": "whatsapp-archive", "owner": "user"}
    assert bucket.blob("whatsapp-messages/2026-01-02/two.json").download_as_bytes() == b"2"
    assert ArchiveBucket.objects.filter(name=name).count() == 1

    # And it is known again: the next write is one upload.
    emulator_log.clear()
    archive_write(owner, "whatsapp-messages/2026-01-02/three.json", b"3", content_type="application/json",
                  metadata={})
    assert emulator_log() == [f"POST /upload/storage/v1/b/{name}/o"]


# --- Archive and read back ---

def test_webhook_body_archived_now_is_a_bundle_of_one_read_back_by_range(gcs_storage, sandbox_provider,
                                                                         post_sandbox, emulator_log):
    body = sandbox_fixture_now("inbound_two_messages.json")
    response = post_sandbox(sandbox_provider, body)
    event = webhook_event_process(json_body(response)["event"])
    assert event.status == "processed" and event.archive_status == "pending"

    assert webhook_bodies_bundle(event_ids=[event.pk]).bundles == 1  # "archive now": a bundle of one
    event = WebhookEvent.objects.get(pk=event.pk)
    assert event.archive_status == "archived" and event.archive_error == "" and event.archived_at
    bucket_name_, path = event.archive_path.split("/", 1)
    # Ben Okafor is not mapped to a user: the provider's bucket.
    assert bucket_name_ == bucket_name(owner_for_provider(sandbox_provider.pk))
    assert re.fullmatch(rf"whatsapp-messages/{event.received_at:%Y-%m-%d}/webhooks/{event.received_at:%H}00-"
                        r"[0-9a-f]{20}\.jsonl\.gz", path)

    blob = gcs_storage.client().bucket(bucket_name_).get_blob(path)
    stored = blob.download_as_bytes()
    assert blob.content_type == "application/gzip" and blob.size == len(stored) == event.archive_length
    assert event.archive_offset == 0 and blob.metadata["members"] == "1"
    line, _, content = gzip.decompress(stored).partition(b"\n")
    assert content == body
    assert json.loads(line) == {
        "webhook_event_id": event.pk, "provider": "sandbox", "provider_id": sandbox_provider.pk,
        "received_at": event.received_at.isoformat(), "content_type": "application/json", "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest()}
    assert WebhookEvent.objects.get(pk=event.pk).message_ids == "sbx-in-0101 sbx-in-0102"

    # Read back once the database let it go: one ranged GET of the member.
    WebhookEvent.objects.filter(pk=event.pk).update(body=b"", body_pruned_at=event.received_at)
    emulator_log.clear()
    assert webhook_body(WebhookEvent.objects.get(pk=event.pk)) == body
    assert emulator_log() == [f"GET /download/storage/v1/b/{bucket_name_}/o/{quote(path, safe='')}"]

    # Archiving again changes nothing (the task may run twice).
    assert webhook_bodies_bundle(event_ids=[event.pk]).bodies == 0
    assert WebhookEvent.objects.get(pk=event.pk).archive_path == event.archive_path
    assert [b.name for b in gcs_storage.client().list_blobs(bucket_name_)] == [path]


def test_objects_large_enough_go_under_the_tiered_prefix(backend, settings):
    settings.ARCHIVE_TIERED_MIN_BYTES = 1000
    (user,) = _users(7070)
    owner = owner_for_user(user.pk)
    small = archive_write(owner, archive_object_path("whatsapp-messages/a.ogg", 999), b"x" * 999,
                          content_type="audio/ogg", metadata={})
    large = archive_write(owner, archive_object_path("whatsapp-messages/b.jpg", 1000), b"x" * 1000,
                          content_type="image/jpeg", metadata={})
    assert small.split("/", 1)[1] == "whatsapp-messages/a.ogg"
    assert large.split("/", 1)[1] == "tiered/whatsapp-messages/b.jpg"


PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 60 + b"\xff\xd9"


def test_media_file_is_archived_with_its_metadata(gcs_storage, client, settings, fake_server):
    settings.META_GRAPH_BASE_URL = fake_server.url
    settings.META_GRAPH_API_VERSION = "v25.0"
    fake_server.routes.clear()
    fake_server.routes["/v25.0/1410000000000101"] = [Reply.json({
        "messaging_product": "whatsapp", "url": f"{fake_server.url}/attachments/storage-photo",
        "mime_type": "image/jpeg", "sha256": hashlib.sha256(PHOTO).hexdigest(), "file_size": len(PHOTO),
        "id": "1410000000000101"})]
    fake_server.routes["/attachments/storage-photo"] = [Reply(200, PHOTO, {"Content-Type": "image/jpeg"})]
    provider = make_meta()
    webhook_event_process(json_body(post_meta(client, provider, fixture_bytes("meta", "image.json")))["event"])
    from datetime import timedelta

    from django.utils import timezone

    Media.objects.update(expires_at=timezone.now() + timedelta(days=7))  # the fixture's message is old
    media = media_download(Media.objects.get().pk)
    assert (media.state, media.archive_status, media.pending_content) == ("fetched", "archived", None)

    bucket_name_, path = media.archive_path.split("/", 1)
    assert bucket_name_ == bucket_name(owner_for_provider(provider.pk))
    message = media.message
    assert path == (f"whatsapp-messages/{message.received_at:%Y-%m-%d}/provider-{provider.pk}/"
                    f"message-{message.pk}/media-{media.pk}.jpg")
    blob = gcs_storage.client().bucket(bucket_name_).get_blob(path)
    assert blob.download_as_bytes() == PHOTO
    assert blob.content_type == "image/jpeg"
    assert blob.metadata == {
        "provider": "meta", "provider_id": str(provider.pk), "message_id": message.provider_message_id,
        "direction": "inbound", "content_type": "image/jpeg", "sha256": hashlib.sha256(PHOTO).hexdigest(),
        "media_id": str(media.pk)}
    stored = get_storage().stat(media.archive_path)
    assert (stored.size, stored.content_type, stored.metadata) == (len(PHOTO), "image/jpeg", blob.metadata)

    # A file at least ARCHIVE_TIERED_MIN_BYTES goes under tiered/, the prefix the lifecycle rules move.
    settings.ARCHIVE_TIERED_MIN_BYTES = len(PHOTO)
    media_store(media, PHOTO)
    assert media.archive_path == f"{bucket_name_}/tiered/{path}"
    assert gcs_storage.client().bucket(bucket_name_).get_blob(f"tiered/{path}").download_as_bytes() == PHOTO


# --- The same calls on both backends ---

@pytest.fixture(params=["gcs", "local"])
def backend(request):
    """The storage as the application gets it, on the emulator or in a directory of this test's own."""
    request.getfixturevalue("gcs_storage" if request.param == "gcs" else "local_storage")
    storage = get_storage()
    assert storage.name == request.param
    return storage


def test_both_backends_answer_the_same(backend):
    backend.check()
    backend.create_bucket(BucketSpec(name="wa-archive-p-parity", labels={"app": "whatsapp-archive"}))
    backend.create_bucket(BucketSpec(name="wa-archive-p-parity", labels={"app": "whatsapp-archive"}))  # again: fine
    info = backend.bucket_info("wa-archive-p-parity")
    assert (info.name, info.labels, info.uniform_access) == ("wa-archive-p-parity", {"app": "whatsapp-archive"}, True)

    body = json.dumps({"hello": "world"}).encode()
    metadata = {"provider": "sandbox", "message_id": "sbx-1", "content_type": "application/json",
                "sha256": hashlib.sha256(body).hexdigest()}
    location = backend.write("wa-archive-p-parity", "whatsapp-messages/2026-02-03/webhooks/a.json", body,
                             content_type="application/json", metadata=metadata)
    assert location == "wa-archive-p-parity/whatsapp-messages/2026-02-03/webhooks/a.json"
    backend.write("wa-archive-p-parity", "whatsapp-messages/2026-02-04/media/b.ogg", b"OggS voice",
                  content_type="audio/ogg", metadata={"provider": "twilio"})
    # Overwriting an object replaces it.
    backend.write("wa-archive-p-parity", "whatsapp-messages/2026-02-04/media/b.ogg", b"OggS voice 2",
                  content_type="audio/ogg", metadata={"provider": "twilio"})

    assert backend.read(location) == body
    assert backend.read_range(location, 2, 5) == body[2:7]
    assert backend.read_range(location, 0, len(body)) == body
    stored = backend.stat(location)
    assert (stored.location, stored.size, stored.content_type, stored.metadata) == (
        location, len(body), "application/json", metadata)
    assert backend.read("wa-archive-p-parity/whatsapp-messages/2026-02-04/media/b.ogg") == b"OggS voice 2"
    assert backend.list("wa-archive-p-parity") == [
        "wa-archive-p-parity/whatsapp-messages/2026-02-03/webhooks/a.json",
        "wa-archive-p-parity/whatsapp-messages/2026-02-04/media/b.ogg"]
    assert backend.list("wa-archive-p-parity", "whatsapp-messages/2026-02-04/") == [
        "wa-archive-p-parity/whatsapp-messages/2026-02-04/media/b.ogg"]
    assert backend.list("wa-archive-p-parity", "whatsapp-messages/2027") == []
    assert backend.list("wa-archive-p-nothing") == []

    missing = "wa-archive-p-parity/whatsapp-messages/2026-02-03/webhooks/missing.json"
    with pytest.raises(ObjectNotFound):
        backend.read(missing)
    with pytest.raises(ObjectNotFound):
        backend.stat(missing)
    with pytest.raises(ObjectNotFound):
        backend.read_range(missing, 0, 10)
    with pytest.raises(BucketNotFound):
        backend.write("wa-archive-p-nothing", "x.json", b"{}", content_type="application/json", metadata={})
    with pytest.raises(BucketNotFound):
        backend.bucket_info("wa-archive-p-nothing")

    assert backend.delete(location) is True
    assert backend.delete(location) is False
    with pytest.raises(ObjectNotFound):
        backend.read(location)
    assert backend.list("wa-archive-p-parity") == ["wa-archive-p-parity/whatsapp-messages/2026-02-04/media/b.ogg"]

    assert backend.delete_bucket("wa-archive-p-parity") == 1
    assert backend.list("wa-archive-p-parity") == []
    with pytest.raises(BucketNotFound):
        backend.bucket_info("wa-archive-p-parity")
    with pytest.raises(BucketNotFound):
        backend.write("wa-archive-p-parity", "x.json", b"{}", content_type="application/json", metadata={})
    assert backend.delete_bucket("wa-archive-p-parity") == 0  # already gone: nothing to do


def test_archive_write_makes_the_bucket_on_both_backends(backend):
    (user,) = _users(6060)
    owner = owner_for_user(user.pk)
    location = archive_write(owner, "whatsapp-messages/2026-03-01/x.json", b'{"x": 1}',
                             content_type="application/json", metadata={"sha256": "abc"})
    assert location == f"{bucket_name(owner)}/whatsapp-messages/2026-03-01/x.json"
    assert backend.read(location) == b'{"x": 1}'
    assert backend.stat(location).metadata == {"sha256": "abc"}
    assert ArchiveBucket.objects.get().backend == backend.name
    # Deleted behind our back: made again by the next write, on either backend.
    backend.delete_bucket(bucket_name(owner))
    again = archive_write(owner, "whatsapp-messages/2026-03-02/y.json", b"{}", content_type="application/json",
                          metadata={})
    assert backend.list(bucket_name(owner)) == [again]


def test_an_unreachable_storage_is_unavailable_for_every_call(gcs_storage):
    """Retryable (StorageUnavailable) while the emulator is down, so callers wait and try again; the data
    is there when it is back."""
    storage = get_storage()
    storage.create_bucket(BucketSpec(name="wa-archive-p-outage"))
    location = storage.write("wa-archive-p-outage", "whatsapp-messages/2026-04-01/a.json", b"{}",
                             content_type="application/json", metadata={})
    gcs_storage.stop()
    calls = {
        "check": storage.check,
        "create_bucket": lambda: storage.create_bucket(BucketSpec(name="wa-archive-p-other")),
        "bucket_info": lambda: storage.bucket_info("wa-archive-p-outage"),
        "write": lambda: storage.write("wa-archive-p-outage", "b.json", b"{}", content_type="application/json",
                                       metadata={}),
        "read": lambda: storage.read(location),
        "stat": lambda: storage.stat(location),
        "list": lambda: storage.list("wa-archive-p-outage"),
        "delete": lambda: storage.delete(location),
        "delete_bucket": lambda: storage.delete_bucket("wa-archive-p-outage"),
    }
    for name, call in calls.items():
        with pytest.raises(StorageUnavailable):
            call()
            pytest.fail(f"{name} did not raise")
    gcs_storage.start()
    assert storage.read(location) == b"{}"
    assert storage.list("wa-archive-p-outage") == [location]


def test_the_command_brings_buckets_made_with_older_rules_up_to_date(gcs_storage, settings):
    from django.core.management import call_command

    (user,) = _users(9090)
    name = archive_bucket(owner_for_user(user.pk))
    bucket = gcs_storage.client().get_bucket(name)
    bucket.clear_lifecycle_rules()
    bucket.add_lifecycle_set_storage_class_rule("NEARLINE", age=30)  # an earlier version's rule: every object
    bucket.patch()
    assert [dict(item) for item in gcs_storage.client().get_bucket(name).lifecycle_rules] != DEFAULT_RULES

    out = io.StringIO()
    call_command("archive_buckets_configure", stdout=out)
    assert f"{name}: configured" in out.getvalue() and "1 bucket(s) configured" in out.getvalue()
    assert [dict(item) for item in gcs_storage.client().get_bucket(name).lifecycle_rules] == DEFAULT_RULES
    call_command("archive_buckets_configure", stdout=io.StringIO())  # again: nothing changes
    assert [dict(item) for item in gcs_storage.client().get_bucket(name).lifecycle_rules] == DEFAULT_RULES


def test_a_bundle_written_again_after_a_rollback_overwrites_the_same_object(gcs_storage, sandbox_provider,
                                                                           post_sandbox):
    """A worker killed between the upload and its commit: the rows wait again, and the next attempt writes
    the same object (named after its members), so no copy is left that no row knows of."""
    from django.db import transaction

    from whatsapp.services.archive_bundles import webhook_bodies_bundle

    event_ids = [json_body(post_sandbox(sandbox_provider, sandbox_fixture_now(name)))["event"]
                 for name in ("inbound_text.json", "inbound_two_messages.json")]
    for event_id in event_ids:
        webhook_event_process(event_id)

    class Killed(Exception):
        pass

    with pytest.raises(Killed), transaction.atomic():
        assert webhook_bodies_bundle(event_ids=event_ids).bundles == 1
        raise Killed
    client = gcs_storage.client()
    written = [f"{bucket.name}/{blob.name}" for bucket in client.list_buckets() for blob in client.list_blobs(bucket)]
    assert len(written) == 1 and not WebhookEvent.objects.filter(archive_status="archived").exists()

    assert webhook_bodies_bundle(event_ids=event_ids).bundles == 1
    again = [f"{bucket.name}/{blob.name}" for bucket in client.list_buckets() for blob in client.list_blobs(bucket)]
    assert again == written
    assert set(WebhookEvent.objects.values_list("archive_path", flat=True)) == set(written)
