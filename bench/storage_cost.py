"""
Archive storage cost benchmark: objects and bytes per message, archive latency, and what a message costs
in Google Cloud Storage, bundled (the application's layout) against every body and file an object of its
own kept Standard forever (the baseline) and under the lifecycle rules (the layout before bundling).

    .venv/bin/python bench/storage_cost.py [--per-kind 50] [--senders 40] [--users 20]
                                           [--voice-kb 20] [--photo-kb 150] [--mix 70,15,15]

1. Recreates the database `whatsapp_bench_storage`, migrates it and starts the GCS emulator
   (gcp-storage-emulator, in memory) in this process; the application talks to it through the real
   google-cloud-storage client with STORAGE_BACKEND=gcs. No Redis: Celery's broker is a folder under
   var/bench/storage (tasks pile up unread; this benchmark runs each archive step itself).
2. Creates a Meta, a Twilio, a Chatwoot and a sandbox provider, and --users users whose profile phone is
   the number of one of the first --users senders (those contacts are mapped by the auto rule, so their
   messages go to per-user buckets; the others to the provider's bucket).
3. For each provider and message kind (text from all four; voice note and photo from Meta, Twilio and
   Chatwoot), --per-kind times: the fixture from tests/whatsapp/providers/fixtures/<provider>/ with a fresh
   message id and one of --senders senders, compact JSON as providers send it (Twilio: its form encoding),
   POSTed signed through the real webhook endpoint (Django test client) and processed
   (webhook_event_process); for media messages --voice-kb / --photo-kb random bytes stored by media_store
   (the download's own storage step), timed.
4. The hour closes: webhook_bodies_bundle (the beat job's step) writes the bundles, timed; retention
   (webhook_bodies_prune) over every body, its stats counted; every body read back alone (ranged reads).
5. Baseline, same run, same emulator: the same payloads uploaded by a bare google-cloud-storage client
   (Blob.upload_from_string into one bucket, one object each; no database, no owner lookup, no metadata).
6. Every request the emulator answers is counted from its request log, and the cost per message is
   computed from the measured objects, bytes and operations with the price table below, over 1 and 3
   years. Exits 1 if bundled is not below Standard forever.

Everything it starts (the emulator thread) stops with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

BASE_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = BASE_DIR / ".venv" / "bin"
DB_NAME = "whatsapp_bench_storage"
PG = ["-h", "127.0.0.1", "-U", "postgres"]
VAR_DIR = BASE_DIR / "var" / "bench" / "storage"
FIXTURES = BASE_DIR / "tests" / "whatsapp" / "providers" / "fixtures"
TARGET_PER_MESSAGE = 0.001  # the seed's target, USD
HOURS_PER_MONTH = 730  # GCS bills storage per GiB-hour; its monthly prices are 730 hours
GIB = 1024 ** 3

# --------------------------------------------------------------------------------------------
# Price table (USD). Read 1 Dec 2026 from:
#  [P] https://cloud.google.com/storage/pricing - storage per GiB-hour (as the page gives it) for a
#      region (us-central1) and the US multi-region; retrieval fees. Region rows as transcribed on
#      2026-09-20 in github.com/api-evangelist/gcp-cloud-storage plans/gcp-cloud-storage-plans-pricing.yml,
#      multi-region rows from a copy of the same page (docs.cloud.google.com/storage/pricing).
#  [E] https://cloud.google.com/storage/pricing-examples - Class A $0.005 and Class B $0.0004 per 1,000
#      for Standard storage in a region.
#  [L] Lifecycle SetStorageClass transitions are billed as one Class A operation per object at the
#      destination class's rate, with no retrieval or early-deletion fee (the minimum storage duration
#      counts from the object's creation); Coldline $0.02 and Archive $0.05 per 1,000 Class A - as
#      worked out from a real bill in github.com/cal-itp/data-infra/issues/5431 (2026-07-16).
#  [O] The operations table of [P] (not re-read for this run; check it before relying on these):
#      Class A Nearline $0.01 per 1,000, Standard in a multi-region $0.01 per 1,000; Class B per 1,000:
#      Nearline $0.001, Coldline $0.01, Archive $0.05.
# Minimum storage durations (https://cloud.google.com/storage/docs/storage-classes): Nearline 30 days,
# Coldline 90, Archive 365; no minimum object size.
# --------------------------------------------------------------------------------------------
CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
PRICES = {
    "us-central1": {
        "storage_gib_hour": {"STANDARD": 0.000027397, "NEARLINE": 0.000013699, "COLDLINE": 0.000005479,
                             "ARCHIVE": 0.000001644},  # [P] = $0.020 / $0.010 / $0.004 / $0.0012 per GiB-month
        "class_a_per_1000": {"STANDARD": 0.005, "NEARLINE": 0.010, "COLDLINE": 0.020, "ARCHIVE": 0.050},  # [E][O][L]
        "class_b_per_1000": {"STANDARD": 0.0004, "NEARLINE": 0.001, "COLDLINE": 0.010, "ARCHIVE": 0.050},  # [E][O]
    },
    "US multi-region": {
        "storage_gib_hour": {"STANDARD": 0.000035616, "NEARLINE": 0.000020548, "COLDLINE": 0.000011986,
                             "ARCHIVE": 0.00000411},  # [P] = $0.026 / $0.015 / $0.00875 / $0.0030 per GiB-month
        "class_a_per_1000": {"STANDARD": 0.010, "NEARLINE": 0.010, "COLDLINE": 0.020, "ARCHIVE": 0.050},  # [O][L]
        "class_b_per_1000": {"STANDARD": 0.0004, "NEARLINE": 0.001, "COLDLINE": 0.010, "ARCHIVE": 0.050},  # [O]
    },
}
RETRIEVAL_PER_GIB = {"STANDARD": 0.0, "NEARLINE": 0.01, "COLDLINE": 0.02, "ARCHIVE": 0.05}  # [P]
HORIZONS = {"1 year": 365, "3 years": 3 * 365}


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(emulator_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "GCS_", "CELERY_", "STORAGE_", "LOCAL_STORAGE_"))}
    for name in ("REDIS_URL", "DATABASE_URL", "STORAGE_EMULATOR_HOST", "WEBHOOK_BODY_RETENTION_DAYS"):
        env.pop(name, None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "CELERY_BROKER_URL": "filesystem://",
        "VAR_DIR": str(VAR_DIR),
        "LOG_LEVEL": "ERROR",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "PUBLIC_BASE_URL": "https://bench.example.test",
        "STORAGE_BACKEND": "gcs",
        "GCS_ENDPOINT": emulator_url,
        "GCS_PROJECT": "bench",
        "GCS_BUCKET_PREFIX": "wa-bench",
    })
    return env


def recreate_database(env: dict[str, str]) -> None:
    shutil.rmtree(VAR_DIR, ignore_errors=True)
    (VAR_DIR / "staticfiles").mkdir(parents=True, exist_ok=True)
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", DB_NAME], check=True)
    subprocess.run(["createdb", *PG, DB_NAME], check=True)
    subprocess.run([str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR,
                   env=env, check=True)


class RequestLog(logging.Handler):
    """The emulator writes one INFO line per request it answers ('"POST /upload/... HTTP/1.1" 200 -')."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith('"'):
            method, target = message[1:].split(" ")[:2]
            self.lines.append((method, target.split("?")[0]))

    def take(self) -> list[tuple[str, str]]:
        lines, self.lines = self.lines, []
        return lines


