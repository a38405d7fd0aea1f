"""
What the API rate limits and the webhook flood cut-off cost, and what the cut-off saves.

    .venv/bin/python bench/api_limits.py [--requests 2000]

1. Recreates the database `whatsapp_bench_limits`, migrates it, and makes a user with an API key and a
   sandbox provider.
2. In this process, through Django's whole request stack (the test client, DEBUG off, the cache on Redis
   db 13, emptied first):
   - GET /api/v1/providers/ with the key, --requests times, with the limits counted (the production path:
     two cache counters per request, key and user) and, as the baseline in the same run, with every limit
     off. Median and p95 per request, and the difference.
   - --requests unsigned POSTs to the sandbox webhook URL from one address: with the cut-off (the default
     30 rejections a minute, then 429 before anything is read) and, as the baseline, with it off (every
     request verified, rejected and recorded as a row). Requests per second and rows written.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VENV_PYTHON = BASE_DIR / ".venv" / "bin" / "python"
DB_NAME = "whatsapp_bench_limits"
PG = ["-h", "127.0.0.1", "-U", "postgres"]
REDIS_URL = "redis://127.0.0.1:6379/13"


def bench_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": "bGltaXRzLWJlbmNoLWtleS1ieXRlcy0zMi1sb25nISE=",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(BASE_DIR / "var" / "bench"),
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "TRUSTED_PROXY_COUNT": "0",
    })
    return env


def prepare(env: dict[str, str]) -> None:
    (BASE_DIR / "var" / "bench" / "staticfiles").mkdir(parents=True, exist_ok=True)
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", DB_NAME], check=True)
    subprocess.run(["createdb", *PG, DB_NAME], check=True)
    subprocess.run([str(VENV_PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env,
                   check=True)


def _timed(call, count: int) -> list[float]:
    for _ in range(20):
        call()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure(requests: int) -> None:
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    import redis
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    from core.api_tokens import api_token_create
    from whatsapp.models import WebhookEvent
    from whatsapp.services.providers import provider_create

    # Django logs every 4xx answer at WARNING; thousands of them would bury the figures.
    logging.getLogger("django.request").setLevel(logging.ERROR)
    redis.Redis.from_url(REDIS_URL).flushdb()
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", secrets.token_urlsafe(16))
    _, key = api_token_create(user=user, name="bench")
    provider = provider_create(kind="sandbox", name="Bench sandbox", options={})
    huge = dict.fromkeys(("read", "write", "send", "bulk", "anonymous"), "100000000/min")
    off = dict.fromkeys(huge, "off")
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")

    def read():
        assert client.get("/api/v1/providers/").status_code == 200

    counted, baseline = [], []
    for _ in range(10):  # alternated, so that drift on a busy machine falls on both alike
        with override_settings(API_RATE_LIMITS=huge):
            counted += _timed(read, requests // 10)
        with override_settings(API_RATE_LIMITS=off):
            baseline += _timed(read, requests // 10)
    print(f"\nGET /api/v1/providers/ with an API key, {requests} requests (ms per request)")
    print(f"{'':28}{'median':>8}{'p95':>8}")
    for label, times in (("limits counted", counted), ("limits off (baseline)", baseline)):
        print(f"{label:28}{statistics.median(times):8.2f}{statistics.quantiles(times, n=20)[18]:8.2f}")
    print(f"{'cost of counting':28}{statistics.median(counted) - statistics.median(baseline):8.2f}")

    url = f"/webhooks/sandbox/{provider.public_id}/"
    flood = Client()
    body = b'{"events": []}'

    def flood_run(rate: str) -> tuple[float, int, dict[int, int]]:
        redis.Redis.from_url(REDIS_URL).flushdb()
        WebhookEvent.objects.all().delete()
        statuses: dict[int, int] = {}
        with override_settings(WEBHOOK_REJECTION_RATE=rate, WEBHOOK_REJECTIONS_RECORDED_RATE="off"):
            start = time.perf_counter()
            for _ in range(requests):
                status = flood.post(url, body, content_type="application/json").status_code
                statuses[status] = statuses.get(status, 0) + 1
            elapsed = time.perf_counter() - start
        return requests / elapsed, WebhookEvent.objects.count(), statuses

    cut_rate, cut_rows, cut_statuses = flood_run("30/min")
    open_rate, open_rows, open_statuses = flood_run("off")
    print(f"\n{requests} unsigned webhook POSTs from one address")
    print(f"{'':34}{'req/s':>8}{'rows':>7}  answers")
    print(f"{'with the cut-off (30/min)':34}{cut_rate:8.0f}{cut_rows:7}  {cut_statuses}")
    print(f"{'cut-off off (baseline)':34}{open_rate:8.0f}{open_rows:7}  {open_statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.requests)
        return
    env = bench_env()
    prepare(env)
    subprocess.run([str(VENV_PYTHON), __file__, "--measure", "--requests", str(args.requests)], cwd=BASE_DIR,
                   env=env, check=True)


if __name__ == "__main__":
    main()
