"""
Campaign benchmark: a 100,000-recipient campaign through the real pipeline to a fake Meta Graph API.

    .venv/bin/python bench/campaign_send.py [--recipients 100000] [--rate 80] [--seconds 60]
                                            [--resume-seconds 30] [--replies 100] [--concurrency 4]

1. Recreates the database `whatsapp_bench`, migrates it, empties Redis db 14, starts the fake Meta Graph API of
   bench/outbound_send.py (its own process, recording the arrival time and `to` of every send) and a Meta
   provider limited to --rate messages a second, with an approved marketing template.
2. Build: --recipients contacts (phone numbers in New York, Los Angeles and São Paulo) in a segment;
   `campaign_launch` writes one record per recipient, each with its variant, zone and due time. Baseline, same
   run: one INSERT ... SELECT writing as many rows of the same table straight from the contacts (no audience
   query, no zones, no variants): what the database itself needs for the rows.
3. Send: two Celery workers (and beat, as production runs them) send the campaign for --seconds, while this
   process queues --replies reply-lane messages to other customers (open windows). Measured at the fake: the
   campaign's rate, the largest count in any one-second window, and each reply's time from its commit to its
   arrival. Baseline: a bare loop posting the same bodies at the same slot spacing (bench/outbound_send.py's).
4. Resume: both worker groups are killed (SIGKILL) mid-campaign, two new ones start, the campaign goes on for
   --resume-seconds and is paused; once nothing is in flight, every request the fake received is checked
   against the database: no recipient got it twice, and every message recorded as sent reached the fake.

Everything it starts is stopped on exit, errors and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.outbound_send import (  # noqa: E402 - the path above makes `bench` importable when run as a script
    REPLY_BLOCK,
    FakeMeta,
    Run,
    bench_env,
    code_state,
    collect,
    contacts_in_order,
    create_contacts,
    create_provider,
    final_table,
    mark,
    number,
    percentile,
    print_run,
    run_baseline,
    send_one,
)
from bench.webhook_ingest import (  # noqa: E402
    DB_NAME,
    VENV_BIN,
    Processes,
    flush_redis,
    free_port,
    recreate_database,
    setup_django,
)

GOALS = {"build_s": 10.0, "rate_share": 0.99, "reply_p99_s": 1.0}
# New York, Los Angeles and São Paulo: valid numbers (a NANP exchange starts 2-9, a São Paulo mobile with 9).
ZONE_PREFIXES = ("+1212", "+1310", "+551195")


def _sigterm(_signum, _frame):
    raise SystemExit(143)


def campaign_number(index: int) -> str:
    prefix, serial = ZONE_PREFIXES[index % 3], index // 3
    if prefix.startswith("+1"):
        return f"{prefix}{200 + serial // 10_000:03d}{serial % 10_000:04d}"
    return f"{prefix}{serial:07d}"


def create_audience(count: int) -> float:
    """`count` contacts with a phone identity each, opted in, made with COPY-speed bulk inserts."""
    from django.db import transaction

    from contacts.models import Contact, ContactIdentity
    from whatsapp.providers.events import IdentityKind

    started = time.perf_counter()
    with transaction.atomic():
        for start in range(0, count, 20_000):
            chunk = range(start, min(start + 20_000, count))
            contacts = Contact.objects.bulk_create(
                [Contact(profile_name=f"Person {i}", consent=Contact.Consent.OPTED_IN,
                         attributes={"audience": "campaign"}) for i in chunk], batch_size=5000)
            ContactIdentity.objects.bulk_create(
                [ContactIdentity(contact=contact, kind=IdentityKind.PHONE, value=campaign_number(i))
                 for contact, i in zip(contacts, chunk, strict=True)], batch_size=5000)
    return time.perf_counter() - started


def create_campaign(provider):
    from campaigns.models import Campaign, CampaignVariant, Segment
    from templates_app.models import MessageTemplate
    from whatsapp.providers.events import TemplateStatus

    template = MessageTemplate.objects.create(
        provider=provider, name="spring_sale", language="en_US", category=MessageTemplate.Category.MARKETING,
        status=TemplateStatus.APPROVED, components=[{"type": "BODY", "text": "Hi {{1}}, spring sale: {{2}} off."}],
        examples={"body": ["Ana", "20%"]}, provider_template_name="spring_sale", provider_template_id="tpl-1")
    segment = Segment.objects.create(name="Campaign audience", filters={"attributes": {"audience": "campaign"}})
    campaign = Campaign.objects.create(name="Spring sale", provider=provider, segment=segment)
    CampaignVariant.objects.create(campaign=campaign, name="A", template=template,
                                   variables={"body": {"1": "{contact.first_name|there}", "2": "20%"}})
    return campaign


def baseline_build(campaign, count: int) -> float:
    """The same number of recipient rows written by one INSERT ... SELECT from the contacts: the floor."""
    from django.db import connection, transaction

    from campaigns.models import Campaign, CampaignRecipient

    scratch = Campaign.objects.create(name="baseline rows", provider=campaign.provider, segment=campaign.segment)
    table = CampaignRecipient._meta.db_table
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (campaign_id, run, contact_id, \"group\", status, skip_reason, time_zone, "  # noqa: S608
            "due_at, \"values\", created_at, error_code, fallback_status, fallback_reason, fallback_sid, "
            "fallback_error) SELECT %s, 1, id, 'test', 'pending', '', 'UTC', now(), '{}'::jsonb, now(), '', '', '', "
            "'', '' "
            "FROM contacts_contact ORDER BY id LIMIT %s", [scratch.pk, count])
    seconds = time.perf_counter() - started
    with transaction.atomic():
        CampaignRecipient.objects.filter(campaign=scratch).delete()
        scratch.delete()
    return seconds


def start_workers(processes: Processes, env: dict, logs: Path, name: str, concurrency: int) -> list:
    workers = []
    for index in (1, 2):
        cmd = [str(VENV_BIN / "celery"), "-A", "config", "worker", "-l", "WARNING", "-c", str(concurrency),
               "--pool", "prefork", "-n", f"bench-campaign-{name}-{index}-{os.getpid()}@%h"]
        log = logs / f"celery-campaign-{name}-{index}.log"
        workers.append(processes.start(f"celery-{name}-{index}", cmd, env, log))
    return workers


def kill_group(processes: Processes, process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(timeout=20)
    processes.started = [p for p in processes.started if p[1] is not process]


def campaign_prefix_counts(arrivals: list[tuple[float, str]]) -> tuple[list[float], Counter]:
    """The campaign's arrivals (replies and the baseline go to +1555 numbers)."""
    campaign = [(t, to) for t, to in arrivals if not to.startswith("+1555")]
    return [t for t, _to in campaign], Counter(to for _t, to in campaign)


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def send_window(args, *, fake: FakeMeta, provider, reply_contacts: list, seconds: float) -> dict[str, float]:
    """Queue replies to other customers every --reply-interval, from the campaign's first send on (replies queued
    while the workers start would measure their start), until `seconds` after the workers were started; returns
    to -> commit time."""
    from whatsapp.models import Message

    reply_t0: dict[str, float] = {}
    started = time.monotonic()
    sending = False
    while time.monotonic() - started < seconds:
        sending = sending or fake.count() > 0
        if sending and len(reply_t0) < len(reply_contacts):
            index = len(reply_t0)
            _id, t0 = send_one(provider, reply_contacts[index], f"Reply {index}: thanks, we are on it",
                               Message.Lane.REPLY)
            reply_t0[number(REPLY_BLOCK, index)] = t0
        time.sleep(args.reply_interval)
    return reply_t0


