"""
Webhook ingest and drain benchmark.

    .venv/bin/python bench/webhook_ingest.py [--requests 5000] [--connections 64] [--workers 4]
                                             [--kind meta|sandbox] [--drain 2] [--drain-pool prefork]
                                             [--scale-out 3000]

1. Recreates the database `whatsapp_bench`, migrates it, empties Redis db 14, creates a provider (Meta
   by default) with a known app secret, and starts gunicorn (config/gunicorn.py, DEBUG off, real keys)
   on a free port. No Celery worker runs during ingest: tasks pile up in Redis as they would behind a
   web tier that only enqueues.
2. Fires pre-built, pre-signed webhook POSTs (one inbound text each, unique message id) from an asyncio
   raw-socket client with N concurrent connections, at the real endpoint and at a bare baseline view
   (HMAC check + one raw INSERT, bench/baseline_urls.py) served by the same gunicorn, and prints
   requests/s, p50, p99, and rows stored versus 200s answered.
3. Starts a Celery worker and measures how fast the inbox turns into `Message` rows (the endpoint only
   woke the drain: the rows are the queue), then checks nothing was stored twice.
4. With --scale-out ROWS: stores ROWS more rows, drains them with one worker process group of one
   process, then ROWS more with two groups (as two machines would), and prints the two rates.

Everything it starts is stopped on exit, errors included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = BASE_DIR / ".venv" / "bin"
DB_NAME = "whatsapp_bench"
PG = ["-h", "127.0.0.1", "-U", "postgres"]
REDIS_URL = "redis://127.0.0.1:6379/14"
HOST = "127.0.0.1"
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE = "15550001111"
BARE_PATH = "/bench/bare/"

GOALS = {"ratio": 0.8, "p99_ms": 100.0, "drain_per_s": 1000.0}


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------
class Processes:
    """Every process group the benchmark starts, stopped in reverse order (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        log_file = log.open("ab")
        try:
            proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log_file.close()
        self.started.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 15) -> None:
        if proc.poll() is not None:
            self._kill_group(proc.pid, signal.SIGKILL)  # leftover children of a dead leader
            return
        self._kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        self._kill_group(proc.pid, signal.SIGKILL)

    @staticmethod
    def _kill_group(pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def stop_all(self) -> None:
        while self.started:
            _name, proc = self.started.pop()
            self.stop(proc)


def _sigterm(_signum, _frame):
    raise SystemExit(143)


def wait_quiet(limit: float, threshold: float = 0.15) -> float:
    """Wait (up to limit seconds) for a 2-second window where the machine is less than threshold busy."""
    deadline = time.monotonic() + limit
    while True:
        busy0, total0 = system_busy()
        time.sleep(2)
        busy1, total1 = system_busy()
        busy = (busy1 - busy0) / max(total1 - total0, 1)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _proc_stats():
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        # pgrp, and utime + stime + cutime + cstime (reaped children count in their parent)
        yield comm, int(fields[2]), sum(int(v) for v in fields[11:15])


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of the live processes in a process group, plus their reaped children."""
    return sum(ticks for _comm, group, ticks in _proc_stats() if group == pgid) / os.sysconf("SC_CLK_TCK")


def command_cpu_seconds(prefix: str) -> float:
    """CPU seconds of every process whose name starts with prefix (e.g. all PostgreSQL backends)."""
    return sum(ticks for comm, _group, ticks in _proc_stats() if comm.startswith(prefix)) / os.sysconf("SC_CLK_TCK")


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------------------------
# Environment, database and provider
# --------------------------------------------------------------------------------------------
def bench_env(args, port: int, app_secret: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "GUNICORN_"))}
    var_dir = BASE_DIR / "var" / "bench"
    env.update({
        "DJANGO_SETTINGS_MODULE": "bench.baseline_settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "REDIS_URL": REDIS_URL,
        "PUBLIC_BASE_URL": f"http://{HOST}:{port}",
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(var_dir),
        "GUNICORN_BIND": f"{HOST}:{port}",
        "WEB_CONCURRENCY": str(args.workers),
        "BENCH_APP_SECRET": app_secret,
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("DATABASE_CONN_MAX_AGE", None)
    if args.conn_max_age is not None:
        env["DATABASE_CONN_MAX_AGE"] = str(args.conn_max_age)
    for name in ("CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "ALLOWED_HOSTS", "DJANGO_HTTPS",
                 "SECURE_SSL_REDIRECT", "STATIC_ROOT"):
        env.pop(name, None)
    (var_dir / "staticfiles").mkdir(parents=True, exist_ok=True)
    return env


def recreate_database(env: dict[str, str], db_name: str = DB_NAME) -> float:
    started = time.perf_counter()
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", db_name], check=True)
    subprocess.run(["createdb", *PG, db_name], check=True)
    subprocess.run([str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR,
                   env=env, check=True)
    return time.perf_counter() - started


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def redis_queue_length(url: str = REDIS_URL, queue: str = "celery") -> int:
    import redis

    return int(redis.Redis.from_url(url).llen(queue))


def setup_django(env: dict[str, str]):
    os.environ.update(env)
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()


def create_provider(kind: str, app_secret: str):
    from whatsapp.services.providers import provider_create

    if kind == "meta":
        options = {"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "phone_number": "+" + DISPLAY_PHONE,
                   "access_token": "bench-access-token-" + secrets.token_hex(8), "app_secret": app_secret,
                   "verify_token": "bench-verify-token"}
    else:
        options = {"webhook_secret": app_secret}
    return provider_create(kind=kind, name=f"bench {kind}", options=options)


def create_bench_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_raw_webhook (id bigserial PRIMARY KEY, body bytea, "
                       "received_at timestamptz NOT NULL DEFAULT now())")


def ours_rows(provider) -> dict[str, int]:
    from django.db.models import Count

    from whatsapp.models import WebhookEvent

    rows = WebhookEvent.objects.filter(provider=provider).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def baseline_rows() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_raw_webhook")
        return cursor.fetchone()[0]


def inbound_messages(provider) -> int:
    from whatsapp.models import Message

    return Message.objects.filter(provider=provider, direction=Message.Direction.INBOUND).count()


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------
def meta_body(n: int, contact: int, ts: int) -> bytes:
    wa_id = f"1555{contact:07d}"
    payload = {"object": "whatsapp_business_account", "entry": [{"id": WABA_ID, "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_PHONE, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": f"Bench User {contact}"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": f"wamid.bench-{n}", "timestamp": str(ts), "type": "text",
                          "text": {"body": f"hello {n}"}}],
        },
    }]}]}
    return json.dumps(payload, separators=(",", ":")).encode()


def sandbox_body(n: int, contact: int, ts: int) -> bytes:
    event = {"type": "message", "id": f"wamid.bench-{n}", "from": f"+1555{contact:07d}",
             "name": f"Bench User {contact}", "text": f"hello {n}", "timestamp": ts}
    return json.dumps({"events": [event]}, separators=(",", ":")).encode()


def http_request(path: str, port: int, body: bytes, signature_header: str, secret: bytes) -> bytes:
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: facebookexternalua\r\n"
            f"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{signature_header}: {signature}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


@dataclass
class Target:
    name: str
    path: str
    signature_header: str
    requests: list[bytes] = field(default_factory=list)
    cursor: int = 0

    def take(self, count: int) -> list[bytes]:
        chunk = self.requests[self.cursor:self.cursor + count]
        if len(chunk) < count:
            raise RuntimeError(f"{self.name}: only {len(chunk)} pre-built requests left, {count} needed")
        self.cursor += count
        return chunk


def build_targets(args, port: int, provider, app_secret: str) -> tuple[Target, Target]:
    total = args.warmup + args.requests
    now = int(time.time())
    make_body = meta_body if args.kind == "meta" else sandbox_body
    ours_header = "X-Hub-Signature-256" if args.kind == "meta" else "X-Sandbox-Signature"
    ours = Target("ours", f"/webhooks/{provider.kind}/{provider.public_id}/", ours_header)
    bare = Target("baseline", BARE_PATH, "X-Hub-Signature-256")
    secret = app_secret.encode()
    for n in range(total):
        body = make_body(n, n % args.contacts, now)
        ours.requests.append(http_request(ours.path, port, body, ours.signature_header, secret))
        # The baseline gets the same payloads (numbered after ours) signed the same way.
        body = make_body(total + n, n % args.contacts, now)
        bare.requests.append(http_request(bare.path, port, body, bare.signature_header, secret))
    return ours, bare


# --------------------------------------------------------------------------------------------
# Load generator
# --------------------------------------------------------------------------------------------
@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0
    redis_cpu: float = 0.0
    system_busy: float = 0.0

    def add(self, other: Result) -> None:
        self.latencies += other.latencies
        for code, n in other.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        for name, n in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + n
        self.elapsed += other.elapsed
        self.client_cpu += other.client_cpu
        self.server_cpu += other.server_cpu
        self.postgres_cpu += other.postgres_cpu
        self.redis_cpu += other.redis_cpu
        self.system_busy += other.system_busy * other.elapsed  # weighted; divided in busy_share()

    @property
    def other_share(self) -> float:
        """CPU (share of one core) used by processes that are not the client, gunicorn, PostgreSQL or Redis."""
        if not self.elapsed:
            return 0.0
        machine = self.system_busy / self.elapsed * (os.cpu_count() or 1)
        own = self.client_cpu + self.server_cpu + self.postgres_cpu + self.redis_cpu
        return max(machine - own / self.elapsed, 0.0)

    @property
    def count(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def non_200(self) -> int:
        return sum(n for code, n in self.statuses.items() if code != 200)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return ordered[index] * 1000


async def _fire(requests: list[bytes], connections: int, port: int, timeout: float) -> Result:
    result = Result()
    latencies = result.latencies
    statuses = result.statuses
    errors = result.errors
    iterator = iter(requests)
    loop = asyncio.get_running_loop()
    clock = loop.time

    async def connection_loop() -> None:
        for payload in iterator:
            started = clock()
            writer = None
            try:
                async with asyncio.timeout(timeout):
                    reader, writer = await asyncio.open_connection(HOST, port)
                    writer.write(payload)
                    # The request says Connection: close (gunicorn's sync workers close anyway): read to EOF.
                    data = await reader.read()
                code = int(data[9:12])
            except (OSError, TimeoutError, ValueError) as exc:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
                continue
            finally:
                if writer is not None:
                    writer.close()
            latencies.append(clock() - started)
            statuses[code] = statuses.get(code, 0) + 1

    await asyncio.gather(*(connection_loop() for _ in range(connections)))
    return result


def fire(requests: list[bytes], connections: int, port: int, server_pgid: int, timeout: float = 30) -> Result:
    busy0, total0 = system_busy()
    server0 = group_cpu_seconds(server_pgid)
    postgres0, redis0 = command_cpu_seconds("postgres"), command_cpu_seconds("redis-server")
    cpu0 = time.process_time()
    started = time.perf_counter()
    result = asyncio.run(_fire(requests, connections, port, timeout))
    result.elapsed = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu0
    result.server_cpu = group_cpu_seconds(server_pgid) - server0
    result.postgres_cpu = command_cpu_seconds("postgres") - postgres0
    result.redis_cpu = command_cpu_seconds("redis-server") - redis0
    busy1, total1 = system_busy()
    result.system_busy = (busy1 - busy0) / max(total1 - total0, 1)
    return result


def wait_http(port: int, path: str, deadline: float, proc: subprocess.Popen) -> int:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {proc.returncode} (see its log)")
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                sock.sendall(request)
                data = sock.recv(64)
            if data.startswith(b"HTTP/1."):
                return int(data[9:12])
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer {path} in time")


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------
def ingest(args, ours: Target, bare: Target, port: int, server_pgid: int) -> tuple[dict, dict]:
    warm = {"ours": Result(), "baseline": Result()}
    if args.warmup:
        for target in (ours, bare):
            warm[target.name] = fire(target.take(args.warmup), args.connections, port, server_pgid)
    results = {"ours": Result(), "baseline": Result()}
    per_round = [args.requests // args.rounds + (1 if i < args.requests % args.rounds else 0)
                 for i in range(args.rounds)]
    for index, count in enumerate(per_round):
        # Alternate the order each round so that neither endpoint always runs on a warmer/colder database.
        order = (ours, bare) if index % 2 == 0 else (bare, ours)
        for target in order:
            result = fire(target.take(count), args.connections, port, server_pgid)
            print(f"  round {index + 1}/{args.rounds} {target.name:<8} {result.count:>6} requests "
                  f"{result.rps:8.0f} req/s  p50 {result.percentile_ms(0.5):6.1f} ms  "
                  f"p99 {result.percentile_ms(0.99):6.1f} ms  200s {result.ok}", flush=True)
            results[target.name].add(result)
    return warm, results


def drain(args, env: dict[str, str], processes: Processes, provider, expected: int, logs: Path, *,
          redis_url: str = REDIS_URL, log_name: str = "celery.log",
          also: dict[str, subprocess.Popen] | None = None, groups: int = 1, concurrency: int | None = None) -> dict:
    """Start `groups` workers on the default queue (separate process groups, as on separate machines) and
    time the backlog into Message rows. `also`: other process groups already running (e.g. a worker on
    another queue) whose CPU is measured over the same window."""
    from whatsapp.models import WebhookEvent

    also = also or {}
    queued = redis_queue_length(redis_url)
    before = inbound_messages(provider)
    cmds = [[str(VENV_BIN / "celery"), "-A", "config", "worker", "-l", "WARNING", "-c",
             str(concurrency or args.drain), "--pool", args.drain_pool, "-n", f"bench-{os.getpid()}-{group}@%h"]
            for group in range(groups)]
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    busy0, total0 = system_busy()
    postgres0, redis0 = command_cpu_seconds("postgres"), command_cpu_seconds("redis-server")
    also0 = {name: group_cpu_seconds(proc.pid) for name, proc in also.items()}
    cpu0 = time.process_time()
    started = time.perf_counter()
    workers = [processes.start("celery", cmd, env, logs / log_name) for cmd in cmds]
    first_at = None
    count = count_at_first = before
    outcome = "timeout"
    deadline = started + args.drain_timeout
    try:
        while time.perf_counter() < deadline:
            time.sleep(0.25)
            count = inbound_messages(provider)
            now = time.perf_counter()
            if count > before and first_at is None:
                first_at, count_at_first = now, count
            if count - before >= expected:
                outcome = "done"
                break
            if exited := [worker for worker in workers if worker.poll() is not None]:
                outcome = f"worker exited with code {exited[0].returncode}"
                break
            failed = WebhookEvent.objects.filter(provider=provider, status=WebhookEvent.Status.FAILED)
            if failed.exists():
                outcome = "processing fails: " + failed.values_list("last_error", flat=True).first()[:200]
                break
        finished = time.perf_counter()
        worker_cpu = sum(group_cpu_seconds(worker.pid) for worker in workers)
        also_cpu = {name: group_cpu_seconds(proc.pid) - also0[name] for name, proc in also.items()}
        postgres_cpu = command_cpu_seconds("postgres") - postgres0
        redis_cpu = command_cpu_seconds("redis-server") - redis0
        busy1, total1 = system_busy()
        own_cpu = time.process_time() - cpu0
    finally:
        for worker in workers:
            processes.stop(worker)
    done = count - before
    total = finished - started
    steady = finished - first_at if first_at else 0.0
    # The rate once the worker is up: from the first poll that saw messages to the last.
    steady_count = count - count_at_first
    return {
        "queued": queued, "expected": expected, "done": done, "outcome": outcome, "seconds": total,
        "rate": done / total if total else 0.0, "steady_seconds": steady,
        "steady_rate": steady_count / steady if steady > 0 else 0.0,
        "startup_seconds": (first_at - started) if first_at else float("nan"), "worker_cpu": worker_cpu,
        "postgres_cpu": postgres_cpu, "redis_cpu": redis_cpu, "poller_cpu": own_cpu, "also_cpu": also_cpu,
        "machine": (busy1 - busy0) / max(total1 - total0, 1),
        "statuses": ours_rows(provider), "groups": groups, "integrity": integrity(provider),
    }


def integrity(provider) -> dict[str, int]:
    """What a drain must never do: store a message twice, count a delivery as a duplicate, apply a row twice."""
    from django.db.models import Count, Sum

    from whatsapp.models import Message, WebhookEvent

    messages = Message.objects.filter(provider=provider, direction=Message.Direction.INBOUND)
    totals = messages.aggregate(rows=Count("id"), ids=Count("provider_message_id", distinct=True),
                                duplicates=Sum("duplicate_count"))
    applied_twice = WebhookEvent.objects.filter(provider=provider, status="processed", attempts__gt=1).count()
    return {"duplicated": totals["rows"] - totals["ids"], "counted as redelivered": totals["duplicates"] or 0,
            "rows applied more than once": applied_twice}


def backlog(provider, kind: str, count: int, first: int, contacts: int) -> None:
    """Rows stored as the endpoint stores them (same service), without the HTTP part: the scale-out runs'
    backlogs."""
    from whatsapp.providers.base import WebhookRequest
    from whatsapp.services.webhooks import inbox_wake, webhook_event_record

    make_body = meta_body if kind == "meta" else sandbox_body
    ts = int(time.time())
    for n in range(first, first + count):
        request = WebhookRequest(method="POST", public_url="", body=make_body(n, n % contacts, ts), headers={},
                                 content_type="application/json")
        webhook_event_record(kind=kind, provider=provider, request=request, remote_addr=HOST, signature_valid=True)
    inbox_wake.now()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def mark(ok: bool) -> str:
    return "OK  " if ok else "MISS"


def report(args, warm: dict, results: dict, ours_stored: dict[str, int], bare_stored: int) -> None:
    ours, bare = results["ours"], results["baseline"]
    ours_200_total = ours.ok + warm["ours"].ok
    bare_200_total = bare.ok + warm["baseline"].ok
    print()
    print(f"Ingest: {args.requests} requests per endpoint in {args.rounds} round(s), {args.connections} "
          f"connections, gunicorn {args.workers} sync workers, kind {args.kind}, warm-up {args.warmup} per endpoint")
    header = (f"{'endpoint':<10}{'requests':>9}{'200s':>8}{'non-200':>9}{'errors':>8}{'req/s':>9}"
              f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu: client':>12}{'gunicorn':>9}{'postgres':>9}{'redis':>7}"
              f"{'other':>7}{'machine':>9}")
    print(header)
    print("-" * len(header))
    for name, result in (("ours", ours), ("baseline", bare)):
        busy = result.system_busy / result.elapsed if result.elapsed else 0.0
        print(f"{name:<10}{result.count:>9}{result.ok:>8}{result.non_200:>9}{sum(result.errors.values()):>8}"
              f"{result.rps:>9.0f}{result.percentile_ms(0.5):>9.1f}{result.percentile_ms(0.99):>9.1f}"
              f"{result.percentile_ms(1.0):>9.1f}{result.client_cpu / result.elapsed:>12.0%}"
              f"{result.server_cpu / result.elapsed:>9.0%}{result.postgres_cpu / result.elapsed:>9.0%}"
              f"{result.redis_cpu / result.elapsed:>7.0%}{result.other_share:>7.0%}{busy:>9.0%}")
    for name, result in (("ours", ours), ("baseline", bare), ("ours warm-up", warm["ours"]),
                         ("baseline warm-up", warm["baseline"])):
        extra = {**{str(k): v for k, v in result.statuses.items() if k != 200}, **result.errors}
        if extra:
            print(f"  {name}: non-200 answers / errors: {extra}")
    print("  (cpu columns: share of ONE core over the phase, 100% = one core; postgres includes the backends forked"
          " per connection and any other database user; other = everything else on the machine, e.g. a concurrent"
          " test run; machine: all cores, 100% = all busy)")
    worst_other = max(ours.other_share, bare.other_share)
    if worst_other > 0.15:
        print(f"  WARNING: other processes used up to {worst_other:.0%} of a core during the measurement: "
              "the figures are disturbed; re-run on a quiet machine.")
    ratio = ours.rps / bare.rps if bare.rps else 0.0
    ours_kept = ours_stored.get("pending", 0) + ours_stored.get("processed", 0)
    ours_lost = ours_200_total - ours_kept
    bare_lost = bare_200_total - bare_stored
    print()
    print(f"{'figure':<52}{'value':>12}   goal")
    print(f"{'throughput ratio (ours req/s / baseline req/s)':<52}{ratio:>12.2f}   >= {GOALS['ratio']}  "
          f"{mark(ratio >= GOALS['ratio'])}")
    print(f"{'ours p99 latency (ms)':<52}{ours.percentile_ms(0.99):>12.1f}   < {GOALS['p99_ms']:.0f}    "
          f"{mark(ours.percentile_ms(0.99) < GOALS['p99_ms'])}")
    print(f"{'baseline p99 latency (ms, for reference)':<52}{bare.percentile_ms(0.99):>12.1f}")
    print(f"{'ours: 200s answered (incl. warm-up)':<52}{ours_200_total:>12}")
    print(f"{'ours: WebhookEvent rows pending/processed':<52}{ours_kept:>12}   (all rows by status: {ours_stored})")
    print(f"{'ours: lost (200s - rows)':<52}{ours_lost:>12}   0     {mark(ours_lost == 0)}")
    print(f"{'baseline: 200s answered (incl. warm-up)':<52}{bare_200_total:>12}")
    print(f"{'baseline: bench_raw_webhook rows':<52}{bare_stored:>12}")
    print(f"{'baseline: lost (200s - rows)':<52}{bare_lost:>12}   0     {mark(bare_lost == 0)}")
    little = args.connections / ours.rps * 1000 if ours.rps else float("nan")
    print(f"  note: with {args.connections} connections always busy (closed loop), Little's law puts the mean "
          f"latency at connections / throughput = {little:.1f} ms for ours; p99 < {GOALS['p99_ms']:.0f} ms needs "
          f"> {args.connections / GOALS['p99_ms'] * 1000:.0f} req/s at this concurrency.")


def report_drain(args, result: dict) -> None:
    print()
    print(f"Drain: {result['groups']} Celery worker(s) --pool {args.drain_pool} -c {args.drain} on "
          f"{result['expected']} inbox rows ({result['queued']} wake tasks in Redis db 14; kind {args.kind})")
    print(f"  outcome: {result['outcome']}")
    print(f"  inbound Message rows created: {result['done']} of {result['expected']} in {result['seconds']:.1f} s "
          f"(worker start-up to first message {result['startup_seconds']:.1f} s)")
    seconds = result["seconds"] or 1
    machine = result["machine"] * (os.cpu_count() or 1)
    own = (result["worker_cpu"] + result["postgres_cpu"] + result["redis_cpu"] + result["poller_cpu"]) / seconds
    print(f"  cpu (share of one core): celery {result['worker_cpu'] / seconds:.0%}, postgres "
          f"{result['postgres_cpu'] / seconds:.0%}, redis {result['redis_cpu'] / seconds:.0%}, this poller "
          f"{result['poller_cpu'] / seconds:.0%}, other {max(machine - own, 0):.0%}; "
          f"machine {result['machine']:.0%} busy")
    print(f"  webhook events by status afterwards: {result['statuses']}")
    print(f"  integrity: {result['integrity']}  {mark(not any(result['integrity'].values()))}")
    ok = result["outcome"] == "done" and result["rate"] >= GOALS["drain_per_s"]
    print(f"{'drain rate, worker start -> last message (msg/s)':<52}{result['rate']:>12.0f}   "
          f">= {GOALS['drain_per_s']:.0f}  {mark(ok)}")
    print(f"{'drain rate, first -> last message (msg/s)':<52}{result['steady_rate']:>12.0f}")


def scale_out(args, env: dict[str, str], processes: Processes, provider, logs: Path, *, first: int) -> None:
    rates = {}
    for groups in (1, 2):
        backlog(provider, args.kind, args.scale_out, first, args.contacts)
        first += args.scale_out
        result = drain(args, env, processes, provider, args.scale_out, logs, groups=groups, concurrency=1,
                       log_name=f"celery-scale-{groups}.log")
        rates[groups] = result["rate"]
        print(f"\nScale-out: {groups} worker process group(s) of one drain each, {args.scale_out} rows: "
              f"{result['outcome']}, {result['rate']:.0f} msg/s (first -> last {result['steady_rate']:.0f}); "
              f"integrity {result['integrity']}")
    print(f"{'two groups / one group (drain rate)':<52}{rates[2] / rates[1] if rates[1] else 0:>12.2f}   "
          f"(2.0 = the rates add up; both share this machine's {os.cpu_count()} cores with PostgreSQL)")


# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per endpoint (default 5000)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--warmup", type=int, default=300, help="uncounted warm-up requests per endpoint")
    parser.add_argument("--rounds", type=int, default=2,
                        help="split the measured requests in rounds alternating the two endpoints (default 2)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers (default 4 on 2 cores)")
    parser.add_argument("--kind", choices=["meta", "sandbox"], default="meta", help="provider kind (default meta)")
    parser.add_argument("--contacts", type=int, default=1000, help="distinct senders the messages cycle through")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="DATABASE_CONN_MAX_AGE for web and worker (default: the application's, 60)")
    parser.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                        help="wait up to this long for the machine to be idle before measuring (default 120, 0 = no)")
    parser.add_argument("--drain", type=int, default=2, metavar="CONCURRENCY",
                        help="Celery worker concurrency for the drain phase; 0 skips the drain (default 2)")
    parser.add_argument("--drain-pool", choices=["prefork", "threads", "solo"], default="prefork")
    parser.add_argument("--scale-out", type=int, default=0, metavar="ROWS",
                        help="after the drain, drain ROWS more with one worker process group (-c 1), then ROWS "
                             "more with two, to show the rates add up (default 0: skipped)")
    parser.add_argument("--drain-timeout", type=float, default=0,
                        help="seconds before the drain gives up (default: 60 + accepted/50)")
    args = parser.parse_args(argv)
    if args.requests < args.rounds or args.connections < 1 or args.workers < 1 or args.contacts < 1:
        parser.error("need requests >= rounds and positive connections, workers and contacts")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    processes = Processes()
    port = free_port()
    app_secret = secrets.token_hex(16)
    env = bench_env(args, port, app_secret)
    logs = Path(env["VAR_DIR"])
    for name in ("gunicorn.log", "celery.log"):
        (logs / name).unlink(missing_ok=True)
    try:
        print(f"Preparing database {DB_NAME} (drop, create, migrate) and Redis db 14 ...", flush=True)
        migrate_seconds = recreate_database(env)
        flush_redis()
        setup_django(env)
        from django.conf import settings

        create_bench_table()
        provider = create_provider(args.kind, app_secret)
        print(f"  migrated in {migrate_seconds:.1f} s; provider {provider.kind} id {provider.pk}; "
              f"DEBUG={settings.DEBUG}, CONN_MAX_AGE={settings.DATABASES['default']['CONN_MAX_AGE']}, "
              f"broker {settings.CELERY_BROKER_URL}", flush=True)

        started = time.perf_counter()
        ours, bare = build_targets(args, port, provider, app_secret)
        print(f"  built and signed {len(ours.requests) + len(bare.requests)} requests in "
              f"{time.perf_counter() - started:.1f} s ({len(ours.requests[0])} bytes each)", flush=True)

        cmd = [str(VENV_BIN / "gunicorn"), "config.wsgi", "-c", "config/gunicorn.py",
               # Our own control socket: gunicorn's default (~/.gunicorn/gunicorn.ctl) is shared by every
               # gunicorn of the user on this machine, e.g. one a concurrent test run starts.
               "--access-logfile", "/dev/null", "--control-socket", str(logs / "gunicorn.ctl")]
        print(f"Starting gunicorn on {HOST}:{port} with {args.workers} sync workers ({os.cpu_count()} cores); "
              "no Celery worker during ingest", flush=True)
        server = processes.start("gunicorn", cmd, env, logs / "gunicorn.log")
        health = wait_http(port, "/health/", time.monotonic() + 60, server)
        print(f"  /health/ answered {health}", flush=True)

        if args.wait_quiet:
            busy = wait_quiet(args.wait_quiet)
            print(f"  machine {busy:.0%} busy before the measurement"
                  + (" (still busy after waiting: other work is running)" if busy >= 0.15 else ""), flush=True)
        warm, results = ingest(args, ours, bare, port, server.pid)
        ours_stored = ours_rows(provider)
        bare_stored = baseline_rows()
        report(args, warm, results, ours_stored, bare_stored)
        print(f"  tasks waiting in Redis db 14: {redis_queue_length()}")
        processes.stop(server)
        processes.started = [p for p in processes.started if p[1] is not server]

        if args.drain:
            expected = ours_stored.get("pending", 0)
            if not args.drain_timeout:
                args.drain_timeout = 60 + expected / 50
            drained = drain(args, env, processes, provider, expected, logs)
            report_drain(args, drained)
        if args.scale_out:
            args.drain_timeout = args.drain_timeout or 60 + args.scale_out / 50
            scale_out(args, env, processes, provider, logs, first=10_000_000)
        print(f"\nLogs: {logs / 'gunicorn.log'}, {logs / 'celery.log'}")
        return 0
    finally:
        processes.stop_all()


if __name__ == "__main__":
    sys.exit(main())