def operation(method: str, path: str) -> str:
    """What a JSON API request is, and so how GCS bills it (Class A, Class B, free)."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["upload"]:
        return "object insert (A)"
    if parts[-1:] == ["b"] and method == "POST":
        return "bucket insert (A)"
    if parts[-1:] == ["b"] and method == "GET":
        return "bucket list (A)"
    if len(parts) == 4 and method == "PATCH":
        return "bucket patch (A)"
    if len(parts) == 4 and method == "GET":
        return "bucket get (B)"
    if "o" in parts and method == "GET":
        return "object get (B)"
    if method == "DELETE":
        return "delete (free)"
    return f"{method} other"


# --------------------------------------------------------------------------------------------
# Messages built from the fixtures
# --------------------------------------------------------------------------------------------
KINDS = {"text": ("meta", "twilio", "chatwoot", "sandbox"), "voice": ("meta", "twilio", "chatwoot"),
         "photo": ("meta", "twilio", "chatwoot")}
FIXTURE_FILES = {
    ("meta", "text"): "text.json", ("meta", "voice"): "audio_voice.json", ("meta", "photo"): "image.json",
    ("twilio", "text"): "inbound_text.json", ("twilio", "voice"): "inbound_voice.json",
    ("twilio", "photo"): "inbound_image.json",
    ("chatwoot", "text"): "message_created_text.json", ("chatwoot", "voice"): "message_created_voice.json",
    ("chatwoot", "photo"): "message_created_image.json",
    ("sandbox", "text"): "inbound_text.json",
}
FIXTURE_PHONE = "5511987650001"


def sender_phone(index: int) -> str:
    return f"55119{index:08d}"


def message_body(provider: str, kind: str, n: int, sender: int) -> tuple[bytes, str]:
    """(body, content type): the fixture with message id n and sender `sender`, as the provider sends it."""
    raw = (FIXTURES / provider / FIXTURE_FILES[provider, kind]).read_text()
    raw = raw.replace(FIXTURE_PHONE, sender_phone(sender)).replace("beatriz@example.com",
                                                                    f"customer{sender}@example.com")
    payload = json.loads(raw)
    if provider == "meta":
        message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
        message["id"] = f"wamid.bench{n:012d}"
        message["timestamp"] = str(int(time.time()))
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(), "application/json"
    if provider == "twilio":
        sid = f"SM{n:032x}"
        payload.update(MessageSid=sid, SmsSid=sid, SmsMessageSid=sid)
        return urlencode(payload).encode(), "application/x-www-form-urlencoded"
    if provider == "chatwoot":
        payload["id"] = 1_000_000 + n
        payload["source_id"] = f"wamid.CWbench{n}"
        payload["sender"]["id"] = payload["conversation"]["meta"]["sender"]["id"] = 50_000 + sender
        payload["conversation"]["contact_inbox"]["contact_id"] = 50_000 + sender
        payload["conversation"]["id"] = 90_000 + sender
        for attachment in payload.get("attachments", []):
            attachment["id"], attachment["message_id"] = 2_000_000 + n, payload["id"]
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(), "application/json"
    event = payload["events"][0]
    event.update(id=f"sbx-bench-{n}", timestamp=int(time.time()), name=f"Customer {sender}")
    event["from"] = "+" + sender_phone(sender)
    return json.dumps(payload, separators=(",", ":")).encode(), "application/json"


def post_webhook(client, provider, body: bytes, content_type: str) -> int:
    from urllib.parse import parse_qsl

    from tests import signing
    from whatsapp import sandbox_phone

    if provider.kind == "meta":
        response = signing.post_meta(client, provider, body)
    elif provider.kind == "twilio":
        response = signing.post_twilio(client, provider, dict(parse_qsl(body.decode())))
    elif provider.kind == "chatwoot":
        response = signing.post_chatwoot(client, provider, body)
    else:
        response = client.post(signing.webhook_path(provider), data=body, content_type=content_type,
                               headers=sandbox_phone.signed_headers(provider, body))
    assert response.status_code == 200, (provider.kind, response.status_code, response.content[:300])
    return int(response["X-Webhook-Event"])


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------
@dataclass
class Sample:
    kind: str  # text, voice, photo
    provider: str
    event_id: int = 0
    body_bytes: int = 0
    media_bytes: int = 0
    media_ms: float = 0.0
    media_location: str = ""
    payloads: list[bytes] = field(default_factory=list)


def receive_one(client, provider, kind: str, n: int, sender: int, media_kb: dict[str, int],
                rng: random.Random) -> Sample:
    """One message received and processed; its body waits for its hour's bundle, its media file (if any) is
    stored at once, as the download does."""
    from django.db import transaction

    from whatsapp.models import ArchiveStatus, Media, WebhookEvent
    from whatsapp.services.archive import media_store
    from whatsapp.services.webhooks import webhook_event_process

    body, content_type = message_body(provider.kind, kind, n, sender)
    event_id = post_webhook(client, provider, body, content_type)
    processed = webhook_event_process(event_id)
    assert processed.status == "processed", (provider.kind, kind, processed.last_error)
    assert processed.archive_status == ArchiveStatus.PENDING
    sample = Sample(kind=kind, provider=provider.kind, event_id=event_id, body_bytes=len(body), payloads=[body])
    if kind == "text":
        return sample

    media_id = (Media.objects.filter(message__provider=provider,
                                     message__provider_message_id__in=processed.message_ids.split())
                .values_list("pk", flat=True).get())
    data = rng.randbytes(media_kb[kind] * 1024)  # incompressible, like Opus or JPEG
    started = time.perf_counter()
    with transaction.atomic():  # what media_download does around the storage step
        media = (Media.objects.select_for_update(of=("self",))
                 .select_related("message__provider", "message__conversation").get(pk=media_id))
        media_store(media, data)
        media.size_bytes = len(data)
        media.state = Media.State.FETCHED
        media.save()
    sample.media_ms = (time.perf_counter() - started) * 1000
    assert media.archive_status == ArchiveStatus.ARCHIVED, media.archive_error
    assert WebhookEvent.objects.filter(pk=event_id).exists()
    sample.media_bytes = len(data)
    sample.media_location = media.archive_path
    sample.payloads.append(data)
    return sample


class BareUploads:
    """The baseline: the same bytes through a plain client into one bucket, nothing else. It runs right after
    each of our messages, so both see the emulator equally full (its inserts slow down as it fills)."""

    def __init__(self, emulator_url: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": emulator_url})
        self.bucket = client.create_bucket("wa-bench-baseline")
        self.count = 0

    def upload(self, data: bytes) -> float:
        self.count += 1
        started = time.perf_counter()
        self.bucket.blob(f"baseline/{self.count}").upload_from_string(data, timeout=20, retry=None)
        return (time.perf_counter() - started) * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))] if ordered else 0.0


# --------------------------------------------------------------------------------------------
# Cost model
# --------------------------------------------------------------------------------------------
def steps() -> list[tuple[str, int]]:
    """(class, from age in days): the bucket's default class, then the lifecycle rules from the settings."""
    from django.conf import settings

    from core.storage import lifecycle_rules

    return [(settings.GCS_STORAGE_CLASS, 0), *lifecycle_rules()]


