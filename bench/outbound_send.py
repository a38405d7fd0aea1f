"""
Outbound send benchmark: a queued backlog sent through the real send pipeline to a fake Meta Graph API.

    .venv/bin/python bench/outbound_send.py [--messages 10000] [--rate 80] [--concurrency 4] [--phase both]
                                            [--unlimited-messages 3000] [--replies 100] [--scale-out N]

1. Recreates the database `whatsapp_bench`, migrates it, empties Redis db 14, starts a fake Meta Graph
   API (a separate process: raw asyncio HTTP/1.1 with keep-alive) that records the arrival time and
   `to` of every POST /<version>/<phone_number_id>/messages and answers like Meta, and creates a Meta
   provider whose Graph base URL is the fake.
2. Phase 1 (limit 80/s): queues --messages bulk-lane text messages (one per contact, each contact with
   an open 24-hour session) with `message_send`, with no worker running; then starts two Celery workers
   and measures, at the fake: the achieved rate, the largest count in any one-second window, and the
   queue time of reply-lane messages queued from this process while the bulk run goes on.
3. Phase 2 (limit lifted to the provider's maximum): the same with --unlimited-messages and no
   replies; measures sends per second in the steady state.
4. With --scale-out N: N more with the limit lifted, sent by one worker, then N more by two workers in separate
   process groups (as on two machines): the two rates side by side.
5. Baselines, same run, same fake, same number of processes: a bare loop that POSTs the same request
   bodies over a kept-alive connection, paced by a shared in-memory GCRA at the same slot spacing as
   ours (phase 1, with reply-lane bodies taken first) or as fast as it can (phase 2).

Everything it starts is stopped on exit, errors and SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import resource
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.webhook_ingest import (  # noqa: E402 - the path above makes `bench` importable when run as a script
    DB_NAME,
    HOST,
    PHONE_NUMBER_ID,
    REDIS_URL,
    VENV_BIN,
    WABA_ID,
    Processes,
    command_cpu_seconds,
    flush_redis,
    free_port,
    group_cpu_seconds,
    recreate_database,
    setup_django,
    system_busy,
    wait_quiet,
)

GRAPH_VERSION = "v25.0"
ACCESS_TOKEN = "bench-access-token-" + secrets.token_hex(8)
# Recipient numbers: +1555 followed by 7 digits; each population has its own block of a million.
BULK_BLOCK, REPLY_BLOCK, UNLIMITED_BLOCK, BASELINE_BLOCK, BASELINE_REPLY_BLOCK = 2, 3, 5, 6, 7
SCALE_ONE_BLOCK, SCALE_TWO_BLOCK = 8, 9
GOALS = {"rate_share": 0.99, "reply_p99_s": 1.0, "unlimited_per_s": 500.0}
REDIS_PRIORITY_KEYS = ["celery", "celery\x06\x163", "celery\x06\x166", "celery\x06\x169"]


def number(block: int, index: int) -> str:
    return f"+1555{block * 1_000_000 + index:07d}"


def _sigterm(_signum, _frame):
    raise SystemExit(143)


# --------------------------------------------------------------------------------------------
# The fake Meta Graph API (run as `outbound_send.py fake-meta --port P`, in its own process)
# --------------------------------------------------------------------------------------------
def serve_fake_meta(port: int) -> None:
    # The real Meta does not share our CPUs: ahead of the workers in the scheduler (it needs ~2 % of a
    # core), the fake's arrival times do not take the run queue's delay on a saturated machine.
    with contextlib.suppress(OSError):
        os.nice(-10)
    arrivals: list[tuple[float, str]] = []
    state = {"other": 0, "sent": 0}

    def answer(status: int, payload: dict, close: bool) -> bytes:
        body = json.dumps(payload, separators=(",", ":")).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n")
        return head.encode() + body

    def route(method: str, path: str, body: bytes, now: float) -> tuple[int, dict]:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if method == "POST" and len(parts) == 3 and parts[2] == "messages":
            if parts[0] != GRAPH_VERSION or parts[1] != PHONE_NUMBER_ID:
                state["other"] += 1
                return 400, {"error": {"message": f"unknown path {path}", "type": "OAuthException", "code": 100}}
            try:
                to = str(json.loads(body)["to"])
            except (ValueError, KeyError, TypeError):
                state["other"] += 1
                return 400, {"error": {"message": "invalid body", "type": "OAuthException", "code": 100}}
            arrivals.append((now, to))
            state["sent"] += 1
            return 200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                         "messages": [{"id": f"wamid.bench{state['sent']}"}]}
        if method == "GET" and parts == ["count"]:
            return 200, {"count": len(arrivals), "other": state["other"]}
        if method == "GET" and parts == ["stats"]:
            return 200, {"arrivals": arrivals, "other": state["other"]}
        if method == "POST" and parts == ["reset"]:
            arrivals.clear()
            state["other"] = 0
            return 200, {"ok": True}
        state["other"] += 1
        return 404, {"error": {"message": f"no route {method} {path}", "code": 100}}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                length, close = 0, False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                status, payload = route(method, path, body, time.time())
                writer.write(answer(status, payload, close))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, HOST, port, backlog=2048)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class FakeMeta:
    """The benchmark's side of the fake: its control endpoints."""

    def __init__(self, port: int):
        import httpx

        self.port = port
        self.client = httpx.Client(base_url=f"http://{HOST}:{port}", timeout=30)

    def wait_ready(self, proc, deadline: float) -> None:
        import httpx

        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the fake Meta server exited with code {proc.returncode} (see its log)")
            try:
                self.count()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the fake Meta server did not answer in time")

    def count(self) -> int:
        return self.client.get("/count").json()["count"]

    def stats(self) -> tuple[list[tuple[float, str]], int]:
        data = self.client.get("/stats").json()
        return [(t, to) for t, to in data["arrivals"]], data["other"]

    def reset(self) -> None:
        self.client.post("/reset").raise_for_status()


