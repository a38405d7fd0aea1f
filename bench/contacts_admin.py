"""
Contacts admin benchmark: the unmapped-contacts screen, the contacts changelist and one conversation
page, on a database with 100,000 contacts and 1,000,000 messages.

    .venv/bin/python bench/contacts_admin.py [--contacts 100000] [--messages 1000000] [--repeat 15] [--reuse]

1. Recreates the database `whatsapp_bench_contacts` (kept afterwards; `--reuse` measures an existing one
   without rebuilding it), migrates it and fills it with SQL (generate_series): 5,000 users with
   profiles, --contacts contacts with a phone identity each (every tenth also a business-scoped id),
   half of them mapped to a user, one conversation per contact, and --messages messages spread over the
   conversations, with one long conversation of 2,000 messages for the conversation page. ANALYZE.
2. Measures each page through Django's full request stack in this process (the test client, logged in
   as a superuser, DEBUG off): the server time (median and p95 of --repeat runs after two warm-ups) and
   the SQL queries of one run. The two changelists are measured at 20, 100 and 200 rows per page, to
   show that the query count does not grow with the page size.
3. Baselines, same run: the admin index page (the admin's fixed cost: session, user, template), and a
   naive ORM read of the same 100 unmapped contacts with their message counts (a JOIN and Count(), no
   admin, no template).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = BASE_DIR / ".venv" / "bin"
DB_NAME = "whatsapp_bench_contacts"
PG = ["-h", "127.0.0.1", "-U", "postgres"]
USERS = 5000
LONG_CONVERSATION_MESSAGES = 2000
GOAL_MS = 300.0
PAGE_SIZES = (20, 100, 200)


def bench_env(db_name: str = DB_NAME) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        # A fixed key, so that a --reuse run can read the providers a previous run stored.
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(hashlib.sha256(b"bench-contacts-admin").digest()).decode(),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db_name}",
        "REDIS_URL": "redis://127.0.0.1:6379/14",
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(BASE_DIR / "var" / "bench"),
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        # The measuring superuser signs in without an authenticator app.
        "TWO_FACTOR_REQUIRED_FOR_SUPERUSERS": "false",
    })
    return env


def recreate_database(env: dict[str, str], db_name: str = DB_NAME) -> None:
    (BASE_DIR / "var" / "bench" / "staticfiles").mkdir(parents=True, exist_ok=True)
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", db_name], check=True)
    subprocess.run(["createdb", *PG, db_name], check=True)
    subprocess.run([str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR,
                   env=env, check=True)


def _messages_insert(*, text: str, outbound_status: str, id_prefix: str, at: str, source: str) -> str:
    """Messages for the rows of `source` (a conversation `c` and a number `n`), alternately inbound and
    outbound; the arguments are SQL expressions of our own."""
    return f"""
        INSERT INTO whatsapp_message (provider_id, conversation_id, direction, message_type, text, content, status,
                                      error_code, error_title, error_detail, attempts, duplicate_count,
                                      template_variables, transcript, intent, sentiment, language, processing_status,
                                      lane, hold_reason, request_fingerprint, purpose, provider_message_id,
                                      first_response, created_at, updated_at)
        SELECT c.provider_id, c.id, CASE WHEN n % 2 = 0 THEN 'inbound' ELSE 'outbound' END, 'text', {text}, '{{}}',
               CASE WHEN n % 2 = 0 THEN 'received' ELSE '{outbound_status}' END, '', '', '', 0, 0, '{{}}', '', '', '',
               '', 'done', 'reply', '', '', '', {id_prefix} || '-' || n, false, {at}, {at}
        FROM {source}"""  # noqa: S608 - only SQL expressions and integers of our own are interpolated


def fill(contacts: int, messages: int) -> dict[str, float]:
    """Bulk rows straight in SQL: the ORM would take an hour for a million messages."""
    from django.db import connection

    from whatsapp.services.providers import provider_create

    provider = provider_create(kind="sandbox", name="bench sandbox", options={})
    other = provider_create(kind="sandbox", name="bench sandbox 2", options={})
    # Every conversation gets `per_conversation` messages, the first `remainder` one more: --messages in all.
    per_conversation, remainder = divmod(max(contacts, messages - LONG_CONVERSATION_MESSAGES), contacts)
    steps = [
        ("users", f"""
            INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                                   is_active, date_joined)
            SELECT '!', false, 'user' || g, 'First' || g, 'Last' || g, 'user' || g || '@example.com', false,
                   true, now()
            FROM generate_series(1, {USERS}) g"""),  # noqa: S608 - only integers of our own are interpolated
        ("profiles", """
            INSERT INTO contacts_userprofile (user_id, phone_number)
            SELECT id, '+1666' || lpad(id::text, 7, '0') FROM auth_user WHERE username LIKE 'user%'"""),
        ("contacts", f"""
            INSERT INTO contacts_contact (profile_name, consent, consent_source, language, time_zone,
                                          is_ignored, attributes, created_at, last_seen_at)
            SELECT 'Customer ' || g, CASE WHEN g % 50 = 0 THEN 'opted_out' ELSE 'unknown' END, '', '', '',
                   g % 97 = 0, '{{}}', now() - (({contacts} - g) || ' minutes')::interval,
                   now() - (({contacts} - g) || ' minutes')::interval
            FROM generate_series(1, {contacts}) g"""),  # noqa: S608 - only integers of our own are interpolated
        ("phone identities", """
            INSERT INTO contacts_contactidentity (contact_id, kind, value, scope, created_at)
            SELECT id, 'phone', '+1555' || lpad(id::text, 7, '0'), '', created_at FROM contacts_contact"""),
        ("business-scoped ids", """
            INSERT INTO contacts_contactidentity (contact_id, kind, value, scope, created_at)
            SELECT id, 'bsuid', 'US.' || id, '102290129340398', created_at FROM contacts_contact
            WHERE id % 10 = 0"""),
        ("mappings", f"""
            INSERT INTO contacts_contactusermapping (contact_id, user_id, method, rule, notify_on_ready,
                                                     created_at)
            SELECT c.id, u.id, 'manual', '', false, now()
            FROM contacts_contact c
            JOIN auth_user u ON u.username = 'user' || (1 + c.id % {USERS})
            WHERE c.id % 2 = 0"""),  # noqa: S608 - only integers of our own are interpolated
        ("conversations", f"""
            INSERT INTO whatsapp_conversation (provider_id, contact_id, context, ai_summary,
                                               external_conversation_id, external_state, status, status_source,
                                               created_at, last_message_at)
            SELECT CASE WHEN id % 7 = 0 THEN {other.pk} ELSE {provider.pk} END, id, '{{}}', '', '', '', 'open', '',
                   created_at, created_at
            FROM contacts_contact"""),  # noqa: S608 - only integers of our own are interpolated
        ("messages", _messages_insert(
            text="'Message ' || n || ' of conversation ' || c.id", outbound_status="read",
            id_prefix="'bench-' || c.id",
            at="c.created_at + (n || ' seconds')::interval",
            source=f"""whatsapp_conversation c CROSS JOIN generate_series(1, {per_conversation + 1}) n
                       WHERE n <= {per_conversation}
                          OR c.id < (SELECT min(id) FROM whatsapp_conversation) + {remainder}""")),  # noqa: S608
        ("long conversation", _messages_insert(
            text="'Long conversation message ' || n", outbound_status="delivered", id_prefix="'bench-long'",
            at="now() - ((3000 - n) || ' seconds')::interval",
            source=f"""(SELECT * FROM whatsapp_conversation ORDER BY id DESC LIMIT 1) c
                       CROSS JOIN generate_series(1, {LONG_CONVERSATION_MESSAGES}) n""")),  # noqa: S608
    ]
    timings = {}
    with connection.cursor() as cursor:
        # The analytics counting triggers (and the foreign-key checks) would triple the time of a bulk fill
        # whose rows are generated consistent; the pages measured here do not read those counts.
        cursor.execute("SET session_replication_role = replica")
        for name, sql in steps:
            started = time.perf_counter()
            cursor.execute(sql)
            timings[name] = time.perf_counter() - started
            print(f"  {name:<22} {cursor.rowcount:>9} rows  {timings[name]:6.1f} s", flush=True)
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("UPDATE whatsapp_conversation SET last_message_at = now() WHERE id = "
                       "(SELECT max(id) FROM whatsapp_conversation)")
        cursor.execute("ANALYZE")
    return timings


def measure(client, url: str, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return {"median": statistics.median(times), "p95": sorted(times)[max(0, int(len(times) * 0.95) - 1)],
            "queries": len(captured), "bytes": len(response.content)}


def bare_unmapped_read(limit: int = 100) -> None:
    """A baseline: the same page of unmapped contacts with their message counts, read the naive way (a
    JOIN and Count(), no admin, no template)."""
    from django.db.models import Count

    from contacts.services.mapping import unmapped_contacts

    rows = list(unmapped_contacts().annotate(messages=Count("conversations__messages"))[:limit])
    assert rows


def time_callable(function, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        function()
    return {"median": statistics.median(times), "p95": sorted(times)[max(0, int(len(times) * 0.95) - 1)],
            "queries": len(captured), "bytes": 0}


def report(rows: list[tuple[str, dict]]) -> None:
    """The figures as a table, each page's p95 against the goal (baselines have none)."""
    print(f"{'page':<56} {'median ms':>10} {'p95 ms':>8} {'queries':>8} {'KB':>6}  goal <{GOAL_MS:.0f} ms")
    for label, result in rows:
        verdict = "" if label.startswith("baseline") else ("met" if result["p95"] < GOAL_MS else "MISSED")
        print(f"{label:<56} {result['median']:>10.1f} {result['p95']:>8.1f} {result['queries']:>8} "
              f"{result['bytes'] / 1024:>6.0f}  {verdict}")