def object_cost(size: int, days: int, prices: dict, *, lifecycle: bool) -> dict[str, float]:
    """What one object of `size` bytes costs over `days`: its upload, the lifecycle transitions that happen
    within the horizon (one Class A each, at the destination class's rate), and storage in each class."""
    timeline = steps() if lifecycle else steps()[:1]
    upload = prices["class_a_per_1000"][timeline[0][0]] / 1000
    transitions = sum(prices["class_a_per_1000"][cls] / 1000 for cls, age in timeline[1:] if age < days)
    storage = 0.0
    for index, (cls, start) in enumerate(timeline):
        end = min(timeline[index + 1][1] if index + 1 < len(timeline) else days, days)
        if end > start:
            storage += size / GIB * prices["storage_gib_hour"][cls] * (end - start) * 24
    return {"upload": upload, "transitions": transitions, "storage": storage}


def class_at(age_days: int, *, lifecycle: bool) -> str:
    current = steps()[0][0]
    for cls, age in (steps()[1:] if lifecycle else []):
        if age_days >= age:
            current = cls
    return current


@dataclass
class Piece:
    """What one message keeps in one object: its bytes there, its share of the object's per-object
    operations (1 for an object of its own, 1/n for one of n bodies in a bundle), and whether the lifecycle
    rules move that object to colder classes."""

    size: float
    share: float
    tiered: bool


