"""
Assistant evaluation: multi-turn scenarios (bench/assistant_eval/scenarios/) played through the whole
platform against any OpenAI-compatible endpoint.

    .venv/bin/python bench/assistant_eval.py --fake                       # the local rule-based fake model
    OPENAI_API_KEY=sk-... OPENAI_MODEL=gpt-4.1-mini .venv/bin/python bench/assistant_eval.py   # OpenAI
    OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_API_KEY=ollama OPENAI_MODEL=qwen2.5:7b-instruct \\
        .venv/bin/python bench/assistant_eval.py --no-voice                                   # Ollama
    .venv/bin/python bench/assistant_eval.py --fake --scenarios 'content-*,spanish' --json > eval.json

1. Recreates its own PostgreSQL database (default: the name in DATABASE_URL + "_assistant_eval"), empties its
   Redis database (default: REDIS_URL's), migrates, and creates two sandbox providers: the assistant's (the
   minimal notification policy) and a baseline one whose unknown contacts get the registration reply.
2. Starts gunicorn (config/gunicorn.py) on a free port, a Celery worker on the default queue and one on the
   `ai` queue, with AI pointed at the endpoint (with --fake: tests.fake_openai.FakeOpenAI in this process,
   whose tool calls come from tests/fake_assistant_model.py).
3. For each scenario: a user with the scenario's preferences and time zone, and a contact mapped to that
   user. Each turn is a signed sandbox webhook POSTed over HTTP (a text, a tap on a button of the last
   question, or a synthesised voice note); the runner then polls until the message's Turn is finished and
   its reply, if any, has a SendAttempt (the provider call), and compares the turn's tool calls, outcome,
   reply and the rows it left with what the scenario expects.
4. Baseline, same run: messages from unknown numbers on the baseline provider, answered by the platform's
   registration reply with no model involved; half before the scenarios, half after.

Printed: tool-call accuracy, scenario completion rate, turns to completion, clarifications asked, cost per
conversation, latency from the webhook's arrival to the reply's provider call (p50/p95), the platform's
share of it (the same minus the model's time) against the goal p95 < 300 ms, and the baseline's latency.

Everything it starts is stopped on exit, errors and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench import webhook_ingest as ingest  # noqa: E402  (after the path is set, for `python bench/...`)

SCENARIO_DIR = BASE_DIR / "bench" / "assistant_eval" / "scenarios"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/whatsapp_bench_assistant"
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
FAKE_MODEL = "gpt-4.1-mini"  # a priced model name, so that the fake's calls have a cost
GOAL_PLATFORM_P95_MS = 300.0
POLL_SECONDS = 0.05
# Consecutive messages without any turn, at the start of a run, after which the engine is taken to be missing.
NO_TURN_ABORT = 3
TURN_KINDS = ("say", "tap", "voice")
CHECK_MODELS = ("task", "note", "project", "goal", "content_request", "reminder", "profile")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# --------------------------------------------------------------------------------------------
# Scenarios: loading and checking their form (no Django needed)
# --------------------------------------------------------------------------------------------
class ScenarioError(ValueError):
    """A scenario file that does not follow bench/assistant_eval/README.md."""


def load_scenarios(directory: Path = SCENARIO_DIR, selection: str = "") -> list[dict]:
    """Every scenario of the directory's JSON files, in file then listed order, each with its "file"; only
    those `selection` names (comma-separated ids, file names or tags, shell patterns allowed)."""
    scenarios, seen = [], set()
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ScenarioError(f"{path.name}: not JSON ({exc})") from exc
        for scenario in document.get("scenarios", []) if isinstance(document, dict) else []:
            scenario_check(scenario, path.name)
            if scenario["id"] in seen:
                raise ScenarioError(f"{path.name}: scenario id {scenario['id']!r} is used twice")
            seen.add(scenario["id"])
            scenarios.append({**scenario, "file": path.stem})
    patterns = [part.strip() for part in selection.split(",") if part.strip()]
    if patterns:
        scenarios = [s for s in scenarios if any(
            fnmatch.fnmatch(name, pattern) for pattern in patterns for name in (s["id"], s["file"], *s["tags"]))]
    return scenarios


def scenario_check(scenario: Any, where: str) -> None:
    if not isinstance(scenario, dict) or not isinstance(scenario.get("id"), str) or not scenario["id"]:
        raise ScenarioError(f"{where}: every scenario needs an id")
    at = f"{where}: {scenario['id']}"
    scenario.setdefault("tags", [])
    scenario.setdefault("user", {})
    zone = scenario["user"].get("time_zone", "UTC")
    try:
        ZoneInfo(zone)
    except (ValueError, KeyError) as exc:
        raise ScenarioError(f"{at}: unknown time zone {zone!r}") from exc
    turns = scenario.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ScenarioError(f"{at}: no turns")
    for number, turn in enumerate(turns, 1):
        kinds = [kind for kind in TURN_KINDS if kind in turn]
        if len(kinds) != 1:
            raise ScenarioError(f"{at}, turn {number}: exactly one of {', '.join(TURN_KINDS)}")
        if "calls" in turn and "calls_any_of" in turn:
            raise ScenarioError(f"{at}, turn {number}: calls or calls_any_of, not both")
        for calls in ([turn["calls"]] if "calls" in turn else turn.get("calls_any_of", [])):
            if not isinstance(calls, list) or not all(isinstance(c, dict) and c.get("name") for c in calls):
                raise ScenarioError(f"{at}, turn {number}: calls are a list of {{name, arguments}}")
        for model in turn.get("check", {}):
            if model not in CHECK_MODELS:
                raise ScenarioError(f"{at}, turn {number}: cannot check {model!r} (one of {CHECK_MODELS})")
        if turn.get("optional") and "tap" not in turn:
            raise ScenarioError(f"{at}, turn {number}: only a tap can be optional")


def turn_text(turn: dict) -> str:
    if "tap" in turn:
        titles = turn["tap"] if isinstance(turn["tap"], list) else [turn["tap"]]
        return "[tap " + " | ".join(titles) + "]"
    return turn.get("say") or turn.get("voice") or ""


# --------------------------------------------------------------------------------------------
# Expected values: dates relative to the user's today, and matching
# --------------------------------------------------------------------------------------------
def resolve_date(expression: str, today: dt.date) -> str:
    """A "$date:..." expression as YYYY-MM-DD: today, +N / -N days, a weekday (the first one after today,
    "+7" for the one after), month_end, year_end, end_of:<month> / start_of:<month> (its next occurrence)."""
    spec = expression.removeprefix("$date:").strip().lower()
    if spec == "today":
        return today.isoformat()
    if re.fullmatch(r"[+-]\d+", spec):
        return (today + dt.timedelta(days=int(spec))).isoformat()
    weekday = re.fullmatch(r"([a-z]+)(?:\+(\d+))?", spec)
    if weekday and weekday.group(1) in WEEKDAY_NAMES:
        ahead = (WEEKDAY_NAMES.index(weekday.group(1)) - today.weekday() - 1) % 7 + 1
        return (today + dt.timedelta(days=ahead + int(weekday.group(2) or 0))).isoformat()
    if spec == "month_end":
        return _month_end(today.year, today.month).isoformat()
    if spec == "year_end":
        return dt.date(today.year, 12, 31).isoformat()
    month = re.fullmatch(r"(end|start)_of:(\d{1,2})", spec)
    if month:
        number = int(month.group(2))
        year = today.year if _month_end(today.year, number) >= today else today.year + 1
        day = _month_end(year, number) if month.group(1) == "end" else dt.date(year, number, 1)
        return day.isoformat()
    raise ScenarioError(f"unknown date expression {expression!r}")


def _month_end(year: int, month: int) -> dt.date:
    first_of_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - dt.timedelta(days=1)


def resolve(value: Any, today: dt.date) -> Any:
    """The expected value with its date expressions resolved."""
    if isinstance(value, str) and value.startswith("$date:"):
        return resolve_date(value, today)
    if isinstance(value, dict):
        return {key: resolve(item, today) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, today) for item in value]
    return value


def fold(text: str) -> str:
    """Lower case, accents off, spaces collapsed: how expected and actual words are compared."""
    text = "".join(c for c in unicodedata.normalize("NFKD", str(text).casefold()) if not unicodedata.combining(c))
    return " ".join(text.split())


def value_matches(expected: Any, actual: Any, *, contains: bool = False) -> bool:
    if isinstance(expected, dict) and "any_of" in expected:
        return any(value_matches(option, actual, contains=contains) for option in expected["any_of"])
    if isinstance(expected, str) and expected.startswith("~"):
        return value_matches(expected[1:], actual, contains=True)
    if expected is None:
        return actual is None or actual == "" or actual == []
    if contains:
        return actual is not None and fold(expected) in fold(actual)
    if isinstance(expected, str) and isinstance(actual, str):
        return fold(expected) == fold(actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return expected == actual


def fields_mismatch(expected: dict, actual: dict, today: dt.date) -> list[str]:
    """What differs between the expected fields ("name", or "name~" for containment) and actual ones."""
    problems = []
    for key, wanted in expected.items():
        contains = key.endswith("~")
        name = key.rstrip("~")
        wanted = resolve(wanted, today)
        got = actual.get(name)
        if not value_matches(wanted, got, contains=contains):
            problems.append(f"{name}: expected {'~' if contains else ''}{json.dumps(wanted, ensure_ascii=False)}, "
                            f"got {json.dumps(got, ensure_ascii=False, default=str)}")
    return problems


def calls_mismatch(turn: dict, actual: list[dict], today: dt.date) -> list[str] | None:
    """Why the turn's actual tool calls differ from what it expects; None when it expects nothing."""
    if "calls" in turn:
        options = [turn["calls"]]
    elif "calls_any_of" in turn:
        options = turn["calls_any_of"]
    else:
        return None
    best: list[str] | None = None
    for option in options:
        problems = _calls_problems(option, actual, today)
        if not problems:
            return []
        best = problems if best is None or len(problems) < len(best) else best
    return best or []


