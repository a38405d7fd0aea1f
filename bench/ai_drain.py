"""
The inbound drain with AI off and on, side by side in one run.

    .venv/bin/python bench/ai_drain.py [--messages 3000] [--rounds 2] [--latency 0.3] [--drain 2] [--ai-concurrency 2]

The goal: with AI on (a model answering in 300 ms), the main worker turns the inbound backlog into
messages at least 95 % as fast as with AI off.

1. Recreates the database `whatsapp_bench_ai`, migrates it, empties Redis db 13, creates a Meta provider and
   starts gunicorn, as bench/webhook_ingest.py does (its helpers are used here). The local fake OpenAI server
   (tests/fake_openai.py) runs in this process with `latency` seconds before every answer.
2. Warm-up, not measured: --warmup webhooks drained with AI off, so every sender's contact and conversation
   exists before the measured runs.
3. Each round drains two backlogs of --messages webhooks (new message ids, the same senders), one with AI
   off and one with AI on, alternating which goes first (off/on, then on/off, ...). Each backlog is posted
   through gunicorn first with no worker running; then a Celery worker on the default queue
   (`celery -A config worker -c 2`, the same both times) is started and timed until every webhook is a
   Message row (bench/webhook_ingest.py's `drain`).
   - AI off: no OPENAI_API_KEY; the inbound hook enqueues nothing.
   - AI on: OPENAI_API_KEY set and OPENAI_BASE_URL at the fake, for the main worker and for an AI worker
     (`celery -A config worker -Q ai -c 2`, as scripts/run.sh starts one), started and answering a ping
     before the drain's clock starts; it runs during the drain and --ai-settle seconds after it, then gets
     a warm shutdown, and what is left on the `ai` queue is dropped.
4. Prints each drain's rate from its rows (first to last message, by their created_at: the pace once the
   worker is up) and from the worker's start (its start-up of 2-4 s included), the CPU of each part, the
   classifications the AI worker finished during and after the drain, and the ratio AI on / AI off of the
   first figure over all rounds pooled, against the goal (>= 0.95).

Everything it starts is stopped on exit, errors and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench import webhook_ingest as ingest  # noqa: E402  (after the path is set, for `python bench/ai_drain.py`)

DB_NAME = "whatsapp_bench_ai"
REDIS_URL = "redis://127.0.0.1:6379/13"
AI_QUEUE = "ai"
GOAL_RATIO = 0.95


def bench_env(args, port: int, app_secret: str) -> dict[str, str]:
    env = ingest.bench_env(args, port, app_secret)
    var_dir = ingest.BASE_DIR / "var" / "bench" / "ai_drain"
    (var_dir / "staticfiles").mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in env.items() if not key.startswith(("OPENAI_", "AI_"))}
    env.update({"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}", "REDIS_URL": REDIS_URL,
                "VAR_DIR": str(var_dir)})
    return env


def ai_env(env: dict[str, str], fake_url: str) -> dict[str, str]:
    return {**env, "OPENAI_API_KEY": "bench-fake-key", "OPENAI_BASE_URL": fake_url}


def post_backlog(args, first: int, count: int, port: int, server, provider, secret: bytes) -> int:
    """POST webhooks first .. first+count-1 (one inbound text each) through gunicorn; returns the 200s."""
    now = int(time.time())
    path = f"/webhooks/{provider.kind}/{provider.public_id}/"
    requests = [ingest.http_request(path, port, ingest.meta_body(n, n % args.contacts, now),
                                    "X-Hub-Signature-256", secret) for n in range(first, first + count)]
    result = ingest.fire(requests, args.connections, port, server.pid)
    if result.ok != count:
        raise RuntimeError(f"ingest answered {result.ok} 200s of {count}: {result.statuses} {result.errors}")
    return result.ok


def classifications() -> dict[str, int]:
    from django.db.models import Count

    from ai.models import MessageInsight

    rows = MessageInsight.objects.values("classification_status").annotate(n=Count("id"))
    return {row["classification_status"] or "(none yet)": row["n"] for row in rows}


def ai_calls() -> dict[str, int]:
    from django.db.models import Count

    from ai.models import AiCall

    return {row["status"]: row["n"] for row in AiCall.objects.values("status").annotate(n=Count("id"))}


def last_message_id() -> int:
    from django.db.models import Max

    from whatsapp.models import Message

    return Message.objects.aggregate(last=Max("pk"))["last"] or 0


def rows_rate(provider, after_id: int) -> tuple[float, float]:
    """(messages/s, seconds) between the first and the last inbound message created after `after_id`, from
    the rows' own created_at: the drain's pace once the worker is up, without the poller's 0.25 s steps."""
    from django.db.models import Count, Max, Min

    from whatsapp.models import Message

    span = Message.objects.filter(provider=provider, direction=Message.Direction.INBOUND, pk__gt=after_id).aggregate(
        first=Min("created_at"), last=Max("created_at"), n=Count("id"))
    if span["n"] < 2:
        return 0.0, 0.0
    seconds = (span["last"] - span["first"]).total_seconds()
    return ((span["n"] - 1) / seconds if seconds > 0 else 0.0), seconds


