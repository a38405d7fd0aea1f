"""
The dashboard at the top of the admin's index: what needs a person, the range's figures and the charts.
The filters are a plain GET form; the chart data rides in the page as JSON and
static/analytics/dashboard.js draws it with Chart.js, served from our own static files.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from analytics import selectors
from analytics.selectors import READ_WORK_MEM
from core.locks import read_snapshot

# Where each "needs a person" tile leads.
ATTENTION_LINKS = {
    "unmapped_contacts": ("admin:contacts_unmappedcontact_changelist", ""),
    "templates_awaiting_review": ("admin:templates_app_templateawaitingreview_changelist", ""),
    "dead_letters": ("admin:whatsapp_deadletter_changelist", ""),
    "failed_inbox_events": ("admin:whatsapp_webhookevent_changelist", "?status__exact=failed"),
    "open_circuits": ("admin:whatsapp_provider_changelist", ""),
    "oldest_queued_seconds": ("admin:whatsapp_message_changelist", "?status__exact=queued"),
}
PRESETS = (("Last 24 hours", 1, "hour"), ("Last 7 days", 7, "day"), ("Last 30 days", 30, "day"),
           ("Last 90 days", 90, "week"))
DOWNLOADS = (("series", "Series"), ("summary", "Totals"), ("errors", "Errors"), ("templates", "Templates"),
             ("intents", "Intents"), ("sentiments", "Sentiment"), ("message-types", "Message types"),
             ("satisfaction", "Satisfaction"), ("attention", "Needs a person"))


def can_see_dashboard(user) -> bool:
    return user.is_active and user.has_perm("analytics.view_hourlycount")


def _link(name: str, query: str) -> str:
    try:
        return reverse(name) + query
    except NoReverseMatch:
        return ""


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _attention_tiles(filters: selectors.Filters) -> list[dict[str, Any]]:
    tiles = []
    for item in selectors.attention(provider_ids=filters.provider_ids):
        name, query = ATTENTION_LINKS[item.key]
        is_age = item.key == "oldest_queued_seconds"
        tiles.append({"key": item.key, "label": item.label, "link": _link(name, query),
                      "value": _duration(item.value) if is_age else item.value,
                      "alarm": bool(item.value) and (not is_age or item.value > 300), "detail": item.detail})
    return tiles


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _summary_tiles(figures: dict[str, Any]) -> list[dict[str, str]]:
    first = figures["first_response_avg_seconds"]
    return [
        {"label": "Received", "value": f"{figures['received']:,}"},
        {"label": "Sent", "value": f"{figures['sent']:,}"},
        {"label": "Delivered", "value": _percent(figures["delivery_rate"]), "detail": f"{figures['delivered']:,}"},
        {"label": "Read", "value": _percent(figures["read_rate"]), "detail": f"{figures['read']:,} of delivered"},
        {"label": "Failed", "value": _percent(figures["error_rate"]), "detail": f"{figures['failed']:,}"},
        {"label": "First response", "value": _duration(round(first) if first is not None else None),
         "detail": f"average of {figures['first_responses']:,}"},
        {"label": "Customers who wrote", "value": f"{figures['contacts']:,}",
         "detail": f"{figures['new_contacts']:,} new"},
        {"label": "AI cost", "value": f"${float(figures['ai_cost_usd']):,.2f}",
         "detail": f"{figures['ai_calls']:,} calls"},
    ]


def _satisfaction(filters: selectors.Filters) -> dict[str, Any]:
    """The range's resolutions and satisfaction: tiles over all of them, and rows by team and by operator."""
    rows = selectors.satisfaction(filters, "all")
    total = rows[0] if rows else {"resolved": 0, "answered": 0, "surveys_sent": 0, "csat": None,
                                  "response_rate": None, "resolution_avg_seconds": None, "rating_avg": None}
    resolution = total["resolution_avg_seconds"]
    tiles = [
        {"label": "CSAT", "value": _percent(total["csat"]),
         "detail": f"{total['answered']:,} rated, average {total['rating_avg'] or '–'} of 5"},
        {"label": "Surveys answered", "value": _percent(total["response_rate"]),
         "detail": f"{total['answered']:,} of {total['surveys_sent']:,} sent"},
        {"label": "Resolved", "value": f"{total['resolved']:,}", "detail": "conversations"},
        {"label": "Resolution time", "value": _duration(round(resolution) if resolution is not None else None),
         "detail": "average"},
    ]
    by_team, by_operator = selectors.satisfaction(filters, "team"), selectors.satisfaction(filters, "operator")
    for row in [*by_team, *by_operator]:
        row.update(first_response=_duration(_whole(row["first_response_avg_seconds"])),
                   resolution=_duration(_whole(row["resolution_avg_seconds"])), csat_text=_percent(row["csat"]))
    return {"tiles": tiles, "by_team": by_team, "by_operator": by_operator,
            "tables": [("By team", by_team), ("By operator", by_operator)]}


def _whole(seconds: float | None) -> int | None:
    return round(seconds) if seconds is not None else None


def _presets(request: HttpRequest, filters: selectors.Filters) -> list[dict[str, Any]]:
    provider = {"provider": filters.provider_id} if filters.provider_id else {}
    now = timezone.now().astimezone(filters.tz)
    presets = []
    for label, days, grain in PRESETS:
        # Up to the end of this hour (of today): the last `days` days including the current one.
        since = (now - timedelta(hours=24 * days - 1)).strftime("%Y-%m-%dT%H:00") if grain == "hour" else (
            now - timedelta(days=days - 1)).date().isoformat()
        query = {"since": since, "grain": grain, **provider}
        presets.append({"label": label, "query": "?" + urlencode(query),
                        "active": request.GET.get("since") == since and filters.grain == grain})
    return presets


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    if not can_see_dashboard(request.user):
        return {}
    params = {key: request.GET.get(key, "") for key in ("since", "until", "grain", "provider")}
    problem = ""
    try:
        filters = selectors.filters_from(params, user=request.user)
    except selectors.FilterError as error:
        problem = str(error)
        filters = selectors.filters_from({}, user=request.user)
    with read_snapshot(work_mem=READ_WORK_MEM):
        figures = selectors.Figures(filters)
        summary, templates, errors = figures.summary(), figures.templates(), figures.errors()
        charts = {"grain": filters.grain, "series": figures.series(), "funnel": figures.funnel(),
                  "errors": errors[:8], "intents": figures.intents()[:12], "sentiments": figures.sentiments(),
                  "templates": templates[:8]}
        attention = _attention_tiles(filters)
        satisfaction = _satisfaction(filters)
    query = urlencode({"since": filters.start.isoformat(), "until": filters.end.isoformat(),
                       "grain": filters.grain, **({"provider": filters.provider_id} if filters.provider_id else {})})
    local_end = (filters.end - timedelta(seconds=1)).astimezone(filters.tz)
    return {
        "dashboard": {
            "problem": problem,
            "filters": filters,
            "since_value": filters.start.astimezone(filters.tz).date().isoformat(),
            "until_value": local_end.date().isoformat(),
            "providers": list(selectors.provider_choices(request.user)),
            "grains": selectors.GRAINS,
            "presets": _presets(request, filters),
            "attention": attention,
            "summary": _summary_tiles(summary),
            "templates": templates[:15],
            "errors": errors[:8],
            "downloads": [{"label": label, "href": reverse(f"analytics-{name}") + "?" + query + "&format=csv"}
                          for name, label in DOWNLOADS],
            "charts": charts,
            "satisfaction": satisfaction,
        },
    }