# --------------------------------------------------------------------------------------------
# Environment, data
# --------------------------------------------------------------------------------------------
def bench_env(fake_port: int, extra: list[str]) -> dict[str, str]:
    from cryptography.fernet import Fernet

    # Nothing from the caller's shell that configures the application leaks in; --env adds on purpose.
    dropped = ("DJANGO_", "GUNICORN_", "SEND_", "META_", "CELERY_", "DATABASE_", "PROVIDER_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    var_dir = BASE_DIR / "var" / "bench"
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "REDIS_URL": REDIS_URL,
        "PUBLIC_BASE_URL": f"http://{HOST}:{fake_port}",
        "META_GRAPH_BASE_URL": f"http://{HOST}:{fake_port}",
        "META_GRAPH_API_VERSION": GRAPH_VERSION,
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(var_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    for name in ("ALLOWED_HOSTS", "STATIC_ROOT", "SECURE_SSL_REDIRECT", "REDIS_URL_CACHE"):
        env.pop(name, None)
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env wants KEY=VALUE, got {item!r}")
        env[key] = value
    (var_dir / "staticfiles").mkdir(parents=True, exist_ok=True)
    return env


def code_state() -> str:
    """The commit, and whether the application's code differs from it (the figures are of the working tree)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=BASE_DIR, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "whatsapp", "config", "contacts",
                                        "templates_app").splitlines()]
    return f"commit {commit}" + (f", plus uncommitted changes in {len(changed)} file(s): {', '.join(changed[:6])}"
                                 + (" ..." if len(changed) > 6 else "") if changed else ", clean")


def create_provider(rate: int):
    from whatsapp.services.providers import provider_create

    options = {"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "phone_number": "+15550001111",
               "access_token": ACCESS_TOKEN, "app_secret": secrets.token_hex(16),
               "verify_token": "bench-verify-token"}
    provider = provider_create(kind="meta", name="bench meta outbound", options=options)
    provider_set_rate(provider, rate)
    return provider


def provider_set_rate(provider, rate: int) -> None:
    provider.rate_limit_per_second = rate
    provider.save(update_fields=["rate_limit_per_second", "updated_at"])


def create_contacts(provider, block: int, count: int) -> list[int]:
    """Contacts with a phone identity, a conversation with the provider and an open 24-hour session."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from contacts.models import Contact, ContactIdentity
    from whatsapp.models import Conversation, Session
    from whatsapp.providers.events import IdentityKind

    now = timezone.now()
    with transaction.atomic():
        contacts = Contact.objects.bulk_create(
            [Contact(profile_name=f"Bench {block}-{i}", consent=Contact.Consent.OPTED_IN) for i in range(count)],
            batch_size=2000)
        ContactIdentity.objects.bulk_create(
            [ContactIdentity(contact=c, kind=IdentityKind.PHONE, value=number(block, i), scope="")
             for i, c in enumerate(contacts)], batch_size=2000)
        conversations = Conversation.objects.bulk_create(
            [Conversation(provider=provider, contact=c, last_message_at=now) for c in contacts], batch_size=2000)
        Session.objects.bulk_create(
            [Session(conversation=c, opened_at=now, last_inbound_at=now, expires_at=now + timedelta(hours=24))
             for c in conversations], batch_size=2000)
    return [c.pk for c in contacts]


def contacts_in_order(ids: list[int]) -> list:
    from contacts.models import Contact

    by_id = Contact.objects.filter(pk__in=ids).prefetch_related("identities").in_bulk()
    return [by_id[pk] for pk in ids]


def send_one(provider, contact, text: str, lane: str) -> tuple[int, float]:
    """message_send as the API calls it. Returns the message id and the moment its transaction committed."""
    from django.db import transaction

    from whatsapp.providers.events import MessageType
    from whatsapp.services.outbound import SendRequest, message_send

    committed: list[float] = []
    with transaction.atomic():
        # Registered first, so it runs right after COMMIT, before message_send's own publish hook.
        transaction.on_commit(lambda: committed.append(time.time()))
        message, _created = message_send(SendRequest(provider=provider, contact=contact,
                                                     message_type=MessageType.TEXT, text=text, lane=lane))
    return message.pk, committed[0]


def _queue_share(provider_id: int, contact_ids: list[int], first: int, label: str, results) -> None:
    from whatsapp.models import Message, Provider

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    provider = Provider.objects.get(pk=provider_id)
    contacts = contacts_in_order(contact_ids)
    results.put([send_one(provider, contact, f"{label} message {first + i}: your order has shipped",
                          Message.Lane.BULK)[0] for i, contact in enumerate(contacts)])


def queue_bulk(provider, contact_ids: list[int], label: str, workers: int) -> dict:
    """message_send for every contact, from `workers` forked processes (each its own database and broker
    connections: Celery resets its pool in a multiprocessing child)."""
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    size = -(-len(contact_ids) // workers)
    procs = [ctx.Process(target=_queue_share, daemon=True,
                         args=(provider.pk, contact_ids[i:i + size], i, label, results))
             for i in range(0, len(contact_ids), size)]
    started = time.perf_counter()
    ids: list[int] = []
    try:
        for proc in procs:
            proc.start()
        for _ in procs:
            ids += results.get(timeout=1800)
        for proc in procs:
            proc.join(30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    seconds = time.perf_counter() - started
    if len(ids) != len(contact_ids) or any(proc.exitcode for proc in procs):
        raise RuntimeError(f"queueing failed: {len(ids)} of {len(contact_ids)} queued, exit codes "
                           f"{[proc.exitcode for proc in procs]}")
    return {"ids": sorted(ids), "seconds": seconds, "rate": len(ids) / seconds if seconds else 0.0,
            "in_redis": redis_queue_lengths(), "processes": len(procs)}


def redis_queue_lengths() -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    return sum(int(client.llen(key)) for key in REDIS_PRIORITY_KEYS)


def statuses(ids: list[int]) -> dict[str, int]:
    from django.db.models import Count

    from whatsapp.models import Message

    if not ids:
        return {}
    rows = (Message.objects.filter(pk__gte=min(ids), pk__lte=max(ids), pk__in=ids).values("status")
            .annotate(n=Count("id")))
    return {row["status"]: row["n"] for row in rows}


def hold_reasons(ids: list[int]) -> dict[str, int]:
    from django.db.models import Count

    from whatsapp.models import Message

    rows = (Message.objects.filter(pk__in=ids).exclude(status="sent").values("status", "hold_reason", "error_code")
            .annotate(n=Count("id")).order_by("-n")[:5])
    return {f"{r['status']} {r['hold_reason'] or r['error_code'] or '-'}": r["n"] for r in rows}


# --------------------------------------------------------------------------------------------
# Figures from arrival times
# --------------------------------------------------------------------------------------------
def achieved_rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The largest number of arrivals in any window [t, t + width), exactly (two pointers, sorted times)."""
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + width:
            j += 1
        best = max(best, j - i)
    return best


def steady_rate(times: list[float], trim: float = 0.05) -> float:
    """Arrivals per second between the first and last `trim` share of arrivals."""
    if len(times) < 20:
        return achieved_rate(times)
    lo, hi = int(len(times) * trim), len(times) - 1 - int(len(times) * trim)
    return (hi - lo) / (times[hi] - times[lo]) if times[hi] > times[lo] else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def own_cpu_seconds(pid: int) -> float:
    """CPU seconds of one process itself (utime + stime), 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cpu:
    """CPU seconds of the parties, and the machine's busy share, at one moment."""

    workers: float = 0.0
    consumers: float = 0.0  # the workers' parent (consumer) processes alone
    postgres: float = 0.0
    redis: float = 0.0
    fake: float = 0.0
    bench: float = 0.0
    wall: float = 0.0
    busy: float = 0.0
    total: float = 0.0

    @classmethod
    def now(cls, worker_pgids: list[int], fake_pgid: int, children: bool = False) -> Cpu:
        busy, total = system_busy()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN) if children else None
        return cls(workers=sum(group_cpu_seconds(pgid) for pgid in worker_pgids)
                   + ((usage.ru_utime + usage.ru_stime) if usage else 0.0),
                   consumers=sum(own_cpu_seconds(pid) for pid in worker_pgids),
                   postgres=command_cpu_seconds("postgres"), redis=command_cpu_seconds("redis-server"),
                   fake=group_cpu_seconds(fake_pgid), bench=time.process_time(), wall=time.monotonic(),
                   busy=busy, total=total)

    def since(self, start: Cpu) -> dict[str, float]:
        wall = max(self.wall - start.wall, 1e-9)
        shares = {name: (getattr(self, name) - getattr(start, name)) / wall
                  for name in ("workers", "consumers", "postgres", "redis", "fake", "bench")}
        machine = (self.busy - start.busy) / max(self.total - start.total, 1)
        shares["machine"] = machine
        shares["other"] = max(machine * (os.cpu_count() or 1) - sum(shares[n] for n in
                                                                    ("workers", "postgres", "redis", "fake", "bench")),
                              0.0)
        shares["seconds"] = wall
        return shares


@dataclass
class Run:
    name: str
    expected: int
    times: list[float] = field(default_factory=list)          # every arrival at the number, sorted
    bulk_times: list[float] = field(default_factory=list)
    reply_queue: list[float] = field(default_factory=list)    # seconds, per reply that arrived
    replies_sent: int = 0
    replies_missing: int = 0
    requests: int = 0
    distinct: int = 0
    other: int = 0
    outcome: str = ""
    startup: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)
    db_statuses: dict[str, int] = field(default_factory=dict)
    db_reply_statuses: dict[str, int] = field(default_factory=dict)
    not_sent: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return achieved_rate(self.times)

    @property
    def window(self) -> int:
        return max_in_window(self.times)

    @property
    def steady(self) -> float:
        return steady_rate(self.times)

    @property
    def duplicates(self) -> int:
        return self.requests - self.distinct


def collect(run: Run, fake: FakeMeta, reply_t0: dict[str, float], bulk_prefix: str) -> None:
    arrivals, run.other = fake.stats()
    arrivals.sort()
    run.requests = len(arrivals)
    run.distinct = len({to for _t, to in arrivals})
    run.times = [t for t, _to in arrivals]
    run.bulk_times = [t for t, to in arrivals if to.startswith(bulk_prefix)]
    first_arrival: dict[str, float] = {}
    for t, to in arrivals:
        first_arrival.setdefault(to, t)
    run.replies_sent = len(reply_t0)
    run.reply_queue = [first_arrival[to] - t0 for to, t0 in reply_t0.items() if to in first_arrival]
    run.replies_missing = len(reply_t0) - len(run.reply_queue)


def reply_schedule(expected_seconds: float, replies: int, interval: float) -> tuple[float, float]:
    """(offset after the first arrival, interval): the replies go in the middle of the expected run."""
    if replies <= 0:
        return 0.0, interval
    interval = min(interval, 0.6 * expected_seconds / replies)
    return max((expected_seconds - replies * interval) / 2, 1.0), interval


# --------------------------------------------------------------------------------------------
# Ours: two Celery workers against the backlog
# --------------------------------------------------------------------------------------------
def run_ours(args, *, name: str, env: dict[str, str], processes: Processes, fake: FakeMeta, fake_pgid: int,
             provider, bulk_ids: list[int], bulk_block: int, rate: float, reply_contacts: list,
             cap_seconds: float, logs: Path, groups: int = 2) -> Run:
    from django.conf import settings

    from whatsapp.models import Message

    run = Run(name=name, expected=len(bulk_ids))
    fake.reset()
    if args.wait_quiet:
        busy = wait_quiet(args.wait_quiet)
        print(f"  machine {busy:.0%} busy before the measurement"
              + (" (still busy after waiting: other work is running)" if busy >= 0.15 else ""), flush=True)
    expected_seconds = len(bulk_ids) / (rate * (1 - settings.SEND_RATE_HEADROOM))
    offset, interval = reply_schedule(expected_seconds, len(reply_contacts), args.reply_interval)
    started = time.monotonic()
    workers = []
    for index in range(1, groups + 1):
        cmd = [str(VENV_BIN / "celery"), "-A", "config", "worker", "-l", "WARNING", "-c", str(args.concurrency),
               "--pool", "prefork", "-n", f"bench-send-{index}-{os.getpid()}@%h"]
        workers.append(processes.start(f"celery-{index}", cmd, env, logs / f"celery-{name}-{index}.log"))
    pgids = [w.pid for w in workers]
    reply_t0: dict[str, float] = {}
    reply_ids: list[int] = []
    cpu0 = None
    first_at = None
    total_expected = len(bulk_ids) + len(reply_contacts)
    deadline = started + cap_seconds
    run.outcome = "stopped at the time cap"
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if first_at is not None and len(reply_t0) < len(reply_contacts):
                due = first_at + offset + len(reply_t0) * interval
                if now >= due:
                    contact = reply_contacts[len(reply_t0)]
                    to = number(REPLY_BLOCK, len(reply_t0))
                    message_id, t0 = send_one(provider, contact, f"Reply {len(reply_t0)}: thanks, we are on it",
                                              Message.Lane.REPLY)
                    reply_t0[to] = t0
                    reply_ids.append(message_id)
                    continue
                time.sleep(min(max(due - now, 0.0), 0.2))
            else:
                time.sleep(0.2)
            count = fake.count()
            if count and first_at is None:
                first_at = time.monotonic()
                run.startup = first_at - started
                cpu0 = Cpu.now(pgids, fake_pgid)
            if count >= total_expected and len(reply_t0) == len(reply_contacts):
                run.outcome = "all sent"
                break
            dead = [w for w in workers if w.poll() is not None]
            if dead:
                run.outcome = f"a worker exited with code {dead[0].returncode}"
                break
        cpu1 = Cpu.now(pgids, fake_pgid)
        if run.outcome == "all sent":
            # The last arrivals' commits (sent status) follow their HTTP answers by milliseconds.
            for _ in range(50):
                if statuses(bulk_ids).get("sent", 0) == len(bulk_ids):
                    break
                time.sleep(0.1)
    finally:
        # Warm shutdown first (SIGTERM to the consumer only): tasks in progress finish and commit, so
        # the database says what the fake received even when the time cap stops a phase mid-run.
        for worker in workers:
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGTERM)
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=20)
            processes.stop(worker)
        processes.started = [p for p in processes.started if p[1] not in workers]
    run.cpu = cpu1.since(cpu0) if cpu0 else {}
    collect(run, fake, reply_t0, number(bulk_block, 0)[:6])
    run.db_statuses = statuses(bulk_ids)
    run.db_reply_statuses = statuses(reply_ids)
    run.not_sent = hold_reasons(bulk_ids + reply_ids) if run.db_statuses.get("sent", 0) < len(bulk_ids) else {}
    return run


