import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from config.celery import app as celery_app
from contacts.models import Contact
from contacts.services.consent import keyword_words
from contacts.services.identities import contact_resolve
from core.api_tokens import api_token_create
from core.models import AuditLog
from tests.fakes import FakeServer, meta_accepted
from tests.signing import META_PHONE_NUMBER_ID, make_meta
from whatsapp import sandbox_phone
from whatsapp.models import Conversation, Provider
from whatsapp.providers.base import WebhookRequest
from whatsapp.providers.events import Identity, IdentityKind
from whatsapp.providers.meta import graph_api_version
from whatsapp.services.inbound import conversation_get_or_create
from whatsapp.services.provider_lookup import provider_cache_invalidate
from whatsapp.services.providers import provider_create
from whatsapp.services.sessions import session_open_or_extend
from whatsapp.services.webhooks import webhook_event_process, webhook_event_record

REPO_ROOT = Path(__file__).resolve().parent.parent
# The providers' webhook and API bodies, one folder per provider kind, beside the provider tests.
FIXTURES = Path(__file__).resolve().parent / "whatsapp" / "providers" / "fixtures"


def pytest_configure(config):
    # Hashing a test user's password with the production hasher (PBKDF2, a million rounds) takes a third
    # of a second; hundreds of test users made that minutes of the suite. Password checks behave the same.
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The fake providers listen on 127.0.0.1, which media downloads refuse by default.
    settings.MEDIA_ALLOW_PRIVATE_ADDRESSES = True
    # Tests sign superusers in with a password alone; tests/accounts turn the second factor back on.
    settings.TWO_FACTOR_REQUIRED_FOR_SUPERUSERS = False
    # Every test calls from 127.0.0.1 and the counts live in Redis across tests: API limits stay counted
    # but out of reach, except where a test sets its own.
    settings.API_RATE_LIMITS = dict.fromkeys(settings.API_RATE_LIMITS, "100000/min")
    settings.API_KEY_FAILURE_RATE = "100000/min"
    settings.WEBHOOK_REJECTION_RATE = settings.WEBHOOK_REJECTIONS_RECORDED_RATE = "100000/min"
    settings.CSP_REPORT_RATE = "100000/min"


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Each test starts with the caches a process keeps of database rows emptied: a test database is emptied
    and refilled between tests without the saves and deletes that keep those caches true in production."""
    keyword_words.forget()
    provider_cache_invalidate()


def fixture_bytes(provider_kind: str, name: str) -> bytes:
    return (FIXTURES / provider_kind / name).read_bytes()


def fixture_json(provider_kind: str, name: str) -> dict:
    return json.loads(fixture_bytes(provider_kind, name))


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


def in_threads(*calls):
    """Run the calls at the same moment, each in its own thread with its own database connection."""
    barrier = threading.Barrier(len(calls))
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    assert not errors, errors
    return results


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


# --- fake providers ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_server():
    """One local provider server for a test module (starting and stopping one per test costs half a
    second); tests clear its routes and requests, or use paths of their own. Most tests want `fake`."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def fake(fake_server, settings):
    """The module's provider server, emptied, playing every provider's API: Meta's Graph API (v25.0),
    Twilio's REST API and Content API. (A Chatwoot provider names its server: make it with
    base_url=fake.url.) Sends to it are not paced per recipient."""
    fake_server.routes.clear()
    fake_server.requests.clear()
    settings.META_GRAPH_BASE_URL = fake_server.url
    settings.META_GRAPH_API_VERSION = "v25.0"
    settings.TWILIO_API_BASE_URL = fake_server.url
    settings.TWILIO_CONTENT_BASE_URL = fake_server.url
    settings.SEND_PAIR_INTERVAL_SECONDS = 0
    return fake_server


@pytest.fixture
def graph(fake):
    """`fake`, named for the tests that talk to Meta's Graph API."""
    return fake