def _calls_problems(expected: list[dict], actual: list[dict], today: dt.date) -> list[str]:
    names = [call.get("name") for call in actual]
    wanted = [call["name"] for call in expected]
    if names != wanted:
        return [f"calls: expected {wanted or 'none'}, got {names or 'none'}"]
    problems = []
    for want, got in zip(expected, actual, strict=True):
        arguments = got.get("arguments") if isinstance(got.get("arguments"), dict) else {}
        problems += [f"{want['name']}.{problem}" for problem in fields_mismatch(want.get("arguments", {}),
                                                                                 arguments, today)]
    return problems


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# --------------------------------------------------------------------------------------------
# The platform: environment, database, processes
# --------------------------------------------------------------------------------------------
def database_url(args) -> str:
    if args.database_url:
        return args.database_url
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        return DEFAULT_DB
    parts = urlsplit(base)
    name = parts.path.lstrip("/") or "whatsapp"
    return urlunsplit(parts._replace(path=f"/{name}_assistant_eval"))


def recreate_database(url: str, env: dict[str, str]) -> float:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    own = urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/")
    if not name or (own and name == own and parts.hostname == urlsplit(os.environ["DATABASE_URL"]).hostname):
        raise SystemExit(f"refusing to drop {name!r}: it is the database DATABASE_URL names; pick another name "
                         "with --database-url")
    flags = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    pg_env = {**os.environ, **({"PGPASSWORD": parts.password} if parts.password else {})}
    started = time.perf_counter()
    subprocess.run(["dropdb", *flags, "--if-exists", "--force", name], check=True, env=pg_env)
    subprocess.run(["createdb", *flags, name], check=True, env=pg_env)
    subprocess.run([str(ingest.VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR,
                   env=env, check=True)
    return time.perf_counter() - started


def platform_env(args, port: int, db_url: str, redis_url: str, var_dir: Path, ai: dict[str, str]) -> dict[str, str]:
    from cryptography.fernet import Fernet

    drop = ("DJANGO_", "GUNICORN_", "OPENAI_", "AI_", "GCS_", "CELERY_", "STORAGE_", "ASSISTANT_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    base_url = f"http://{ingest.HOST}:{port}"
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "PUBLIC_BASE_URL": base_url,
        "INTERNAL_BASE_URL": base_url,
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(var_dir),
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(var_dir / "archive"),
        "GUNICORN_BIND": f"{ingest.HOST}:{port}",
        "GUNICORN_CONTROL_SOCKET": str(var_dir / "gunicorn.ctl"),
        "WEB_CONCURRENCY": str(args.web_workers),
        # The simulated phone's receipts: quick, they only add status webhooks.
        "SANDBOX_STATUS_DELAY_SECONDS": "0.3",
        # Voice notes are fetched from this machine's own server.
        "MEDIA_ALLOW_PRIVATE_ADDRESSES": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
        **ai,
    })
    for name in ("ALLOWED_HOSTS", "DJANGO_HTTPS", "SECURE_SSL_REDIRECT", "STATIC_ROOT"):
        env.pop(name, None)
    (var_dir / "staticfiles").mkdir(parents=True, exist_ok=True)
    return env


def wait_worker(node: str, proc, timeout: float = 60) -> None:
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker {node} exited with code {proc.returncode} (see its log)")
        if app.control.ping(destination=[node], timeout=0.5):
            return
    raise RuntimeError(f"the worker {node} did not answer a ping in {timeout:.0f} s")


def start_platform(args, processes, env: dict[str, str], port: int, logs: Path) -> None:
    gunicorn = [str(ingest.VENV_BIN / "gunicorn"), "config.wsgi", "-c", "config/gunicorn.py",
                "--access-logfile", "/dev/null"]
    server = processes.start("gunicorn", gunicorn, env, logs / "gunicorn.log")
    suffix = f"{os.getpid()}@{socket.gethostname()}"
    workers = []
    for name, queue, concurrency in (("default", "celery", args.worker_concurrency),
                                     ("ai", "ai", args.ai_concurrency)):
        node = f"eval-{name}-{suffix}"
        cmd = [str(ingest.VENV_BIN / "celery"), "-A", "config", "worker", "-Q", queue, "-l", "WARNING", "-c",
               str(concurrency), "-n", node, "--without-gossip", "--without-mingle"]
        workers.append((node, processes.start(f"{name} worker", cmd, env, logs / f"{name}-worker.log")))
    ingest.wait_http(port, "/health/", time.monotonic() + 60, server)
    for node, proc in workers:
        wait_worker(node, proc)


# --------------------------------------------------------------------------------------------
# Providers, users and the phone
# --------------------------------------------------------------------------------------------
def providers_create() -> tuple[Any, Any]:
    from ai.models import ProviderAiSettings
    from assistant.models import AssistantPolicy
    from whatsapp.models import UnknownContactPolicy
    from whatsapp.services.providers import provider_create

    assistant = provider_create(kind="sandbox", name="Assistant evaluation", options={"phone_number": "+15550001000"})
    AssistantPolicy.objects.update_or_create(provider=assistant, defaults={"enabled": True, "preset": "minimal"})
    baseline = provider_create(kind="sandbox", name="Assistant evaluation baseline",
                               options={"phone_number": "+15550002000"})
    baseline.unknown_contact_policy = UnknownContactPolicy.REGISTRATION_REPLY
    baseline.registration_text = "Hi! This number answers registered users. Ask your administrator for access."
    baseline.save(update_fields=["unknown_contact_policy", "registration_text"])
    # The baseline is the platform without any model: no AI feature and no assistant on that number.
    ProviderAiSettings.objects.update_or_create(provider=baseline, defaults={
        "transcription_enabled": False, "classification_enabled": False, "suggestions_enabled": False,
        "summaries_enabled": False, "rollout_percent": 0})
    AssistantPolicy.objects.update_or_create(provider=baseline, defaults={"enabled": False})
    return assistant, baseline


@dataclass
class Person:
    user: Any
    contact: Any
    phone: str
    name: str
    zone: ZoneInfo

    def today(self) -> dt.date:
        return dt.datetime.now(self.zone).date()


def person_create(provider, scenario: dict, number: int) -> Person:
    from django.contrib.auth import get_user_model

    from assistant.models import AssistantProfile
    from contacts.services.identities import contact_resolve
    from contacts.services.mapping import contact_map_to_user
    from whatsapp.providers.events import Identity, IdentityKind

    spec = scenario["user"]
    name = spec.get("name", "Ana")
    phone = f"+1555{7000000 + number:07d}"
    user = get_user_model().objects.create_user(f"eval-{number:03d}-{scenario['id']}"[:150], first_name=name,
                                                password=secrets.token_urlsafe(16))
    preferences = {"time_zone": spec.get("time_zone", "UTC"), "notify_on_ready": bool(spec.get("notify_on_ready")),
                   "daily_summary": bool(spec.get("daily_summary")), "weekly_summary": bool(spec.get("weekly_summary")),
                   "reminders": bool(spec.get("reminders", True))}
    # Only the preferences the profile keeps (notify-on-ready lives on the contact mapping too).
    kept = {f.name for f in AssistantProfile._meta.concrete_fields}
    AssistantProfile.objects.update_or_create(user=user, defaults={k: v for k, v in preferences.items() if k in kept})
    contact = contact_resolve(provider=provider, identities=[Identity(IdentityKind.PHONE, phone)], profile_name=name)
    contact.language, contact.time_zone = spec.get("language", "en"), spec.get("time_zone", "")
    contact.save(update_fields=["language", "time_zone"])
    contact_map_to_user(contact=contact, user=user, actor=None, notify_on_ready=bool(spec.get("notify_on_ready")))
    return Person(user, contact, phone, name, ZoneInfo(spec.get("time_zone", "UTC")))


class Unsupported(Exception):
    """A turn the platform's simulated phone cannot send (yet)."""


class NoQuestion(Exception):
    """A tap with no waiting question offering the wanted button."""


def choices_of(tap: str | list[str]) -> list[str]:
    return tap if isinstance(tap, list) else [tap]


def inbound_request(provider, phone: str, name: str, *, text: str = "", content: dict | None = None,
                    reply_to: str = "", media=None) -> tuple[bytes, dict[str, str], str]:
    """The signed sandbox webhook for one inbound message: (body, headers, provider message id)."""
    from whatsapp.providers import backend_for
    from whatsapp.providers.events import MessageType

    backend = backend_for(provider)
    parameters = inspect.signature(backend.simulated_inbound).parameters
    if "message_type" in parameters:
        message_type = (MessageType.INTERACTIVE_REPLY if content else MessageType.AUDIO if media
                        else MessageType.TEXT)
        made = backend.simulated_inbound(from_phone=phone, name=name, message_type=message_type, text=text,
                                         media=media, content=content, reply_to_provider_message_id=reply_to)
    elif content or media:
        raise Unsupported("the sandbox phone sends only texts here (no taps or voice notes)")
    else:
        made = backend.simulated_inbound(from_phone=phone, name=name, text=text)
    body, headers = made[0], made[1]
    message_id = made[2] if len(made) > 2 else json.loads(body)["events"][0]["id"]
    return body, headers, message_id


def post_webhook(client, provider, body: bytes, headers: dict[str, str]) -> int | None:
    """POST the webhook over HTTP; the inbox row's id it was stored under (None when refused)."""
    from whatsapp.services.providers import provider_webhook_url

    response = client.post(provider_webhook_url(provider), content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"the webhook answered {response.status_code}: {response.text[:200]}")
    event = response.headers.get("X-Webhook-Event")
    if event is None:
        with contextlib.suppress(ValueError, AttributeError):
            event = response.json().get("event")
    return int(event) if event else None


def speak(text: str, language: str) -> bytes:
    """A WAV recording of the text by espeak-ng."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "voice.wav"
        subprocess.run(["espeak-ng", "-v", language or "en", "-s", "150", "-w", str(path), text], check=True,
                       capture_output=True)
        return path.read_bytes()


def wav_seconds(data: bytes) -> float:
    import io
    import wave

    with contextlib.suppress(Exception), wave.open(io.BytesIO(data)) as clip:
        return clip.getnframes() / float(clip.getframerate())
    return 1.0


# --------------------------------------------------------------------------------------------
# Playing a scenario
# --------------------------------------------------------------------------------------------
@dataclass
class TurnResult:
    number: int
    kind: str
    text: str
    status: str = "pending"  # done, skipped, timeout, error
    problems: list[str] = field(default_factory=list)
    calls_checked: bool = False
    calls_ok: bool = True
    tool_calls: list[dict] = field(default_factory=list)
    outcome: str = ""
    turn_status: str = ""
    turn_error: str = ""
    reply: str = ""  # "", "text", "interactive", ...
    reply_text: str = ""
    model_calls: int = 0
    model_expected: bool = True
    clarification: bool = False
    latency_ms: float | None = None
    model_ms: float | None = None
    platform_ms: float | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class ScenarioResult:
    id: str
    file: str
    title: str
    tags: list[str]
    turns: list[TurnResult] = field(default_factory=list)
    status: str = "pending"  # completed, failed, skipped, error
    note: str = ""
    cost: float = 0.0
    cost_by_feature: dict[str, float] = field(default_factory=dict)
    ai_calls: int = 0
    clarifications: int = 0
    turns_sent: int = 0
    contact_id: int | None = None


class Runner:
    def __init__(self, args, provider, fake):
        import httpx

        self.args, self.provider, self.fake = args, provider, fake
        self.client = httpx.Client(timeout=30)
        self.voice = not args.no_voice and shutil.which("espeak-ng") is not None
        self.lock = threading.Lock()
        self.turns_seen = 0
        self.no_turn_streak = 0
        self.abort_reason = ""

    # one scenario ------------------------------------------------------------------------------
    def play(self, scenario: dict, number: int) -> ScenarioResult:
        from django.db import close_old_connections

        result = ScenarioResult(scenario["id"], scenario["file"], scenario.get("title", ""), scenario["tags"])
        try:
            if any("voice" in turn for turn in scenario["turns"]) and not self.voice:
                result.status = "skipped"
                result.note = "voice turns: --no-voice" if self.args.no_voice else "voice turns: espeak-ng missing"
                return result
            person = person_create(self.provider, scenario, number)
            result.contact_id = person.contact.pk
            for index, turn in enumerate(scenario["turns"], 1):
                if self.abort_reason:
                    result.status, result.note = "skipped", self.abort_reason
                    return result
                outcome = self.turn(person, turn, index)
                result.turns.append(outcome)
                if outcome.status == "error" and outcome.note.startswith("unsupported"):
                    result.status, result.note = "skipped", outcome.note
                    break
            result.clarifications = sum(1 for turn in result.turns if turn.clarification)
            result.turns_sent = sum(1 for turn in result.turns if turn.status != "skipped")
        except Exception as exc:  # noqa: BLE001  (a broken scenario must not stop the others)
            result.status, result.note = "error", f"{type(exc).__name__}: {exc}"
        finally:
            close_old_connections()
        if result.status == "pending":
            bad = [t for t in result.turns if t.status not in ("done", "skipped") or t.problems]
            result.status = "failed" if bad else "completed"
        return result

    def costs(self, results: list[ScenarioResult]) -> None:
        """Each conversation's AI calls and their cost, once the classifications the AI worker makes in the
        background (a second or so after each message) are all in."""
        from django.db.models import Q, Sum

        from ai.models import AiCall, MessageInsight
        from whatsapp.models import Conversation

        deadline = time.monotonic() + self.args.turn_timeout
        unfinished = MessageInsight.objects.filter(message__provider=self.provider,
                                                   classification_status__in=["", "pending"])
        while unfinished.exists() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        for result in results:
            conversation = Conversation.objects.filter(provider=self.provider, contact_id=result.contact_id).first()
            if conversation is None:
                continue
            calls = AiCall.objects.filter(Q(conversation=conversation) | Q(message__conversation=conversation))
            rows = calls.values("feature").annotate(cost=Sum("cost"))
            result.cost_by_feature = {row["feature"]: float(row["cost"] or 0) for row in rows}
            result.cost = sum(result.cost_by_feature.values())
            result.ai_calls = calls.count()

    # one turn -------------------------------------------------------------------------------------
    def turn(self, person: Person, turn: dict, number: int) -> TurnResult:
        kind = next(kind for kind in TURN_KINDS if kind in turn)
        result = TurnResult(number, kind, turn_text(turn))
        today = person.today()
        result.model_expected = kind != "tap" and turn.get("model") is not False
        try:
            body, headers, message_id = self.message_for(person, turn, kind, result)
        except Unsupported as exc:
            result.status, result.note = "error", f"unsupported: {exc}"
            return result
        except NoQuestion as exc:
            result.status = "error"
            result.calls_checked, result.calls_ok = True, False
            result.problems.append(str(exc))
            return result
        if result.status == "skipped":
            return result
        event_id = post_webhook(self.client, self.provider, body, headers)
        reply_id = self.wait(person, turn, result, message_id, event_id, today)
        settle(self.args.redis_url, reply_id, self.args.turn_timeout)
        return result

    def message_for(self, person: Person, turn: dict, kind: str, result: TurnResult):
        if kind == "say":
            return inbound_request(self.provider, person.phone, person.name, text=turn["say"])
        if kind == "voice":
            from whatsapp.services import providers as provider_services

            keep = getattr(provider_services, "provider_simulated_file_keep", None)
            if keep is None:
                raise Unsupported("the sandbox phone cannot send voice notes here")
            audio = speak(turn["voice"], turn.get("language", "en"))
            if self.fake is not None:
                self.fake.add_transcript(audio, turn["voice"], wav_seconds(audio))
            media = keep(self.provider, provider_services.SimulatedFile(audio, "voice-note.wav"))
            return inbound_request(self.provider, person.phone, person.name, media=media)
        offer, choice = self.choice_for(person, turn["tap"])
        if offer is None:
            if turn.get("optional"):
                result.status, result.note = "skipped", "no question waiting"
                return None, None, None
            raise NoQuestion(f"no question offering {' or '.join(choices_of(turn['tap']))} is waiting")
        content = {"kind": "button_reply" if offer.content.get("buttons") else "list_reply", **choice}
        return inbound_request(self.provider, person.phone, person.name, content=content,
                               reply_to=offer.provider_message_id)

    def choice_for(self, person: Person, wanted) -> tuple[Any, dict | None]:
        """The last question sent to the person (an interactive message that reached the phone) and the first
        of the wanted titles it offers; (None, None) when no waiting question offers any of them."""
        from assistant.models import ConversationState
        from whatsapp.models import Message
        from whatsapp.providers.events import MessageType

        offer = (Message.objects.filter(conversation__contact=person.contact, direction=Message.Direction.OUTBOUND,
                                        message_type=MessageType.INTERACTIVE, provider_message_id__isnull=False)
                 .order_by("-created_at").first())
        state = ConversationState.objects.filter(conversation__contact=person.contact).first()
        if offer is None or state is None or not state.pending:
            return None, None
        choices = [c for c in offer.content.get("buttons") or [] if isinstance(c, dict)]
        for section in offer.content.get("sections") or []:
            choices += [row for row in section.get("rows") or [] if isinstance(row, dict)]
        for title in choices_of(wanted):
            for choice in choices:
                if fold(title) == fold(choice.get("title", "")):
                    return offer, {"id": str(choice["id"]), "title": str(choice["title"])}
        for title in choices_of(wanted):
            for choice in choices:
                if fold(title) in fold(choice.get("title", "")):
                    return offer, {"id": str(choice["id"]), "title": str(choice["title"])}
        return None, None

    # waiting and judging ------------------------------------------------------------------------
    def wait(self, person: Person, turn: dict, result: TurnResult, message_id: str, event_id: int | None,
             today: dt.date) -> int | None:
        """Wait for the turn and its reply's provider call, then judge it; the reply's id, if any."""
        from assistant.models import Turn
        from whatsapp.models import Message, SendAttempt, WebhookEvent

        deadline = time.monotonic() + self.args.turn_timeout
        message = record = attempt = None
        while time.monotonic() < deadline:
            message = message or Message.objects.filter(provider=self.provider,
                                                        provider_message_id=message_id).first()
            if message is not None:
                record = Turn.objects.filter(message=message).first()
                if record is not None and record.status not in (Turn.Status.QUEUED, Turn.Status.WAITING):
                    if record.reply_id is None:
                        break
                    attempt = SendAttempt.objects.filter(message_id=record.reply_id).order_by("started_at").first()
                    if attempt is not None:
                        break
            time.sleep(POLL_SECONDS)
        with self.lock:
            self.note_turn_seen(record is not None)
        if message is None:
            result.status, result.note = "timeout", "the message was never stored (is the default worker running?)"
            return
        if record is None:
            result.status = "timeout"
            result.note = (f"no assistant turn after {self.args.turn_timeout:.0f} s (is the assistant engine in "
                           "place? see assistant/services/engine.py)")
            return
        result.turn_status, result.outcome, result.turn_error = record.status, record.outcome, record.error
        result.tool_calls = [{"name": call.get("name"), "arguments": call.get("arguments"), "ok": call.get("ok")}
                             for call in record.tool_calls or [] if isinstance(call, dict)]
        if record.status in (Turn.Status.QUEUED, Turn.Status.WAITING):
            result.status = "timeout"
            result.note = f"the turn is still {record.status}" + (f": {record.error}" if record.error else "")
            return
        if record.reply_id is not None and attempt is None:
            result.status, result.note = "timeout", "the reply was never handed to the provider"
            return
        result.status = "done"
        self.measure(result, message, record, attempt, event_id, WebhookEvent)
        self.judge(person, turn, result, message, record, today)
        return record.reply_id

    def note_turn_seen(self, seen: bool) -> None:
        if seen:
            self.turns_seen += 1
            self.no_turn_streak = 0
            return
        self.no_turn_streak += 1
        if not self.turns_seen and self.no_turn_streak >= NO_TURN_ABORT and not self.args.keep_going:
            self.abort_reason = (f"the platform opened no assistant turn for the first {self.no_turn_streak} "
                                 f"messages: {engine_state()}")

    def measure(self, result: TurnResult, message, record, attempt, event_id, webhook_model) -> None:
        from ai.models import AiCall
        from whatsapp.models import Message

        calls = AiCall.objects.filter(message=message)
        result.model_calls = calls.filter(feature="assistant").count()
        if record.reply_id is None or attempt is None:
            return
        reply = Message.objects.get(pk=record.reply_id)
        result.reply, result.reply_text = reply.message_type, (reply.text or "")[:300]
        event = webhook_model.objects.filter(pk=event_id).first() if event_id else None
        if event is None:
            return
        result.latency_ms = (attempt.started_at - event.received_at).total_seconds() * 1000
        # The model's part of the path: the turn's own calls; for a voice note also the transcript and the
        # classification it waited for. A text's classification runs beside the turn, not before it.
        features = ["assistant", "drafting"] + (["transcription", "classification"] if message.message_type in (
            "audio", "video") else [])
        model = list(calls.filter(feature__in=features, created_at__lte=attempt.started_at).order_by("created_at"))
        result.model_ms = float(sum(call.latency_ms for call in model))
        result.platform_ms = result.latency_ms - result.model_ms
        result.stages_ms = stages(event.received_at, message.created_at, record, model, attempt.started_at)

    def judge(self, person: Person, turn: dict, result: TurnResult, message, record, today: dt.date) -> None:
        from assistant.models import ConversationState

        problems = result.problems
        mismatch = calls_mismatch(turn, result.tool_calls, today)
        expects_no_model = turn.get("model") is False or ("tap" in turn and turn.get("model") is not True)
        if mismatch is not None or expects_no_model:
            result.calls_checked = True
            if mismatch:
                problems += mismatch
            if expects_no_model and result.model_calls:
                problems.append(f"expected no model call, got {result.model_calls}")
            result.calls_ok = not mismatch and not (expects_no_model and result.model_calls)
        if "outcome" in turn:
            wanted = turn["outcome"] if isinstance(turn["outcome"], list) else [turn["outcome"]]
            if record.outcome not in wanted:
                problems.append(f"outcome: expected {' or '.join(wanted)}, got {record.outcome or '-'}"
                                + (f" ({record.error})" if record.error else ""))
        if "reply" in turn and bool(record.reply_id) != turn["reply"]:
            problems.append(f"reply: expected {'one' if turn['reply'] else 'none'}, got "
                            f"{result.reply or 'none'}" + (f" {result.reply_text[:80]!r}" if result.reply_text else ""))
        state = ConversationState.objects.filter(conversation=message.conversation).first()
        waiting = bool(state and state.pending)
        result.clarification = record.outcome == "content_clarify" or result.reply == "interactive"
        if "question" in turn and (waiting and bool(record.reply_id)) != turn["question"]:
            problems.append(f"question: expected {'one waiting' if turn['question'] else 'none'}, got "
                            f"{'one' if waiting else 'none'} waiting, reply {result.reply or 'none'}")
        if turn.get("draft"):
            problems += self.wait_draft(person, turn)
        for model, expected in (turn.get("check") or {}).items():
            problems += check_rows(person, model, expected, today)

    def wait_draft(self, person: Person, turn: dict) -> list[str]:
        from assistant.models import ContentRequest
        from whatsapp.models import Message

        deadline = time.monotonic() + self.args.turn_timeout
        request = None
        while time.monotonic() < deadline:
            request = ContentRequest.objects.filter(owner=person.user).order_by("-pk").first()
            if request is not None and request.status in (ContentRequest.Status.READY, ContentRequest.Status.FAILED,
                                                          ContentRequest.Status.DONE):
                break
            time.sleep(POLL_SECONDS)
        if request is None:
            return ["draft: no content request was made"]
        if request.status not in (turn["draft"], ContentRequest.Status.DONE):
            return [f"draft: expected {turn['draft']}, got {request.status}" + (f" ({request.error})"
                                                                                   if request.error else "")]
        if "notice" not in turn or request.drafted_at is None:
            return []
        notices = Message.objects.filter(conversation__contact=person.contact, direction=Message.Direction.OUTBOUND,
                                         purpose=Message.Purpose.ASSISTANT, created_at__gte=request.drafted_at)
        # The notice follows the draft within the same task: give it a moment either way.
        grace = time.monotonic() + (3.0 if turn["notice"] else 1.0)
        while time.monotonic() < grace and not notices.exists():
            time.sleep(POLL_SECONDS)
        if notices.exists() != turn["notice"]:
            return [f"ready notice: expected {'one' if turn['notice'] else 'none'}, got "
                    f"{'one' if notices.exists() else 'none'}"]
        return []


STAGES = ("inbox -> message", "message -> model call", "model", "model -> turn done",
          "message -> turn done (no model call)", "turn done -> send")


def stages(received, stored, record, model_calls: list, send_started) -> dict[str, float]:
    """Where a reply's time went: the webhook stored as a message, the turn picked up until its first model
    call began, the model, the rest of the turn, and the reply's way to the provider call. A call's row is
    written when it ends, so it began latency_ms before."""

    def ms(start, end):
        return round((end - start).total_seconds() * 1000, 1)

    result = {STAGES[0]: ms(received, stored)}
    finished = record.finished_at or send_started
    if model_calls:
        first = model_calls[0].created_at - dt.timedelta(milliseconds=model_calls[0].latency_ms)
        result[STAGES[1]] = ms(stored, first)
        result[STAGES[2]] = float(sum(call.latency_ms for call in model_calls))
        result[STAGES[3]] = ms(model_calls[-1].created_at, finished)
    else:
        result[STAGES[4]] = ms(stored, finished)
    result[STAGES[5]] = ms(finished, send_started)
    return result


def own_cpu_seconds(processes) -> float:
    """CPU seconds of everything the evaluation runs: its process groups, itself, PostgreSQL and Redis (which
    other users of the same servers add to)."""
    groups = sum(ingest.group_cpu_seconds(proc.pid) for _name, proc in processes.started)
    return (groups + time.process_time() + ingest.command_cpu_seconds("postgres")
            + ingest.command_cpu_seconds("redis-server"))


def settle(redis_url: str, reply_id: int | None, timeout: float) -> None:
    """Before the next message: wait until the reply's receipts came back (the simulated phone reports sent,
    delivered and read a moment apart, each a webhook of its own) and both queues are empty, so that every
    message meets an idle platform, as a person's next message usually does. Not part of any figure."""
    import redis

    from whatsapp.models import Message

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + min(timeout, 10.0)
    while time.monotonic() < deadline:
        read = reply_id is None or Message.objects.filter(pk=reply_id, status__in=["read", "failed"]).exists()
        queued = sum(client.llen(name) for name in ("celery", "ai"))
        if read and not queued:
            return
        time.sleep(POLL_SECONDS)


