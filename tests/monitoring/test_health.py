"""/health/ answers 200 when everything works (or only the archive storage is out, or no worker is seen, or
work waits too long: degraded) and 503 naming what does not."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact
from monitoring import health
from monitoring.models import WorkerHeartbeat
from monitoring.services import worker_heartbeat_record, worker_last_seen_seconds
from monitoring.tasks import worker_heartbeat_task
from tests.conftest import json_body
from whatsapp.models import Conversation, Message, WebhookEvent
from whatsapp.providers.events import MessageStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker_seen(db):
    """A worker ran the heartbeat job just now (as it does every WORKER_HEARTBEAT_INTERVAL_SECONDS)."""
    worker_heartbeat_record("celery@test")


def test_health_is_ok_with_database_broker_storage_and_a_worker(client, worker_seen):
    response = client.get("/health/")
    assert response.status_code == 200, response.content
    body = json_body(response)
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "storage", "worker"}
    worker = body["checks"]["worker"]
    assert worker["status"] == "ok" and 0 <= worker["last_seen_seconds"] < 30  # the first request loads the URLs
    assert worker["oldest_queued_message_seconds"] == worker["oldest_pending_event_seconds"] == 0


def test_stopped_broker_gives_503_naming_it(client, settings, own_redis):
    port, process = own_redis
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    assert client.get("/health/").status_code == 200

    process.terminate()
    process.wait(timeout=10)
    started = time.monotonic()
    response = client.get("/health/")
    assert response.status_code == 503
    body = json_body(response)
    assert body["status"] == "fail" and body["failing"] == ["broker"]
    assert body["checks"]["broker"]["status"] == "fail"
    assert body["checks"]["database"]["status"] == "ok"
    assert time.monotonic() - started < 15


def test_unwritable_storage_degrades_but_stays_healthy(client, settings, tmp_path, worker_seen):
    # Webhooks are still taken and kept while the archive is out, so this instance stays in rotation.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the storage directory should be")
    settings.LOCAL_STORAGE_DIR = blocker
    response = client.get("/health/")
    assert response.status_code == 200
    body = json_body(response)
    assert body["status"] == "degraded" and body["degraded"] == ["storage"] and "failing" not in body
    assert body["checks"]["storage"]["status"] == "degraded"


def test_health_names_the_failure_without_details(client, settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings.LOCAL_STORAGE_DIR = blocker / "sub"
    body = json_body(client.get("/health/"))
    assert body["checks"]["storage"]["status"] == "degraded"
    assert body["checks"]["storage"]["error"] == "NotADirectoryError"
    assert str(tmp_path) not in str(body)


# --- Workers and backlog: without a worker nothing is lost (webhooks are stored, messages queued), so it
# degrades; it never fails. ---

def test_no_worker_ever_seen_degrades(client):
    response = client.get("/health/")
    assert response.status_code == 200
    body = json_body(response)
    assert body["status"] == "degraded" and body["degraded"] == ["worker"]
    assert body["checks"]["worker"]["status"] == "degraded"
    assert body["checks"]["worker"]["error"] == "WorkerNotSeen"
    assert body["checks"]["worker"]["last_seen_seconds"] is None


def test_a_worker_not_seen_for_a_minute_degrades(client, settings, worker_seen):
    assert settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS == 60
    WorkerHeartbeat.objects.update(seen_at=timezone.now() - timedelta(seconds=75))
    body = json_body(client.get("/health/"))
    assert body["status"] == "degraded" and body["degraded"] == ["worker"]
    assert 75 <= body["checks"]["worker"]["last_seen_seconds"] < 90

    worker_heartbeat_record("celery@test")
    assert json_body(client.get("/health/"))["status"] == "ok"


@pytest.mark.parametrize("seen", [True, False])
def test_the_worker_heartbeat_is_read_once_per_report(client, monkeypatch, seen):
    if seen:
        worker_heartbeat_record("celery@test")
    reads = []

    def counted():
        reads.append(1)
        return worker_last_seen_seconds()

    monkeypatch.setattr(health, "worker_last_seen_seconds", counted)
    worker = json_body(client.get("/health/"))["checks"]["worker"]
    assert len(reads) == 1
    assert (worker["status"], worker["last_seen_seconds"] is None) == (("ok", False) if seen else ("degraded", True))


def test_the_heartbeat_task_records_its_worker(worker_seen):
    WorkerHeartbeat.objects.update(seen_at=timezone.now() - timedelta(hours=1))
    worker_heartbeat_task.apply()
    (beat,) = WorkerHeartbeat.objects.all()
    assert (timezone.now() - beat.seen_at).total_seconds() < 5


def test_beat_enqueues_the_heartbeat_often_enough_to_keep_a_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["worker-heartbeat"]
    assert entry["task"] == "monitoring.tasks.worker_heartbeat_task"
    assert entry["schedule"] * 3 <= settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS


def test_an_old_due_outbound_message_degrades_and_is_reported(client, settings, worker_seen, sandbox_provider):
    conversation = _conversation(sandbox_provider)
    now = timezone.now()
    Message.objects.create(provider=sandbox_provider, conversation=conversation, direction="outbound", text="x",
                           status=MessageStatus.QUEUED, queued_at=now - timedelta(minutes=20),
                           next_attempt_at=now - timedelta(seconds=400))
    # Held on purpose (backoff, rate limit): not waiting for a worker yet.
    Message.objects.create(provider=sandbox_provider, conversation=conversation, direction="outbound", text="y",
                           status=MessageStatus.QUEUED, queued_at=now - timedelta(hours=2),
                           next_attempt_at=now + timedelta(minutes=5))
    body = json_body(client.get("/health/"))
    worker = body["checks"]["worker"]
    assert body["status"] == "degraded" and body["degraded"] == ["worker"]
    assert worker["error"] == "backlog" and 400 <= worker["oldest_queued_message_seconds"] < 420

    settings.HEALTH_BACKLOG_DEGRADED_AFTER_SECONDS = 600
    body = json_body(client.get("/health/"))
    assert body["status"] == "ok" and body["checks"]["worker"]["oldest_queued_message_seconds"] >= 400


def test_an_old_pending_inbox_row_degrades_and_is_reported(client, worker_seen):
    event = WebhookEvent.objects.create(kind="sandbox", body=b"{}", status=WebhookEvent.Status.PENDING)
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(seconds=310))
    WebhookEvent.objects.create(kind="sandbox", body=b"{}", status=WebhookEvent.Status.PROCESSED)
    body = json_body(client.get("/health/"))
    assert body["status"] == "degraded"
    assert body["checks"]["worker"]["error"] == "backlog"
    assert 310 <= body["checks"]["worker"]["oldest_pending_event_seconds"] < 330


def _conversation(provider) -> Conversation:
    return Conversation.objects.create(provider=provider, contact=Contact.objects.create(profile_name="Ana"))
