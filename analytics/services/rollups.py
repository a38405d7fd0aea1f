"""
Folding the delta rows into the squashed counts, rebuilding any range from the rows counted, and
checking the two against each other. See analytics.models for the scheme.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from analytics.models import ContactHour, CountDelta, HourlyCount, TemplateDailyCount, TemplateReply
from analytics.services import direct_counts
from core.locks import read_snapshot, session_lock, try_session_lock

LOCK = ("analytics", "counts")
SQUASH_BATCH = 50_000
# SQLite (the embedded demo) has no triggers: its beat job recounts this many recent hours instead.
RECOUNT_HOURS = 48
RECOUNT_WORK_MEM = "128MB"

_SQUASH = """
WITH moved AS (
    DELETE FROM analytics_countdelta
    WHERE id IN (SELECT id FROM analytics_countdelta ORDER BY id LIMIT %s)
    RETURNING provider_id, template_id, period, metric, count, total
), hourly AS (
    INSERT INTO analytics_hourlycount AS h (provider_id, hour, metric, count, total)
    SELECT provider_id, period, metric, sum(count), sum(total) FROM moved
    WHERE template_id IS NULL GROUP BY 1, 2, 3
    ON CONFLICT (provider_id, hour, metric)
    DO UPDATE SET count = h.count + EXCLUDED.count, total = h.total + EXCLUDED.total
    RETURNING 1
), daily AS (
    INSERT INTO analytics_templatedailycount AS d (template_id, provider_id, day, metric, count)
    SELECT template_id, provider_id, period, metric, sum(count) FROM moved
    WHERE template_id IS NOT NULL GROUP BY 1, 2, 3, 4
    ON CONFLICT (template_id, provider_id, day, metric) DO UPDATE SET count = d.count + EXCLUDED.count
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM hourly), (SELECT count(*) FROM daily)
"""


def counts_are_triggered() -> bool:
    """Whether the database writes the delta rows itself (PostgreSQL) or the counts are recounted (SQLite)."""
    return connection.vendor == "postgresql"


@dataclass
class SquashResult:
    ran: bool = True
    deltas: int = 0
    batches: int = 0


def counts_squash(*, batch: int = SQUASH_BATCH, max_batches: int = 1000) -> SquashResult:
    """
    Fold the waiting delta rows into the squashed counts, a batch per transaction. Each batch deletes the
    deltas it adds in the same statement, so a delta is folded exactly once, and writers, who only ever
    insert deltas, never wait. Returns at once (ran=False) while another run holds the lock.
    """
    if not counts_are_triggered():
        counts_rebuild(timezone_now() - timedelta(hours=RECOUNT_HOURS), timezone_now() + timedelta(hours=1))
        return SquashResult()
    result = SquashResult()
    with try_session_lock(*LOCK) as locked:
        if not locked:
            return SquashResult(ran=False)
        for _ in range(max_batches):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_SQUASH, [batch])
                moved = cursor.fetchone()[0]
            result.deltas += moved
            result.batches += 1
            if moved < batch:
                break
    return result


def timezone_now() -> datetime:
    return datetime.now(UTC)


def _whole_days(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """Rebuilds work on whole UTC days: per-template figures are kept by day."""
    start = (start or datetime(1970, 1, 1, tzinfo=UTC)).astimezone(UTC)
    end = (end or timezone_now() + timedelta(days=1)).astimezone(UTC)
    start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    end_floor = end.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, end_floor if end_floor == end else end_floor + timedelta(days=1)


def _insert_select(table: str, columns: str, queryset) -> int:
    """INSERT ... SELECT of a queryset's own SQL: the rows never travel through Python."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) {sql}", params)
        return cursor.rowcount


@dataclass
class RebuildResult:
    start: datetime
    end: datetime
    rows: dict[str, int] = field(default_factory=dict)