def row_values(row) -> dict[str, Any]:
    """A model row's fields as plain values: dates as YYYY-MM-DD, times as HH:MM, relations by their name."""
    values = {}
    for model_field in row._meta.concrete_fields:
        value = getattr(row, model_field.name)
        if model_field.is_relation:
            value = str(value) if value is not None else None
        elif isinstance(value, dt.date):  # and datetimes
            value = value.isoformat()
        elif isinstance(value, dt.time):
            value = value.strftime("%H:%M")
        elif isinstance(value, str) and re.fullmatch(r"\d{2}:\d{2}:\d{2}", value):
            value = value[:5]
        values[model_field.name] = value
    return values


def check_rows(person: Person, model: str, expected: dict, today: dt.date) -> list[str]:
    from assistant import models

    expected = dict(expected)
    where = expected.pop("where", None)
    if model == "profile":
        rows = list(models.AssistantProfile.objects.filter(user=person.user))
    else:
        kind = {"task": models.Task, "note": models.Note, "project": models.Project, "goal": models.Goal,
                "content_request": models.ContentRequest, "reminder": models.Reminder}[model]
        rows = list(kind.objects.filter(owner=person.user).order_by("-pk"))
    values = [row_values(row) for row in rows]
    if where:
        values = [value for value in values if not fields_mismatch(where, value, today)]
    if not values:
        return [f"{model}: none found" + (f" where {json.dumps(where, ensure_ascii=False)}" if where else "")]
    problems = fields_mismatch(expected, values[0], today)
    return [f"{model}.{problem}" for problem in problems]


