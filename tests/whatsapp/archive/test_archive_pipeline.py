"""
The archive end to end: signed webhooks taken by the endpoint, processed and bundled by a real Celery
worker into the GCS emulator (through the real client, over HTTP), one compressed object per bucket and
hour; an emulator outage during which nothing is dropped and /health/ says so; media kept in the database
meanwhile; and the retention of raw bodies, read back one by one with ranged reads.
"""

import gzip
import hashlib
import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.queueing import task_named
from monitoring.services import worker_heartbeat_record
from tests.conftest import FIXTURES, json_body, sandbox_fixture_now, start_worker, stop_worker, wait_until
from tests.fakes import Reply
from tests.signing import make_twilio, post_twilio
from whatsapp.models import ArchiveBucket, ArchiveBundle, ArchiveStatus, Media, Message, WebhookEvent
from whatsapp.services.archive import bucket_name, media_content, owner_for_provider, owner_for_user
from whatsapp.services.archive_bundles import bundle_due_at, webhook_bodies_bundle, webhook_bodies_prune, webhook_body
from whatsapp.services.archive_jobs import archives_requeue_due
from whatsapp.services.webhooks import webhook_event_replay, webhook_events_requeue_due

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WAIT = 30


def sandbox_message(message_id: str, phone: str, name: str, text: str) -> bytes:
    """The sandbox's inbound text fixture, dated now, from another sender and with its own message id."""
    payload = json.loads(sandbox_fixture_now("inbound_text.json"))
    payload["events"][0].update({"id": message_id, "from": phone, "name": name, "text": text})
    return json.dumps(payload).encode()


def post_ok(post_sandbox, provider, body: bytes) -> int:
    response = post_sandbox(provider, body)
    assert response.status_code == 200, response.content
    return json_body(response)["event"]


def archived(*event_ids: int) -> list[WebhookEvent] | None:
    rows = list(WebhookEvent.objects.filter(pk__in=event_ids, archive_status=ArchiveStatus.ARCHIVED).order_by("pk"))
    return rows if len(rows) == len(event_ids) else None


def emulator_objects(emulator) -> dict[str, bytes]:
    """Every object in every bucket of the emulator, as <bucket>/<path> -> bytes, read with the real client."""
    client = emulator.client()
    return {f"{bucket.name}/{blob.name}": blob.download_as_bytes()
            for bucket in client.list_buckets() for blob in client.list_blobs(bucket.name)}


def make_due() -> None:
    """The backoff has passed, and the hour of every waiting body has closed: what the beat jobs find when
    they next run."""
    for model in (WebhookEvent, Media):
        model.objects.filter(archive_status=ArchiveStatus.PENDING).update(archive_next_at=timezone.now())


def bundle_now() -> None:
    """make_due, then the beat job's bundling, sent to the worker as beat sends it."""
    make_due()
    task_named("whatsapp.tasks.bundle_webhook_bodies_task").delay()


def processed_waiting(*event_ids: int) -> list[WebhookEvent] | None:
    rows = list(WebhookEvent.objects.filter(pk__in=event_ids, status="processed",
                                            archive_status=ArchiveStatus.PENDING).order_by("pk"))
    return rows if len(rows) == len(event_ids) else None


def bundle_records(data: bytes) -> list[tuple[dict, bytes]]:
    """A bundle read the way `zcat` reads it: every record's description line and body, in order."""
    stream, records = gzip.decompress(data), []
    while stream:
        line, _, rest = stream.partition(b"\n")
        header = json.loads(line)
        records.append((header, rest[:header["size"]]))
        stream = rest[header["size"]:]
    return records


# --- Where bodies go ---

