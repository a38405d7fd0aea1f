"""
Analytics benchmark: the counts' full rebuild, one hour's squash, the dashboard and the figures API on a
database of 1,000,000 messages, and what the count triggers add to the inbound and send paths.

    .venv/bin/python bench/analytics.py [--fresh] [--messages 1000000] [--contacts 100000] [--days 60]
                                        [--providers 3] [--repeat 5] [--parts rebuild,squash,figures,overhead]

1. Data, generated once and kept: the database `wa_bench_analytics_data` is filled with set-based SQL
   (INSERT ... SELECT generate_series) with every trigger off (`session_replication_role = replica`, for the
   loading connection only): --contacts contacts with a phone identity and one conversation each, spread over
   --providers sandbox providers (60/30/10 %), --messages messages over the last --days days with a daily
   rhythm (busiest at noon UTC, about nine times the night's rate), half inbound and half outbound; the
   outbound with their sent, delivered, read or failed times (four error codes, a few dead letters), 15 % of
   them sent with one of three templates per provider, the replies with their response times; intents,
   sentiments and an AI call on 40 % of the inbound; sessions, opt-outs and the template replies the
   triggers would have credited; then the counts rebuilt, VACUUM and ANALYZE. A later run reuses it while
   its parameters, its message count and the project's migrations match (--fresh makes it again).
2. Each run measures a copy of it, `wa_bench_analytics` (CREATE DATABASE ... TEMPLATE, a file copy, kept
   afterwards), so the writes of a run never reach the kept data. Redis db 13 (emptied).
3. Measured in one process through the application's own code, each beside a baseline of the same run:
   - `counts_rebuild()` over everything, against plain GROUP BYs of the same message figures (no writes);
     then `counts_check()` over everything;
   - `counts_squash()` after one busy hour's writes through the triggers (inserts of --hour-messages
     messages, then status, intent and sentiment updates), against a plain GROUP BY of that hour;
   - the admin index with the dashboard (Django's test client, logged in as an operator) and every figure
     of GET /api/v1/analytics/<figure>/ (with an API key), for 7 days by day, 30 days by day and 24 hours by
     hour, each against plain SQL computing the same figure from whatsapp_message; median and max of
     --repeat runs after a warm-up;
   - the inbound drain (`webhook_event_process` on stored sandbox webhook rows), the send path
     (`message_send`, then `message_deliver` to the sandbox provider) and the status reports (delivered and
     read, through `webhook_event_process`), with every analytics_* trigger on and off, in alternating
     blocks (on, off, off, on, ...): the CPU time of this process and of its PostgreSQL backend per item
     (median block; the wall time beside it), and the time inside the trigger functions
     (`track_functions`).
4. Prints a table of each figure, its baseline and its goal.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

BASE_DIR = Path(__file__).resolve().parent.parent
VENV_PYTHON = BASE_DIR / ".venv" / "bin" / "python"
DB_NAME = "wa_bench_analytics"
DATA_DB = "wa_bench_analytics_data"
PG = ["-h", "127.0.0.1", "-U", "postgres"]
PG_DSN = "host=127.0.0.1 user=postgres dbname={}"
REDIS_URL = "redis://127.0.0.1:6379/13"
# Bumped whenever the generated data changes shape: a kept database of an older shape is made again.
DATA_VERSION = 1
PARTS = ("rebuild", "squash", "figures", "overhead")
GOALS = {"rebuild_s": 10.0, "squash_ms": 200.0, "page_ms": 300.0, "overhead": 0.05}
FIGURES = ("summary", "series", "funnel", "errors", "templates", "intents", "sentiments", "message-types")
PROVIDER_SHARES = {2: (7, 10), 3: (6, 9, 10)}  # conversation id % 10 below each bound: that provider
TEMPLATE_NAMES = ("order_update", "appointment_reminder", "weekly_offer")
INTENTS = ("order_status", "pricing", "support", "complaint", "greeting", "booking", "cancellation", "other")
ERROR_CODES = ("131026", "131047", "131049", "130472")


# --------------------------------------------------------------------------------------------
# Environment and databases
# --------------------------------------------------------------------------------------------
def bench_env(db_name: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "CELERY_", "DATABASE_", "OPENAI_", "SEND_", "SANDBOX_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        # A fixed key: the kept database's provider secrets must stay readable in later runs.
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(hashlib.sha256(b"bench-analytics").digest()).decode(),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(BASE_DIR / "var" / "bench"),
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "TIME_ZONE": "UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("REDIS_URL_CACHE", None)
    return env


def admin_sql(statement: str, db: str = "postgres") -> list[tuple]:
    import psycopg

    with psycopg.connect(PG_DSN.format(db), autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def schema_fingerprint() -> str:
    """A digest of every migration of the project: a kept database made under other migrations is made again."""
    digest = hashlib.sha256()
    for path in sorted(BASE_DIR.glob("*/migrations/*.py")):
        digest.update(str(path.relative_to(BASE_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def data_parameters(args) -> dict:
    return {"version": DATA_VERSION, "messages": args.messages, "contacts": args.contacts, "days": args.days,
            "providers": args.providers, "migrations": schema_fingerprint()}


def code_state() -> str:
    """The commit, and whether the code measured differs from it (the figures are of the working tree)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=BASE_DIR, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not line[3:].startswith("bench/")]
    return f"commit {commit}" + (f", plus uncommitted changes in {len(changed)} file(s)" if changed else ", clean")


def kept_data_state(args) -> str:
    """'' when the kept database matches the parameters, else why it does not."""
    import psycopg

    if not admin_sql(f"SELECT 1 FROM pg_database WHERE datname = '{DATA_DB}'"):  # noqa: S608 - a constant
        return "no kept database yet"
    try:
        rows = admin_sql("SELECT value FROM bench_analytics_data WHERE key = 'parameters'", DATA_DB)
    except psycopg.Error:
        return "the kept database was not finished"
    if not rows or json.loads(rows[0][0]) != data_parameters(args):
        return f"the kept database has other parameters ({rows[0][0] if rows else 'none'})"
    count = admin_sql("SELECT count(*) FROM whatsapp_message", DATA_DB)[0][0]
    if count != args.messages:
        return f"the kept database has {count} messages, not {args.messages}"
    return ""


