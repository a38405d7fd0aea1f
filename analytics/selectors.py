"""
The figures people read, from the squashed counts plus the deltas not folded in yet (so a figure is exact
the moment its change commits), bucketed by hour, day or week in the platform's time zone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Avg, Count, F, Min, Q, Sum, Value
from django.db.models.functions import Trunc
from django.utils import timezone

from analytics.models import ContactHour, CountDelta, HourlyCount, TemplateDailyCount
from contacts.services.mapping import unmapped_contacts
from core.access import narrowed, scoped, visible_provider_ids
from templates_app.models import MessageTemplate
from templates_app.selectors import awaiting_review
from whatsapp.models import CircuitState, Message, MessageStatus, Provider, Resolution, WebhookEvent

GRAINS = ("hour", "day", "week")
# The most buckets one answer may hold: a month by the hour, about three years by the day.
MAX_BUCKETS = {"hour": 24 * 31, "day": 366 * 3, "week": 52 * 10}
# What a reader of a month by the hour sorts (tens of thousands of count rows) without spilling to disk.
READ_WORK_MEM = "32MB"
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


class FilterError(ValueError):
    """A filter a person gave that cannot be answered (the reason reads as a sentence)."""


@dataclass(frozen=True)
class Filters:
    start: datetime
    end: datetime
    grain: str
    provider_id: int | None
    tz: ZoneInfo
    # The providers the reader may see (their teams'), None for all: every figure is narrowed to them.
    provider_ids: frozenset[int] | None = None
    # How the satisfaction figure groups its rows.
    by: str = "week"

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.start.isoformat(), "until": self.end.isoformat(), "grain": self.grain,
                "provider": self.provider_id, "time_zone": str(self.tz)}


def _parse_time(value: str, name: str, tz: ZoneInfo) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise FilterError(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 time, not {value!r}") from error
    if not 1900 <= parsed.year <= 9000:
        raise FilterError(f"{name} must be a date between the years 1900 and 9000")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def filters_from(params: dict[str, str], *, now: datetime | None = None, user=None) -> Filters:
    """The filters of a request, for `user` (None: everything)."""
    try:
        return _filters_from(params, now=now, user=user)
    except OverflowError as error:
        raise FilterError("since and until must be dates between the years 1900 and 9000") from error


def _filters_from(params: dict[str, str], *, now: datetime | None = None, user=None) -> Filters:
    """Read ?since=&until=&grain=&provider= (in the platform's time zone; `until` as a date is the last day
    included, as a time the exclusive end). Defaults: the last 7 days by day. Raises FilterError with a
    readable reason."""
    tz = ZoneInfo(settings.TIME_ZONE)
    now = (now or timezone.now()).astimezone(tz)
    grain = params.get("grain") or ""
    if grain and grain not in GRAINS:
        raise FilterError(f"grain must be one of {', '.join(GRAINS)}, not {grain!r}")
    until = _parse_time(params["until"], "until", tz) if params.get("until") else None
    if until is not None and len(params["until"]) == 10:
        until += timedelta(days=1)  # a date names the last day included
    since = _parse_time(params["since"], "since", tz) if params.get("since") else None
    if until is None:
        until = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0) if (
            grain != "hour") else now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if since is None:
        since = until - (timedelta(hours=24) if grain == "hour" else timedelta(days=7))
    if since >= until:
        raise FilterError("since must be before until")
    grain = grain or ("hour" if until - since <= timedelta(days=2) else "day")
    start, end = _floor(since, grain, tz), until
    if (end - start) / STEP[grain] > MAX_BUCKETS[grain]:
        raise FilterError(f"a {grain} grain covers at most {MAX_BUCKETS[grain]} {grain}s: choose a coarser grain or "
                          "a shorter range")
    provider_id = None
    if params.get("provider"):
        try:
            provider_id = int(params["provider"])
        except ValueError as error:
            raise FilterError(f"provider must be a provider id, not {params['provider']!r}") from error
        if not scoped(Provider.objects.filter(pk=provider_id), user).exists():
            raise FilterError(f"there is no provider {provider_id}")
    by = params.get("by") or "week"
    if by not in SATISFACTION_GROUPS:
        raise FilterError(f"by must be one of {', '.join(SATISFACTION_GROUPS)}, not {by!r}")
    return Filters(start=start, end=end, grain=grain, provider_id=provider_id, tz=tz,
                   provider_ids=visible_provider_ids(user), by=by)


def _floor(moment: datetime, grain: str, tz: ZoneInfo) -> datetime:
    local = moment.astimezone(tz).replace(minute=0, second=0, microsecond=0)
    if grain in ("day", "week"):
        local = local.replace(hour=0)
    if grain == "week":
        local -= timedelta(days=local.weekday())
    return local


def buckets(filters: Filters) -> list[datetime]:
    """Every bucket start of the range, so that charts show the empty ones too. Days and weeks follow the
    local calendar (a day across a daylight-saving change is 23 or 25 hours)."""
    found, current = [], filters.start
    while current < filters.end:
        found.append(current)
        local = current.astimezone(filters.tz)
        if filters.grain == "hour":
            # In UTC: a local clock's hour is repeated or skipped when daylight saving time changes.
            current = (current.astimezone(UTC) + STEP["hour"]).astimezone(filters.tz)
        else:
            naive = local.replace(tzinfo=None) + STEP[filters.grain]
            current = naive.replace(tzinfo=filters.tz)
    return found


def _provider_scoped(queryset, filters: Filters, field: str = "provider_id"):
    if filters.provider_ids is not None:
        queryset = queryset.filter(**{f"{field}__in": sorted(filters.provider_ids)})
    return queryset.filter(**{field: filters.provider_id}) if filters.provider_id else queryset


def metric_buckets(filters: Filters) -> dict[datetime, dict[str, list]]:
    """{bucket: {metric: [count, total]}} over the range, squashed rows and waiting deltas together."""
    result: dict[datetime, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0, Decimal("0")]))
    squashed = _provider_scoped(HourlyCount.objects.filter(hour__gte=filters.start, hour__lt=filters.end), filters)
    waiting = _provider_scoped(CountDelta.objects.filter(template__isnull=True, period__gte=filters.start,
                                                         period__lt=filters.end), filters)
    for queryset, field in ((squashed, "hour"), (waiting, "period")):
        rows = (queryset.annotate(bucket=Trunc(field, filters.grain, tzinfo=filters.tz)).values("bucket", "metric")
                .annotate(n=Sum("count"), t=Sum("total")).order_by())
        for row in rows:
            entry = result[row["bucket"]][row["metric"]]
            entry[0] += row["n"]
            entry[1] += row["t"] or 0
    return result


def _distinct_writers(filters: Filters, *, by_bucket: bool) -> dict[datetime | None, int] | int:
    rows = _provider_scoped(ContactHour.objects.filter(hour__gte=filters.start, hour__lt=filters.end), filters)
    if not by_bucket:
        return rows.aggregate(n=Count("conversation_id", distinct=True))["n"]
    return {row["bucket"]: row["n"] for row in rows.annotate(bucket=Trunc("hour", filters.grain, tzinfo=filters.tz))
            .values("bucket").annotate(n=Count("conversation_id", distinct=True)).order_by()}


def _sum(metrics: dict[str, list], prefix: str, index: int = 0):
    return sum((value[index] for name, value in metrics.items() if name == prefix or name.startswith(prefix + ":")),
               0 if index == 0 else Decimal("0"))


def _ratio(part, whole) -> float | None:
    return round(float(part) / float(whole), 4) if whole else None


def _average(total, count) -> float | None:
    return round(float(total) / count, 1) if count else None


def _figures(metrics: dict[str, list]) -> dict[str, Any]:
    sent, failed = _sum(metrics, "sent"), _sum(metrics, "failed")
    first, replies = metrics.get("first_response", [0, 0]), metrics.get("reply_time", [0, 0])
    return {
        "received": _sum(metrics, "received"), "sent": sent, "delivered": _sum(metrics, "delivered"),
        "read": _sum(metrics, "read"), "failed": failed, "dead_letters": _sum(metrics, "dead_letter"),
        "opt_outs": _sum(metrics, "opt_outs"), "new_contacts": _sum(metrics, "new_contacts"),
        "conversations_opened": _sum(metrics, "conversations_opened"),
        "first_responses": first[0], "first_response_avg_seconds": _average(first[1], first[0]),
        "replies": replies[0], "reply_avg_seconds": _average(replies[1], replies[0]),
        "ai_calls": _sum(metrics, "ai_calls"), "ai_cost_usd": str(_sum(metrics, "ai_calls", 1)),
        "error_rate": _ratio(failed, sent + failed),
    }


class Figures:
    """
    The figures of one set of filters, each table computed from one read of the counts. Read them inside
    core.locks.read_snapshot(): the squashed rows and the waiting deltas are two tables, and a squash
    committing between two reads would otherwise be seen in neither.
    """

    def __init__(self, filters: Filters):
        self.filters = filters
        self._by_bucket: dict[datetime, dict[str, list]] | None = None
        self._templates: list[dict[str, Any]] | None = None

    @property
    def by_bucket(self) -> dict[datetime, dict[str, list]]:
        if self._by_bucket is None:
            self._by_bucket = metric_buckets(self.filters)
        return self._by_bucket

    def _range_metrics(self) -> dict[str, list]:
        totals: dict[str, list] = defaultdict(lambda: [0, Decimal("0")])
        for metrics in self.by_bucket.values():
            for name, (count, total) in metrics.items():
                totals[name][0] += count
                totals[name][1] += total
        return totals

    def series(self) -> list[dict[str, Any]]:
        """One row per bucket: volumes, the delivery steps, response times, errors, contacts and AI use."""
        writers = _distinct_writers(self.filters, by_bucket=True)
        return [{"bucket": bucket.isoformat(), **_figures(self.by_bucket.get(bucket, {})),
                 "contacts": writers.get(bucket, 0)} for bucket in buckets(self.filters)]

    def summary(self) -> dict[str, Any]:
        """The range's totals and rates (customers who wrote counted once however often they wrote)."""
        figures = _figures(self._range_metrics())
        figures["contacts"] = _distinct_writers(self.filters, by_bucket=False)
        figures["delivery_rate"] = _ratio(figures["delivered"], figures["sent"])
        figures["read_rate"] = _ratio(figures["read"], figures["delivered"])
        return figures

    def funnel(self) -> list[dict[str, Any]]:
        figures = _figures(self._range_metrics())
        return [{"step": step, "count": figures[step], "share_of_sent": _ratio(figures[step], figures["sent"])}
                for step in ("sent", "delivered", "read", "failed")]

    def _breakdown(self, prefix: str, label: str) -> list[dict[str, Any]]:
        rows = [(name.split(":", 1)[1], value[0]) for name, value in self._range_metrics().items()
                if name.startswith(prefix + ":") and value[0]]
        whole = sum(count for _, count in rows)
        return [{label: key or "(none)", "count": count, "share": _ratio(count, whole)}
                for key, count in sorted(rows, key=lambda row: (-row[1], row[0]))]

    def errors(self) -> list[dict[str, Any]]:
        """Failed messages by the provider's error code, most frequent first."""
        return self._breakdown("failed", "error_code")

    def intents(self) -> list[dict[str, Any]]:
        return self._breakdown("intent", "intent")

    def sentiments(self) -> list[dict[str, Any]]:
        return self._breakdown("sentiment", "sentiment")

    def message_types(self) -> list[dict[str, Any]]:
        received = {row["message_type"]: row["count"] for row in self._breakdown("received", "message_type")}
        sent = {row["message_type"]: row["count"] for row in self._breakdown("sent", "message_type")}
        return [{"message_type": kind, "received": received.get(kind, 0), "sent": sent.get(kind, 0)}
                for kind in sorted(set(received) | set(sent), key=lambda k: -(received.get(k, 0) + sent.get(k, 0)))]

    def templates(self) -> list[dict[str, Any]]:
        """Per template, what became of the messages queued in the range (UTC days), most sent first."""
        if self._templates is None:
            self._templates = _templates(self.filters)
        return self._templates


