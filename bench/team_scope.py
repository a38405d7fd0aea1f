"""
Team scope benchmark: the lists an operator of one team opens, beside the same lists unscoped (a superuser),
on 100,000 conversations.

    .venv/bin/python bench/team_scope.py [--contacts 100000] [--messages 300000] [--repeat 15] [--reuse]

1. Recreates the database `whatsapp_bench_teams` (kept afterwards; `--reuse` measures it again) and fills it
   as bench/contacts_admin.py does: one conversation per contact, six in seven on the main number and one in
   seven on the second, the messages spread over them. Two teams: "Main" answers the main number, "Second"
   the second; one operator in each (view permissions on everything, change on conversations). VACUUM
   ANALYZE, as autovacuum leaves a table in production.
2. Measures each page through Django's full request stack in this process (the test client, DEBUG off):
   server time (median and p95 of --repeat runs after two warm-ups) and the SQL queries of one run, for
   the superuser (the baseline: no scope) and for each operator. The inbox is measured at 20, 50, 100 and
   200 rows per page: the query count must not grow with the page size.
3. Prints each scoped page's median beside the unscoped one, and whether it is within 20 %.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.contacts_admin import bench_env, fill, measure, recreate_database, set_page_size  # noqa: E402

DB_NAME = "whatsapp_bench_teams"
PAGE_SIZES = (20, 50, 100, 200)
GOAL = 1.20  # a scoped page's median may take at most 20 % more than the unscoped one's


def setup_teams():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from whatsapp.models import Provider, Team

    user_model = get_user_model()
    people = {"superuser": user_model.objects.filter(username="bench-root").first()
              or user_model.objects.create_superuser("bench-root", "root@example.com", secrets.token_urlsafe(16))}
    perms = [*Permission.objects.filter(codename__startswith="view_"),
             Permission.objects.get(codename="change_conversation")]
    for name, provider_name in (("main", "bench sandbox"), ("second", "bench sandbox 2")):
        user = user_model.objects.filter(username=f"bench-{name}").first()
        if user is None:
            user = user_model.objects.create_user(f"bench-{name}", password=secrets.token_urlsafe(16), is_staff=True)
            user.user_permissions.add(*perms)
            team = Team.objects.create(name=name.title())
            team.members.add(user)
            team.providers.add(Provider.objects.get(name=provider_name))
        people[f"operator of the {name} number"] = user
    return people


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="measure the existing database, do not rebuild it")
    args = parser.parse_args(argv)

    env = bench_env(DB_NAME)
    # API rate limits out of reach: the benchmark asks the same list hundreds of times a minute.
    env.update(dict.fromkeys(["API_RATE_READ", "API_RATE_WRITE", "API_RATE_SEND", "API_RATE_BULK"], "100000/min"))
    if not args.reuse:
        print(f"building {DB_NAME}: {args.contacts} conversations, {args.messages} messages", flush=True)
        recreate_database(env, DB_NAME)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    from core.api_tokens import api_token_create
    from whatsapp.models import Conversation

    if not args.reuse:
        fill(args.contacts, args.messages)
    people = setup_teams()
    with connection.cursor() as cursor:
        # As autovacuum leaves a table in production: visibility maps set, so counts can scan indexes only.
        cursor.execute("VACUUM ANALYZE")
    print(f"database: {Conversation.objects.count()} conversations\n", flush=True)

    pages = [(f"inbox, {size} per page", "/admin/whatsapp/conversation/", size) for size in PAGE_SIZES]
    pages += [("inbox, search a word every contact has", "/admin/whatsapp/conversation/?q=Customer", 50),
              ("contacts list", "/admin/contacts/contact/", None),
              ("messages list", "/admin/whatsapp/message/", None),
              ("API conversations, 50 per page", "/api/v1/conversations/?page_size=50", None),
              ("API contacts, 50 per page", "/api/v1/contacts/?page_size=50", None)]
    clients = {}
    for who, user in people.items():
        client = Client()
        client.force_login(user)
        _, key = api_token_create(user=user, name="bench")
        clients[who] = (client, Client(HTTP_AUTHORIZATION=f"Token {key}"))

    print(f"{'page':<44} {'who':<30} {'median ms':>10} {'p95 ms':>8} {'queries':>8} {'rows':>7}  vs unscoped")
    missed = 0
    for label, url, size in pages:
        if size:
            set_page_size("whatsapp.Conversation", size)
        baseline = None
        for who in people:
            client = clients[who][1] if url.startswith("/api/") else clients[who][0]
            result = measure(client, url, args.repeat)
            rows = _rows(client, url)
            if who == "superuser":
                baseline, verdict = result["median"], "(baseline)"
            else:
                ratio = result["median"] / baseline
                verdict = f"{ratio:5.2f}x {'within 20 %' if ratio <= GOAL else 'MISSED'}"
                missed += ratio > GOAL
            print(f"{label:<44} {who:<30} {result['median']:>10.1f} {result['p95']:>8.1f} {result['queries']:>8} "
                  f"{rows:>7}  {verdict}", flush=True)
    set_page_size("whatsapp.Conversation", 50)
    print(f"\n{missed} scoped page(s) more than 20 % slower than unscoped")
    return 0


def _rows(client, url: str) -> int:
    response = client.get(url)
    if url.startswith("/api/"):
        return len(response.json()["results"])
    html = response.content.decode()
    table = html[html.find('id="result_list"'):]
    return max(0, table[:table.find("</table>")].count("<tr") - 1)  # the rows, without the header's


if __name__ == "__main__":
    sys.exit(main())