def test_an_hours_bodies_go_into_one_bundle_per_bucket_each_readable_alone(
        gcs_storage, celery_worker, sandbox_provider, post_sandbox):
    from contacts.services.mapping import contact_map_to_user

    bodies = {}

    def post(message_id: str, phone: str, name: str, text: str) -> int:
        body = sandbox_message(message_id, phone, name, text)
        bodies[post_ok(post_sandbox, sandbox_provider, body)] = body
        return list(bodies)[-1]

    ana_first = post("sbx-arch-1", "+15551230001", "Ana Souza", "Where is my order?")
    carl = post("sbx-arch-2", "+15551230002", "Carl", "Hello")
    (first, _) = wait_until(lambda: processed_waiting(ana_first, carl), WAIT, message="the first bodies processed")
    # Nothing is written while the hour is open: the body is in the database, the bundle comes later.
    assert first.archive_next_at == bundle_due_at(first.received_at)
    assert first.archive_next_at > first.received_at + timedelta(seconds=settings.ARCHIVE_STALE_AFTER_SECONDS)
    assert emulator_objects(gcs_storage) == {}

    # Ana is mapped to a user before the hour closes: her bodies go to her own bucket, all of them.
    user = get_user_model().objects.create_user("ana", "ana@example.com")
    contact_map_to_user(contact=first.contacts.get(), user=user, actor=None)
    ana_second = post("sbx-arch-3", "+15551230001", "Ana Souza", "Thanks!")
    # A body carrying one mapped and one unmapped person is not the user's alone: the provider's bucket.
    mixed = json.loads(sandbox_message("sbx-arch-4", "+15551230001", "Ana Souza", "Me again"))
    mixed["events"].append({**mixed["events"][0], "id": "sbx-arch-5", "from": "+15551230009", "name": "Other"})
    bodies[post_ok(post_sandbox, sandbox_provider, json.dumps(mixed).encode())] = json.dumps(mixed).encode()
    mixed_id = list(bodies)[-1]
    wait_until(lambda: processed_waiting(*bodies), WAIT, message="every body processed")

    bundle_now()
    rows = {row.pk: row for row in wait_until(lambda: archived(*bodies), WAIT, message="the bundles written")}
    provider_bucket = bucket_name(owner_for_provider(sandbox_provider.pk))
    user_bucket = bucket_name(owner_for_user(user.pk))
    assert {rows[pk].archive_path.split("/", 1)[0] for pk in (ana_first, ana_second)} == {user_bucket}
    assert {rows[pk].archive_path.split("/", 1)[0] for pk in (carl, mixed_id)} == {provider_bucket}
    assert rows[ana_first].archive_path == rows[ana_second].archive_path  # one object for the user's hour
    assert rows[carl].archive_path == rows[mixed_id].archive_path  # one for the provider's

    # Two objects in all, each a gzip stream of its bodies exactly as received, described line by line.
    stored = emulator_objects(gcs_storage)
    assert set(stored) == {rows[ana_first].archive_path, rows[carl].archive_path}
    for location, data in stored.items():
        bundle = ArchiveBundle.objects.get(location=location)
        members = sorted((row for row in rows.values() if row.archive_path == location), key=lambda r: r.archive_offset)
        assert bundle.members == len(members) and bundle.size_bytes == len(data)
        assert bundle.body_bytes == sum(len(bodies[row.pk]) for row in members)
        records = bundle_records(data)
        assert [(header["webhook_event_id"], body) for header, body in records] == [
            (row.pk, bodies[row.pk]) for row in members]
        header = records[0][0]
        assert header["provider"] == "sandbox" and header["content_type"] == "application/json"
        assert header["sha256"] == hashlib.sha256(records[0][1]).hexdigest()
        bucket, path = location.split("/", 1)
        assert path.startswith(f"whatsapp-messages/{bundle.window_start:%Y-%m-%d}/webhooks/"
                               f"{bundle.window_start:%H}00-") and path.endswith(".jsonl.gz")
        blob = gcs_storage.client().bucket(bucket).get_blob(path)
        assert blob.content_type == "application/gzip" and blob.content_encoding is None
        assert blob.metadata["members"] == str(len(members)) and blob.metadata["kind"] == "webhook-bundle"
        for row in members:
            assert row.archive_bundle_id == bundle.pk and row.archive_attempts == 1 and row.archived_at
    # One body read back alone (what the admin and a replay do once retention pruned it): a ranged read.
    WebhookEvent.objects.filter(pk__in=bodies).update(body=b"", body_pruned_at=timezone.now())
    for pk, body in bodies.items():
        assert webhook_body(WebhookEvent.objects.get(pk=pk)) == body
    assert set(ArchiveBucket.objects.values_list("name", "owner_key")) == {
        (provider_bucket, f"provider:{sandbox_provider.pk}"), (user_bucket, f"user:{user.pk}")}