def scale_out(args, *, env, processes, fake, fake_pgid, provider, logs) -> list[tuple[str, str, str, str, str]]:
    """The same backlog with the limit lifted, sent by one worker, then by two in separate process groups."""
    from whatsapp.providers.meta import MetaBackend

    provider_set_rate(provider, MetaBackend.max_rate_limit_per_second)
    results = {}
    for groups, block in ((1, SCALE_ONE_BLOCK), (2, SCALE_TWO_BLOCK)):
        print(f"\nScale-out: {args.scale_out} queued bulk messages, limit lifted, {groups} worker process group(s) "
              f"x {args.concurrency} processes", flush=True)
        flush_redis()
        queued = queue_bulk(provider, create_contacts(provider, block, args.scale_out), f"Scale{groups}",
                            args.queue_processes)
        run = run_ours(args, name=f"scale{groups}", env=env, processes=processes, fake=fake, fake_pgid=fake_pgid,
                       provider=provider, bulk_ids=queued["ids"], bulk_block=block,
                       rate=MetaBackend.max_rate_limit_per_second, reply_contacts=[], cap_seconds=args.cap or 60,
                       logs=logs, groups=groups)
        print_run(run)
        results[groups] = run
    one, two = results[1], results[2]
    return [
        ("scale-out sends/s, one worker group", f"{one.steady:.0f}", "-", "-", "-"),
        ("scale-out sends/s, two worker groups (ratio to one)", f"{two.steady:.0f} ({two.steady / one.steady:.2f}x)",
         "-", "> one group", mark(two.steady > one.steady)),
        *integrity_rows("scale-out (one group)", one, None, args.scale_out),
        *integrity_rows("scale-out (two groups)", two, None, args.scale_out),
    ]


