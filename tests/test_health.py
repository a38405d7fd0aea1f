"""/health/ answers 200 when everything works (or only the archive storage is out: degraded) and 503 naming
what does not."""

import time

import pytest

from tests.conftest import json_body

pytestmark = pytest.mark.django_db


def test_health_is_ok_with_database_broker_and_storage(client):
    response = client.get("/health/")
    assert response.status_code == 200, response.content
    body = json_body(response)
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "storage"}


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


def test_unwritable_storage_degrades_but_stays_healthy(client, settings, tmp_path):
    # Webhooks are still taken and kept while the archive is out, so this instance stays in rotation.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the storage directory should be")
    settings.LOCAL_STORAGE_DIR = blocker
    response = client.get("/health/")
    assert response.status_code == 200
    body = json_body(response)
    assert body["status"] == "degraded" and body["degraded"] == ["storage"] and "failing" not in body
    assert body["checks"]["storage"]["status"] == "degraded"