# --- Storage outage ---

def test_an_outage_keeps_everything_waiting_and_the_beat_job_archives_all_of_it(
        gcs_storage, celery_worker, sandbox_provider, post_sandbox, client):
    before = post_ok(post_sandbox, sandbox_provider,
                     sandbox_message("sbx-out-0", "+15551239000", "Before", "before the outage"))
    wait_until(lambda: processed_waiting(before), WAIT, message="the first body processed")
    bundle_now()
    wait_until(lambda: archived(before), WAIT, message="the body archived before the outage")

    gcs_storage.stop()
    bodies = {}
    for n in range(1, 7):
        body = sandbox_message(f"sbx-out-{n}", f"+1555123900{n}", f"Customer {n}", f"message {n}")
        bodies[post_ok(post_sandbox, sandbox_provider, body)] = body  # still answered 200
    wait_until(lambda: processed_waiting(*bodies), WAIT, message="every body processed")
    bundle_now()

    def all_waiting():
        rows = WebhookEvent.objects.filter(pk__in=bodies, status="processed", archive_status=ArchiveStatus.PENDING,
                                           archive_attempts__gte=1).exclude(archive_error="")
        return rows.count() == len(bodies)

    wait_until(all_waiting, WAIT, message="the bundling to fail and leave every body waiting")
    assert Message.objects.filter(provider_message_id__startswith="sbx-out-").count() == 7
    for event in WebhookEvent.objects.filter(pk__in=bodies):
        assert event.archive_path == "" and event.archive_next_at > timezone.now()
        assert "attempt 1:" in event.archive_error
        assert bytes(event.body) == bodies[event.pk]  # the body waits in the database

    worker_heartbeat_record()  # the worker runs (celery_worker); beat, which enqueues its heartbeat, does not
    response = client.get("/health/")
    assert response.status_code == 200
    report = json_body(response)
    assert report["status"] == "degraded" and report["degraded"] == ["storage"]
    assert report["checks"]["storage"]["status"] == "degraded"
    assert report["checks"]["storage"]["pending_archive"] == len(bodies)
    assert webhook_bodies_bundle().bodies == 0  # nothing due before the backoff has passed

    gcs_storage.start()
    bundle_now()
    rows = wait_until(lambda: archived(before, *bodies), WAIT, message="every pending body in the archive")

    # Nothing missing, nothing extra: the emulator holds the two bundles, and each body once, byte for byte.
    stored = emulator_objects(gcs_storage)
    assert set(stored) == {row.archive_path for row in rows} and len(stored) == 2
    found = {header["webhook_event_id"]: body for data in stored.values() for header, body in bundle_records(data)}
    assert found == {row.pk: bytes(row.body) for row in rows}
    for row in rows:
        if row.pk in bodies:
            assert found[row.pk] == bodies[row.pk]
            assert row.archive_attempts == 2 and row.archive_error == "" and row.archive_next_at is None
    report = json_body(client.get("/health/"))
    assert report["status"] == "ok" and report["checks"]["storage"]["pending_archive"] == 0


VOICE_NOTE = b"OggS\x00\x02" + hashlib.sha256(b"voice").digest() * 600  # ~19 KB