def migrate_fresh(db_name: str, env: dict[str, str]) -> None:
    (BASE_DIR / "var" / "bench" / "staticfiles").mkdir(parents=True, exist_ok=True)
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", db_name], check=True)
    subprocess.run(["createdb", *PG, db_name], check=True)
    subprocess.run([str(VENV_PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env,
                   check=True)


def copy_kept_data() -> float:
    started = time.perf_counter()
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", DB_NAME], check=True)
    # A file copy: much faster than the WAL-logged default for a database of this size.
    admin_sql(f"CREATE DATABASE {DB_NAME} TEMPLATE {DATA_DB} STRATEGY FILE_COPY")
    return time.perf_counter() - started


def setup_django(db_name: str) -> None:
    os.environ.update(bench_env(db_name))
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()


# --------------------------------------------------------------------------------------------
# Generation (stage "generate", connected to the kept database)
# --------------------------------------------------------------------------------------------
def _provider_case(provider_ids: list[int], column: str) -> str:
    bounds = PROVIDER_SHARES[len(provider_ids)]
    whens = " ".join(f"WHEN {column} % 10 < {bound} THEN {pk}" for bound, pk in zip(bounds, provider_ids, strict=True))
    return f"CASE {whens} END"


def _text_array(values) -> str:
    return "ARRAY[" + ", ".join(f"'{value}'" for value in values) + "]"


MESSAGES_SQL = """
WITH pairs AS MATERIALIZED (
    -- One customer message and one of ours per pair; x runs over the days (from a midnight UTC), and the warp
    -- x + A sin(2 pi x) / 2 pi spreads each day's pairs thickest at noon UTC (density 1 / (1 + A cos(2 pi x))).
    SELECT p, {midnight}::timestamptz + (x + {amplitude} * sin(2 * pi() * x) / (2 * pi())) * interval '1 day' AS t,
           r_conv, r_kind, r_gap, r_type, r_ai, r_intent, r_mood, r_first, r_fail, r_err, r_deliver, r_read,
           r_step, r_tpl
    FROM (SELECT p, {x_first} + (p - 1 + random()) / {pairs} * ({x_last} - {x_first}) AS x, random() AS r_conv,
                 random() AS r_kind, random() AS r_gap, random() AS r_type, random() AS r_ai, random() AS r_intent,
                 random() AS r_mood, random() AS r_first, random() AS r_fail, random() AS r_err,
                 random() AS r_deliver, random() AS r_read, random() AS r_step, random() AS r_tpl
          FROM generate_series(1, {pairs}) p OFFSET 0) drawn
), shaped AS (
    SELECT pr.*, c.id AS conversation_id, c.provider_id, r_kind < 0.15 AS is_template,
           -- a reply follows the customer's message; a customer answers a template a while after it
           CASE WHEN r_kind < 0.15 THEN t ELSE t + (3 + 1800 * r_gap ^ 3) * interval '1 second' END AS out_at,
           CASE WHEN r_kind >= 0.15 THEN t
                WHEN t + template_gap < {now}::timestamptz THEN t + template_gap
                ELSE t - template_gap END AS in_at
    FROM (SELECT *, CASE WHEN r_first < 0.3 THEN 120 + 20000 * r_gap ^ 2 ELSE 86400 * (1.1 + 3 * r_gap) END
                    * interval '1 second' AS template_gap
          FROM pairs) pr
    JOIN whatsapp_conversation c
      ON c.id = {first_conversation} + (floor({conversations} * r_conv ^ 2)::bigint * 48271) % {conversations}
), outbound AS (
    SELECT s.*, tpl.template_id,
           CASE WHEN r_fail < 0.015 OR r_fail >= 0.031 THEN out_at + (0.3 + 2 * r_step) * interval '1 second'
           END AS sent_at,
           CASE WHEN r_fail < 0.03 THEN out_at + (2 + 28 * r_step) * interval '1 second' END AS failed_at,
           CASE WHEN r_fail >= 0.03 AND r_fail < 0.031 THEN out_at + interval '10 minutes' END AS dead_at,
           CASE WHEN r_fail >= 0.031 AND r_deliver < 0.95
                THEN out_at + (2.3 + 20 * r_step) * interval '1 second' END AS delivered_at
    FROM shaped s
    LEFT JOIN bench_templates tpl ON s.is_template AND tpl.provider_id = s.provider_id
                                  AND tpl.k = floor(s.r_tpl * {templates_each})
), timed AS (
    SELECT o.*,
           CASE WHEN delivered_at IS NOT NULL AND r_read < CASE WHEN is_template THEN 0.5 ELSE 0.75 END
                 AND delivered_at + (30 + 21600 * r_read ^ 2) * interval '1 second' < {now}::timestamptz
                THEN delivered_at + (30 + 21600 * r_read ^ 2) * interval '1 second' END AS read_at
    FROM outbound o
)
INSERT INTO whatsapp_message (
    provider_id, conversation_id, direction, message_type, text, content, provider_message_id, status, queued_at,
    sent_at, delivered_at, read_at, failed_at, received_at, dead_lettered_at, error_code, error_title, error_detail,
    attempts, duplicate_count, template_id, template_variables, transcript, intent, sentiment, language,
    ai_processed_at, processing_status, lane, hold_reason, request_fingerprint, purpose, first_response,
    response_seconds, created_at, updated_at)
SELECT provider_id, conversation_id, direction, message_type, text, '{{}}', provider_message_id, status, queued_at,
       sent_at, delivered_at, read_at, failed_at, received_at, dead_lettered_at, error_code, '', '', attempts, 0,
       template_id, '{{}}', '', intent, sentiment, '', ai_processed_at, 'done', lane, '', '', '', first_response,
       response_seconds, created_at, created_at
FROM (
    SELECT 'inbound' AS direction,
           CASE WHEN r_type < 0.85 THEN 'text' WHEN r_type < 0.91 THEN 'image' WHEN r_type < 0.96 THEN 'audio'
                WHEN r_type < 0.99 THEN 'interactive_reply' ELSE 'document' END AS message_type,
           'Customer message ' || p AS text, 'bench-in-' || p AS provider_message_id, 'received' AS status,
           NULL::timestamptz AS queued_at, NULL::timestamptz AS sent_at, NULL::timestamptz AS delivered_at,
           NULL::timestamptz AS read_at, NULL::timestamptz AS failed_at,
           in_at - (0.5 + 3 * r_step) * interval '1 second' AS received_at, NULL::timestamptz AS dead_lettered_at,
           '' AS error_code, 0 AS attempts, NULL::bigint AS template_id,
           CASE WHEN r_ai < 0.4 THEN ({intents})[1 + floor(r_intent * {intent_count})::int] ELSE '' END AS intent,
           CASE WHEN r_ai >= 0.4 THEN '' WHEN r_mood < 0.3 THEN 'positive' WHEN r_mood < 0.8 THEN 'neutral'
                ELSE 'negative' END AS sentiment,
           CASE WHEN r_ai < 0.4 THEN in_at + interval '2 seconds' END AS ai_processed_at, 'reply' AS lane,
           false AS first_response, NULL::float8 AS response_seconds, in_at AS created_at,
           provider_id, conversation_id
    FROM timed
    UNION ALL
    SELECT 'outbound',
           CASE WHEN is_template THEN 'template' WHEN r_type < 0.95 THEN 'text' ELSE 'image' END,
           CASE WHEN is_template THEN 'Template message ' || p ELSE 'Reply ' || p END,
           CASE WHEN dead_at IS NULL THEN 'bench-out-' || p END,
           CASE WHEN dead_at IS NOT NULL THEN 'dead_letter' WHEN failed_at IS NOT NULL THEN 'failed'
                WHEN read_at IS NOT NULL THEN 'read' WHEN delivered_at IS NOT NULL THEN 'delivered' ELSE 'sent' END,
           out_at, sent_at, delivered_at, read_at, failed_at, NULL, dead_at,
           CASE WHEN dead_at IS NOT NULL THEN 'send_outcome_unknown'
                WHEN failed_at IS NOT NULL THEN ({error_codes})[1 + floor(r_err ^ 2 * {error_count})::int]
                ELSE '' END,
           1, template_id, '', '', NULL, CASE WHEN is_template THEN 'bulk' ELSE 'reply' END,
           NOT is_template AND r_first < 0.35,
           CASE WHEN NOT is_template AND r_first < 0.9 THEN extract(epoch FROM out_at - t)::float8 END,
           out_at, provider_id, conversation_id
    FROM timed
) m
ORDER BY created_at
"""


AMPLITUDE = 0.8  # of the daily rhythm: noon's rate is (1 + A) / (1 - A) times midnight's


def _warp(x: float) -> float:
    return x + AMPLITUDE * math.sin(2 * math.pi * x) / (2 * math.pi)


def _unwarp(days: float) -> float:
    """The x whose warped time is `days` (the warp is increasing: bisection)."""
    low, high = days - 1, days + 1
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _warp(middle) < days else (low, middle)
    return (low + high) / 2


def generation_steps(args, provider_ids: list[int], now: datetime) -> list[tuple[str, str]]:
    start = now - timedelta(days=args.days)
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    # The pairs' times run from `start` to an hour before `now` (replies and receipts come after them).
    x_first = _unwarp((start - midnight) / timedelta(days=1))
    x_last = _unwarp((now - timedelta(hours=1) - midnight) / timedelta(days=1))
    pairs = args.messages // 2
    literal = "'{}'".format
    conversations_sql = f"""
        INSERT INTO whatsapp_conversation (provider_id, contact_id, context, ai_summary, external_conversation_id,
                                           external_state, created_at, last_message_at)
        SELECT {_provider_case(provider_ids, 'id')}, id, '{{}}', '', '', '', created_at, NULL
        FROM contacts_contact ORDER BY id"""  # noqa: S608 - only integers of our own are interpolated
    return [
        ("contacts", f"""
            INSERT INTO contacts_contact (profile_name, consent, consent_source, language, time_zone, is_ignored,
                                          created_at, last_seen_at)
            SELECT 'Customer ' || g, CASE WHEN g % 5 < 2 THEN 'opted_in' ELSE 'unknown' END, '',
                   (ARRAY['en', 'en', 'es', 'pt'])[1 + g % 4], '', false,
                   {literal(start.isoformat())}::timestamptz + random() * interval '{args.days} days', NULL
            FROM generate_series(1, {args.contacts}) g"""),  # noqa: S608
        ("phone identities", """
            INSERT INTO contacts_contactidentity (contact_id, kind, value, scope, created_at)
            SELECT id, 'phone', '+1555' || lpad(id::text, 7, '0'), '', created_at FROM contacts_contact"""),
        ("conversations", conversations_sql),
        ("messages", MESSAGES_SQL.format(
            midnight=literal(midnight.isoformat()), now=literal(now.isoformat()), pairs=pairs, x_first=x_first,
            x_last=x_last, amplitude=AMPLITUDE,
            conversations=args.contacts, first_conversation="(SELECT min(id) FROM whatsapp_conversation)",
            templates_each=len(TEMPLATE_NAMES), intents=_text_array(INTENTS), intent_count=len(INTENTS),
            error_codes=_text_array(ERROR_CODES), error_count=len(ERROR_CODES))),
        # What the insert trigger credits: the latest template message of the conversation sent in the day
        # before a customer's message, once (to the first message that answers it). Ids follow created_at
        # here (the messages were inserted in time order), so the latest template is the largest id.
        ("template replies", """
            INSERT INTO analytics_templatereply (message_id, replied_at)
            SELECT latest_id, min(created_at)
            FROM (SELECT direction, created_at,
                         max(id) FILTER (WHERE is_template) OVER running AS latest_id,
                         max(created_at) FILTER (WHERE is_template) OVER running AS latest_at
                  FROM (SELECT id, conversation_id, direction, created_at,
                               direction = 'outbound' AND template_id IS NOT NULL AND sent_at IS NOT NULL
                                   AS is_template
                        FROM whatsapp_message) m
                  WINDOW running AS (PARTITION BY conversation_id ORDER BY created_at, id)) w
            WHERE direction = 'inbound' AND latest_at > created_at - interval '24 hours'
            GROUP BY latest_id"""),
        ("sessions", f"""
            INSERT INTO whatsapp_session (conversation_id, state, opened_at, last_inbound_at, expires_at, closed_at,
                                          first_response_at)
            SELECT conversation_id, CASE WHEN newest AND expires_at > {literal(now.isoformat())} THEN 'open'
                                         ELSE 'closed' END,
                   opened_at, last_inbound_at, expires_at,
                   CASE WHEN newest AND expires_at > {literal(now.isoformat())} THEN NULL ELSE expires_at END, NULL
            FROM (SELECT conversation_id, min(created_at) AS opened_at, max(created_at) AS last_inbound_at,
                         max(created_at) + interval '24 hours' AS expires_at,
                         row_number() OVER (PARTITION BY conversation_id ORDER BY min(created_at) DESC) = 1 AS newest
                  FROM whatsapp_message WHERE direction = 'inbound'
                  GROUP BY conversation_id, date_trunc('day', created_at, 'UTC')) windows
            ORDER BY opened_at"""),  # noqa: S608
        ("conversation times", """
            UPDATE whatsapp_conversation c
            SET created_at = m.first_at - interval '1 second', last_message_at = m.last_at
            FROM (SELECT conversation_id, min(created_at) AS first_at, max(created_at) AS last_at
                  FROM whatsapp_message GROUP BY conversation_id) m
            WHERE m.conversation_id = c.id"""),
        ("contact times", """
            UPDATE contacts_contact ct SET created_at = c.created_at, last_seen_at = c.last_message_at
            FROM whatsapp_conversation c WHERE c.contact_id = ct.id"""),
        ("opt-outs", """
            INSERT INTO contacts_consentevent (contact_id, state, previous_state, source, detail, actor_id,
                                               message_id, created_at)
            SELECT DISTINCT ON (c.contact_id) c.contact_id, 'opted_out', 'unknown', 'keyword', 'STOP', NULL, m.id,
                   m.created_at + interval '1 second'
            FROM whatsapp_conversation c
            JOIN whatsapp_message m ON m.conversation_id = c.id AND m.direction = 'inbound'
            WHERE c.contact_id % 100 = 7
            ORDER BY c.contact_id, m.created_at DESC"""),
        ("opted-out contacts", """
            UPDATE contacts_contact ct SET consent = 'opted_out', consent_source = 'keyword',
                                           consent_changed_at = e.created_at
            FROM contacts_consentevent e WHERE e.contact_id = ct.id"""),
        ("AI calls", """
            INSERT INTO ai_aicall (feature, status, reason, model, prompt_version, input_tokens, output_tokens,
                                   audio_seconds, cost, latency_ms, attempt, created_at, conversation_id, message_id,
                                   provider_id)
            SELECT CASE WHEN message_type = 'audio' THEN 'transcription' ELSE 'classification' END, 'ok', '',
                   'gpt-4.1-mini', 'v3', 300 + id % 200, 40 + id % 30,
                   CASE WHEN message_type = 'audio' THEN 5 + id % 40 ELSE 0 END,
                   round((0.0002 + (id % 400) / 1000000.0)::numeric, 6), 300 + id % 900, 1, ai_processed_at,
                   conversation_id, id, provider_id
            FROM whatsapp_message WHERE direction = 'inbound' AND ai_processed_at IS NOT NULL
            ORDER BY id"""),
    ]


def generate(args) -> None:
    from django.db import connection

    from analytics.services.rollups import counts_rebuild
    from templates_app.models import MessageTemplate
    from whatsapp.services.providers import provider_create

    now = datetime.now(UTC).replace(microsecond=0)
    providers = [provider_create(kind="sandbox", name=f"Bench sandbox {chr(65 + n)}",
                                 options={"phone_number": f"+1555000{n:04d}"}) for n in range(args.providers)]
    for provider in providers:
        for name in TEMPLATE_NAMES:
            MessageTemplate.objects.create(provider=provider, name=name, language="en", status="approved",
                                           components=[{"type": "BODY", "text": f"{name} for {{{{1}}}}"}])
    timings: dict[str, float] = {}
    with connection.cursor() as cursor:
        # Every trigger off for this connection only (the count triggers and the foreign-key checks): nothing
        # to re-enable afterwards, even if the load fails half-way. The counts are rebuilt at the end.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SELECT setseed(0.4242)")
        cursor.execute("""CREATE TEMP TABLE bench_templates AS
                          SELECT provider_id, row_number() OVER (PARTITION BY provider_id ORDER BY id) - 1 AS k,
                                 id AS template_id FROM templates_app_messagetemplate""")
        for name, sql in generation_steps(args, [p.pk for p in providers], now):
            started = time.perf_counter()
            cursor.execute(sql)
            timings[name] = time.perf_counter() - started
            print(f"  {name:<22} {cursor.rowcount:>9} rows  {timings[name]:6.1f} s", flush=True)
        cursor.execute("SET session_replication_role = origin")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    result = counts_rebuild()
    print(f"  {'counts rebuilt':<22} {sum(result.rows.values()):>9} rows  {time.perf_counter() - started:6.1f} s",
          flush=True)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (FREEZE, ANALYZE)")
        cursor.execute("CREATE TABLE bench_analytics_data (key text PRIMARY KEY, value text NOT NULL)")
        cursor.execute("INSERT INTO bench_analytics_data VALUES ('parameters', %s), ('generated_at', %s)",
                       [json.dumps(data_parameters(args)), now.isoformat()])
    print(f"  {'vacuum and analyze':<22} {'':>9}       {time.perf_counter() - started:6.1f} s", flush=True)


# --------------------------------------------------------------------------------------------
# Measuring (stage "measure", connected to the copy)
# --------------------------------------------------------------------------------------------
@dataclass
class Row:
    figure: str
    measured: str
    baseline: str = ""
    goal: str = ""
    met: bool | None = None


@dataclass
class Timings:
    """Milliseconds of repeated runs."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    def text(self, unit: str = "ms") -> str:
        if unit == "s":
            return f"{self.median / 1000:.2f} s (max {self.max / 1000:.2f})"
        return f"{self.median:.1f} ms (max {self.max:.1f})"


def timed(function, repeat: int, warmup: int = 1) -> Timings:
    for _ in range(warmup):
        function()
    result = Timings()
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        result.values.append((time.perf_counter() - started) * 1000)
    return result


class Machine:
    """How busy the two cores were over a stretch (others' work included, e.g. a test run)."""

    def __init__(self) -> None:
        self.busy, self.total = system_busy()

    def share(self) -> float:
        busy, total = system_busy()
        return (busy - self.busy) / max(total - self.total, 1)


def system_busy() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def sql(statement: str, params=None) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def explain(statement: str, params=None) -> str:
    return "\n".join(row[0] for row in sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params))


@contextmanager
def statements():
    """Every SQL statement run inside, with its seconds (Django's execute wrapper)."""
    from django.db import connection

    seen: list[tuple[str, object, float]] = []

    def wrapper(execute, statement, params, many, context):
        started = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            seen.append((statement, params, time.perf_counter() - started))

    with connection.execute_wrapper(wrapper):
        yield seen


# --- 1. the full rebuild and the check ------------------------------------------------------------

# The rebuild's message figures as plain GROUP BYs over whatsapp_message, one per timestamp column, nothing
# written: what counting them by hand costs.
PLAIN_HOURLY = {
    "received": "date_trunc('hour', coalesce(received_at, created_at), 'UTC'), message_type, count(*) "
                "FROM whatsapp_message WHERE direction = 'inbound'",
    "intents": "date_trunc('hour', coalesce(received_at, created_at), 'UTC'), intent, count(*) "
               "FROM whatsapp_message WHERE direction = 'inbound' AND intent <> ''",
    "sentiments": "date_trunc('hour', coalesce(received_at, created_at), 'UTC'), sentiment, count(*) "
                  "FROM whatsapp_message WHERE direction = 'inbound' AND sentiment <> ''",
    "sent": "date_trunc('hour', sent_at, 'UTC'), message_type, count(*) "
            "FROM whatsapp_message WHERE direction = 'outbound' AND sent_at IS NOT NULL",
    "delivered": "date_trunc('hour', delivered_at, 'UTC'), '', count(*) "
                 "FROM whatsapp_message WHERE direction = 'outbound' AND delivered_at IS NOT NULL",
    "read": "date_trunc('hour', read_at, 'UTC'), '', count(*) "
            "FROM whatsapp_message WHERE direction = 'outbound' AND read_at IS NOT NULL",
    "failed": "date_trunc('hour', coalesce(failed_at, created_at), 'UTC'), error_code, count(*) "
              "FROM whatsapp_message WHERE direction = 'outbound' AND status = 'failed'",
    "reply times": "date_trunc('hour', created_at, 'UTC'), '', count(*), sum(response_seconds) "
                   "FROM whatsapp_message WHERE response_seconds IS NOT NULL",
    "first responses": "date_trunc('hour', created_at, 'UTC'), '', count(*), sum(response_seconds) "
                       "FROM whatsapp_message WHERE first_response",
}


def plain_hourly_counts() -> int:
    return sum(len(sql(f"SELECT provider_id, {body} GROUP BY 1, 2, 3")) for body in PLAIN_HOURLY.values())


STATEMENT_TABLE = re.compile(r'^(INSERT INTO|DELETE FROM|UPDATE|SELECT .*? FROM|WITH)\s+"?(\w+)', re.S)


def statement_label(statement: str, params) -> str:
    """A short name for one SQL statement: what it does, to which table, and for an INSERT of counts the
    metric it writes (its first text parameter)."""
    text = " ".join(statement.split())
    found = STATEMENT_TABLE.match(text)
    if not found:
        return text.split(" ", 1)[0].lower()
    verb = {"INSERT INTO": "insert", "DELETE FROM": "delete", "UPDATE": "update", "WITH": "with"}.get(
        found.group(1), "select")
    label = f"{verb} {found.group(2)}"
    if verb == "insert" and found.group(2) in ("analytics_hourlycount", "analytics_templatedailycount"):
        # The first text parameter that is not a DATE_TRUNC unit or a time zone: the metric's name or prefix.
        metric = next((p for p in (params or ()) if isinstance(p, str) and p and " " not in p
                       and p not in ("hour", "day", "week", "UTC")), "")
        label += f" {metric.rstrip(':')}" if metric else ""
    return label


def rebuild_steps(seen: list[tuple[str, object, float]]) -> dict[str, float]:
    steps: dict[str, float] = {}
    for statement, params, seconds in seen:
        label = statement_label(statement, params)
        steps[label] = steps.get(label, 0.0) + seconds
    return steps


def measure_rebuild(args) -> list[Row]:
    from analytics.services.rollups import counts_check, counts_rebuild

    print("\n1. Full rebuild of the counts, against plain GROUP BYs of the same message figures", flush=True)
    machine = Machine()
    ours, plain = Timings(), Timings()
    steps: list[dict[str, float]] = []
    slowest: list[tuple[str, object, float]] = []
    for run in range(args.rebuild_runs):
        started = time.perf_counter()
        with statements() as seen:
            result = counts_rebuild()
        ours.values.append((time.perf_counter() - started) * 1000)
        steps.append(rebuild_steps(seen))
        slowest = sorted(seen, key=lambda item: -item[2])[:3]
        started = time.perf_counter()
        groups = plain_hourly_counts()
        plain.values.append((time.perf_counter() - started) * 1000)
        print(f"  run {run + 1}: counts_rebuild() {ours.values[-1] / 1000:6.2f} s ({sum(result.rows.values()):,} rows "
              f"written); plain GROUP BYs {plain.values[-1] / 1000:6.2f} s ({groups:,} groups read)", flush=True)
    print(f"  machine {machine.share():.0%} busy (2 cores)")
    print("  where a rebuild's time goes (median of the runs, s):")
    labels = sorted(steps[0], key=lambda label: -statistics.median(s.get(label, 0) for s in steps))
    for label in labels[:12]:
        print(f"    {label:<60}{statistics.median(s.get(label, 0) for s in steps):7.2f}")
    if args.explain:
        from django.db import DatabaseError, transaction

        for statement, params, seconds in slowest:  # of the last run
            if statement.lstrip().startswith("INSERT") and "ON CONFLICT" not in statement and " SELECT " in statement:
                # Its rows are in the table now: the query that reads them, without the write.
                statement = statement[statement.index(" SELECT ") + 1:]
            try:
                with transaction.atomic():  # EXPLAIN ANALYZE runs a write: undone
                    plan = explain(statement, params)
                    transaction.set_rollback(True)
            except DatabaseError as error:
                plan = f"(could not be explained: {error})"
            print(f"  EXPLAIN of one of the rebuild's slowest statements ({seconds:.2f} s):\n    "
                  + " ".join(statement.split())[:800] + "\n    " + plan.replace("\n", "\n    "))
    started = time.perf_counter()
    check = counts_check()
    check_seconds = time.perf_counter() - started
    print(f"  counts_check() over everything: {len(check.differences)} difference(s) in {check_seconds:.1f} s"
          + "".join(f"\n    {line}" for line in check.differences[:10]), flush=True)
    return [
        Row("full rebuild, counts_rebuild() over everything", ours.text("s"),
            f"{plain.text('s')} plain GROUP BYs", f"< {GOALS['rebuild_s']:.0f} s",
            ours.median < GOALS["rebuild_s"] * 1000),
        Row("counts_check() after the rebuild", f"{len(check.differences)} differences ({check_seconds:.1f} s)", "",
            "none", check.ok),
    ]


# --- 2. one busy hour's squash --------------------------------------------------------------------

def write_hour(hour: datetime, count: int, tag: str, late: int = 300) -> dict[str, int]:
    """One hour's writes through the triggers: `count` new messages (half inbound, half outbound sent, a
    few failed) in random conversations, then their receipts, the AI's labels on 40 % of the inbound, and
    late read receipts for `late` messages of the hour before. Set-based, but every row fires its trigger."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM whatsapp_conversation")
        first, last = cursor.fetchone()
        cursor.execute(f"""
            INSERT INTO whatsapp_message (
                provider_id, conversation_id, direction, message_type, text, content, provider_message_id, status,
                queued_at, sent_at, failed_at, received_at, error_code, error_title, error_detail, attempts,
                duplicate_count, template_variables, transcript, intent, sentiment, language, processing_status,
                lane, hold_reason, request_fingerprint, purpose, first_response, response_seconds, created_at,
                updated_at)
            SELECT c.provider_id, c.id, CASE WHEN is_out THEN 'outbound' ELSE 'inbound' END, 'text',
                   'Busy hour message ' || g, '{{}}', %(tag)s || g,
                   CASE WHEN NOT is_out THEN 'received' WHEN r < 0.03 THEN 'failed' ELSE 'sent' END,
                   CASE WHEN is_out THEN at END, CASE WHEN is_out AND r >= 0.03 THEN at + interval '1 second' END,
                   CASE WHEN is_out AND r < 0.03 THEN at + interval '5 seconds' END,
                   CASE WHEN NOT is_out THEN at - interval '1 second' END,
                   CASE WHEN is_out AND r < 0.03 THEN '131026' ELSE '' END, '', '', is_out::int, 0, '{{}}', '', '',
                   '', '', 'done', 'reply', '', '', '', is_out AND r < 0.3,
                   CASE WHEN is_out AND r < 0.8 THEN 5 + 600 * r END, at, at
            FROM (SELECT g, mod(g, 2) = 1 AS is_out, random() AS r, %(hour)s + random() * interval '1 hour' AS at,
                         {first} + floor(random() * {last - first + 1})::bigint AS conversation_id
                  FROM generate_series(1, {count}) g OFFSET 0) n
            JOIN whatsapp_conversation c ON c.id = n.conversation_id
            RETURNING id, direction, status""", {"tag": tag, "hour": hour})  # noqa: S608 - integers of our own
        rows = cursor.fetchall()
        outbound = [pk for pk, direction, status in rows if direction == "outbound" and status == "sent"]
        inbound = [pk for pk, direction, _status in rows if direction == "inbound"]
        cursor.execute("""UPDATE whatsapp_message SET status = 'delivered', updated_at = now(),
                                 delivered_at = sent_at + (2 + 20 * random()) * interval '1 second'
                          WHERE id = ANY(%s) AND random() < 0.9""", [outbound])
        delivered = cursor.rowcount
        cursor.execute("""UPDATE whatsapp_message SET status = 'read', updated_at = now(),
                                 read_at = delivered_at + (30 + 1200 * random()) * interval '1 second'
                          WHERE id = ANY(%s) AND status = 'delivered' AND random() < 0.65""", [outbound])
        read = cursor.rowcount
        cursor.execute(f"""UPDATE whatsapp_message SET updated_at = now(), ai_processed_at = now(),
                                  intent = ({_text_array(INTENTS)})[1 + floor(random() * {len(INTENTS)})::int],
                                  sentiment = (ARRAY['positive', 'neutral', 'neutral', 'negative'])
                                              [1 + floor(random() * 4)::int]
                           WHERE id = ANY(%s) AND random() < 0.4""", [inbound])  # noqa: S608
        labelled = cursor.rowcount
        cursor.execute("""UPDATE whatsapp_message SET status = 'read', updated_at = now(),
                                 read_at = %(hour)s + random() * interval '1 hour'
                          WHERE id IN (SELECT id FROM whatsapp_message
                                       WHERE direction = 'outbound' AND status = 'delivered'
                                         AND created_at >= %(hour)s - interval '1 hour' AND created_at < %(hour)s
                                       LIMIT %(late)s)""", {"hour": hour, "late": late})
        late = cursor.rowcount
    return {"inserted": len(rows), "delivered": delivered, "read": read, "labelled": labelled, "late reads": late}


def plain_hour(hour: datetime) -> int:
    return len(sql("""SELECT provider_id, direction, message_type, status, error_code, intent, sentiment, count(*),
                             sum(response_seconds)
                      FROM whatsapp_message WHERE created_at >= %(hour)s AND created_at < %(hour)s + interval '1 hour'
                      GROUP BY 1, 2, 3, 4, 5, 6, 7""", {"hour": hour}))


def busy_hours(anchor: datetime, rounds: int) -> list[datetime]:
    """Noon UTC (the busiest hour of the data) of the days before the anchor, newest first."""
    return [(anchor - timedelta(days=k)).replace(hour=12, minute=0, second=0, microsecond=0)
            for k in range(1, rounds + 1)]


def measure_squash(args, anchor: datetime) -> list[Row]:
    from analytics.models import CountDelta
    from analytics.services.rollups import counts_check, counts_squash

    print(f"\n2. One busy hour's squash: {args.hour_messages:,} messages written through the triggers, then "
          "counts_squash(), against a plain GROUP BY of that hour", flush=True)
    counts_squash()  # nothing waiting: the lock and the empty batch, once
    machine = Machine()
    ours, plain = Timings(), Timings()
    folded: list[int] = []
    hours = busy_hours(anchor, args.squash_rounds)
    for number, hour in enumerate(hours, 1):
        existing = sql("SELECT count(*) FROM whatsapp_message WHERE created_at >= %(h)s "
                       "AND created_at < %(h)s + interval '1 hour'", {"h": hour})[0][0]
        written = write_hour(hour, args.hour_messages, f"bench-hour-{number}-")
        waiting = CountDelta.objects.count()
        started = time.perf_counter()
        result = counts_squash()
        ours.values.append((time.perf_counter() - started) * 1000)
        folded.append(result.deltas)
        started = time.perf_counter()
        groups = plain_hour(hour)
        plain.values.append((time.perf_counter() - started) * 1000)
        print(f"  {hour:%Y-%m-%d %H:00} ({existing:,} messages already): wrote {written}; {waiting:,} deltas -> "
              f"squash {ours.values[-1]:6.1f} ms ({result.deltas:,} folded, {result.batches} batch); "
              f"plain GROUP BY {plain.values[-1]:6.1f} ms ({groups} groups)", flush=True)
    print(f"  machine {machine.share():.0%} busy (2 cores)")
    started = time.perf_counter()
    check = counts_check(min(hours) - timedelta(hours=1), max(hours) + timedelta(hours=1))
    print(f"  counts_check() of the days written: {len(check.differences)} difference(s) "
          f"({time.perf_counter() - started:.1f} s)" + "".join(f"\n    {line}" for line in check.differences[:10]))
    return [
        Row(f"one busy hour's squash ({args.hour_messages:,} messages, ~{statistics.median(folded):,.0f} deltas)",
            ours.text(), f"{plain.text()} GROUP BY of the hour", f"< {GOALS['squash_ms']:.0f} ms",
            ours.median < GOALS["squash_ms"]),
        Row("counts_check() after the squashes (days written)", f"{len(check.differences)} differences", "", "none",
            check.ok),
    ]


# --- 3. the dashboard and the figures API ---------------------------------------------------------

@dataclass(frozen=True)
class Range:
    label: str
    params: dict[str, str]
    start: datetime
    end: datetime
    grain: str


def figure_ranges(anchor: datetime) -> list[Range]:
    """The dashboard's presets, ending at the data's last hour: 7 and 30 days by day (today included),
    24 hours by hour."""
    today = anchor.date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    ranges = []
    for days in (7, 30):
        since = today - timedelta(days=days - 1)
        ranges.append(Range(f"{days} days by day", {"since": since.isoformat(), "until": today.isoformat(),
                                                     "grain": "day"},
                            midnight - timedelta(days=days), midnight, "day"))
    end = anchor.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    ranges.append(Range("24 hours by hour", {"since": (end - timedelta(hours=24)).isoformat(),
                                              "until": end.isoformat(), "grain": "hour"},
                        end - timedelta(hours=24), end, "hour"))
    return ranges


IN_RANGE = "{column} >= %(start)s AND {column} < %(end)s"
RECEIVED_AT = "coalesce(received_at, created_at)"
FAILED_AT = "coalesce(failed_at, created_at)"


def _within(column: str) -> str:
    return IN_RANGE.format(column=column)


def plain_figure(name: str, span: Range) -> list[tuple]:
    """The figure computed straight from whatsapp_message (and the template replies) with plain SQL."""
    params = {"start": span.start, "end": span.end, "grain": span.grain,
              "day": span.start.replace(hour=0, minute=0, second=0, microsecond=0)}
    inbound = f"direction = 'inbound' AND {_within(RECEIVED_AT)}"
    sent = f"direction = 'outbound' AND {_within('sent_at')}"
    delivered = f"direction = 'outbound' AND {_within('delivered_at')}"
    read = f"direction = 'outbound' AND {_within('read_at')}"
    failed = f"direction = 'outbound' AND status = 'failed' AND {_within(FAILED_AT)}"
    any_step = f"({inbound}) OR ({sent}) OR ({delivered}) OR ({read}) OR ({failed}) OR ({_within('created_at')})"
    if name == "series":
        # One scan: each message unpivoted into the steps it counts in, bucketed by the step's own time.
        return sql(f"""
            SELECT date_trunc(%(grain)s, v.at, 'UTC') AS bucket, v.step, count(*), sum(v.seconds)
            FROM whatsapp_message m
            CROSS JOIN LATERAL (VALUES
                ('received', CASE WHEN direction = 'inbound' THEN {RECEIVED_AT} END, NULL::float8),
                ('sent', CASE WHEN direction = 'outbound' THEN sent_at END, NULL),
                ('delivered', CASE WHEN direction = 'outbound' THEN delivered_at END, NULL),
                ('read', CASE WHEN direction = 'outbound' THEN read_at END, NULL),
                ('failed', CASE WHEN direction = 'outbound' AND status = 'failed' THEN {FAILED_AT} END, NULL),
                ('reply', CASE WHEN response_seconds IS NOT NULL THEN created_at END, response_seconds),
                ('first response', CASE WHEN first_response THEN created_at END, response_seconds)
            ) v (step, at, seconds)
            WHERE ({any_step}) AND v.at >= %(start)s AND v.at < %(end)s
            GROUP BY 1, 2""", params)  # noqa: S608 - only SQL of our own is interpolated
    if name in ("summary", "funnel"):
        extra = "" if name == "funnel" else f""",
            count(*) FILTER (WHERE response_seconds IS NOT NULL AND {_within('created_at')}),
            avg(response_seconds) FILTER (WHERE {_within('created_at')}),
            count(*) FILTER (WHERE first_response AND {_within('created_at')}),
            count(DISTINCT conversation_id) FILTER (WHERE {inbound})"""
        return sql(f"""SELECT count(*) FILTER (WHERE {inbound}), count(*) FILTER (WHERE {sent}),
                              count(*) FILTER (WHERE {delivered}), count(*) FILTER (WHERE {read}),
                              count(*) FILTER (WHERE {failed}){extra}
                       FROM whatsapp_message WHERE {any_step}""", params)  # noqa: S608 - SQL of our own
    if name == "errors":
        return sql(f"SELECT error_code, count(*) FROM whatsapp_message WHERE {failed} "  # noqa: S608 - ours
                   "GROUP BY 1 ORDER BY 2 DESC", params)
    if name in ("intents", "sentiments"):
        column = name[:-1]
        return sql(f"SELECT {column}, count(*) FROM whatsapp_message "  # noqa: S608 - SQL of our own
                   f"WHERE {inbound} AND {column} <> '' GROUP BY 1 ORDER BY 2 DESC", params)
    if name == "message-types":
        return sql(f"""SELECT message_type, count(*) FILTER (WHERE {inbound}), count(*) FILTER (WHERE {sent})
                       FROM whatsapp_message WHERE ({inbound}) OR ({sent})
                       GROUP BY 1""", params)  # noqa: S608 - only SQL of our own is interpolated
    if name == "templates":
        return sql("""SELECT m.template_id, count(*) FILTER (WHERE sent_at IS NOT NULL),
                             count(*) FILTER (WHERE delivered_at IS NOT NULL),
                             count(*) FILTER (WHERE read_at IS NOT NULL),
                             count(*) FILTER (WHERE status = 'failed'), count(r.message_id)
                      FROM whatsapp_message m LEFT JOIN analytics_templatereply r ON r.message_id = m.id
                      WHERE m.direction = 'outbound' AND m.template_id IS NOT NULL
                        AND m.created_at >= %(day)s AND m.created_at < %(end)s
                      GROUP BY 1""", params)
    raise ValueError(name)


DASHBOARD_FIGURES = ("summary", "series", "errors", "templates", "intents", "sentiments")


def make_users():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    from core.api_tokens import api_token_create

    users = get_user_model().objects
    operator = users.create_user("bench-operator", "operator@example.com", secrets.token_urlsafe(16), is_staff=True)
    group = Group.objects.filter(name="Operator").first()
    if group is not None:
        operator.groups.add(group)
    else:
        operator.user_permissions.add(Permission.objects.get(codename="view_hourlycount",
                                                             content_type__app_label="analytics"))
    staff = users.create_user("bench-staff", "staff@example.com", secrets.token_urlsafe(16), is_staff=True)
    operator = users.get(pk=operator.pk)
    assert operator.has_perm("analytics.view_hourlycount"), "the operator cannot see the figures"
    _token, key = api_token_create(user=operator, name="bench analytics")
    return operator, staff, key


def api_figures() -> list[str]:
    """The figures the API serves (its own list, so a figure added later is measured too)."""
    try:
        from analytics.api.views import FIGURES as SERVED
    except ImportError:
        return list(FIGURES)
    return list(SERVED)


def measure_figures(args, anchor: datetime) -> list[Row]:
    from django.test import Client

    from analytics.models import CountDelta

    print("\n3. The dashboard (admin index) and GET /api/v1/analytics/<figure>/, against plain SQL computing the "
          f"same figure from whatsapp_message; median and max of {args.repeat} runs after a warm-up", flush=True)
    # A minute's writes not folded in yet, as between two runs of the squash job.
    write_hour(anchor.replace(minute=0, second=0, microsecond=0), 150, "bench-waiting-", late=20)
    print(f"  delta rows waiting (not squashed): {CountDelta.objects.count():,}")
    operator, staff, key = make_users()
    page = Client()
    page.force_login(operator)
    bare = Client()
    bare.force_login(staff)
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    machine = Machine()
    rows: list[Row] = []
    slowest: dict[str, tuple[float, str, object]] = {}  # the slowest statement of each page

    def get(client, url: str):
        def run():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.content[:300])
            return response
        return run

    def one_more(what: str, function) -> int:
        """One more run, its statements recorded: how many, and the slowest."""
        with statements() as seen:
            function()
        if seen:
            statement, params, seconds = max(seen, key=lambda item: item[2])
            slowest[what] = (seconds * 1000, statement, params)
        return len(seen)

    def line(what: str, ours: Timings, count: int, plain: Timings | None = None) -> None:
        print(f"  {what:<48}{ours.median:>10.1f} / {ours.max:<8.1f}{count:>8}"
              + (f"{plain.median:>16.1f} / {plain.max:<8.1f}" if plain else ""), flush=True)

    print(f"  {'':<48}{'ours: median / max ms':>21}{'queries':>9}{'plain SQL: median / max ms':>28}")
    admin_only = timed(get(bare, "/admin/"), args.repeat)
    line("admin index without the dashboard (reference)", admin_only, one_more("admin index", get(bare, "/admin/")))
    served = api_figures()
    for number, span in enumerate(figure_ranges(anchor)):
        url = "/admin/?" + urlencode(span.params)
        ours = timed(get(page, url), args.repeat)
        plain = timed(lambda span=span: [plain_figure(name, span) for name in DASHBOARD_FIGURES], args.repeat)
        line(f"dashboard, {span.label}", ours, one_more(f"dashboard, {span.label}", get(page, url)), plain)
        rows.append(Row(f"dashboard (admin index), {span.label}", ours.text(),
                        f"{plain.text()} plain SQL of its {len(DASHBOARD_FIGURES)} figures",
                        f"< {GOALS['page_ms']:.0f} ms", ours.median < GOALS["page_ms"]))
        for name in served:
            by_range = name in FIGURES
            if not by_range and number:
                continue  # not a figure of a range (e.g. what needs a person now): measured once
            url = f"/api/v1/analytics/{name}/?" + urlencode(span.params)
            what = f"API {name}, {span.label}" if by_range else f"API {name} (no range)"
            ours = timed(get(api, url), args.repeat)
            plain = timed(lambda name=name, span=span: plain_figure(name, span), args.repeat) if by_range else None
            line("  " + what, ours, one_more(what, get(api, url)), plain)
            rows.append(Row(what, ours.text(), f"{plain.text()} plain SQL" if plain else "",
                            f"< {GOALS['page_ms']:.0f} ms", ours.median < GOALS["page_ms"]))
    print(f"  machine {machine.share():.0%} busy (2 cores)")
    worst = sorted(slowest.items(), key=lambda item: -item[1][0])
    print("  the slowest statement of the slowest pages (one run): "
          + "; ".join(f"{what} {ms:.0f} ms ({statement_label(statement, params)})"
                      for what, (ms, statement, params) in worst[:4]))
    if args.explain:
        shown: set[str] = set()
        for what, (ms, statement, params) in worst[:6]:
            if statement in shown or ms < 20:
                continue
            shown.add(statement)
            print(f"\n  EXPLAIN of the slowest statement of {what} ({ms:.0f} ms):\n    "
                  + " ".join(statement.split())[:600] + "\n    "
                  + explain(statement, params).replace("\n", "\n    "))
    return rows


# --- 4. what the triggers add to the inbound drain and the send path -------------------------------

def count_triggers() -> list[tuple[str, str]]:
    return [(table, name) for table, name in sql(
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname LIKE 'analytics\\_%%' AND NOT t.tgisinternal ORDER BY 1, 2")]


def set_count_triggers(enabled: bool) -> None:
    for table, name in count_triggers():
        sql(f'ALTER TABLE "{table}" {"ENABLE" if enabled else "DISABLE"} TRIGGER "{name}"')


def triggers_enabled() -> dict[str, bool]:
    return {name: enabled != "D" for name, enabled in sql(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname LIKE 'analytics\\_%%' AND NOT tgisinternal")}


def stored_webhooks(provider, bodies: list[bytes]) -> list[int]:
    """Sandbox webhook rows as the endpoint stores them (signature already checked), pending."""
    from django.conf import settings
    from django.utils import timezone

    from whatsapp.models import WebhookEvent

    due = timezone.now() + timedelta(seconds=settings.WEBHOOK_STALE_AFTER_SECONDS)
    events = WebhookEvent.objects.bulk_create([
        WebhookEvent(provider=provider, kind=provider.kind, status=WebhookEvent.Status.PENDING, signature_valid=True,
                     body=body, body_size=len(body), content_type="application/json", headers={},
                     next_attempt_at=due) for body in bodies])
    return [event.pk for event in events]


class Clock:
    """Wall time, and the CPU time of this process and of its PostgreSQL backend (the CPU a path costs,
    which other work on the machine disturbs much less than the wall time)."""

    def __init__(self) -> None:
        self.backend = sql("SELECT pg_backend_pid()")[0][0]
        self.wall, self.cpu = time.perf_counter(), self._cpu()

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.backend}/stat").read_text().rsplit(")", 1)[1].split()
        return time.process_time() + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def lap(self) -> tuple[float, float]:
        """(wall, cpu) seconds since the last lap."""
        assert sql("SELECT pg_backend_pid()")[0][0] == self.backend, "the database connection changed"
        wall, cpu = time.perf_counter(), self._cpu()
        spent = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return spent


PATHS = ("inbound", "send", "status")


@dataclass
class PathTimes:
    wall: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PATHS, 0.0))
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PATHS, 0.0))
    triggers: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PATHS, 0.0))
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    deltas: int = 0

    def add(self, path: str, lap: tuple[float, float], items: int, in_triggers: float) -> None:
        self.wall[path] += lap[0]
        self.cpu[path] += lap[1]
        self.triggers[path] += in_triggers
        self.items[path] += items

    def ms(self, path: str, kind: str = "cpu") -> float:
        return getattr(self, kind)[path] * 1000 / max(self.items[path], 1)


def trigger_seconds() -> float:
    """Seconds the analytics_* trigger functions have run so far (track_functions, set for this connection):
    the backend's counters are flushed when it goes idle after a forced flush."""
    sql("SELECT pg_stat_force_next_flush()")
    sql("SELECT pg_stat_clear_snapshot()")
    return float(sql("SELECT coalesce(sum(total_time), 0) FROM pg_stat_user_functions "
                     "WHERE funcname LIKE 'analytics\\_%%'")[0][0]) / 1000


def run_block(provider, contacts, tag: str, times: PathTimes) -> None:
    """Inbound messages from `contacts`, our reply to each (queued, then delivered to the sandbox), then
    the delivered and read reports of each reply: each stage timed over the block. The webhook rows are
    stored before the clock starts, as the endpoint would have."""
    from analytics.models import CountDelta
    from whatsapp.models import Message, WebhookEvent
    from whatsapp.providers.events import MessageType
    from whatsapp.providers.sandbox import inbound_body, status_body
    from whatsapp.services.delivery import message_deliver
    from whatsapp.services.outbound import SendRequest, message_send
    from whatsapp.services.webhooks import webhook_event_process

    deltas = CountDelta.objects.count()
    ids = stored_webhooks(provider, [
        inbound_body(from_phone=phone, name=contact.profile_name, message_id=f"{tag}-in-{n}",
                     text=f"Hello, where is my order {n}?")
        for n, (contact, phone) in enumerate(contacts)])
    in_triggers, clock = trigger_seconds(), Clock()
    for pk in ids:
        webhook_event_process(pk)
    times.add("inbound", clock.lap(), len(ids), trigger_seconds() - in_triggers)
    failed = WebhookEvent.objects.filter(pk__in=ids).exclude(status=WebhookEvent.Status.PROCESSED).count()
    assert not failed, f"{failed} inbound webhook rows were not processed"

    sent = []
    in_triggers, clock = trigger_seconds(), Clock()
    for n, (contact, _phone) in enumerate(contacts):
        message, _created = message_send(SendRequest(provider=provider, contact=contact, message_type=MessageType.TEXT,
                                                     text=f"Your order {n} ships today.", lane=Message.Lane.REPLY))
        sent.append(message_deliver(message.pk).pk)
    times.add("send", clock.lap(), len(sent), trigger_seconds() - in_triggers)
    reference = dict(Message.objects.filter(pk__in=sent).values_list("pk", "provider_message_id"))
    missing = [pk for pk in sent if not reference.get(pk)]
    assert not missing, f"{len(missing)} replies were not sent"

    ids = stored_webhooks(provider, [status_body(reference[pk], status) for status in ("delivered", "read")
                                     for pk in sent])
    in_triggers, clock = trigger_seconds(), Clock()
    for pk in ids:
        webhook_event_process(pk)
    times.add("status", clock.lap(), len(ids), trigger_seconds() - in_triggers)
    times.deltas += CountDelta.objects.count() - deltas


def measure_overhead(args) -> list[Row]:
    from contacts.models import Contact, ContactIdentity
    from whatsapp.models import Provider

    per_block = args.overhead_messages * 2 // args.overhead_blocks
    print(f"\n4. What the count triggers add: {args.overhead_messages:,} inbound messages, as many replies sent and "
          f"{args.overhead_messages * 2:,} status reports with every analytics_* trigger on, and as many with them "
          f"off, in {args.overhead_blocks} alternating blocks of {per_block}", flush=True)
    provider = Provider.objects.order_by("pk").first()
    provider.rate_limit_per_second = 1000  # the number's pacing would otherwise set the pace of the send loop
    provider.save(update_fields=["rate_limit_per_second", "updated_at"])
    warmup = 50
    wanted = per_block * args.overhead_blocks + warmup
    contacts = list(Contact.objects.filter(conversations__provider=provider).exclude(consent=Contact.Consent.OPTED_OUT)
                    .order_by("pk")[:wanted])
    phones = dict(ContactIdentity.objects.filter(contact__in=contacts, kind="phone").values_list("contact_id", "value"))
    pairs = [(contact, phones[contact.pk]) for contact in contacts if contact.pk in phones]
    if len(pairs) < wanted:
        raise SystemExit(f"only {len(pairs)} contacts of provider {provider.pk} to write from, {wanted} needed")
    print(f"  triggers: {', '.join(f'{name} on {table}' for table, name in count_triggers())}")
    blocks: dict[bool, list[PathTimes]] = {True: [], False: []}
    machine = Machine()
    sql("SET track_functions = 'pl'")  # the time spent in the trigger functions, for this connection
    try:
        set_count_triggers(True)
        run_block(provider, pairs[:warmup], "bench-warm", PathTimes())
        print(f"  {'block':<18}" + "".join(f"{path + ' cpu / wall ms':>26}" for path in PATHS))
        for block in range(args.overhead_blocks):
            enabled = block % 4 in (0, 3)  # on, off, off, on: a steady drift falls on both alike
            set_count_triggers(enabled)
            one = PathTimes()
            run_block(provider, pairs[warmup + block * per_block:warmup + (block + 1) * per_block],
                      f"bench-live-{block}", one)
            blocks[enabled].append(one)
            print(f"  {block + 1:>2} triggers {'on ' if enabled else 'off'}    "
                  + "".join(f"{one.ms(path):>16.2f} / {one.ms(path, 'wall'):<7.2f}" for path in PATHS), flush=True)
    finally:
        set_count_triggers(True)
        sql("RESET track_functions")
    assert all(triggers_enabled().values()), "a count trigger was left off"
    share = machine.share()
    print(f"  machine {share:.0%} busy (2 cores)" + ("  (other work was running: the wall times are disturbed)"
                                                      if share > 0.6 else ""))
    deltas = sum(one.deltas for one in blocks[True])
    turns = sum(one.items["inbound"] for one in blocks[True])
    print(f"  delta rows written with the triggers on: {deltas:,} for {turns:,} conversation turns "
          f"({deltas / max(turns, 1):.1f} per inbound message, its reply and their two reports)")

    def median(enabled: bool, path: str | None, kind: str = "cpu") -> float:
        """The median block's ms per item of a path (per conversation turn for all three together)."""
        if path:
            return statistics.median(one.ms(path, kind) for one in blocks[enabled])
        return statistics.median(sum(getattr(one, kind).values()) * 1000 / one.items["inbound"]
                                 for one in blocks[enabled])

    labels = {"inbound": "inbound drain (webhook_event_process), per message",
              "send": "send path (message_send + message_deliver), per message",
              "status": "status reports (webhook_event_process), per report",
              None: "all three, per conversation turn (two reports)"}
    rows = []
    for path, label in labels.items():
        on, off = median(True, path), median(False, path)
        extra, wall = on / off - 1, median(True, path, "wall") / median(False, path, "wall") - 1
        in_triggers = median(True, path, "triggers")
        rows.append(Row(f"{label}, triggers on", f"{on:.2f} ms CPU ({extra:+.1%}; wall {wall:+.1%})",
                        f"{off:.2f} ms CPU, triggers off", f"< +{GOALS['overhead']:.0%}", extra < GOALS["overhead"]))
        rows.append(Row("  of which inside the trigger functions", f"{in_triggers:.3f} ms ({in_triggers / off:+.1%})",
                        "", f"< +{GOALS['overhead']:.0%}", in_triggers / off < GOALS["overhead"]))
    return rows


def repair_and_check(since: datetime) -> Row:
    """The blocks written with the triggers off left no deltas: rebuild those days, then check them."""
    from analytics.services.rollups import counts_check, counts_rebuild, counts_squash

    counts_squash()
    counts_rebuild(since, None)
    check = counts_check(since, None)
    print(f"  rebuilt the days written with the triggers off; counts_check(): {len(check.differences)} difference(s)"
          + "".join(f"\n    {line}" for line in check.differences[:10]))
    return Row("counts_check() after the live writes (days rebuilt)", f"{len(check.differences)} differences", "",
               "none", check.ok)


# --- the whole run --------------------------------------------------------------------------------

def report(rows: list[Row]) -> None:
    print()
    widths = [max(len(getattr(row, name)) for row in rows) for name in ("figure", "measured", "baseline", "goal")]
    widths = [max(width, len(title)) for width, title in zip(widths, ("figure", "measured", "baseline", "goal"),
                                                             strict=True)]
    header = (f"{'figure':<{widths[0]}}  {'measured':<{widths[1]}}  {'baseline (same run)':<{widths[2]}}  "
              f"{'goal':<{widths[3]}}  met?")
    print(header)
    print("-" * len(header))
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        print(f"{row.figure:<{widths[0]}}  {row.measured:<{widths[1]}}  {row.baseline:<{widths[2]}}  "
              f"{row.goal:<{widths[3]}}  {met}")


def measure(args) -> int:
    import logging

    from django.utils import timezone

    from whatsapp.models import Conversation, Message, Provider

    logging.getLogger("django.request").setLevel(logging.ERROR)
    generated_at = datetime.fromisoformat(
        sql("SELECT value FROM bench_analytics_data WHERE key = 'generated_at'")[0][0])
    anchor = generated_at - timedelta(hours=1)
    started_at = timezone.now()
    print(f"\nDatabase {DB_NAME}: {Message.objects.count():,} messages, {Conversation.objects.count():,} "
          f"conversations, {Provider.objects.count()} providers; data generated {generated_at:%Y-%m-%d %H:%M} UTC, "
          f"ranges end at {anchor:%Y-%m-%d %H:00} UTC; code: {code_state()}")
    rows: list[Row] = []
    if "rebuild" in args.parts:
        rows += measure_rebuild(args)
    if "squash" in args.parts:
        rows += measure_squash(args, anchor)
    if "figures" in args.parts:
        rows += measure_figures(args, anchor)
    if "overhead" in args.parts:
        rows += measure_overhead(args)
        rows.append(repair_and_check(started_at - timedelta(hours=1)))
    report(rows)
    return 0


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="generate the data again even if a kept copy matches")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--providers", type=int, choices=(2, 3), default=3)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each page and query (default 5)")
    parser.add_argument("--rebuild-runs", type=int, default=3, help="timed full rebuilds (default 3)")
    parser.add_argument("--squash-rounds", type=int, default=5, help="busy hours written and squashed (default 5)")
    parser.add_argument("--hour-messages", type=int, default=2000, help="messages written in each busy hour")
    parser.add_argument("--overhead-messages", type=int, default=2000,
                        help="messages through each path with the triggers on, and as many with them off")
    parser.add_argument("--overhead-blocks", type=int, default=16,
                        help="blocks, triggers on and off in turn: on, off, off, on, ... (default 16)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which parts to measure (default {','.join(PARTS)})")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN ANALYZE of the slowest statements (the rebuild's, the pages')")
    parser.add_argument("--stage", choices=("generate", "measure"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.messages < 1000 or args.messages % 2 or args.contacts < 1000 or args.days < 31:
        parser.error("need an even --messages >= 1000, --contacts >= 1000 and --days >= 31")
    if args.overhead_blocks < 4 or args.overhead_blocks % 4 or args.overhead_messages < args.overhead_blocks:
        parser.error("--overhead-blocks must be a multiple of 4 and at most --overhead-messages")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stage == "generate":
        setup_django(DATA_DB)
        generate(args)
        return 0
    if args.stage == "measure":
        setup_django(DB_NAME)
        return measure(args)
    forwarded = [arg for arg in (argv if argv is not None else sys.argv[1:]) if arg != "--fresh"]
    why = "--fresh" if args.fresh else kept_data_state(args)
    if why:
        print(f"Generating {DATA_DB} ({why}): {args.contacts:,} contacts, {args.messages:,} messages over "
              f"{args.days} days, {args.providers} providers", flush=True)
        started = time.perf_counter()
        env = bench_env(DATA_DB)
        migrate_fresh(DATA_DB, env)
        print(f"  migrated in {time.perf_counter() - started:.1f} s", flush=True)
        subprocess.run([str(VENV_PYTHON), __file__, *forwarded, "--stage", "generate"], cwd=BASE_DIR, env=env,
                       check=True)
        print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
    else:
        print(f"Reusing {DATA_DB} ({args.messages:,} messages; --fresh makes it again)", flush=True)
    print(f"Copying it to {DB_NAME} ... ", end="", flush=True)
    print(f"{copy_kept_data():.1f} s", flush=True)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    result = subprocess.run([str(VENV_PYTHON), __file__, *forwarded, "--stage", "measure"], cwd=BASE_DIR,
                            env=bench_env(DB_NAME), check=False)
    redis.Redis.from_url(REDIS_URL).flushdb()
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