def wait_ready(node: str, proc, timeout: float = 60) -> float:
    """Seconds until the worker `node` answers a ping (it has started and is consuming)."""
    from config.celery import app

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker {node} exited with code {proc.returncode} (see its log)")
        if app.control.ping(destination=[node], timeout=0.5):
            return time.monotonic() - started
    raise RuntimeError(f"the worker {node} did not answer a ping in {timeout:.0f} s")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] - before.get(key, 0)}


def one_drain(args, mode: str, env: dict[str, str], processes, provider, expected: int, logs: Path,
              fake) -> dict:
    import redis

    also = {}
    insights0, calls0 = classifications(), ai_calls()
    fake_requests0 = len(fake.chat_requests)
    after_id = last_message_id()
    try:
        if mode == "on":
            node = f"bench-ai-{os.getpid()}@{socket.gethostname()}"
            cmd = [str(ingest.VENV_BIN / "celery"), "-A", "config", "worker", "-Q", AI_QUEUE, "-l", "WARNING",
                   "-c", str(args.ai_concurrency), "-n", node]
            if args.ai_nice:
                cmd = ["nice", "-n", str(args.ai_nice), *cmd]
            also["ai"] = processes.start("ai worker", cmd, env, logs / "ai-worker.log")
            wait_ready(node, also["ai"])
        result = ingest.drain(args, env, processes, provider, expected, logs, redis_url=REDIS_URL,
                              log_name="celery.log", also=also)
        result["mode"] = mode
        result["rows_rate"], result["rows_seconds"] = rows_rate(provider, after_id)
        result["ai_done_in_drain"] = delta(classifications(), insights0).get("done", 0)
        result["ai_queue_after_drain"] = ingest.redis_queue_length(REDIS_URL, AI_QUEUE)
        if mode == "on":
            time.sleep(args.ai_settle)
        result["ai_done_after_settle"] = delta(classifications(), insights0).get("done", 0)
        result["insights"] = delta(classifications(), insights0)
        result["ai_calls"] = delta(ai_calls(), calls0)
        result["fake_requests"] = len(fake.chat_requests) - fake_requests0
    finally:
        if "ai" in also:
            stop_warm(also["ai"])
            processes.stop(also["ai"])
            processes.started = [entry for entry in processes.started if entry[1] is not also["ai"]]
    # What the AI worker did not reach is dropped, so the next run starts with an empty `ai` queue.
    redis.Redis.from_url(REDIS_URL).delete(AI_QUEUE)
    result["dropped"] = drop_leftovers()
    return result


def drop_leftovers(queue: str = "celery") -> dict[str, int]:
    """Drop the tasks left on the default queue once every message exists (each processed webhook enqueues
    the archiving of its body), so that the next drain does not begin with the previous one's archiving.
    Returns their count by task name."""
    import json

    import redis

    client = redis.Redis.from_url(REDIS_URL)
    counts: dict[str, int] = {}
    for key in [queue.encode(), *client.scan_iter(match=f"{queue}\x06\x16*")]:
        for raw in client.lrange(key, 0, -1):
            name = json.loads(raw).get("headers", {}).get("task", "?").rsplit(".", 1)[-1]
            counts[name] = counts.get(name, 0) + 1
        client.delete(key)
    return counts


