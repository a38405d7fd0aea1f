import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.contrib.auth import get_user_model

from contacts.models import Contact
from tests.fakes import FakeServer
from whatsapp import sandbox_phone
from whatsapp.models import Provider
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_configure(config):
    # Hashing a test user's password with the production hasher (PBKDF2, a million rounds) takes a third
    # of a second; hundreds of test users made that minutes of the suite. Password checks behave the same.
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The fake providers listen on 127.0.0.1, which media downloads refuse by default.
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = True


def fixture_bytes(provider_kind: str, name: str) -> bytes:
    return (FIXTURES / provider_kind / name).read_bytes()


def sandbox_fixture_now(name: str) -> bytes:
    """A sandbox fixture with its events dated now: the fixtures' fixed dates fall out of the 24-hour
    window as the calendar moves on, and a test that replies needs the window open."""
    payload = json.loads(fixture_bytes("sandbox", name))
    for event in payload["events"]:
        event["timestamp"] = int(time.time())
    return json.dumps(payload).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def sandbox_provider(db):
    return provider_create(kind="sandbox", name="Sandbox test", options={})


@pytest.fixture
def post_sandbox(client):
    """POST a body to a sandbox provider's webhook, signed the way the simulator signs."""

    def post(provider, body: bytes, *, sign: bool = True, headers: dict | None = None, content_type=None):
        extra = {}
        if sign:
            extra["HTTP_X_SANDBOX_SIGNATURE"] = sandbox_phone.signed_headers(provider, body)["X-Sandbox-Signature"]
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        return client.post(f"/webhooks/{provider.kind}/{provider.public_id}/", data=body,
                           content_type=content_type or "application/json", **extra)

    return post


@pytest.fixture(scope="module")
def fake_server():
    """One local provider server for a test module (starting and stopping one per test costs half a
    second); tests clear its routes and requests, or use paths of their own."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456-strong")


@pytest.fixture
def admin_client_logged(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def api_client(superuser):
    from rest_framework.test import APIClient

    from core.api_tokens import api_token_create

    _, key = api_token_create(user=superuser, name="tests")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def user_with_perms(username: str, *perms: str):
    """A user holding exactly these permissions ("app_label.codename")."""
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username, password="pw-123456-strong")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def token_client(user):
    """An API client authenticated with a new token of this user."""
    from rest_framework.test import APIClient

    from core.api_tokens import api_token_create

    _, key = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def start_worker(env: dict, log_path: Path, name: str) -> subprocess.Popen:
    """A real `celery -A config worker` process, in its own process group, once it says it is ready."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2",
         "--without-gossip", "--without-mingle", "--hostname", f"{name}-{os.getpid()}@%h"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    wait_until(lambda: b"ready." in log_path.read_bytes() or process.poll() is not None, 60,
               message="the Celery worker to start")
    assert process.poll() is None, log_path.read_text()
    process.log_path = log_path
    return process


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def worker_env(live_server, transactional_db, settings):
    """Environment for worker processes: the test's Redis broker (emptied first), the test database, and
    PUBLIC_BASE_URL and INTERNAL_BASE_URL pointing at the live server so the sandbox phone's webhooks reach
    this test."""
    from django.db import connection

    from config.celery import app

    settings.PUBLIC_BASE_URL = settings.INTERNAL_BASE_URL = live_server.url
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()
    return {
        **os.environ,
        # Workers archive where this test does (the local directory or the GCS emulator).
        "STORAGE_BACKEND": settings.STORAGE_BACKEND,
        "LOCAL_STORAGE_DIR": str(settings.LOCAL_STORAGE_DIR),
        "GCS_ENDPOINT": settings.GCS_ENDPOINT,
        "GCS_PROJECT": settings.GCS_PROJECT,
        "GCS_BUCKET_PREFIX": settings.GCS_BUCKET_PREFIX,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "PUBLIC_BASE_URL": live_server.url,
        "INTERNAL_BASE_URL": live_server.url,
        "SANDBOX_STATUS_DELAY_SECONDS": "0.3",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "MEDIA_ALLOW_PRIVATE_ADDRESSES": "true",
    }