TEMPLATE_STEPS = ("sent", "delivered", "read", "replied", "failed", "opted_out")


def _templates(filters: Filters) -> list[dict[str, Any]]:
    start_day = filters.start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    per_template: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TEMPLATE_STEPS, 0))
    squashed = _provider_scoped(TemplateDailyCount.objects.filter(day__gte=start_day, day__lt=filters.end), filters)
    waiting = _provider_scoped(CountDelta.objects.filter(template__isnull=False, period__gte=start_day,
                                                         period__lt=filters.end), filters)
    for queryset in (squashed, waiting):
        for row in queryset.values("template_id", "metric").annotate(n=Sum("count")).order_by():
            if row["metric"] in TEMPLATE_STEPS:
                per_template[row["template_id"]][row["metric"]] += row["n"]
    names = {t.pk: t for t in MessageTemplate.objects.filter(pk__in=list(per_template))}
    rows = []
    for template_id, counts in per_template.items():
        template = names.get(template_id)
        rows.append({
            "template": template_id, "name": template.name if template else f"(deleted template {template_id})",
            "language": template.language if template else "", "version": template.version if template else None,
            **counts, "delivery_rate": _ratio(counts["delivered"], counts["sent"]),
            "read_rate": _ratio(counts["read"], counts["delivered"]),
            "reply_rate": _ratio(counts["replied"], counts["delivered"]),
            "opt_out_rate": _ratio(counts["opted_out"], counts["delivered"]),
        })
    return sorted(rows, key=lambda row: (-row["sent"], row["name"]))