def engine_state() -> str:
    """Why no turn may have been opened, as far as the code tells."""
    try:
        from assistant.services import engine

        source = inspect.getsource(engine.turn_run)
    except (ImportError, AttributeError, OSError) as exc:
        return f"the assistant engine cannot be read ({exc})"
    body = [line.strip() for line in source.splitlines()[1:] if line.strip() and not line.strip().startswith("#")]
    if body in (["pass"], ["..."], ["return None"], ["return"]):
        return "the assistant engine is not in place yet (assistant.services.engine.turn_run is a stub)"
    return ("no Turn rows appeared: check that AI is configured (OPENAI_API_KEY) and the intake hook opens turns "
            "(assistant/services/intake.py)")


# --------------------------------------------------------------------------------------------
# Baseline: a plain platform reply, no model
# --------------------------------------------------------------------------------------------
def baseline_samples(client, provider, first: int, count: int, timeout: float,
                     redis_url: str) -> tuple[list[float], list[str]]:
    from whatsapp.models import Message, SendAttempt, WebhookEvent

    latencies, problems = [], []
    for number in range(first, first + count):
        phone = f"+1555{8000000 + number:07d}"
        body, headers, message_id = inbound_request(provider, phone, f"Visitor {number}", text="hello")
        event_id = post_webhook(client, provider, body, headers)
        deadline = time.monotonic() + timeout
        attempt = None
        while time.monotonic() < deadline:
            reply = (Message.objects.filter(provider=provider, direction=Message.Direction.OUTBOUND,
                                            purpose=Message.Purpose.REGISTRATION,
                                            conversation__contact__identities__value=phone).first())
            if reply is not None:
                attempt = SendAttempt.objects.filter(message=reply).order_by("started_at").first()
                if attempt is not None:
                    break
            time.sleep(POLL_SECONDS)
        settle(redis_url, attempt.message_id if attempt else None, timeout)
        event = WebhookEvent.objects.filter(pk=event_id).first() if event_id else None
        if attempt is None or event is None:
            problems.append(f"{message_id}: no registration reply sent in {timeout:.0f} s")
            continue
        latencies.append((attempt.started_at - event.received_at).total_seconds() * 1000)
    return latencies, problems