# --------------------------------------------------------------------------------------------
# Baseline: a bare loop posting the same bodies from the same number of processes
# --------------------------------------------------------------------------------------------
def meta_body(to: str, text: str, reference: int) -> dict:
    # What MetaBackend.send posts for a text message.
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"body": text, "preview_url": False}, "biz_opaque_callback_data": str(reference)}


def _baseline_worker(url: str, total: int, block: int, interval: float, counter, next_free, replies,
                     replies_done) -> None:
    import httpx

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    headers = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    with httpx.Client(timeout=15) as client:
        while True:
            try:
                body = replies.get_nowait()
            except queue.Empty:
                body = None
            if body is None:
                with counter.get_lock():
                    index = counter.value
                    if index < total:
                        counter.value = index + 1
                if index >= total:
                    if replies_done.is_set() and replies.empty():
                        return
                    time.sleep(0.005)
                    continue
                body = meta_body(number(block, index), f"baseline message {index}: your order has shipped",
                                 1_000_000 + index)
            if interval:
                with next_free.get_lock():
                    now = time.time()
                    slot = max(next_free.value, now)
                    next_free.value = slot + interval
                if slot > now:
                    time.sleep(slot - now)
            client.post(url, json=body, headers=headers).raise_for_status()


def run_baseline(args, *, name: str, fake: FakeMeta, fake_pgid: int, count: int, interval: float,
                 replies: int, expected_seconds: float) -> Run:
    from django.db import connections

    run = Run(name=name, expected=count)
    fake.reset()
    connections.close_all()  # nothing of Django's crosses the fork
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    next_free = ctx.Value("d", 0.0)
    reply_queue = ctx.Queue()
    replies_done = ctx.Event()
    if not replies:
        replies_done.set()
    url = f"http://{HOST}:{fake.port}/{GRAPH_VERSION}/{PHONE_NUMBER_ID}/messages"
    procs = [ctx.Process(target=_baseline_worker, daemon=True,
                         args=(url, count, BASELINE_BLOCK, interval, counter, next_free, reply_queue, replies_done))
             for _ in range(2 * args.concurrency)]
    offset, reply_interval = reply_schedule(expected_seconds, replies, args.reply_interval)
    reply_t0: dict[str, float] = {}
    cpu0 = Cpu.now([], fake_pgid, children=True)
    started = time.monotonic()
    deadline = started + max(expected_seconds * 3, 60)
    try:
        for proc in procs:
            proc.start()
        while len(reply_t0) < replies and time.monotonic() < deadline:
            due = started + offset + len(reply_t0) * reply_interval
            if time.monotonic() < due:
                time.sleep(min(due - time.monotonic(), 0.2))
                continue
            index = len(reply_t0)
            to = number(BASELINE_REPLY_BLOCK, index)
            body = meta_body(to, f"Reply {index}: thanks, we are on it", 2_000_000 + index)
            reply_t0[to] = time.time()
            reply_queue.put(body)
        replies_done.set()
        for proc in procs:
            proc.join(max(deadline - time.monotonic(), 1))
        run.outcome = "all sent" if all(p.exitcode == 0 for p in procs) else \
            f"baseline client exit codes {sorted({p.exitcode for p in procs}, key=str)}"
        cpu1 = Cpu.now([], fake_pgid, children=True)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    run.startup = 0.0
    collect(run, fake, reply_t0, number(BASELINE_BLOCK, 0)[:6])
    run.cpu = cpu1.since(cpu0)
    return run


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def print_run(run: Run, per_send_label: str = "per send") -> None:
    print(f"  {run.name}: {run.outcome}; {run.requests} requests at the fake ({run.distinct} distinct recipients, "
          f"{run.duplicates} duplicates, {run.other} other requests)")
    if run.times:
        print(f"    first -> last arrival {run.times[-1] - run.times[0]:.1f} s; achieved {run.rate:.2f}/s "
              f"(bulk only {achieved_rate(run.bulk_times):.2f}/s); steady (middle 90 %) {run.steady:.1f}/s; "
              f"largest count in a 1 s window {run.window}"
              + (f"; worker start -> first arrival {run.startup:.1f} s" if run.startup == run.startup and run.startup
                 else ""))
    if len(run.times) > 2:
        gaps = [b - a for a, b in zip(run.times, run.times[1:], strict=False)]
        print(f"    gaps between arrivals: min {min(gaps) * 1000:.1f} ms, 1st percentile "
              f"{percentile(gaps, 0.01) * 1000:.1f} ms, median {percentile(gaps, 0.5) * 1000:.1f} ms, "
              f"99th percentile {percentile(gaps, 0.99) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms")
    if run.replies_sent:
        print(f"    reply lane: {run.replies_sent} queued, {len(run.reply_queue)} arrived; queue time p50 "
              f"{percentile(run.reply_queue, 0.5) * 1000:.0f} ms, p99 {percentile(run.reply_queue, 0.99) * 1000:.0f}"
              f" ms, max {percentile(run.reply_queue, 1.0) * 1000:.0f} ms")
    if run.db_statuses:
        print(f"    database: bulk messages by status {run.db_statuses}; reply messages {run.db_reply_statuses}")
    if run.not_sent:
        print(f"    not sent (status, hold reason or error: count): {run.not_sent}")
    cpu = run.cpu
    if cpu:
        sent = max(run.requests, 1)
        label = "clients" if run.name.startswith("baseline") else "workers"
        consumers = f" (the two consumer processes {cpu['consumers']:.0%})" if cpu["consumers"] else ""
        print(f"    cpu (share of one core, {cpu['seconds']:.0f} s from the first arrival): {label} "
              f"{cpu['workers']:.0%}{consumers}, postgres {cpu['postgres']:.0%}, redis {cpu['redis']:.0%}, fake "
              f"{cpu['fake']:.0%}, this process {cpu['bench']:.0%}, other {cpu['other']:.0%}; machine "
              f"{cpu['machine']:.0%} busy")
        per_send = {name: cpu[name] * cpu["seconds"] / sent * 1000
                    for name in ("workers", "consumers", "postgres", "redis")}
        consumers = f" (consumers {per_send['consumers']:.1f} ms)" if cpu["consumers"] else ""
        print(f"    cpu {per_send_label}: {label} {per_send['workers']:.1f} ms{consumers}, postgres "
              f"{per_send['postgres']:.1f} ms, redis {per_send['redis']:.2f} ms")
        if cpu["other"] > 0.15:
            print(f"    WARNING: other processes used {cpu['other']:.0%} of a core during the measurement: "
                  "the figures are disturbed; re-run on a quiet machine.")