@pytest.fixture
def fake_meta(fake, settings):
    """`fake` accepting every send to `meta`'s number (each with a new message id, see
    fakes.meta_accepted) at `fake_meta.send_path`, with the send pipeline's retries made quick."""
    settings.SEND_RETRY_BASE_SECONDS = 0.05
    settings.SEND_RETRY_MAX_SECONDS = 0.2
    fake.send_path = f"/{graph_api_version()}/{META_PHONE_NUMBER_ID}/messages"
    fake.routes[fake.send_path] = meta_accepted
    return fake


@pytest.fixture
def meta(db, fake_meta):
    """A Meta provider (tests.signing.make_meta: the ids of the Meta fixtures, webhooks signed with
    META_APP_SECRET) whose sends go to `fake_meta`."""
    return make_meta()


def sent_bodies(fake: FakeServer) -> list[dict]:
    """The JSON bodies `fake_meta` received at its send path, in order."""
    return [json.loads(request.body) for request in fake.hits(fake.send_path)]


def customer(provider: Provider, phone: str = "+16505551234", *, in_window: bool = True) -> Contact:
    """A contact of this provider with a conversation, its 24-hour window open unless in_window=False."""
    contact = contact_resolve(provider=provider, identities=[Identity(IdentityKind.PHONE, phone)],
                              profile_name="Ana")
    conversation = conversation_get_or_create(provider=provider, contact=contact)
    if in_window:
        session_open_or_extend(conversation=conversation, inbound_at=timezone.now())
    return contact


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456-strong")