# --- satisfaction and resolution times ------------------------------------------------------------

SATISFACTION_GROUPS = ("week", "team", "provider", "operator", "all")
# The value and the name each group's rows are keyed by (a resolution counts in every team of its number).
_GROUP_FIELDS = {"team": ("provider__teams__id", "provider__teams__name"),
                 "provider": ("provider_id", "provider__name"),
                 "operator": ("resolved_by_id", "resolved_by__username")}


def satisfaction(filters: Filters, by: str | None = None) -> list[dict[str, Any]]:
    """Resolutions in the range by week, team, number or the operator who resolved them (or all together): how
    many, their
    average first response and resolution times, the surveys sent and answered, the average rating and CSAT
    (the share of answers rating 4 or 5)."""
    by = by or filters.by
    rows = _provider_scoped(Resolution.objects.filter(resolved_at__gte=filters.start, resolved_at__lt=filters.end),
                            filters)
    if by == "week":
        rows = rows.annotate(key=Trunc("resolved_at", "week", tzinfo=filters.tz), name=Value(""))
    elif by == "all":
        rows = rows.annotate(key=Value("all"), name=Value("All"))
    else:
        key, name = _GROUP_FIELDS[by]
        rows = rows.annotate(key=F(key), name=F(name))
    answered = Q(survey=Resolution.Survey.ANSWERED)
    grouped = (rows.values("key", "name").annotate(
        resolved=Count("id"), first_response_avg=Avg("first_response_seconds"),
        resolution_avg=Avg("resolution_seconds"),
        surveys_sent=Count("id", filter=Q(survey__in=[Resolution.Survey.ASKED, Resolution.Survey.ANSWERED])),
        answered=Count("id", filter=answered), rating_avg=Avg("rating", filter=answered),
        satisfied=Count("id", filter=answered & Q(rating__gte=4))).order_by("key"))
    result = []
    for row in grouped:
        key = row["key"].isoformat() if isinstance(row["key"], datetime) else row["key"]
        label = row["name"] or (key if by == "week" else {"team": "(no team)", "operator": "(in the provider's "
                                                          "inbox)"}.get(by, "(none)"))
        result.append({
            by: key, "name": label, "resolved": row["resolved"],
            "first_response_avg_seconds": _rounded(row["first_response_avg"]),
            "resolution_avg_seconds": _rounded(row["resolution_avg"]),
            "surveys_sent": row["surveys_sent"], "answered": row["answered"],
            "response_rate": _ratio(row["answered"], row["surveys_sent"]),
            "rating_avg": round(float(row["rating_avg"]), 2) if row["rating_avg"] is not None else None,
            "csat": _ratio(row["satisfied"], row["answered"]),
        })
    return result