# --------------------------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------------------------
def summarize(results: list[ScenarioResult], baseline: list[float], baseline_problems: list[str]) -> dict:
    played = [r for r in results if r.status in ("completed", "failed")]
    turns = [t for r in played for t in r.turns if t.status != "skipped"]
    checked = [t for t in turns if t.calls_checked]
    model_turns = [t for t in checked if t.model_expected]
    completed = [r for r in played if r.status == "completed"]
    latencies = [t.latency_ms for t in turns if t.latency_ms is not None]
    shares = [t.platform_ms for t in turns if t.platform_ms is not None]
    costs = [r.cost for r in played]
    share_p95 = percentile(shares, 0.95)

    def ms(values, q):
        value = percentile(values, q)
        return None if value is None else round(value, 1)

    return {
        "scenarios": len(results), "played": len(played), "completed": len(completed),
        "skipped": [{"id": r.id, "why": r.note} for r in results if r.status == "skipped"],
        "errors": [{"id": r.id, "why": r.note} for r in results if r.status == "error"],
        "completion_rate": len(completed) / len(played) if played else None,
        "turns": len(turns), "turns_timed_out": sum(1 for t in turns if t.status == "timeout"),
        "tool_call_accuracy": sum(t.calls_ok for t in checked) / len(checked) if checked else None,
        "tool_call_turns": len(checked), "tool_call_matches": sum(t.calls_ok for t in checked),
        "model_turn_accuracy": (sum(t.calls_ok for t in model_turns) / len(model_turns)) if model_turns else None,
        "turns_to_completion_mean": (sum(r.turns_sent for r in completed) / len(completed)) if completed else None,
        "clarifications": sum(r.clarifications for r in played),
        "clarifications_by_scenario": {r.id: r.clarifications for r in played if r.clarifications},
        "cost_per_conversation_mean": (sum(costs) / len(costs)) if costs else None,
        "cost_per_conversation_max": max(costs) if costs else None,
        "assistant_cost_per_conversation_mean": (sum(r.cost_by_feature.get("assistant", 0)
                                                     + r.cost_by_feature.get("drafting", 0) for r in played)
                                                 / len(played)) if played else None,
        "cost_total": sum(costs),
        "cost_by_feature": _sum_features(played),
        "replies_timed": len(latencies),
        "stages_p50_ms": {name: ms([t.stages_ms[name] for t in turns if name in t.stages_ms], 0.5)
                          for name in STAGES},
        "latency_ms": {"p50": ms(latencies, 0.5), "p95": ms(latencies, 0.95)},
        "platform_share_ms": {"p50": ms(shares, 0.5), "p95": ms(shares, 0.95)},
        "platform_share_goal_ms": GOAL_PLATFORM_P95_MS,
        "platform_share_goal_met": share_p95 is not None and share_p95 < GOAL_PLATFORM_P95_MS,
        "baseline_ms": {"p50": ms(baseline, 0.5), "p95": ms(baseline, 0.95), "samples": len(baseline),
                        "problems": baseline_problems},
    }