def test_media_waits_in_the_database_during_an_outage_and_is_served_from_there(
        gcs_storage, worker_env, fake_server, admin_client_logged, settings, tmp_path, request):
    fake_server.routes.clear()
    media_path = "/2010-04-01/Accounts/AC/Messages/SM4/Media/ME4"
    fake_server.routes[media_path] = [Reply(200, VOICE_NOTE, {"Content-Type": "audio/ogg"})]
    # Media is fetched only from Twilio's own hosts: the fake server plays Twilio's API.
    settings.TWILIO_API_BASE_URL = fake_server.url
    worker = start_worker({**worker_env, "TWILIO_API_BASE_URL": fake_server.url}, tmp_path / "worker.log", "test")
    request.addfinalizer(lambda: stop_worker(worker))
    provider = make_twilio()
    form = json.loads((FIXTURES / "twilio" / "inbound_voice.json").read_text())
    form["MediaUrl0"] = fake_server.url + media_path

    gcs_storage.stop()
    response = post_twilio(admin_client_logged, provider, form)
    assert response.status_code == 200, response.content
    media = wait_until(lambda: Media.objects.filter(state="fetched", archive_status=ArchiveStatus.PENDING).first(),
                       WAIT, message="the worker to download the voice note while the archive is out")
    assert bytes(media.pending_content) == VOICE_NOTE and media.archive_path == "" and media.archive_error
    assert media_content(media) == VOICE_NOTE
    conversation_id = media.message.conversation_id
    url = f"/admin/whatsapp/conversation/{conversation_id}/media/{media.pk}/"
    served = admin_client_logged.get(url)
    assert served.status_code == 200 and served.content == VOICE_NOTE and served["Content-Type"] == "audio/ogg"
    assert json_body(admin_client_logged.get("/health/"))["checks"]["storage"]["pending_archive"] >= 1

    gcs_storage.start()
    make_due()
    archives_requeue_due()
    media = wait_until(lambda: Media.objects.filter(pk=media.pk, archive_status=ArchiveStatus.ARCHIVED).first(),
                       WAIT, message="the voice note in the archive")
    assert media.pending_content is None and media.archive_error == ""
    bucket, path = media.archive_path.split("/", 1)
    assert bucket == bucket_name(owner_for_provider(provider.pk))
    assert path.startswith(f"whatsapp-messages/{media.message.received_at:%Y-%m-%d}/provider-{provider.pk}/")
    blob = gcs_storage.client().bucket(bucket).get_blob(path)
    assert blob.download_as_bytes() == VOICE_NOTE
    assert blob.content_type == "audio/ogg"
    assert blob.metadata["provider"] == "twilio" and blob.metadata["message_id"] == form["MessageSid"]
    assert blob.metadata["sha256"] == hashlib.sha256(VOICE_NOTE).hexdigest()
    # Served from the archive now.
    served = admin_client_logged.get(url)
    assert served.status_code == 200 and served.content == VOICE_NOTE
    # The webhook's own form body went to the archive as well.
    event = WebhookEvent.objects.get(kind="twilio")
    bundle_now()
    (event,) = wait_until(lambda: archived(event.pk), WAIT, message="the Twilio webhook body in the archive")
    assert event.archive_path.split("/", 1)[0] == bucket
    ((header, body),) = bundle_records(gcs_storage.client().bucket(bucket).get_blob(
        event.archive_path.split("/", 1)[1]).download_as_bytes())
    assert body == urlencode(form).encode() and header["content_type"] == "application/x-www-form-urlencoded"


# --- Retention ---