@pytest.fixture
def celery_worker(worker_env, tmp_path):
    process = start_worker(worker_env, tmp_path / "worker.log", "test")
    try:
        yield process
    finally:
        stop_worker(process)


def json_body(response):
    return json.loads(response.content.decode())


def event_id(response) -> int:
    """The stored inbox row of an acknowledged webhook (every provider's 200 names it in a header)."""
    return int(response["X-Webhook-Event"])


def start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                "127.0.0.1", "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: _pings(port), 10, message="redis-server to start")
    return process


def _pings(port):
    try:
        return redis.Redis(port=port, socket_timeout=0.5).ping()
    except redis.exceptions.ConnectionError:
        return False


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def own_redis():
    """A Redis server of our own, so the test can really stop the broker."""
    port = free_port()
    process = start_redis(port)
    yield port, process
    stop_process(process)


class GcsEmulator:
    """gcp-storage-emulator in this process, on a fixed port for the session so it can be stopped and
    started again (an outage) with its data kept in a directory."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.server = None

    def start(self) -> None:
        from gcp_storage_emulator.server import create_server

        if self.server is None:
            self.server = create_server("127.0.0.1", self.port, in_memory=False, data_dir=str(self.data_dir))
            self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    emulator = GcsEmulator(tmp_path_factory.mktemp("gcs-emulator"))
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def gcs_storage(gcs_emulator, settings):
    """The GCS backend against the emulator, emptied first. Request it before `celery_worker` so workers
    archive there too. Yields the emulator (stop() and start() make an outage)."""
    gcs_emulator.start()
    gcs_emulator.server.wipe()
    settings.STORAGE_BACKEND = "gcs"
    settings.GCS_ENDPOINT = gcs_emulator.url
    settings.GCS_PROJECT = "test"
    settings.GCS_TIMEOUT_SECONDS = 5
    yield gcs_emulator
    gcs_emulator.start()


@pytest.fixture
def local_storage(settings, tmp_path):
    """The local-directory backend in a folder of this test's own."""
    settings.STORAGE_BACKEND = "local"
    settings.LOCAL_STORAGE_DIR = tmp_path / "archive"
    return settings.LOCAL_STORAGE_DIR


def default_group(name: str):
    """One of the data migration's default groups. A transactional test's flush empties the groups table,
    so the group is made again from the migration's own definition when it is missing."""
    from django.contrib.auth.models import Group, Permission

    groups = importlib.import_module("whatsapp.migrations.0002_default_groups").GROUPS
    group, created = Group.objects.get_or_create(name=name)
    if created:
        for app_label, by_model in groups[name].items():
            for model, actions in by_model.items():
                group.permissions.add(*Permission.objects.filter(
                    content_type__app_label=app_label, codename__in=[f"{action}_{model}" for action in actions]))
    return group


@pytest.fixture
def say(sandbox_provider, post_sandbox):
    """A contact writes to the business: a signed sandbox webhook, processed as the worker would."""

    def send(phone: str, text: str, *, name: str = "", at: float | None = None,
             provider: Provider | None = None) -> Contact:
        provider = provider or sandbox_provider
        event = {"type": "message", "id": f"sbx-in-{uuid.uuid4().hex}", "from": phone, "name": name,
                 "text": text, "timestamp": time.time() if at is None else at}
        response = post_sandbox(provider, json.dumps({"events": [event]}).encode())
        assert response.status_code == 200, response.content
        webhook_event_process(json_body(response)["event"])
        return Contact.objects.get(identities__kind="phone", identities__value=phone)

    return send


@pytest.fixture
def graph(settings):
    """A local server playing Meta's Graph API (modules with their own wire fakes define their own)."""
    with FakeServer() as server:
        settings.META_GRAPH_BASE_URL = server.url
        settings.META_GRAPH_API_VERSION = "v25.0"
        yield server