def _rounded(value) -> float | None:
    return round(float(value), 1) if value is not None else None


# --- what needs a person now (not by range) -------------------------------------------------------

@dataclass(frozen=True)
class Attention:
    key: str
    label: str
    value: int | None
    detail: str = ""


def attention(*, now: datetime | None = None, provider_ids: frozenset[int] | None = None) -> list[Attention]:
    """The counts that ask for someone to act, of these providers (None: all): each is 0 (or None) when all is
    well."""
    now = now or timezone.now()
    messages = narrowed(Message.objects.all(), provider_ids)
    oldest = messages.filter(direction=Message.Direction.OUTBOUND, status=MessageStatus.QUEUED,
                             hold_reason="").aggregate(at=Min("queued_at"))["at"]
    oldest_seconds = int((now - oldest).total_seconds()) if oldest else None
    failed_events = narrowed(WebhookEvent.objects.all(), provider_ids).filter(status=WebhookEvent.Status.FAILED,
                                                                       next_attempt_at__isnull=True)
    return [
        Attention("unmapped_contacts", "Unmapped contacts", narrowed(unmapped_contacts(), provider_ids).count()),
        Attention("templates_awaiting_review", "Templates awaiting review",
                  narrowed(awaiting_review(), provider_ids).count()),
        Attention("dead_letters", "Dead letters", messages.filter(status=MessageStatus.DEAD_LETTER).count()),
        Attention("failed_inbox_events", "Inbox events given up", failed_events.count()),
        Attention("open_circuits", "Providers with an open circuit",
                  narrowed(Provider.objects.all(), provider_ids).filter(~Q(circuit_state=CircuitState.CLOSED)).count()),
        Attention("oldest_queued_seconds", "Oldest queued message", oldest_seconds,
                  detail="waiting" if oldest_seconds is not None else "none queued"),
    ]


def provider_choices(user=None) -> Iterable[tuple[int, str]]:
    return scoped(Provider.objects.order_by("name"), user).values_list("pk", "name")