def stop_warm(proc, timeout: float = 15) -> None:
    """SIGTERM to the worker's main process only: a warm shutdown lets the tasks in progress finish."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)


def print_drain(args, result: dict) -> None:
    seconds = result["seconds"] or 1
    ai_cpu = result["also_cpu"].get("ai", 0.0)
    print(f"  AI {result['mode']:<3}: {result['done']}/{result['expected']} messages ({result['outcome']}) at "
          f"{result['rows_rate']:.1f} msg/s from the first to the last message ({result['rows_seconds']:.1f} s); "
          f"{result['rate']:.1f} msg/s from the worker's start ({result['seconds']:.1f} s, start-up "
          f"{result['startup_seconds']:.1f} s)", flush=True)
    print(f"          cpu (share of one core): main worker {result['worker_cpu'] / seconds:.0%}, AI worker "
          f"{ai_cpu / seconds:.0%}, postgres {result['postgres_cpu'] / seconds:.0%}, redis "
          f"{result['redis_cpu'] / seconds:.0%}, this process (poller + fake) {result['poller_cpu'] / seconds:.0%}; "
          f"machine {result['machine']:.0%} busy{other_warning(result)}", flush=True)
    print(f"          main worker cpu per message {cpu_ms(result):.2f} ms; tasks left on the default queue and "
          f"dropped: {result['dropped'] or 'none'}", flush=True)
    if result["mode"] == "on":
        print(f"          AI classifications done: {result['ai_done_in_drain']} during the drain, "
              f"{result['ai_done_after_settle']} by {args.ai_settle:.0f} s after it (AI worker cpu "
              f"{cpu_ms(result, 'ai') * result['done'] / max(result['ai_done_in_drain'], 1):.1f} ms per "
              f"classification during the drain); `ai` queue after the drain: "
              f"{result['ai_queue_after_drain']}; insights {result['insights']}; AI calls {result['ai_calls']}; "
              f"fake chat requests {result['fake_requests']}", flush=True)


def cpu_ms(result: dict, key: str = "main") -> float:
    """CPU milliseconds per message of the main worker (start-up included) or of the AI worker."""
    cpu = result["worker_cpu"] if key == "main" else result["also_cpu"].get("ai", 0.0)
    return cpu * 1000 / max(result["done"], 1)


def other_share(result: dict) -> float:
    """CPU (share of one core) of everything but the benchmark's own processes during the drain."""
    seconds = result["seconds"] or 1
    own = (result["worker_cpu"] + sum(result["also_cpu"].values()) + result["postgres_cpu"] + result["redis_cpu"]
           + result["poller_cpu"]) / seconds
    return max(result["machine"] * (os.cpu_count() or 1) - own, 0.0)


def other_warning(result: dict) -> str:
    other = other_share(result)
    return f", other processes {other:.0%} of a core: DISTURBED" if other > 0.15 else ""


