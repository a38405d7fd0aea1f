"""
Inbox benchmark: the conversation list as operators use it (the default order, what waits longest first,
and its filters) and one conversation page with its transcript poll, on 100,000 conversations and
1,000,000 messages.

    .venv/bin/python bench/inbox.py [--contacts 100000] [--messages 1000000] [--repeat 15] [--reuse]

1. Recreates the database `whatsapp_bench_inbox` (kept afterwards; `--reuse` measures it again), fills it
   as bench/contacts_admin.py does (one conversation per contact, the messages spread over them, one long
   conversation of 2,000 messages), then gives it an inbox's shape in SQL: a third of the conversations
   wait for a reply, a quarter have an open 24-hour window (some closing within the hour), 20 staff
   users handle a fifth of them (the measuring user 1 in 50), and a sixth carry one of 8 labels. ANALYZE.
2. Measures each page through Django's full request stack in this process (the test client, logged in as
   a superuser, DEBUG off): server time (median and p95 of --repeat runs after two warm-ups) and the SQL
   queries of one run. The list is measured at 20, 50, 100 and 200 rows per page, to show the query count
   does not grow with the page size.
3. Baseline, same run: the admin index page (the admin's fixed cost: session, user, template).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.contacts_admin import bench_env, fill, measure, recreate_database, report, set_page_size  # noqa: E402

DB_NAME = "whatsapp_bench_inbox"
PAGE_SIZES = (20, 50, 100, 200)
STAFF = 20
LABELS = ["billing", "shipping", "returns", "vip", "complaint", "wholesale", "follow-up", "spam"]


def shape_inbox(measuring_user_id: int) -> None:
    """Waiting customers, open windows, assignees and labels, in SQL."""
    from django.db import connection

    statements = [
        ("staff", "UPDATE auth_user SET is_staff = true WHERE username = ANY(%s)",
         [[f"user{n}" for n in range(1, STAFF + 1)]]),
        ("waiting", "UPDATE whatsapp_conversation SET awaiting_reply_since = last_message_at WHERE id % 3 = 0", []),
        ("assignees", f"""
            UPDATE whatsapp_conversation c SET assignee_id = u.id FROM auth_user u
            WHERE c.id % 5 = 0 AND u.username = 'user' || (1 + c.id % {STAFF})""", []),  # noqa: S608
        ("mine", "UPDATE whatsapp_conversation SET assignee_id = %s WHERE id %% 50 = 0", [measuring_user_id]),
        ("open windows", """
            INSERT INTO whatsapp_session (conversation_id, state, opened_at, last_inbound_at, expires_at)
            SELECT id, 'open', now() - interval '2 hours', now() - interval '1 hour',
                   now() + ((id % 23) || ' hours')::interval + interval '30 minutes'
            FROM whatsapp_conversation WHERE id % 4 = 0""", []),
        ("labels", "INSERT INTO whatsapp_label (name, colour, description, created_at) "
                   "SELECT name, '#1d4ed8', '', now() FROM unnest(%s::text[]) name", [LABELS]),
        ("labelled", """
            INSERT INTO whatsapp_conversation_labels (conversation_id, label_id)
            SELECT c.id, l.id FROM whatsapp_conversation c
            JOIN whatsapp_label l ON l.name = (%s::text[])[1 + c.id %% 8]
            WHERE c.id %% 6 = 0""", [LABELS]),
    ]
    with connection.cursor() as cursor:
        for name, sql, params in statements:
            cursor.execute(sql, params or None)  # with parameters, a literal % is written %%
            print(f"  {name:<22} {cursor.rowcount:>9} rows", flush=True)
        cursor.execute("ANALYZE")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="measure the existing database, do not rebuild it")
    args = parser.parse_args(argv)

    env = bench_env(DB_NAME)
    if not args.reuse:
        print(f"building {DB_NAME}: {args.contacts} conversations, {args.messages} messages", flush=True)
        recreate_database(env, DB_NAME)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from whatsapp.models import Conversation, Label, Message

    user_model = get_user_model()
    admin_user = user_model.objects.filter(username="bench-admin").first() or \
        user_model.objects.create_superuser("bench-admin", "bench@example.com", secrets.token_urlsafe(16))
    if not args.reuse:
        fill(args.contacts, args.messages)
        shape_inbox(admin_user.pk)
    client = Client()
    client.force_login(admin_user)
    long_conversation = Conversation.objects.order_by("-id").first()
    label = Label.objects.order_by("name").first()
    print(f"database: {Conversation.objects.count()} conversations "
          f"({Conversation.objects.filter(awaiting_reply_since__isnull=False).count()} waiting for a reply), "
          f"{Message.objects.count()} messages\n", flush=True)

    inbox = "/admin/whatsapp/conversation/"
    rows: list[tuple[str, dict]] = [("baseline: admin index page", measure(client, "/admin/", args.repeat))]
    for size in PAGE_SIZES:
        set_page_size("whatsapp.Conversation", size)
        rows.append((f"inbox, waits longest first, {size} per page", measure(client, inbox, args.repeat)))
    set_page_size("whatsapp.Conversation", 50)
    for name, query in (("needs reply", "waiting=reply"), ("mine", "assigned=mine"),
                        ("unassigned", "assigned=none"), ("window closing", "waiting=closing"),
                        (f"label {label.name}", f"label={label.pk}"),
                        ("mine + needs reply", "assigned=mine&waiting=reply"),
                        ("search a phone number", "q=%2B15550004242"),
                        ("search a word every contact has", "q=Customer")):
        rows.append((f"inbox, {name}, 50 per page", measure(client, f"{inbox}?{query}", args.repeat)))
    page = f"{inbox}{long_conversation.pk}/change/"
    rows.append(("conversation page (2,000 messages, newest 500 shown)", measure(client, page, args.repeat)))
    rows.append(("its transcript poll (JSON)", measure(client, f"{inbox}{long_conversation.pk}/transcript/",
                                                       args.repeat)))

    rows.append(("its transcript poll, unchanged (304)", measure_unchanged_poll(
        client, f"{inbox}{long_conversation.pk}/transcript/", args.repeat)))
    report(rows)
    return 0


def measure_unchanged_poll(client, url: str, repeat: int) -> dict:
    """A poll that sends back the ETag it got: what an open page costs while nothing happens."""
    import statistics
    import time

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    etag = client.get(url)["ETag"]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, HTTP_IF_NONE_MATCH=etag)
        if response.status_code != 304:  # a new minute changed the state line's countdown
            etag = response["ETag"]
            continue
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        client.get(url, HTTP_IF_NONE_MATCH=etag)
    return {"median": statistics.median(times), "p95": sorted(times)[max(0, int(len(times) * 0.95) - 1)],
            "queries": len(captured), "bytes": 0}


if __name__ == "__main__":
    sys.exit(main())