def pieces_cost(pieces: list[Piece], stats: float, days: int, prices: dict) -> dict[str, float]:
    """A message's cost over `days`: its shares of uploads and transitions, its bytes' storage in each
    class, and its share of the retention job's check (one Class B stat per object holding bodies)."""
    from django.conf import settings

    parts = {"upload": 0.0, "transitions": 0.0, "storage": 0.0}
    for piece in pieces:
        costs = object_cost(int(piece.size), days, prices, lifecycle=piece.tiered)
        parts["upload"] += costs["upload"] * piece.share
        parts["transitions"] += costs["transitions"] * piece.share
        parts["storage"] += costs["storage"]
    parts["stat"] = stats * prices["class_b_per_1000"][
        class_at(settings.WEBHOOK_BODY_RETENTION_DAYS, lifecycle=pieces[0].tiered)] / 1000
    parts["total"] = sum(parts.values())
    return parts


@dataclass
class Measured:
    """A message kind as measured: mean body as received, its compressed member in a bundle, its media."""

    body: float
    member: float
    media: float

    def per_object(self, *, lifecycle: bool) -> tuple[list[Piece], float]:
        """The earlier layout: every body and every file an object of its own."""
        pieces = [Piece(self.body, 1.0, lifecycle)] + ([Piece(self.media, 1.0, lifecycle)] if self.media else [])
        return pieces, 1.0

    def bundled(self, bodies_per_bundle: float, threshold: int) -> tuple[list[Piece], float]:
        """Bodies in bundles of n (tiered when the bundle is large enough), files on their own (tiered when
        large enough)."""
        share = 1 / bodies_per_bundle
        pieces = [Piece(self.member, share, self.member * bodies_per_bundle >= threshold)]
        if self.media:
            pieces.append(Piece(self.media, 1.0, self.media >= threshold))
        return pieces, share