def summary(args, runs: list[dict]) -> int:
    print()
    print(f"Drain of {args.messages} webhooks per run, main worker --pool {args.drain_pool} -c {args.drain}; "
          f"AI on: fake answering in {args.latency * 1000:.0f} ms, AI worker -Q {AI_QUEUE} -c {args.ai_concurrency}"
          + (f" under nice -n {args.ai_nice}" if args.ai_nice else ""))
    header = (f"{'run':<5}{'AI':<5}{'msg/s first->last':>19}{'msg/s from start':>18}{'main cpu ms/msg':>17}"
              f"{'AI worker cpu':>15}{'other cpu':>11}{'AI done (drain / +settle)':>28}")
    print(header)
    print("-" * len(header))
    for index, run in enumerate(runs, 1):
        ai = f"{run['ai_done_in_drain']} / {run['ai_done_after_settle']}" if run["mode"] == "on" else "-"
        ai_cpu = run["also_cpu"].get("ai", 0.0) / (run["seconds"] or 1)
        print(f"{index:<5}{run['mode']:<5}{run['rows_rate']:>19.1f}{run['rate']:>18.1f}{cpu_ms(run):>17.2f}"
              f"{ai_cpu:>15.0%}"
              f"{other_share(run):>11.0%}{ai:>28}")

    def pooled(mode: str, key: str) -> float:
        chosen = [run for run in runs if run["mode"] == mode]
        if key == "rate":
            return sum(run["done"] for run in chosen) / sum(run["seconds"] for run in chosen)
        return sum(run["done"] - 1 for run in chosen) / sum(run["rows_seconds"] for run in chosen)

    ok = all(run["outcome"] == "done" for run in runs)
    print()
    print(f"{'figure (all rounds pooled)':<52}{'AI off':>8}{'AI on':>8}{'on/off':>8}   goal")
    verdict = 1
    for key, label in (("rows", "drain msg/s, first -> last message"),
                       ("rate", "drain msg/s, worker start -> last message")):
        off, on = pooled("off", key), pooled("on", key)
        ratio = on / off if off else 0.0
        met = ok and ratio >= GOAL_RATIO
        if key == "rows":
            verdict = 0 if met else 1
            goal = f">= {GOAL_RATIO}  {'met' if met else 'MISSED'}"
        else:
            goal = "(start-up included)"
        print(f"{label:<52}{off:>8.1f}{on:>8.1f}{ratio:>8.3f}   {goal}")
    cpu = {mode: sum(run["worker_cpu"] for run in runs if run["mode"] == mode) * 1000
           / max(sum(run["done"] for run in runs if run["mode"] == mode), 1) for mode in ("off", "on")}
    print(f"{'main worker cpu ms per message (start-up included)':<52}{cpu['off']:>8.2f}{cpu['on']:>8.2f}"
          f"{cpu['on'] / cpu['off'] if cpu['off'] else 0:>8.3f}")
    on_runs = [run for run in runs if run["mode"] == "on"]
    done = sum(run["ai_done_in_drain"] for run in on_runs)
    settled = sum(run["ai_done_after_settle"] for run in on_runs)
    ai_seconds = sum(run["seconds"] + args.ai_settle for run in on_runs)
    print(f"AI classifications completed: {done} during the AI-on drains, {settled} including {args.ai_settle:.0f} s "
          f"after each ({settled / ai_seconds:.1f}/s; a {args.latency * 1000:.0f} ms model and -c "
          f"{args.ai_concurrency} allow at most {args.ai_concurrency / args.latency:.1f}/s)" if args.latency else "")
    if any(other_share(run) > 0.15 for run in runs):
        print("WARNING: other processes used more than 15 % of a core during some drain: re-run on a quiet machine.")
    if not ok:
        print("Some drain did not finish: " + "; ".join(run["outcome"] for run in runs if run["outcome"] != "done"))
    return verdict


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000, help="webhooks per drain (default 3000)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of one AI-off and one AI-on drain, the order alternating (default 2)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="webhooks drained before the measured runs (default: --contacts)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the fake takes per answer (default 0.3)")
    parser.add_argument("--drain", type=int, default=2, metavar="CONCURRENCY",
                        help="main worker concurrency, the same in both modes (default 2)")
    parser.add_argument("--drain-pool", choices=["prefork", "threads", "solo"], default="prefork")
    parser.add_argument("--ai-concurrency", type=int, default=2, help="AI worker concurrency (default 2)")
    parser.add_argument("--ai-nice", type=int, default=0, metavar="N",
                        help="run the AI worker under `nice -n N` (default 0: as scripts/run.sh starts it)")
    parser.add_argument("--ai-settle", type=float, default=10.0,
                        help="seconds the AI worker runs on after an AI-on drain (default 10)")
    parser.add_argument("--contacts", type=int, default=1000, help="distinct senders (default 1000)")
    parser.add_argument("--connections", type=int, default=32, help="connections posting the backlog (default 32)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers (default 4)")
    parser.add_argument("--wait-quiet", type=float, default=60, metavar="SECONDS",
                        help="before each drain, wait up to this long for an idle machine (default 60, 0 = no)")
    parser.add_argument("--drain-timeout", type=float, default=0,
                        help="seconds before a drain gives up (default: 60 + messages/50)")
    args = parser.parse_args(argv)
    if min(args.messages, args.rounds, args.drain, args.ai_concurrency, args.contacts) < 1 or args.latency < 0:
        parser.error("counts must be positive and the latency not negative")
    args.warmup = args.contacts if args.warmup is None else args.warmup
    args.drain_timeout = args.drain_timeout or 60 + args.messages / 50
    args.conn_max_age = None  # the application's default, for bench_env
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, ingest._sigterm)
    for name in [name for name in os.environ if name.startswith("OPENAI_")]:
        del os.environ[name]  # this process (the poller) runs with AI off
    from tests.fake_openai import FakeOpenAI

    processes = ingest.Processes()
    port = ingest.free_port()
    app_secret = secrets.token_hex(16)
    env_off = bench_env(args, port, app_secret)
    logs = Path(env_off["VAR_DIR"])
    for name in ("gunicorn.log", "celery.log", "ai-worker.log"):
        (logs / name).unlink(missing_ok=True)
    fake = FakeOpenAI().start()
    fake.latency = args.latency
    env_on = ai_env(env_off, fake.url)
    try:
        print(f"Preparing database {DB_NAME} (drop, create, migrate) and Redis db 13 ...", flush=True)
        migrate_seconds = ingest.recreate_database(env_off, DB_NAME)
        ingest.flush_redis(REDIS_URL)
        ingest.setup_django(env_off)
        provider = ingest.create_provider("meta", app_secret)
        print(f"  migrated in {migrate_seconds:.1f} s; fake OpenAI at {fake.url}, {args.latency * 1000:.0f} ms "
              "per answer", flush=True)
        cmd = [str(ingest.VENV_BIN / "gunicorn"), "config.wsgi", "-c", "config/gunicorn.py",
               "--access-logfile", "/dev/null", "--control-socket", str(logs / "gunicorn.ctl")]
        server = processes.start("gunicorn", cmd, env_off, logs / "gunicorn.log")
        ingest.wait_http(port, "/health/", time.monotonic() + 60, server)
        secret = app_secret.encode()
        next_id = 0
        if args.warmup:
            post_backlog(args, next_id, args.warmup, port, server, provider, secret)
            next_id += args.warmup
            warm = ingest.drain(args, env_off, processes, provider, args.warmup, logs, redis_url=REDIS_URL)
            drop_leftovers()
            print(f"Warm-up: {warm['done']} messages drained with AI off ({warm['rate']:.0f} msg/s, "
                  f"{warm['outcome']})", flush=True)
        runs = []
        for index in range(args.rounds):
            order = ("off", "on") if index % 2 == 0 else ("on", "off")
            print(f"Round {index + 1}/{args.rounds}: AI {order[0]}, then AI {order[1]}", flush=True)
            for mode in order:
                accepted = post_backlog(args, next_id, args.messages, port, server, provider, secret)
                next_id += args.messages
                expected = ingest.ours_rows(provider).get("pending", 0)
                if expected != accepted:
                    print(f"  note: {expected} webhooks pending for {accepted} accepted", flush=True)
                env = env_on if mode == "on" else env_off
                result = one_drain(args, mode, env, processes, provider, expected, logs, fake)
                print_drain(args, result)
                runs.append(result)
        if fake.exceptions:
            print(f"the fake OpenAI server failed {len(fake.exceptions)} times, first: {fake.exceptions[0]!r}")
        verdict = summary(args, runs)
        print(f"\nLogs: {logs / 'celery.log'}, {logs / 'ai-worker.log'}, {logs / 'gunicorn.log'}")
        return verdict
    finally:
        processes.stop_all()
        fake.close()


if __name__ == "__main__":
    sys.exit(main())