def test_retention_prunes_only_safely_archived_bodies_and_a_pruned_event_still_replays(
        gcs_storage, celery_worker, sandbox_provider, post_sandbox, settings):
    settings.WEBHOOK_BODY_RETENTION_DAYS = 30
    bodies = {}
    for name in ("old-a", "old-b", "old-missing", "old-overwritten", "recent"):
        body = sandbox_message(f"sbx-ret-{name}", f"+1555124{len(bodies):04d}", name, f"text {name}")
        bodies[name] = (post_ok(post_sandbox, sandbox_provider, body), body)
    ids = {name: pk for name, (pk, _body) in bodies.items()}
    wait_until(lambda: processed_waiting(*ids.values()), WAIT, message="every body processed")
    # "Archive now" on a selection makes a bundle of it: old-a and old-b share one, the others have their own.
    for selection in (["old-a", "old-b"], ["old-missing"], ["old-overwritten"], ["recent"]):
        assert webhook_bodies_bundle(event_ids=[ids[name] for name in selection]).bundles == 1
    assert ArchiveBundle.objects.count() == 4
    old = [ids["old-a"], ids["old-b"], ids["old-missing"], ids["old-overwritten"]]
    WebhookEvent.objects.filter(pk__in=old).update(received_at=timezone.now() - timedelta(days=31))
    WebhookEvent.objects.filter(pk=ids["recent"]).update(received_at=timezone.now() - timedelta(days=29))
    client = gcs_storage.client()
    missing = WebhookEvent.objects.get(pk=ids["old-missing"])
    bucket, path = missing.archive_path.split("/", 1)
    client.bucket(bucket).blob(path).delete()  # lost behind our back
    overwritten = WebhookEvent.objects.get(pk=ids["old-overwritten"])
    client.bucket(bucket).blob(overwritten.archive_path.split("/", 1)[1]).upload_from_string(b"{}")  # not ours

    # Storage down: nothing leaves the database.
    gcs_storage.stop()
    assert webhook_bodies_prune() == 0
    assert WebhookEvent.objects.filter(body_pruned_at__isnull=False).count() == 0
    gcs_storage.start()

    assert webhook_bodies_prune() == 2
    pruned = {event.pk: event for event in WebhookEvent.objects.filter(body_pruned_at__isnull=False)}
    assert set(pruned) == {ids["old-a"], ids["old-b"]}
    assert all(bytes(event.body) == b"" for event in pruned.values())
    assert webhook_body(pruned[ids["old-a"]]) == bodies["old-a"][1]  # read back from the archive
    assert webhook_body(pruned[ids["old-b"]]) == bodies["old-b"][1]
    assert bytes(WebhookEvent.objects.get(pk=ids["recent"]).body) == bodies["recent"][1]

    # The missing and the overwritten bundles' bodies were kept and archived again by the beat job, together
    # (received in the same hour, 31 days back).
    bundle_now()
    again = wait_until(lambda: archived(ids["old-missing"], ids["old-overwritten"]), WAIT,
                       message="the lost and the overwritten objects archived again")
    stored = emulator_objects(gcs_storage)
    assert again[0].archive_path == again[1].archive_path
    found = {header["webhook_event_id"]: body for header, body in bundle_records(stored[again[0].archive_path])}
    for event, earlier in zip(again, (missing, overwritten), strict=True):
        name = event.message_ids.removeprefix("sbx-ret-")
        assert event.body_pruned_at is None and bytes(event.body) == bodies[name][1]
        assert event.archive_path != earlier.archive_path and event.archive_attempts == 2
        assert found[event.pk] == bodies[name][1]
    assert webhook_bodies_prune() == 2  # safe now

    # A pruned event replays: the worker reads its body from the archive.
    messages_before = Message.objects.count()
    webhook_event_replay(event=pruned[ids["old-a"]], actor=None)
    wait_until(lambda: WebhookEvent.objects.filter(pk=ids["old-a"], status="processed", attempts=1).exists(), WAIT,
               message="the pruned event processed again")
    replayed = WebhookEvent.objects.get(pk=ids["old-a"])
    assert replayed.last_error == "" and replayed.message_ids == "sbx-ret-old-a"
    assert replayed.archive_path == pruned[ids["old-a"]].archive_path  # archived once, not again
    assert Message.objects.count() == messages_before  # the replay found its message already there

    # Replayed while the storage is out: the event waits as failed and goes through once it is back.
    gcs_storage.stop()
    webhook_event_replay(event=pruned[ids["old-b"]], actor=None)
    failed = wait_until(lambda: WebhookEvent.objects.filter(pk=ids["old-b"], status="failed").first(), WAIT,
                        message="the replay to fail while the body cannot be read")
    assert "StorageUnavailable" in failed.last_error
    gcs_storage.start()
    WebhookEvent.objects.filter(pk=ids["old-b"]).update(next_attempt_at=timezone.now())
    assert webhook_events_requeue_due() == 1
    wait_until(lambda: WebhookEvent.objects.filter(pk=ids["old-b"], status="processed").exists(), WAIT,
               message="the replay once the storage is back")