def set_page_size(model_label: str, size: int) -> None:
    from django.apps import apps
    from django.contrib import admin

    admin.site._registry[apps.get_model(model_label)].list_per_page = size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="measure the existing database, do not rebuild it")
    args = parser.parse_args(argv)

    env = bench_env()
    if not args.reuse:
        print(f"building {DB_NAME}: {args.contacts} contacts, {args.messages} messages", flush=True)
        recreate_database(env)
    os.environ.update(env)
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from whatsapp.models import Conversation, Message

    if not args.reuse:
        fill(args.contacts, args.messages)
    admin_user = get_user_model().objects.filter(username="bench-admin").first() or \
        get_user_model().objects.create_superuser("bench-admin", "bench@example.com", secrets.token_urlsafe(16))
    client = Client()
    client.force_login(admin_user)
    long_conversation = Conversation.objects.order_by("-id").first()
    print(f"database: {get_user_model().objects.count()} users, {Conversation.objects.count()} conversations, "
          f"{Message.objects.count()} messages; the long conversation has "
          f"{long_conversation.messages.count()} messages\n", flush=True)

    rows: list[tuple[str, dict]] = []
    rows.append(("baseline: admin index page", measure(client, "/admin/", args.repeat)))
    rows.append(("baseline: naive ORM read, 100 unmapped + Count()", time_callable(bare_unmapped_read, args.repeat)))
    for label, model, url in (("unmapped contacts", "contacts.UnmappedContact", "/admin/contacts/unmappedcontact/"),
                              ("contacts changelist", "contacts.Contact", "/admin/contacts/contact/")):
        for size in PAGE_SIZES:
            set_page_size(model, size)
            rows.append((f"{label}, {size} per page", measure(client, url, args.repeat)))
        set_page_size(model, 100)
    rows.append(("conversation page (2,000 messages, newest 500 shown)",
                 measure(client, f"/admin/whatsapp/conversation/{long_conversation.pk}/change/", args.repeat)))

    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