@pytest.fixture
def admin_client_logged(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def operator_client(db):
    """A client of its own, logged in as a staff member of the default "Operator" group."""
    user = get_user_model().objects.create_user("op", "op@example.com", "pw-123456-strong", is_staff=True)
    user.groups.add(Group.objects.get(name="Operator"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def api_client(superuser):
    _, key = api_token_create(user=superuser, name="tests")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def user_with_perms(username: str, *perms: str):
    """A user holding exactly these permissions ("app_label.codename")."""
    user = get_user_model().objects.create_user(username, password="pw-123456-strong")
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def token_client(user):
    """An API client authenticated with a new token of this user."""
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


def start_worker(env: dict, log_path: Path, name: str, queues: str = "celery") -> subprocess.Popen:
    """A real `celery -A config worker` process, in its own process group, once it says it is ready.
    `queues`: "celery" (the default queue), "ai", or both as "celery,ai"."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2",
         "--without-gossip", "--without-mingle", "--hostname", f"{name}-{os.getpid()}@%h", "-Q", queues],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    wait_until(lambda: b"ready." in log_path.read_bytes() or process.poll() is not None, 60,
               message="the Celery worker to start")
    assert process.poll() is None, log_path.read_text()
    process.log_path = log_path
    return process


def stop_worker(process: subprocess.Popen) -> None:
    """Kill the worker's whole process group. The test is over: nothing in flight matters (each test empties
    the broker first), the database drops a killed process's connections at once, and even Celery's cold
    shutdown takes two seconds, which tens of worker tests made minutes of the suite."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


@pytest.fixture
def worker_env(live_server, transactional_db, settings):
    """Environment for worker processes: the test's Redis broker (emptied first), the test database, and
    PUBLIC_BASE_URL and INTERNAL_BASE_URL pointing at the live server so the sandbox phone's webhooks reach
    this test."""
    settings.PUBLIC_BASE_URL = settings.INTERNAL_BASE_URL = live_server.url
    with celery_app.connection_for_write() as conn:
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
        "TWO_FACTOR_REQUIRED_FOR_SUPERUSERS": "false",
        # As in this process (pytest_configure): limits counted but out of reach unless a test sets its own.
        **dict.fromkeys(["API_RATE_READ", "API_RATE_WRITE", "API_RATE_SEND", "API_RATE_BULK", "API_RATE_ANONYMOUS",
                         "API_KEY_FAILURE_RATE", "WEBHOOK_REJECTION_RATE", "WEBHOOK_REJECTIONS_RECORDED_RATE",
                         "CSP_REPORT_RATE"],
                        "100000/min"),
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


def page(response) -> str:
    """An HTML answer's text."""
    return response.content.decode()


def refused(response, status: int, code: str) -> dict:
    """An API refusal in the house format: this status, this code and a detail; its body."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code and body["detail"], body
    return body


def audit_actions(obj) -> list[tuple[str, str]]:
    """(action, actor) of the audit entries about this row, oldest first."""
    return list(AuditLog.objects.filter(object_type=obj._meta.label, object_id=str(obj.pk))
                .order_by("created_at", "id").values_list("action", "actor_label"))


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
    groups = importlib.import_module("whatsapp.migrations.0002_default_groups").GROUPS
    group, created = Group.objects.get_or_create(name=name)
    if created:
        for app_label, by_model in groups[name].items():
            for model, actions in by_model.items():
                group.permissions.add(*Permission.objects.filter(
                    content_type__app_label=app_label, codename__in=[f"{action}_{model}" for action in actions]))
        for migration in ("0017_inbox_group_permissions", "0026_team_group_permissions"):
            more = importlib.import_module(f"whatsapp.migrations.{migration}").GROUP_PERMISSIONS
            group.permissions.add(*Permission.objects.filter(content_type__app_label="whatsapp",
                                                             codename__in=more.get(name, [])))
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


# --- real servers and a real browser ------------------------------------------------------------------

def answers_health(url: str) -> bool:
    """Whether a server at this base URL answers /health/ (healthy or not)."""
    try:
        return httpx.get(url + "/health/", timeout=10).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def start_web(env: dict, log_path: Path, *options: str) -> subprocess.Popen:
    """A real gunicorn (config/gunicorn.py, bound where env's GUNICORN_BIND says, extra command-line
    options after it) in its own process group, once it answers /health/."""
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py",
                                    "--access-logfile", "/dev/null", *options],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_until(lambda: answers_health(f"http://{env['GUNICORN_BIND']}"), 30, message="gunicorn to start")
    except BaseException:
        stop_web(process)
        raise
    return process


def stop_web(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:  # a worker still waiting on a connection nobody uses
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def web_and_workers(worker_env: dict, tmp_path: Path, name: str, *, queues: tuple[str, ...] = ("celery",),
                    env: dict | None = None, gunicorn_options: tuple[str, ...] = ()) -> Iterator[str]:
    """gunicorn and one Celery worker per queue on the test's database, broker and archive, each posting the
    simulated phone's webhooks to that gunicorn (and fetching its files from it); yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**worker_env, "PUBLIC_BASE_URL": url, "INTERNAL_BASE_URL": url, "CSRF_TRUSTED_ORIGINS": url,
           "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "GUNICORN_CONTROL_SOCKET": str(tmp_path / "gunicorn.ctl"), **(env or {})}
    web = start_web(env, tmp_path / "gunicorn.log", *gunicorn_options)
    workers = []
    try:
        for queue in queues:
            workers.append(start_worker(env, tmp_path / f"worker-{queue}.log", f"{name}-{queue}", queues=queue))
        yield url
    finally:
        for worker in workers:
            stop_worker(worker)
        stop_web(web)


@pytest.fixture
def browser():
    """Debian's chromium, headless, through chromedriver."""
    # Imported here: only the browser tests need selenium.
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install Debian's chromium and chromium-driver (.ci/run does)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1280,900"):
        options.add_argument(argument)
    # Console messages of every level, for tests that read them with get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def admin_log_in(browser, live_server, username: str, password: str) -> None:
    """Log in on the admin's login page (live_server: anything with the server's base .url)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server.url + "/admin/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "user-tools")))


def sandbox_message_stored(provider) -> Conversation:
    """The sandbox fixture's inbound message, stored and processed as the webhook view and worker do."""
    body = fixture_bytes("sandbox", "inbound_text.json")
    headers = {k.lower(): v for k, v in sandbox_phone.signed_headers(provider, body).items()}
    event, _ = webhook_event_record(kind="sandbox", provider=provider, remote_addr=None, request=WebhookRequest(
        method="POST", public_url="", body=body, headers=headers, content_type="application/json"))
    webhook_event_process(event.pk)
    return Conversation.objects.get()