def blended(profiles: dict[str, Measured], mix: dict[str, float], layout, days: int, prices: dict) -> float:
    return sum(pieces_cost(*layout(profiles[kind]), days, prices)["total"] * share for kind, share in mix.items())


def break_even_bytes(days: int, prices: dict) -> float:
    """The object size at which the lifecycle's transitions cost what they save in storage over `days`."""
    per_byte_saving = ((object_cost(GIB, days, prices, lifecycle=False)["storage"]
                        - object_cost(GIB, days, prices, lifecycle=True)["storage"]) / GIB)
    transitions = object_cost(1, days, prices, lifecycle=True)["transitions"]
    return transitions / per_byte_saving if per_byte_saving > 0 else float("inf")


def usd(value: float) -> str:
    return f"${value:.7f}" if value < 0.01 else f"${value:.4f}"


def human(size: float) -> str:
    return f"{size / 1024:.1f} KB" if size >= 1024 else f"{size:.0f} B"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-kind", type=int, default=50, help="messages per provider and kind (default 50)")
    parser.add_argument("--senders", type=int, default=40, help="distinct customers per provider (default 40)")
    parser.add_argument("--users", type=int, default=20, help="senders mapped to users (own buckets; default 20)")
    parser.add_argument("--voice-kb", type=int, default=20, help="voice note size (default 20 KB)")
    parser.add_argument("--photo-kb", type=int, default=150, help="photo size (default 150 KB)")
    parser.add_argument("--mix", default="70,15,15", help="text,voice,photo shares for the blended row")
    args = parser.parse_args(argv)
    mix = dict(zip(("text", "voice", "photo"), (float(x) / 100 for x in args.mix.split(",")), strict=True))

    from gcp_storage_emulator.server import create_server

    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    emulator_logger = logging.getLogger("gcp_storage_emulator.server")
    request_log = RequestLog()
    env = bench_env(emulator_url)
    print(f"building {DB_NAME} and starting the GCS emulator on {emulator_url}", flush=True)
    recreate_database(env)
    os.environ.update(env)
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    # The emulator's request log is how operations are counted; its other chatter stays quiet.
    logging.getLogger("api.bucket").setLevel(logging.WARNING)
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    emulator_logger.setLevel(logging.INFO)
    emulator_logger.propagate = False
    emulator_logger.addHandler(request_log)
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        return run(args, mix, emulator_url, request_log)
    finally:
        server.stop()


