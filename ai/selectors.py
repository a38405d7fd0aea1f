"""
Read-side queries of the AI admin pages: the usage and cost per day and feature, and what the
conversation page's AI panel shows (the latest classification, summary and suggestions). They only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils.dateparse import parse_datetime

from ai.client import ai_configured
from ai.guards import budget_day_start, circuit_state
from ai.models import (
    AiCall,
    AiRequest,
    ConversationSummary,
    Feature,
    IntentCategory,
    MessageInsight,
    ReplySuggestion,
    StepStatus,
)
from ai.pricing import is_priced
from core.access import scoped
from whatsapp.models import Conversation, Message, Provider

USAGE_DAYS = 30

_SKIPPED = Q(status=AiCall.Status.SKIPPED)


@dataclass
class UsageRow:
    """The calls of one day and feature (or of the whole period, for the totals row)."""

    day: date | None
    feature: str
    calls: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal("0")
    latency_total_ms: int = 0
    timed_calls: int = 0  # the calls made (not skipped): the ones with a latency
    models: set[str] = field(default_factory=set)

    @property
    def feature_label(self) -> str:
        return Feature(self.feature).label if self.feature in Feature.values else self.feature

    @property
    def average_latency_ms(self) -> int | None:
        return round(self.latency_total_ms / self.timed_calls) if self.timed_calls else None

    def add(self, other: UsageRow) -> None:
        self.calls += other.calls
        self.ok += other.ok
        self.failed += other.failed
        self.skipped += other.skipped
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.latency_total_ms += other.latency_total_ms
        self.timed_calls += other.timed_calls
        self.models |= other.models


@dataclass
class UsageReport:
    rows: list[UsageRow]  # newest day first, then by feature
    total: UsageRow
    since: date
    days: int
    time_zone: str
    unpriced_models: list[str]  # models used in the period that have no price: their calls count as free


def ai_usage(*, days: int = USAGE_DAYS, provider_id: int | None = None, user=None) -> UsageReport:
    """The AI ledger of the last `days` days (today included) by day and feature, in one aggregate query.
    Days are those of the daily budget (AI_BUDGET_TIME_ZONE), so a day's cost is what its budget saw."""
    time_zone = ZoneInfo(settings.AI_BUDGET_TIME_ZONE)
    start = budget_day_start() - timedelta(days=days - 1)
    calls = scoped(AiCall.objects.filter(created_at__gte=start), user)  # the calls of `user`'s teams
    if provider_id is not None:
        calls = calls.filter(provider_id=provider_id)
    grouped = (
        calls.annotate(day=TruncDate("created_at", tzinfo=time_zone))
        .values("day", "feature", "model")
        .annotate(calls=Count("id"),
                  ok=Count("id", filter=Q(status=AiCall.Status.OK)),
                  failed=Count("id", filter=Q(status__in=[AiCall.Status.FAILED, AiCall.Status.RETRY])),
                  skipped=Count("id", filter=_SKIPPED),
                  input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), cost=Sum("cost"),
                  latency_total_ms=Sum("latency_ms", filter=~_SKIPPED), timed_calls=Count("id", filter=~_SKIPPED))
        .order_by("-day", "feature", "model")
    )
    # One group per model as well, folded here: the page names the models each row used.
    rows: dict[tuple[date, str], UsageRow] = {}
    total = UsageRow(day=None, feature="")
    for group in grouped:
        part = UsageRow(day=group["day"], feature=group["feature"], calls=group["calls"], ok=group["ok"],
                        failed=group["failed"], skipped=group["skipped"],
                        input_tokens=group["input_tokens"] or 0, output_tokens=group["output_tokens"] or 0,
                        cost=group["cost"] or Decimal("0"), latency_total_ms=group["latency_total_ms"] or 0,
                        timed_calls=group["timed_calls"], models={group["model"]} if group["model"] else set())
        rows.setdefault((part.day, part.feature), UsageRow(day=part.day, feature=part.feature)).add(part)
        total.add(part)
    return UsageReport(rows=list(rows.values()), total=total, since=start.date(), days=days,
                       time_zone=settings.AI_BUDGET_TIME_ZONE,
                       unpriced_models=sorted(model for model in total.models if not is_priced(model)))


def intent_names() -> list[str]:
    """Every intent of the taxonomy, the retired ones too (older messages carry them), in its order."""
    return list(IntentCategory.objects.order_by("-is_active", "position", "name").values_list("name", flat=True))


def provider_choices(user=None) -> list[tuple[int, str]]:
    """(id, name) of every provider `user` may see, without reading their encrypted credentials."""
    return list(scoped(Provider.objects.order_by("name"), user).values_list("pk", "name"))


def providers_without_ai_settings() -> list[tuple[int, str]]:
    """(id, name) of the providers that run on the default AI settings (none saved)."""
    return list(Provider.objects.filter(ai_settings__isnull=True).order_by("name").values_list("pk", "name"))


# --- the conversation page's AI panel ---------------------------------------------------------------------

def latest_classified_insight(conversation: Conversation) -> MessageInsight | None:
    """The insight of the conversation's newest inbound message the classifier got through."""
    return (MessageInsight.objects.filter(message__conversation=conversation,
                                          message__direction=Message.Direction.INBOUND,
                                          classification_status=StepStatus.DONE)
            .select_related("message").order_by("-message__created_at", "-message_id").first())


def latest_summary(conversation: Conversation) -> ConversationSummary | None:
    return (ConversationSummary.objects.filter(conversation=conversation)
            .select_related("created_by").order_by("-created_at", "-pk").first())


def latest_request(conversation: Conversation, kind: str) -> AiRequest | None:
    return (AiRequest.objects.filter(conversation=conversation, kind=kind).select_related("created_by")
            .order_by("-created_at", "-pk").first())


def request_suggestions(request: AiRequest) -> list[ReplySuggestion]:
    return list(ReplySuggestion.objects.filter(request=request).select_related("template")
                .order_by("position", "pk"))


# --- the status line of every AI page -------------------------------------------------------------------

def ai_status() -> dict:
    """Whether AI is on, with what, and the AI API's circuit: the top of every AI admin page."""
    circuit = dict(circuit_state())
    if isinstance(circuit.get("retry_at"), str):
        circuit["retry_at"] = parse_datetime(circuit["retry_at"])
    return {"configured": ai_configured(), "base_url": _without_password(settings.OPENAI_BASE_URL),
            "model": settings.OPENAI_MODEL, "transcription_model": settings.OPENAI_TRANSCRIPTION_MODEL,
            "circuit": circuit}


def _without_password(url: str) -> str:
    """A base URL may carry a user and password (a proxy's): they are never shown."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))