def counts_rebuild(start: datetime | None = None, end: datetime | None = None) -> RebuildResult:
    """
    Recount [start, end) (whole UTC days; everything when both are None) from the rows counted, replacing
    the squashed counts and the waiting deltas of that range. Writers go on meanwhile: the recount reads
    one snapshot, and a change committed after it keeps its own delta row, so it is counted once.
    """
    start, end = _whole_days(start, end)
    result = RebuildResult(start=start, end=end)
    # The lock first, the snapshot after: a squash that was running has then committed, and the recount's
    # snapshot sees what it folded.
    with session_lock(*LOCK):
        _sync_facts(start, end, result)
        _recount(start, end, result)
    return result


def _tune_for_recount() -> None:
    """For the current transaction: memory to sort and hash the whole messages table without spilling to
    disk, and no JIT compilation (half a second per big statement, for queries that run once)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{RECOUNT_WORK_MEM}'")
            cursor.execute("SET LOCAL jit = off")


def _sync_facts(start: datetime, end: datetime, result: RebuildResult) -> None:
    """
    Bring the two fact tables the triggers keep (customers who wrote per hour, template messages answered)
    in line with the messages, in short transactions of their own: rows that are right stay, so writers
    adding the same rows wait only for a statement, never for the whole recount.
    """
    with transaction.atomic():
        _tune_for_recount()
        result.rows["contact_hours_removed"] = direct_counts.stale_contact_hours(start, end).delete()[0]
    sql, params = direct_counts.contact_hours(start, end).query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        _tune_for_recount()
        cursor.execute(f"INSERT INTO {ContactHour._meta.db_table} (provider_id, hour, conversation_id) {sql} "
                       "ON CONFLICT DO NOTHING", params)
        result.rows["contact_hours_added"] = cursor.rowcount
    replies = direct_counts.template_replies(start, end)
    with transaction.atomic():
        stale = TemplateReply.objects.filter(message__created_at__gte=start, message__created_at__lt=end).exclude(
            message_id__in=list(replies))
        result.rows["template_replies_removed"] = stale.delete()[0]
        added = TemplateReply.objects.bulk_create(
            [TemplateReply(message_id=pk, replied_at=at) for pk, at in replies.items()], ignore_conflicts=True)
        result.rows["template_replies"] = len(added)


def _recount(start: datetime, end: datetime, result: RebuildResult) -> None:
    with read_snapshot():
        _tune_for_recount()
        CountDelta.objects.filter(period__gte=start, period__lt=end).delete()
        HourlyCount.objects.filter(hour__gte=start, hour__lt=end).delete()
        TemplateDailyCount.objects.filter(day__gte=start, day__lt=end).delete()
        for query in direct_counts.hourly_queries(start, end):
            result.rows[query.name] = _insert_hourly(query.rows)
        for query in direct_counts.template_queries(start, end):
            result.rows[query.name] = _insert_daily(query.rows)
        opt_outs = [TemplateDailyCount(provider_id=row["p"], template_id=row["t"], day=row["period"],
                                       metric=row["metric"], count=row["count"])
                    for row in direct_counts.template_opt_outs(start, end)]
        TemplateDailyCount.objects.bulk_create(opt_outs)
        result.rows["template_opted_out"] = len(opt_outs)


def _insert_hourly(rows) -> int:
    return _insert_select(HourlyCount._meta.db_table, "provider_id, hour, metric, count, total",
                          rows.values("p", "period", "metric", "count", "total"))


def _insert_daily(rows) -> int:
    return _insert_select(TemplateDailyCount._meta.db_table, "provider_id, template_id, day, metric, count",
                          rows.values("p", "t", "period", "metric", "count"))


# --- reading and checking ---------------------------------------------------------------------------

Key = tuple  # (provider_id, period, metric) or (provider_id, template_id, period, metric)


def rolled_up(start: datetime, end: datetime) -> tuple[dict[Key, list], dict[Key, int]]:
    """The figures as the dashboard sees them: squashed rows plus the deltas not folded in yet (read them in
    one snapshot: see read_snapshot)."""
    hourly: dict[Key, list] = defaultdict(lambda: [0, Decimal("0")])
    daily: dict[Key, int] = defaultdict(int)
    for p, hour, metric, count, total in HourlyCount.objects.filter(hour__gte=start, hour__lt=end).values_list(
            "provider_id", "hour", "metric", "count", "total"):
        hourly[(p, hour, metric)][0] += count
        hourly[(p, hour, metric)][1] += total
    for p, t, day, metric, count in TemplateDailyCount.objects.filter(day__gte=start, day__lt=end).values_list(
            "provider_id", "template_id", "day", "metric", "count"):
        daily[(p, t, day, metric)] += count
    for p, t, period, metric, count, total in CountDelta.objects.filter(
            period__gte=start, period__lt=end).values_list("provider_id", "template_id", "period", "metric",
                                                            "count", "total"):
        if t is None:
            hourly[(p, period, metric)][0] += count
            hourly[(p, period, metric)][1] += total
        else:
            daily[(p, t, period, metric)] += count
    return ({k: v for k, v in hourly.items() if v[0] or v[1]}, {k: v for k, v in daily.items() if v})


def counted_directly(start: datetime, end: datetime) -> tuple[dict[Key, list], dict[Key, int]]:
    """The same figures counted from the rows themselves (customers who wrote: from the messages)."""
    hourly: dict[Key, list] = {}
    for query in direct_counts.hourly_queries(start, end):
        if query.name == "contacts":
            continue
        for row in query.rows:
            hourly[(row["p"], row["period"], row["metric"])] = [row["count"], row["total"]]
    for row in direct_counts.distinct_writers(start, end):
        hourly[(row["p"], row["period"], "contacts")] = [row["count"], Decimal("0")]
    daily: dict[Key, int] = {}
    for query in direct_counts.template_queries(start, end):
        if query.name == "template_replied":
            continue
        for row in query.rows:
            daily[(row["p"], row["t"], row["period"], row["metric"])] = row["count"]
    replied = direct_counts.template_reply_counts(direct_counts.template_replies(start, end))
    for row in [*replied, *direct_counts.template_opt_outs(start, end)]:
        daily[(row["p"], row["t"], row["period"], row["metric"])] = row["count"]
    return hourly, daily


@dataclass
class CheckResult:
    start: datetime
    end: datetime
    differences: list[str]

    @property
    def ok(self) -> bool:
        return not self.differences


def counts_check(start: datetime | None = None, end: datetime | None = None) -> CheckResult:
    """Compare the rolled-up figures of [start, end) (whole UTC days) with a direct count."""
    start, end = _whole_days(start, end)
    # Both sides from one snapshot: the triggers write a change's deltas in its own transaction, so the two
    # agree exactly however busy the platform is.
    with read_snapshot():
        rolled_hourly, rolled_daily = rolled_up(start, end)
        direct_hourly, direct_daily = counted_directly(start, end)
    differences = []
    for key in sorted(set(rolled_hourly) | set(direct_hourly), key=str):
        rolled = rolled_hourly.get(key, [0, Decimal("0")])
        direct = direct_hourly.get(key, [0, Decimal("0")])
        # Totals are kept to the microsecond (or micro-dollar) per row.
        tolerance = Decimal("0.00001") * max(1, direct[0])
        if rolled[0] != direct[0] or abs(Decimal(rolled[1]) - Decimal(direct[1])) > tolerance:
            differences.append(f"provider {key[0]} {key[1]:%Y-%m-%d %H:00} {key[2]}: rolled up "
                               f"{rolled[0]} ({rolled[1]}), counted {direct[0]} ({direct[1]})")
    for key in sorted(set(rolled_daily) | set(direct_daily), key=str):
        if rolled_daily.get(key, 0) != direct_daily.get(key, 0):
            differences.append(f"template {key[1]} provider {key[0]} {key[2]:%Y-%m-%d} {key[3]}: rolled up "
                               f"{rolled_daily.get(key, 0)}, counted {direct_daily.get(key, 0)}")
    return CheckResult(start=start, end=end, differences=differences)