def settle(seconds: float) -> None:
    """Let the beat jobs and redelivered tasks settle what the killed workers left `sending`."""
    from whatsapp.models import Message

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Message.objects.filter(purpose="campaign", status="sending").exists():
            return
        time.sleep(1)


def integrity(fake: FakeMeta, campaign) -> dict[str, int]:
    """What the fake received against what the database says. A send whose worker died during its call is an
    outcome unknown (dead letter, for a person to settle): the provider may or may not have it."""
    from campaigns.models import CampaignRecipient

    arrivals, _other = fake.stats()
    _times, received = campaign_prefix_counts(arrivals)
    by_status: dict[str, set[str]] = {}
    for phone, status in (CampaignRecipient.objects.filter(campaign=campaign, message__isnull=False)
                          .values_list("contact__identities__value", "message__status")):
        by_status.setdefault(status, set()).add(phone)
    sent = set().union(*(by_status.get(status, set()) for status in ("sent", "delivered", "read")))
    unknown = by_status.get("dead_letter", set())
    return {
        "requests": sum(received.values()),
        "duplicates": sum(times - 1 for times in received.values() if times > 1),
        "sent_not_received": len(sent - set(received)),
        "received_not_recorded": len(set(received) - sent - unknown),
        "unknown_received": len(unknown & set(received)),
        "unknown_not_received": len(unknown - set(received)),
        "still_sending": len(by_status.get("sending", set())),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=80, help="the number's limit, per second (default 80)")
    parser.add_argument("--seconds", type=float, default=60, help="the measured sending window (default 60)")
    parser.add_argument("--resume-seconds", type=float, default=30, help="sending after the kill (default 30)")
    parser.add_argument("--replies", type=int, default=100, help="reply-lane messages during the window")
    parser.add_argument("--reply-interval", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=4, help="prefork processes per worker; two workers")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _sigterm)
    processes = Processes()
    fake_port = free_port()
    # Redelivery of a killed worker's tasks within seconds, not the default 40.
    env = bench_env(fake_port, ["CELERY_VISIBILITY_TIMEOUT=10", "SEND_STALE_AFTER_SECONDS=15", *args.env])
    logs = Path(env["VAR_DIR"])
    rows = [("figure", "ours", "baseline", "goal", "met?")]
    try:
        print(f"Preparing database {DB_NAME} (drop, create, migrate) and Redis db 14 ...", flush=True)
        recreate_database(env)
        flush_redis()
        setup_django(env)
        from django.conf import settings
        from django.db.models import Count

        from campaigns.models import CampaignRecipient
        from campaigns.services.control import campaign_pause
        from campaigns.services.launch import campaign_launch

        fake_script = str(BASE_DIR / "bench" / "outbound_send.py")
        fake_proc = processes.start("fake-meta", [str(VENV_BIN / "python"), fake_script, "fake-meta", "--port",
                                                  str(fake_port)], env, logs / "fake-meta.log")
        fake = FakeMeta(fake_port)
        fake.wait_ready(fake_proc, time.monotonic() + 30)
        provider = create_provider(args.rate)
        print(f"  code: {code_state()}; {os.cpu_count()} cores; limit {args.rate}/s; SEND_RATE_HEADROOM "
              f"{settings.SEND_RATE_HEADROOM}; CAMPAIGN_BACKLOG_SECONDS {settings.CAMPAIGN_BACKLOG_SECONDS}",
              flush=True)

        print(f"\nBuild: {args.recipients} contacts in three zones ...", flush=True)
        print(f"  contacts made in {create_audience(args.recipients):.1f} s", flush=True)
        campaign = create_campaign(provider)
        started = time.perf_counter()
        written = campaign_launch(campaign)
        build = time.perf_counter() - started
        base_build = baseline_build(campaign, args.recipients)
        zones = dict(CampaignRecipient.objects.filter(campaign=campaign).values_list("time_zone")
                     .annotate(n=Count("pk")).order_by())
        print(f"  campaign_launch wrote {written} recipients in {build:.2f} s; bare INSERT ... SELECT of as many "
              f"rows {base_build:.2f} s; zones {zones}", flush=True)
        rows.append((f"build {written} recipient records (s)", f"{build:.2f}", f"{base_build:.2f}",
                     f"< {GOALS['build_s']:.0f}", mark(build < GOALS["build_s"])))

        reply_contacts = contacts_in_order(create_contacts(provider, REPLY_BLOCK, args.replies))
        print(f"\nSend: two workers x {args.concurrency} and beat for {args.seconds:.0f} s, {args.replies} replies "
              f"queued every {args.reply_interval} s meanwhile", flush=True)
        fake.reset()
        beat = processes.start("beat", [str(VENV_BIN / "celery"), "-A", "config", "beat", "-l", "WARNING",
                                        "-s", str(logs / "beat-schedule")], env, logs / "celery-campaign-beat.log")
        workers = start_workers(processes, env, logs, "first", args.concurrency)
        busy0 = busy_jiffies()
        reply_t0 = send_window(args, fake=fake, provider=provider, reply_contacts=reply_contacts, seconds=args.seconds)
        busy1 = busy_jiffies()
        print(f"  machine {(busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1):.0%} busy during the window "
              f"({os.cpu_count()} cores)", flush=True)
        for worker in workers:
            kill_group(processes, worker)
        killed_at = time.time()
        arrivals, _other = fake.stats()
        ours = Run(name="campaign", expected=0)
        collect(ours, fake, reply_t0, "+1212")
        times, _received = campaign_prefix_counts(sorted(arrivals))
        times = [t for t in times if t < killed_at - 0.5]
        steady = Run(name="campaign sends before the kill", expected=0, times=times)
        print_run(ours)
        first_at = min(times) if times else 0.0
        arrivals_by_to = {to: t for t, to in sorted(arrivals, reverse=True)}
        slow = sorted(((arrivals_by_to.get(to, float("inf")) - t0, t0 - first_at) for to, t0 in reply_t0.items()),
                      reverse=True)[:5]
        print("  slowest replies (seconds waited, queued at s after the first arrival): "
              + ", ".join(f"{wait:.2f} at {at:.1f}" for wait, at in slow), flush=True)
        buckets = Counter(int((t - first_at) // 5) for t in times)
        counts = " ".join(str(buckets[i]) for i in range(max(buckets) + 1 if buckets else 0))
        print(f"  campaign sends per 5 s: {counts}", flush=True)
        print(f"  campaign sends before the kill: {len(times)}; rate {steady.rate:.2f}/s; largest count in a 1 s "
              f"window (all sends of the number) {ours.window}", flush=True)

        print(f"\nResume: both workers killed (SIGKILL); two new ones for {args.resume_seconds:.0f} s, then "
              "a pause", flush=True)
        workers = start_workers(processes, env, logs, "second", args.concurrency)
        time.sleep(args.resume_seconds)
        campaign_pause(campaign)
        settle(60)
        for worker in workers:
            kill_group(processes, worker)
        kill_group(processes, beat)
        checked = integrity(fake, campaign)
        print(f"  integrity: {checked}", flush=True)

        interval = 1 / (args.rate * (1 - settings.SEND_RATE_HEADROOM))
        count = int(20 * args.rate)
        base = run_baseline(argparse.Namespace(concurrency=args.concurrency, reply_interval=args.reply_interval),
                            name="baseline", fake=fake, fake_pgid=fake_proc.pid, count=count, interval=interval,
                            replies=min(args.replies, 40), expected_seconds=count * interval)
        print_run(base)
        p99 = percentile(ours.reply_queue, 0.99) if not ours.replies_missing else float("inf")
        base_p99 = percentile(base.reply_queue, 0.99) if not base.replies_missing else float("inf")
        target = args.rate * GOALS["rate_share"]
        rows += [
            (f"sends of the number (campaign and replies), middle 90 % (/s, limit {args.rate})", f"{ours.steady:.2f}",
             f"{base.steady:.2f}", f">= {target:.1f}", mark(ours.steady >= target)),
            ("campaign sends alone before the kill (/s; the replies take the rest)", f"{steady.rate:.2f}", "-", "-",
             "-"),
            ("largest count in any 1 s window, all sends of the number", str(ours.window), str(base.window),
             f"<= {args.rate}", mark(ours.window <= args.rate)),
            ("reply-lane p99, commit -> arrival (ms)", f"{p99 * 1000:.0f}", f"{base_p99 * 1000:.0f}",
             f"< {GOALS['reply_p99_s'] * 1000:.0f}", mark(p99 < GOALS["reply_p99_s"])),
            ("after the kill: duplicates at the fake", str(checked["duplicates"]), "-", "0",
             mark(checked["duplicates"] == 0)),
            ("after the kill: recorded sent, never received / received, not recorded",
             f"{checked['sent_not_received']} / {checked['received_not_recorded']}", "-", "0 / 0",
             mark(checked["sent_not_received"] == 0 and checked["received_not_recorded"] == 0)),
            ("after the kill: outcome unknown (dead letter): at the fake / not at the fake",
             f"{checked['unknown_received']} / {checked['unknown_not_received']}", "-", "-", "-"),
        ]
        final_table(args, rows)
        print(f"\nLogs: {logs}/celery-campaign-*.log, {logs / 'fake-meta.log'}")
        return 0
    finally:
        processes.stop_all()


if __name__ == "__main__":
    sys.exit(main())