def integrity_rows(phase: str, ours: Run, base: Run | None, queued: int) -> list[tuple[str, str, str, str, str]]:
    """`base`: the bare loop's run, when there is one to compare with."""
    sent = ours.db_statuses.get("sent", 0)
    # Every request the fake answered must be a `sent` row (nothing sent twice, nothing left `sending`).
    unrecorded = ours.requests - sent - ours.db_reply_statuses.get("sent", 0)
    capped = " (time cap)" if ours.outcome != "all sent" else ""
    return [
        (f"{phase} bulk messages sent (database) / queued", f"{sent} / {queued}{capped}", "-", "all",
         mark(sent == queued)),
        (f"{phase} requests at the fake: duplicates / not `sent` in the database",
         f"{ours.duplicates} / {unrecorded}", f"{base.duplicates} / -" if base else "-", "0 / 0",
         mark(ours.duplicates == 0 and unrecorded == 0)),
    ]


def mark(ok: bool) -> str:
    return "yes" if ok else "NO"


def final_table(args, rows: list[tuple[str, str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print()
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            print("  ".join("-" * w for w in widths))


# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10000, help="queued bulk messages, phase 1 (default 10000)")
    parser.add_argument("--rate", type=int, default=80, help="the number's limit in phase 1, per second (default 80)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="prefork processes per Celery worker; two workers run (default 4)")
    parser.add_argument("--phase", choices=["1", "2", "both", "none"], default="both")
    parser.add_argument("--scale-out", type=int, default=0, metavar="MESSAGES",
                        help="then, with the limit lifted, MESSAGES sent by one worker (one process group), and "
                             "as many more by two (two groups, as two machines would run them)")
    parser.add_argument("--unlimited-messages", type=int, default=3000,
                        help="queued bulk messages, phase 2 (limit lifted; default 3000)")
    parser.add_argument("--replies", type=int, default=100,
                        help="reply-lane messages queued during the phase 1 bulk run (default 100)")
    parser.add_argument("--reply-interval", type=float, default=0.5, help="seconds between replies (default 0.5)")
    parser.add_argument("--queue-processes", type=int, default=os.cpu_count() or 1,
                        help="processes that queue the backlog with message_send (default: one per core)")
    parser.add_argument("--baseline-messages", type=int, default=0,
                        help="messages of the phase 1 baseline (default: --messages, capped at 20 s of sending)")
    parser.add_argument("--cap", type=float, default=0,
                        help="seconds a phase may run (default: phase 1 its time at the limit + 30 s, phase 2 45 s)")
    parser.add_argument("--wait-quiet", type=float, default=60, metavar="SECONDS",
                        help="wait up to this long for an idle machine before each measured phase (0 = no)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the bench process and the workers (e.g. SEND_RATE_HEADROOM=0.005)")
    args = parser.parse_args(argv)
    if args.messages < 2 or args.rate < 1 or args.concurrency < 1 or args.unlimited_messages < 20:
        parser.error("need --messages >= 2, --rate >= 1, --concurrency >= 1, --unlimited-messages >= 20")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fake-meta"]:
        serve_fake_meta(int(argv[argv.index("--port") + 1]))
        return 0
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    processes = Processes()
    fake_port = free_port()
    env = bench_env(fake_port, args.env)
    logs = Path(env["VAR_DIR"])
    for old in logs.glob("celery-p*.log"):
        old.unlink()
    (logs / "fake-meta.log").unlink(missing_ok=True)
    rows = [("figure", "ours", "baseline", "goal", "met?")]
    try:
        print(f"Preparing database {DB_NAME} (drop, create, migrate) and Redis db 14 ...", flush=True)
        migrate_seconds = recreate_database(env)
        flush_redis()
        setup_django(env)
        from django.conf import settings

        from whatsapp.providers.meta import MetaBackend

        fake_proc = processes.start("fake-meta", [str(VENV_BIN / "python"), str(Path(__file__).resolve()),
                                                  "fake-meta", "--port", str(fake_port)], env,
                                    logs / "fake-meta.log")
        fake = FakeMeta(fake_port)
        fake.wait_ready(fake_proc, time.monotonic() + 30)
        provider = create_provider(args.rate)
        headroom = settings.SEND_RATE_HEADROOM
        print(f"  migrated in {migrate_seconds:.1f} s; fake Meta on {HOST}:{fake_port}; provider meta id "
              f"{provider.pk}; DEBUG={settings.DEBUG}, SEND_RATE_HEADROOM={headroom}, CONN_MAX_AGE="
              f"{settings.DATABASES['default']['CONN_MAX_AGE']}, CELERY_DB_REUSE_MAX={settings.CELERY_DB_REUSE_MAX}, "
              f"broker {settings.CELERY_BROKER_URL}; {os.cpu_count()} cores; two workers x {args.concurrency} "
              f"prefork processes", flush=True)
        processes_total = 2 * args.concurrency
        print(f"  code: {code_state()}", flush=True)

        if args.phase in ("1", "both"):
            print(f"\nPhase 1: {args.messages} queued bulk messages, limit {args.rate}/s "
                  f"(slot spacing {1 / (args.rate * (1 - headroom)) * 1000:.3f} ms = "
                  f"{args.rate * (1 - headroom):.2f}/s with the headroom), {args.replies} reply-lane messages "
                  "during the run", flush=True)
            started = time.perf_counter()
            bulk_contacts = create_contacts(provider, BULK_BLOCK, args.messages)
            reply_contacts = contacts_in_order(create_contacts(provider, REPLY_BLOCK, args.replies))
            print(f"  {args.messages + args.replies} contacts with open sessions created in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            queued = queue_bulk(provider, bulk_contacts, "Bulk", args.queue_processes)
            print(f"  queueing rate: {queued['rate']:.0f} messages/s with message_send from {queued['processes']} "
                  f"processes ({len(queued['ids'])} in {queued['seconds']:.1f} s); tasks in Redis: "
                  f"{queued['in_redis']}", flush=True)
            nominal = args.messages / (args.rate * (1 - headroom))
            ours = run_ours(args, name="p1", env=env, processes=processes, fake=fake, fake_pgid=fake_proc.pid,
                            provider=provider, bulk_ids=queued["ids"], bulk_block=BULK_BLOCK, rate=args.rate,
                            reply_contacts=reply_contacts, cap_seconds=args.cap or nominal + 30, logs=logs)
            print_run(ours)
            baseline_count = args.baseline_messages or min(args.messages, int(20 * args.rate))
            interval = 1 / (args.rate * (1 - headroom))
            baseline_seconds = baseline_count * interval
            reply_every = reply_schedule(baseline_seconds, args.replies, args.reply_interval)[1]
            print(f"  baseline: {baseline_count} messages from {processes_total} processes paced at the same "
                  f"slot spacing, replies every {reply_every:.2f} s in the middle of the run", flush=True)
            base = run_baseline(args, name="baseline p1", fake=fake, fake_pgid=fake_proc.pid, count=baseline_count,
                                interval=interval, replies=args.replies, expected_seconds=baseline_seconds)
            print_run(base)
            target = args.rate * GOALS["rate_share"]
            p99 = percentile(ours.reply_queue, 0.99) if not ours.replies_missing else float("inf")
            base_p99 = percentile(base.reply_queue, 0.99) if not base.replies_missing else float("inf")
            rows += [
                (f"queueing rate, message_send from {queued['processes']} processes (msg/s)", f"{queued['rate']:.0f}",
                 "-", "-", "-"),
                (f"p1 achieved rate, all sends of the number (/s, limit {args.rate})", f"{ours.rate:.2f}",
                 f"{base.rate:.2f}", f">= {target:.1f}", mark(ours.rate >= target)),
                ("p1 largest count in any 1 s window", str(ours.window), str(base.window), f"<= {args.rate}",
                 mark(ours.window <= args.rate)),
                ("p1 reply-lane queue time p99 (ms)", f"{p99 * 1000:.0f}", f"{base_p99 * 1000:.0f}",
                 f"< {GOALS['reply_p99_s'] * 1000:.0f}", mark(p99 < GOALS["reply_p99_s"])),
                ("p1 reply-lane queue time p50 / max (ms)",
                 f"{percentile(ours.reply_queue, 0.5) * 1000:.0f} / {percentile(ours.reply_queue, 1) * 1000:.0f}",
                 f"{percentile(base.reply_queue, 0.5) * 1000:.0f} / {percentile(base.reply_queue, 1) * 1000:.0f}",
                 "-", "-"),
                *integrity_rows("p1", ours, base, args.messages),
            ]

        if args.phase in ("2", "both"):
            limit = MetaBackend.max_rate_limit_per_second
            print(f"\nPhase 2: limit lifted to {limit}/s (MetaBackend.max_rate_limit_per_second), "
                  f"{args.unlimited_messages} queued bulk messages, no replies", flush=True)
            provider_set_rate(provider, limit)
            flush_redis()
            contact_ids = create_contacts(provider, UNLIMITED_BLOCK, args.unlimited_messages)
            queued2 = queue_bulk(provider, contact_ids, "Unlimited", args.queue_processes)
            print(f"  queueing rate: {queued2['rate']:.0f} messages/s ({len(queued2['ids'])} in "
                  f"{queued2['seconds']:.1f} s); tasks in Redis: {queued2['in_redis']}", flush=True)
            ours2 = run_ours(args, name="p2", env=env, processes=processes, fake=fake, fake_pgid=fake_proc.pid,
                             provider=provider, bulk_ids=queued2["ids"], bulk_block=UNLIMITED_BLOCK, rate=limit,
                             reply_contacts=[], cap_seconds=args.cap or 45, logs=logs)
            print_run(ours2)
            print(f"  baseline: {args.unlimited_messages} messages from {processes_total} processes, unpaced",
                  flush=True)
            base2 = run_baseline(args, name="baseline p2", fake=fake, fake_pgid=fake_proc.pid,
                                 count=args.unlimited_messages, interval=0.0, replies=0, expected_seconds=10)
            print_run(base2)
            rows += [
                (f"p2 sends/s, steady state (2 workers x {args.concurrency}, {os.cpu_count()} cores)",
                 f"{ours2.steady:.0f}", f"{base2.steady:.0f}", f">= {GOALS['unlimited_per_s']:.0f}",
                 mark(ours2.steady >= GOALS["unlimited_per_s"])),
                *integrity_rows("p2", ours2, base2, args.unlimited_messages),
            ]
        if args.scale_out:
            rows += scale_out(args, env=env, processes=processes, fake=fake, fake_pgid=fake_proc.pid,
                              provider=provider, logs=logs)
        final_table(args, rows)
        print(f"\nLogs: {logs}/celery-p*-*.log, {logs / 'fake-meta.log'}")
        return 0
    finally:
        processes.stop_all()


if __name__ == "__main__":
    sys.exit(main())