def run(args, mix: dict[str, float], emulator_url: str, request_log: RequestLog) -> int:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from contacts.services.mapping import user_phone_set
    from tests import signing
    from whatsapp.models import ArchiveBucket, ArchiveBundle, Media, WebhookEvent
    from whatsapp.services.archive_bundles import webhook_bodies_bundle, webhook_bodies_prune, webhook_body
    from whatsapp.services.providers import provider_create

    providers = {"meta": signing.make_meta(), "twilio": signing.make_twilio(), "chatwoot": signing.make_chatwoot(),
                 "sandbox": provider_create(kind="sandbox", name="Bench sandbox", options={})}
    for index in range(args.users):
        user = get_user_model().objects.create_user(f"customer{index}", f"customer{index}@example.org")
        user_phone_set(user, "+" + sender_phone(index))
    client = Client()
    rng = random.Random(7)
    media_kb = {"voice": args.voice_kb, "photo": args.photo_kb}
    bare = BareUploads(emulator_url)
    request_log.take()

    samples: list[Sample] = []
    bare_body_ms: list[float] = []
    bare_media_ms: list[float] = []
    media_requests: list[tuple[str, str]] = []
    n = 0
    for round_index in range(args.per_kind):
        for kind, kinds_providers in KINDS.items():
            for provider_kind in kinds_providers:
                n += 1
                sample = receive_one(client, providers[provider_kind], kind, n,
                                     (round_index * 7 + n) % args.senders, media_kb, rng)
                media_requests += request_log.take()
                samples.append(sample)
                bare_body_ms.append(bare.upload(sample.payloads[0]))
                bare_media_ms += [bare.upload(data) for data in sample.payloads[1:]]
                request_log.take()
    assert not [path for method, path in media_requests if "/upload/" in path and "webhooks" in path]

    # The hour closes: the beat job's bundling, claim after claim, timed.
    started = time.perf_counter()
    later = timezone.now() + timedelta(seconds=settings.ARCHIVE_BUNDLE_SECONDS + settings.ARCHIVE_STALE_AFTER_SECONDS)
    while webhook_bodies_bundle(now=later).bodies:
        pass
    bundle_seconds = time.perf_counter() - started
    bundle_requests = request_log.take()
    received = dict(WebhookEvent.objects.values_list("pk", "body"))  # as the endpoint stored them
    pruned = webhook_bodies_prune(older_than_days=0, limit=len(samples) + 10)
    prune_requests = request_log.take()
    # Every body reads back from its bundle alone (a ranged read), as received.
    sample_by_event = {sample.event_id: sample for sample in samples}
    started = time.perf_counter()
    for event in WebhookEvent.objects.filter(pk__in=sample_by_event).defer("body"):
        assert webhook_body(event) == bytes(received[event.pk]), event.pk
    read_ms = (time.perf_counter() - started) * 1000 / len(samples)
    read_requests = request_log.take()

    # --- what was measured ---
    messages = len(samples)
    media_objects = sum(1 for sample in samples if sample.media_bytes)
    bundles = ArchiveBundle.objects.count()
    ops: dict[str, int] = {}
    for method, path in media_requests + bundle_requests:
        ops[operation(method, path)] = ops.get(operation(method, path), 0) + 1
    stat_ops = sum(1 for method, path in prune_requests if operation(method, path) == "object get (B)")
    read_ops = sum(1 for method, path in read_requests if operation(method, path) == "object get (B)")
    bucket_ops = sum(count for name, count in ops.items() if name.startswith("bucket"))
    buckets = ArchiveBucket.objects.count()
    user_buckets = ArchiveBucket.objects.filter(user__isnull=False).count()
    assert ops.get("object insert (A)", 0) == bundles + media_objects, ops
    assert WebhookEvent.objects.filter(archive_status="archived", archive_bundle__isnull=False).count() == messages
    assert Media.objects.filter(archive_status="archived").count() == media_objects
    assert pruned == messages and stat_ops == bundles and read_ops == messages, (pruned, stat_ops, read_ops)
    per_bundle = messages / bundles
    members = dict(WebhookEvent.objects.filter(pk__in=sample_by_event).values_list("pk", "archive_length"))
    threshold = settings.ARCHIVE_TIERED_MIN_BYTES
    tiered_media = sum(1 for sample in samples if sample.media_location.partition("/")[2].startswith("tiered/"))

    print(f"\n{messages} messages ({args.per_kind} per provider and kind) from {args.senders} senders per provider, "
          f"{args.users} of them mapped to users; voice {args.voice_kb} KB, photo {args.photo_kb} KB.")
    print(f"objects: {bundles} bundles holding the {messages} webhook bodies ({per_bundle:.1f} bodies a bundle, one "
          f"per bucket and hour; {buckets} buckets, {user_buckets} per-user) and {media_objects} media files of "
          f"their own ({tiered_media} under tiered/, the threshold being {human(threshold)}); the earlier layout "
          f"made {messages + media_objects} objects.")
    print("emulator requests: " + ", ".join(f"{name} {count}" for name, count in sorted(ops.items()))
          + f"; retention: {stat_ops} object stats for {messages} bodies; reading every body back: {read_ops} "
          f"ranged GETs")
    print(f"  {bucket_ops} bucket requests for {buckets} new buckets (real GCS applies a new bucket's rules in its "
          "insert; the emulator needs the extra PATCH)\n")

    print(f"{'kind / provider':<20} {'msgs':>5} {'body':>9} {'in bundle':>10} {'media':>9}  "
          f"{'media store ms p50/p95 (ours)':>30}  {'bare upload ms p50/p95':>23}")
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(f"{sample.kind} / {sample.provider}", []).append(sample)
        groups.setdefault(f"{sample.kind} (all)", []).append(sample)
    groups["all messages"] = samples
    for name in sorted(groups, key=lambda key: (key == "all messages", key.split(" ")[0], "(all)" in key, key)):
        chosen = groups[name]
        media_ms = [sample.media_ms for sample in chosen if sample.media_ms]
        body = statistics.mean(sample.body_bytes for sample in chosen)
        member = statistics.mean(members[sample.event_id] for sample in chosen)
        media = statistics.mean(sample.media_bytes for sample in chosen)
        timing = (f"{percentile(media_ms, 0.5):>16.1f} / {percentile(media_ms, 0.95):>9.1f}" if media_ms
                  else f"{'-':>28}")
        print(f"{name:<20} {len(chosen):>5} {human(body):>9} {human(member):>10} "
              f"{human(media) if media else '-':>9}  {timing}")
    print(f"media bare upload ms p50/p95: {percentile(bare_media_ms, 0.5):.1f} / {percentile(bare_media_ms, 0.95):.1f}")
    print(f"bodies: bundling {bundle_seconds * 1000 / messages:.2f} ms a body ({messages} bodies in "
          f"{bundle_seconds:.2f} s, {bundles} uploads) against a bare upload of each body on its own "
          f"{statistics.mean(bare_body_ms):.2f} ms a body; one body read back: {read_ms:.1f} ms")

    # --- cost per message ---
    def measured(kind: str) -> Measured:
        chosen = [sample for sample in samples if sample.kind == kind]
        return Measured(body=statistics.mean(sample.body_bytes for sample in chosen),
                        member=statistics.mean(members[sample.event_id] for sample in chosen),
                        media=statistics.mean(sample.media_bytes for sample in chosen))

    profiles = {kind: measured(kind) for kind in KINDS}
    rules = ", ".join(f"{cls.title()} {age} d" for cls, age in steps()[1:])
    layouts = {
        "Standard forever": lambda m: m.per_object(lifecycle=False),
        "per object + lifecycle": lambda m: m.per_object(lifecycle=True),
        f"bundled ({per_bundle:.0f}/bundle)": lambda m: m.bundled(per_bundle, threshold),
        "bundled (1/bundle)": lambda m: m.bundled(1, threshold),
    }
    print(f"\nCost per message (USD), blend {args.mix} (text, voice, photo). Standard forever: every body and file an "
          f"object of its own, no lifecycle (the baseline). Per object + lifecycle: the same objects under the rules "
          f"({settings.GCS_STORAGE_CLASS.title()} -> {rules}), the layout before bundling. Bundled: bodies in "
          f"bundles (measured packing, and one body a bundle for a bucket that hears from one person an hour), "
          f"the rules only under tiered/ (objects of {human(threshold)} or more). Includes uploads, transitions, "
          f"storage and the retention stat; not reads, egress, or a bucket's one insert. Target: under "
          f"${TARGET_PER_MESSAGE}.")
    header = f"{'location':<16} {'horizon':<8} " + " ".join(f"{name:>26}" for name in layouts) + "  goal"
    print(header)
    print("-" * len(header))
    verdicts = []
    for location, prices in PRICES.items():
        for horizon, days in HORIZONS.items():
            totals = {name: blended(profiles, mix, layout, days, prices) for name, layout in layouts.items()}
            baseline = totals["Standard forever"]
            cells = [f"{usd(totals[name])} ({totals[name] / baseline:.2f}x)" for name in layouts]
            bundled = [value for name, value in totals.items() if name.startswith("bundled")]
            verdict = "met" if max(bundled) <= baseline and min(bundled) < baseline else "MISSED"
            verdicts.append(verdict)
            print(f"{location:<16} {horizon:<8} " + " ".join(f"{cell:>26}" for cell in cells) + f"  {verdict}")
    print("goal: bundled below Standard forever over 1 and 3 years: "
          + ("met" if set(verdicts) == {"met"} else "MISSED"))

    print("\nBundled, by bodies a bundle (the same blend; us-central1 / US multi-region, 1 year and 3 years):")
    for count in (1, 10, 100, 1000, 10000):
        cells = []
        for prices in PRICES.values():
            for days in HORIZONS.values():
                value = blended(profiles, mix, lambda m, count=count: m.bundled(count, threshold), days, prices)
                base = blended(profiles, mix, layouts["Standard forever"], days, prices)
                cells.append(f"{usd(value)} ({value / base:.2f}x)")
        tiered = " (bundle tiered)" if statistics.mean(p.member for p in profiles.values()) * count >= threshold else ""
        print(f"  {count:>6} a bundle{tiered:<16} " + "  ".join(cells))

    # --- objects: do the transitions pay for themselves? ---
    body = profiles["text"].body
    print("\nDo the lifecycle transitions pay for themselves? (one object, us-central1 / US multi-region)")
    print(f"{'object':<28} {'horizon':<8} {'storage saved':>14} {'transitions cost':>17} {'net':>12}  "
          f"{'cost / saving':>13}")
    for location, prices in PRICES.items():
        voice, photo = profiles["voice"].media, profiles["photo"].media
        bundle = per_bundle * statistics.mean(p.member for p in profiles.values())
        for label, size in ((f"webhook body {human(body)}", body), (f"voice note {human(voice)}", voice),
                            (f"photo {human(photo)}", photo), (f"bundle {human(bundle)}", bundle),
                            ("bundle 5,000 bodies", 5000 * profiles["text"].member)):
            for horizon, days in HORIZONS.items():
                flat = object_cost(int(size), days, prices, lifecycle=False)
                tiered = object_cost(int(size), days, prices, lifecycle=True)
                saved = flat["storage"] - tiered["storage"]
                net = tiered["transitions"] - saved
                print(f"{label:<28} {horizon:<8} {usd(saved):>14} {usd(tiered['transitions']):>17} "
                      f"{('+' if net > 0 else '-') + usd(abs(net)):>12}  {tiered['transitions'] / saved:>12.1f}x"
                      f"  [{location}]")
        print(f"  break-even object size [{location}]: "
              + ", ".join(f"{horizon} {human(break_even_bytes(days, prices))}" for horizon, days in HORIZONS.items())
              + f"; ARCHIVE_TIERED_MIN_BYTES is {human(threshold)}")
    print("\nPrices: cloud.google.com/storage/pricing (+ pricing-examples), read 1 Dec 2026; see the table's notes "
          "in bench/storage_cost.py for which figures were re-read and which need checking.")
    return 0 if set(verdicts) == {"met"} else 1


if __name__ == "__main__":
    sys.exit(main())