def _sum_features(results: list[ScenarioResult]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for result in results:
        for feature, cost in result.cost_by_feature.items():
            totals[feature] = totals.get(feature, 0.0) + cost
    return totals


def fmt_ms(value) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def fmt_share(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_scenario(result: ScenarioResult, out) -> None:
    mark = {"completed": "ok  ", "failed": "FAIL", "skipped": "skip", "error": "ERR "}.get(result.status, "?   ")
    extra = f"  {result.note}" if result.note else ""
    print(f"{mark} {result.id:<34} turns {result.turns_sent:>2}  clarifications {result.clarifications}{extra}",
          file=out, flush=True)
    for turn in result.turns:
        if turn.status == "done" and not turn.problems:
            continue
        calls = ", ".join(f"{c['name']}({json.dumps(c['arguments'], ensure_ascii=False)[:120]})"
                          for c in turn.tool_calls) or "no calls"
        print(f"       turn {turn.number} {turn.text[:60]!r}: {turn.status}; {turn.outcome or '-'}; {calls}",
              file=out)
        for problem in turn.problems + ([turn.note] if turn.note else []):
            print(f"         - {problem}", file=out)


def print_summary(summary: dict, args, out) -> None:
    latency, share, base = summary["latency_ms"], summary["platform_share_ms"], summary["baseline_ms"]
    print(file=out)
    print(f"Assistant evaluation: {summary['played']} scenarios played of {summary['scenarios']} "
          f"({len(summary['skipped'])} skipped, {len(summary['errors'])} errors), {summary['turns']} turns, "
          f"model {args.model_label}", file=out)
    rows = [
        ("tool-call accuracy (turns whose calls match / turns)",
         f"{summary['tool_call_matches']}/{summary['tool_call_turns']} = {fmt_share(summary['tool_call_accuracy'])}"),
        ("  of which model turns (texts, voice notes)", fmt_share(summary["model_turn_accuracy"])),
        ("scenario completion rate", f"{summary['completed']}/{summary['played']} = "
                                     f"{fmt_share(summary['completion_rate'])}"),
        ("turns to completion (mean, completed scenarios)",
         "-" if summary["turns_to_completion_mean"] is None else f"{summary['turns_to_completion_mean']:.2f}"),
        ("clarifications asked", f"{summary['clarifications']} in "
                                 f"{len(summary['clarifications_by_scenario'])} scenarios"),
        ("cost per conversation (mean / max)", "-" if summary["cost_per_conversation_mean"] is None
         else f"${summary['cost_per_conversation_mean']:.6f} / ${summary['cost_per_conversation_max']:.6f}; "
              f"assistant and drafting alone ${summary['assistant_cost_per_conversation_mean']:.6f} (total "
              f"${summary['cost_total']:.6f}: "
              + ", ".join(f"{k} ${v:.6f}" for k, v in sorted(summary["cost_by_feature"].items())) + ")"),
        (f"webhook -> reply send, p50 / p95 ({summary['replies_timed']} replies)",
         f"{fmt_ms(latency['p50'])} / {fmt_ms(latency['p95'])}"),
        ("platform share (minus model time), p50 / p95",
         f"{fmt_ms(share['p50'])} / {fmt_ms(share['p95'])}   goal: platform share p95 < "
         f"{GOAL_PLATFORM_P95_MS:.0f} ms  " + ("no reply timed" if share["p95"] is None
                                               else "met" if summary["platform_share_goal_met"] else "MISSED")),
        (f"baseline: unmapped contact -> registration reply, p50 / p95 ({base['samples']} samples)",
         f"{fmt_ms(base['p50'])} / {fmt_ms(base['p95'])}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}", file=out)
    print("where a reply's time goes (p50 of each stage): " + ", ".join(
        f"{name} {fmt_ms(value)}" for name, value in summary["stages_p50_ms"].items()), file=out)
    if summary.get("machine"):
        machine = summary["machine"]
        print(f"machine: {machine['busy']:.0%} of {machine['cores']} cores busy during the scenarios, other "
              f"processes {machine['other_cores']:.0%} of a core"
              + ("  (other work was running: the latency figures are disturbed)" if machine["disturbed"] else ""),
              file=out)
    if summary["clarifications_by_scenario"]:
        print("clarifications per scenario: " + ", ".join(
            f"{key} {value}" for key, value in summary["clarifications_by_scenario"].items()), file=out)
    for item in summary["skipped"]:
        print(f"skipped {item['id']}: {item['why']}", file=out)
    for item in summary["errors"]:
        print(f"error in {item['id']}: {item['why']}", file=out)
    if summary["turns_timed_out"]:
        print(f"{summary['turns_timed_out']} turns timed out (limit {args.turn_timeout:.0f} s)", file=out)
    for problem in base["problems"][:5]:
        print(f"baseline: {problem}", file=out)


# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake", action="store_true",
                        help="use the local fake OpenAI server (tests/fake_openai.py) instead of OPENAI_BASE_URL")
    parser.add_argument("--fake-latency", type=float, default=0.0, metavar="SECONDS",
                        help="with --fake: seconds the fake takes per answer (default 0)")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", ""),
                        help="the OpenAI-compatible endpoint (default: OPENAI_BASE_URL, else OpenAI's)")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", ""), help="default: OPENAI_API_KEY")
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL", ""), help="default: OPENAI_MODEL")
    parser.add_argument("--transcription-model", default=os.environ.get("OPENAI_TRANSCRIPTION_MODEL", ""),
                        help="default: OPENAI_TRANSCRIPTION_MODEL (the platform's default when unset)")
    parser.add_argument("--scenarios", default="",
                        help="comma-separated scenario ids, file names or tags; shell patterns allowed "
                             "(e.g. 'content-*,spanish')")
    parser.add_argument("--list", action="store_true", help="list the selected scenarios and exit")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout (progress on stderr)")
    parser.add_argument("--turn-timeout", type=float, default=20.0,
                        help="seconds to wait for one turn (and for a draft) before giving up (default 20)")
    parser.add_argument("--baseline", type=int, default=20, help="baseline messages, half before and half after "
                                                                 "the scenarios (default 20, 0 = none)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="scenarios played at once (default 1: the latency figures are for one at a time)")
    parser.add_argument("--no-voice", action="store_true", help="skip the voice-note scenarios")
    parser.add_argument("--keep-going", action="store_true",
                        help="play every scenario even when no turn appears for the first messages")
    parser.add_argument("--database-url", default=os.environ.get("ASSISTANT_EVAL_DATABASE_URL", ""),
                        help="the database to DROP and recreate (default: DATABASE_URL's name + _assistant_eval)")
    parser.add_argument("--redis-url", default=os.environ.get("ASSISTANT_EVAL_REDIS_URL", "")
                        or os.environ.get("REDIS_URL", "") or DEFAULT_REDIS,
                        help=f"the Redis database to FLUSH and use (default: REDIS_URL, else {DEFAULT_REDIS})")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="default-queue worker processes (2)")
    parser.add_argument("--ai-concurrency", type=int, default=2, help="`ai` queue worker processes (default 2)")
    args = parser.parse_args(argv)
    if args.parallel < 1 or args.turn_timeout <= 0 or args.baseline < 0:
        parser.error("--parallel must be positive, --turn-timeout positive, --baseline not negative")
    if not args.fake and not args.list and not args.api_key:
        parser.error("set OPENAI_API_KEY (or --api-key) for a real endpoint, or use --fake")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = sys.stderr if args.json else sys.stdout
    try:
        scenarios = load_scenarios(SCENARIO_DIR, args.scenarios)
    except ScenarioError as exc:
        print(f"bad scenario: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for scenario in scenarios:
            print(f"{scenario['file']:<16} {scenario['id']:<34} {len(scenario['turns'])} turns  "
                  f"{', '.join(scenario['tags'])}")
        return 0
    if not scenarios:
        print(f"no scenario matches {args.scenarios!r}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, ingest._sigterm)
    processes = ingest.Processes()
    fake = None
    try:
        if args.fake:
            from tests.fake_openai import FakeOpenAI

            fake = FakeOpenAI().start()
            fake.latency = args.fake_latency
            ai = {"OPENAI_API_KEY": "eval-fake-key", "OPENAI_BASE_URL": fake.url, "OPENAI_MODEL": FAKE_MODEL,
                  "OPENAI_TRANSCRIPTION_MODEL": "whisper-1"}
            args.model_label = f"{FAKE_MODEL} (local fake at {fake.url})"
        else:
            ai = {"OPENAI_API_KEY": args.api_key}
            if args.base_url:
                ai["OPENAI_BASE_URL"] = args.base_url
            if args.model:
                ai["OPENAI_MODEL"] = args.model
            if args.transcription_model:
                ai["OPENAI_TRANSCRIPTION_MODEL"] = args.transcription_model
            args.model_label = f"{args.model or '(the platform default)'} at {args.base_url or 'OpenAI'}"
        port = ingest.free_port()
        var_dir = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var") / "bench" / "assistant_eval"
        var_dir.mkdir(parents=True, exist_ok=True)
        for stale in var_dir.glob("*.log"):
            stale.unlink()
        db_url = database_url(args)
        env = platform_env(args, port, db_url, args.redis_url, var_dir, ai)
        print(f"Preparing {urlsplit(db_url).path.lstrip('/')} (drop, create, migrate), flushing "
              f"{args.redis_url} ...", file=out, flush=True)
        seconds = recreate_database(db_url, env)
        ingest.flush_redis(args.redis_url)
        ingest.setup_django(env)
        provider, baseline_provider = providers_create()
        print(f"  migrated in {seconds:.1f} s; starting gunicorn on port {port}, a default-queue and an `ai` "
              f"worker; model {args.model_label}", file=out, flush=True)
        start_platform(args, processes, env, port, var_dir)
        runner = Runner(args, provider, fake)
        # Uncounted: the first requests of each process pay for imports, connections and caches.
        baseline_samples(runner.client, baseline_provider, 100000, 2, args.turn_timeout, args.redis_url)
        runner.play({"id": "warm-up", "file": "-", "tags": [], "user": {"time_zone": "UTC"},
                     "turns": [{"say": "hi"}, {"say": "what's due today?"}]}, 0)
        before = args.baseline // 2
        baseline, baseline_problems = baseline_samples(runner.client, baseline_provider, 0, before,
                                                       args.turn_timeout, args.redis_url)
        print(f"Playing {len(scenarios)} scenarios ...", file=out, flush=True)
        busy0, total0 = ingest.system_busy()
        own0, started = own_cpu_seconds(processes), time.monotonic()
        results = play_all(runner, scenarios, out)
        own1, elapsed = own_cpu_seconds(processes), time.monotonic() - started
        busy1, total1 = ingest.system_busy()
        after, after_problems = baseline_samples(runner.client, baseline_provider, before,
                                                 args.baseline - before, args.turn_timeout, args.redis_url)
        baseline += after
        baseline_problems += after_problems
        runner.costs(results)
        summary = summarize(results, baseline, baseline_problems)
        busy, cores = (busy1 - busy0) / max(total1 - total0, 1), os.cpu_count() or 1
        other = max(busy * cores - (own1 - own0) / max(elapsed, 1e-9), 0.0)
        summary["machine"] = {"busy": busy, "cores": cores, "other_cores": other, "disturbed": other > 0.3}
        if runner.abort_reason:
            summary["aborted"] = runner.abort_reason
        print_summary(summary, args, out)
        if runner.abort_reason:
            print(f"\nSTOPPED EARLY: {runner.abort_reason}", file=out)
        if fake is not None and fake.exceptions:
            print(f"the fake OpenAI server failed {len(fake.exceptions)} times, first: {fake.exceptions[0]!r}",
                  file=out)
        print(f"\nLogs: {var_dir}/gunicorn.log, default-worker.log, ai-worker.log", file=out)
        if args.json:
            json.dump({"model": args.model_label, "summary": summary,
                       "scenarios": [asdict(result) for result in results]},
                      sys.stdout, indent=2, ensure_ascii=False, default=_json_default)
            print()
        return 1 if runner.abort_reason else 0
    finally:
        processes.stop_all()
        if fake is not None:
            fake.close()


def play_all(runner: Runner, scenarios: list[dict], out) -> list[ScenarioResult]:
    from concurrent.futures import ThreadPoolExecutor

    results: list[ScenarioResult | None] = [None] * len(scenarios)
    with ThreadPoolExecutor(max_workers=runner.args.parallel) as pool:
        futures = {pool.submit(runner.play, scenario, number): number
                   for number, scenario in enumerate(scenarios, 1)}
        for future in futures:
            number = futures[future]
            results[number - 1] = future.result()
            print_scenario(results[number - 1], out)
    return [result for result in results if result is not None]


def _json_default(value):
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
