#!/usr/bin/env python3
"""
Deployability check: does a production install of this repository run?

It builds a fresh virtualenv from requirements.txt alone (what the Docker image installs; pip's cache
keeps it quick), then, with production settings (DJANGO_DEBUG=false, random keys, PostgreSQL and a
Redis broker, static files collected and served by WhiteNoise without finders), runs migrate and
collectstatic, starts gunicorn (config/gunicorn.py), a Celery worker and Celery beat, and checks:

- /health/ answers 200 with status "ok" (which needs the worker's heartbeat, run by beat);
- a signed sandbox webhook posted over HTTP becomes an inbound message;
- a text sent through POST /api/v1/messages/ goes to `read` (the worker sends it, the sandbox phone
  reports sent, delivered and read to our webhook URL);
- the Swagger page at /api/docs/ loads every asset from our own static files.

It uses only the standard library, so any Python 3.11 runs it: `python3 scripts/production_check.py`.
PostgreSQL and Redis at 127.0.0.1 by default; it creates and drops its own database and empties its own
Redis database number. Every process it starts is stopped on exit, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

REPO = Path(__file__).resolve().parent.parent
# The API user and the phone number of the simulated customer.
CHECK_USER = "prodcheck"
CUSTOMER_PHONE = "+15550009001"


class CheckFailed(Exception):
    pass


class Step:
    """Times each step for the summary."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done: list[tuple[str, float]] = []

    def __call__(self, name: str, func: Callable[[], Any]) -> Any:
        print(f"--- {name}", flush=True)
        began = time.monotonic()
        result = func()
        self.done.append((name, time.monotonic() - began))
        return result

    def summary(self, ok: bool) -> str:
        lines = [f"  {seconds:6.1f}s  {name}" for name, seconds in self.done]
        total = time.monotonic() - self.started
        verdict = "PASSED" if ok else "FAILED"
        return "\n".join([f"production check {verdict} in {total:.1f}s", *lines])


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5,
         alive: Callable[[], None] | None = None) -> Any:
    """predicate() until it returns something truthy; `alive` raises as soon as a process we need died,
    so a crash fails at once instead of at the timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Processes:
    """The long-running processes (gunicorn, worker, beat), each in its own process group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as log:
            self.running[name] = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True)

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                raise CheckFailed(f"{name} exited with code {process.returncode}\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(f"  {name}| {line}" for line in text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class AssetLinks(HTMLParser):
    """Every URL an HTML page loads: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


class Http:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.token = ""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        all_headers = dict(headers or {})
        if self.token:
            all_headers["Authorization"] = f"Token {self.token}"
        req = urllib.request.Request(urljoin(self.base_url, path), data=body, headers=all_headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, b""

    def json(self, method: str, path: str, payload: Any = None, expect: int = 200,
             headers: dict[str, str] | None = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, content = self.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        if status != expect:
            raise CheckFailed(f"{method} {path} answered {status}, expected {expect}: {content[:500]!r}")
        return json.loads(content)


def run(argv: list[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise CheckFailed(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout


def build_venv(python: str, venv: Path) -> Path:
    run([python, "-m", "venv", str(venv)], dict(os.environ), "creating the virtualenv")
    venv_python = venv / "bin" / "python"
    # requirements.txt alone: exactly what the Docker image installs. pip's cache makes it quick.
    run([str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REPO / "requirements.txt")], dict(os.environ), "pip install -r requirements.txt")
    return venv_python


def admin_sql(venv_python: Path, admin_url: str, statements: list[str]) -> None:
    code = ("import sys, psycopg\n"
            "with psycopg.connect(sys.argv[1], autocommit=True) as conn:\n"
            "    for statement in sys.argv[2:]:\n"
            "        conn.execute(statement)\n")
    run([str(venv_python), "-c", code, admin_url, *statements], dict(os.environ), "database administration")


def flush_redis(venv_python: Path, redis_url: str) -> None:
    run([str(venv_python), "-c", "import sys, redis; redis.Redis.from_url(sys.argv[1]).flushdb()", redis_url],
        dict(os.environ), "emptying the Redis database")


def production_env(args: argparse.Namespace, venv_python: Path, var_dir: Path, port: int) -> dict[str, str]:
    keys = run([str(venv_python), "-c",
                "import secrets; from cryptography.fernet import Fernet; "
                "print(secrets.token_urlsafe(50)); print(Fernet.generate_key().decode())"],
               dict(os.environ), "generating keys").split()
    database_url = urlsplit(args.postgres_url)._replace(path=f"/{args.database}").geturl()
    # Only what a deployment would set: nothing of the caller's environment (a CI's VAR_DIR or REDIS_URL)
    # leaks in, apart from what any process needs.
    base = {name: os.environ[name] for name in ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ") if name in os.environ}
    return {
        **base,
        "PATH": f"{venv_python.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": keys[0],
        "FIELD_ENCRYPTION_KEYS": keys[1],
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis_url,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "VAR_DIR": str(var_dir),
        # Static files must come from collectstatic's output, as in the image.
        "WHITENOISE_USE_FINDERS": "false",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "SANDBOX_STATUS_DELAY_SECONDS": "0.3",
        "PYTHONUNBUFFERED": "1",
    }


def check_health(http: Http, processes: Processes, timeout: float) -> dict:
    def ok() -> dict | None:
        status, content = http.request("GET", "/health/")
        if status != 200:
            return None
        report = json.loads(content)
        return report if report.get("status") == "ok" else None

    return poll(ok, timeout, "/health/ to answer 200 with status ok", alive=processes.check_alive)


def check_inbound(http: Http, processes: Processes, env: dict[str, str], venv_python: Path) -> int:
    out = run([str(venv_python), "manage.py", "create_provider", "--kind", "sandbox", "--name", "Production check"],
              env, "manage.py create_provider")
    provider_id = int(re.search(r"\(id (\d+)\)", out).group(1))
    webhook_path = urlsplit(out.strip().splitlines()[-1]).path
    text = f"production check {time.time():.0f}"
    # The sandbox provider signs the body the way its simulated phone does; we post it over HTTP ourselves.
    code = ("import json, sys\n"
            "from whatsapp.models import Provider\n"
            "from whatsapp.providers import backend_for\n"
            "provider = Provider.objects.get(pk=int(sys.argv[1]))\n"
            "body, headers, _ = backend_for(provider).simulated_inbound(from_phone=sys.argv[2], name='Check', "
            "text=sys.argv[3])\n"
            "print(json.dumps({'body': body.decode(), 'headers': headers}))\n")
    signed = json.loads(run([str(venv_python), "-c", "import django, sys; django.setup(); exec(sys.argv.pop(1))",
                             code, str(provider_id), CUSTOMER_PHONE, text], env, "signing a sandbox webhook"))
    accepted = http.json("POST", webhook_path, json.loads(signed["body"]), headers=signed["headers"])
    if accepted.get("status") != "accepted":
        raise CheckFailed(f"the webhook was not accepted: {accepted}")

    def stored() -> int | None:
        page = http.json("GET", "/api/v1/messages/?direction=inbound")
        return next((row["id"] for row in page["results"] if row["text"] == text), None)

    return poll(stored, 60, "the inbound webhook to become a message", alive=processes.check_alive)


def check_outbound(http: Http, processes: Processes) -> str:
    sent = http.json("POST", "/api/v1/messages/", {"to": CUSTOMER_PHONE, "type": "text",
                                                   "text": "Thanks, the production check got your message."},
                     expect=201)
    seen: list[str] = []

    def read() -> bool:
        status = http.json("GET", f"/api/v1/messages/{sent['id']}/")["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in ("failed", "dead_letter", "unknown"):
            raise CheckFailed(f"message {sent['id']} ended {status}")
        return status == "read"

    poll(read, 60, f"message {sent['id']} to be read (statuses seen: {seen})", alive=processes.check_alive)
    return " -> ".join(seen)


def check_swagger(http: Http, base_url: str) -> int:
    status, page = http.request("GET", "/api/docs/")
    if status != 200:
        raise CheckFailed(f"/api/docs/ answered {status}")
    parser = AssetLinks()
    parser.feed(page.decode())
    if not parser.urls:
        raise CheckFailed("/api/docs/ loads no assets")
    ours = urlsplit(base_url).netloc
    for url in parser.urls:
        absolute = urljoin(urljoin(base_url, "/api/docs/"), url)
        parts = urlsplit(absolute)
        # Without internet the page must still work: every asset from this server's static files, or its
        # start-up script, which the page's own view serves as a file (the content security policy refuses
        # inline scripts).
        own_script = parts.path == "/api/docs/" and parts.query.startswith("script")
        if parts.netloc != ours or not (parts.path.startswith("/static/") or own_script):
            raise CheckFailed(f"/api/docs/ loads {url} from outside our static files")
        status, _ = http.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        if status != 200:
            raise CheckFailed(f"{parts.path} (from /api/docs/) answered {status}")
    schema_status, _ = http.request("GET", "/api/schema/")
    if schema_status != 200:
        raise CheckFailed(f"/api/schema/ answered {schema_status}")
    return len(parser.urls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="Python that builds the virtualenv.")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="A PostgreSQL role that may create databases (its database is only used to connect).")
    parser.add_argument("--database", default="wa_prodcheck", help="Created, then dropped.")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="Emptied before and after.")
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory (venv, logs).")
    args = parser.parse_args()

    # A stop from outside (CI's timeout, Ctrl-C) still runs the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    step = Step()
    work = Path(tempfile.mkdtemp(prefix="wa-prodcheck-"))
    (work / "logs").mkdir()
    processes = Processes(work / "logs")
    venv_python: Path | None = None
    database_created = False
    ok = False
    try:
        venv_python = step("fresh virtualenv from requirements.txt only",
                           lambda: build_venv(args.python, work / "venv"))
        env = production_env(args, venv_python, work / "var", args.port)
        manage = [str(venv_python), "manage.py"]

        def create_database() -> None:
            nonlocal database_created
            admin_sql(venv_python, args.postgres_url, [f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)',
                                                       f'CREATE DATABASE "{args.database}"'])
            database_created = True
            flush_redis(venv_python, args.redis_url)

        step(f"database {args.database} and Redis {args.redis_url}", create_database)
        step("migrate", lambda: run([*manage, "migrate", "--noinput"], env, "migrate"))
        step("collectstatic", lambda: run([*manage, "collectstatic", "--noinput", "--verbosity", "0"], env,
                                          "collectstatic"))

        def start() -> None:
            bin_dir = venv_python.parent
            processes.start("web", [str(bin_dir / "gunicorn"), "config.wsgi:application", "-c", "config/gunicorn.py"],
                            env)
            processes.start("worker", [str(bin_dir / "celery"), "-A", "config", "worker", "--loglevel", "INFO",
                                       "--concurrency", "2", "--hostname", "prodcheck@%h"], env)
            processes.start("ai-worker", [str(bin_dir / "celery"), "-A", "config", "worker", "-Q", "ai",
                                          "--loglevel", "INFO", "--concurrency", "1", "--hostname", "prodcheck-ai@%h"],
                            env)
            processes.start("beat", [str(bin_dir / "celery"), "-A", "config", "beat", "--loglevel", "INFO",
                                     "--pidfile=", "--schedule", str(work / "celerybeat-schedule")], env)

        step("start gunicorn, celery worker, celery beat", start)
        base_url = env["PUBLIC_BASE_URL"]
        http = Http(base_url)
        report = step("/health/ is ok", lambda: check_health(http, processes, 90))
        print(f"    {json.dumps(report)}")

        def api_token() -> None:
            run([*manage, "createsuperuser", "--noinput", "--username", CHECK_USER, "--email",
                 "prodcheck@example.com"], {**env, "DJANGO_SUPERUSER_PASSWORD": os.urandom(16).hex()},
                "manage.py createsuperuser")
            http.token = run([*manage, "create_api_token", CHECK_USER], env, "manage.py create_api_token").split()[-1]

        step("API key", api_token)
        inbound_id = step("signed sandbox webhook -> inbound message", lambda: check_inbound(http, processes, env,
                                                                                              venv_python))
        print(f"    inbound message {inbound_id}")
        statuses = step("POST /api/v1/messages/ -> read", lambda: check_outbound(http, processes))
        print(f"    {statuses}")
        assets = step("Swagger UI from our static files", lambda: check_swagger(http, base_url))
        print(f"    {assets} assets, all served")
        processes.check_alive()
        ok = True
    except CheckFailed as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        for name in processes.running:
            print(processes.tail(name, 15), file=sys.stderr)
    finally:
        processes.stop_all()
        if venv_python is not None and database_created:
            try:
                admin_sql(venv_python, args.postgres_url, [f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'])
                flush_redis(venv_python, args.redis_url)
            except CheckFailed as exc:
                print(f"clean-up: {exc}", file=sys.stderr)
        if args.keep:
            print(f"kept {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        print("\n" + step.summary(ok), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
