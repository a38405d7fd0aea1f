"""
GET /metrics: the Prometheus exposition (docs/operations.md#metrics).

Two sources: the counters and histograms that the web and worker processes keep as they work
(core.metrics; added up across processes when PROMETHEUS_MULTIPROC_DIR is set), and figures read from the
database at each scrape (queue depths, circuits, AI spend), which are right whichever process serves the
scrape. Those are a few aggregate queries over indexed columns and small tables; nothing reads rows one by
one.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from ai.guards import budget_day_start, circuit_state
from ai.models import AiCall, AiRequest, ProviderAiSettings, StepStatus
from core.client_address import client_address
from core.metrics import NO_PROVIDER, multiprocess_dir
from whatsapp.models import CircuitState, Message, MessageStatus, Provider, WebhookEvent

logger = logging.getLogger(__name__)

# A scrape that waits on a busy database is worse than a scrape without these figures.
QUERY_TIMEOUT_MS = 5000
# Closed, half-open (probing), open: the higher, the worse, so an alert can be `> 0`.
CIRCUIT_VALUES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
PROVIDER_LABELS = ("provider_kind", "provider_id")
# The labels of figures that belong to no provider we have (a deleted provider's rows).
NO_PROVIDER_LABELS = (NO_PROVIDER, NO_PROVIDER)
# Headers a reverse proxy adds to what it passes on.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


# --- access -----------------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in spec if entry.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {exc}") from None


def _address_allowed(address: str | None) -> bool:
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped  # a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d
    return any(parsed in network for network in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


def _presented_token(request: HttpRequest) -> str | None:
    """The bearer token of the request; "" for an Authorization header of another form; None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _plain(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _untrusted_forwarding(request: HttpRequest) -> str | None:
    """The forwarding header a request carries while no proxy is trusted (TRUSTED_PROXY_COUNT=0); None
    otherwise. Its peer is then a proxy whose clients we cannot tell apart: a reverse proxy on this host makes
    every request it passes on come from 127.0.0.1, which the default allow-list lets in."""
    if settings.TRUSTED_PROXY_COUNT > 0:
        return None
    return next((header for header in FORWARDING_HEADERS if header in request.headers), None)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """Why this request may not read the metrics; None when it may. Either credential is enough: the token,
    or a client address in METRICS_ALLOWED_NETWORKS (not for a request forwarded by a proxy that is not
    trusted: its address is the proxy's)."""
    presented = _presented_token(request)
    expected = settings.METRICS_TOKEN
    if presented and expected and hmac.compare_digest(presented.encode(), expected.encode()):
        return None
    address = client_address(request)
    forwarded_by = _untrusted_forwarding(request)
    if forwarded_by is None and _address_allowed(address):
        return None
    if presented is not None:
        if not presented:
            reason = "the Authorization header must be 'Bearer <token>'"
        elif expected:
            reason = "the metrics token is wrong"
        else:
            reason = "this server accepts no metrics token (METRICS_TOKEN is not set)"
        response = _plain(401, reason)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    elif forwarded_by is not None:
        response = _plain(403, f"this request came through a proxy ({forwarded_by} header) and no proxy is "
                               f"trusted (TRUSTED_PROXY_COUNT=0), so its client address is unknown: set "
                               f"TRUSTED_PROXY_COUNT to the number of proxies in front of this server, or scrape "
                               f"with the metrics token (Authorization: Bearer)")
    else:
        response = _plain(403, f"metrics need the metrics token (Authorization: Bearer) or a client address in "
                               f"METRICS_ALLOWED_NETWORKS; {address or 'this client'} is not in it")
    # Who was refused, never what they presented.
    logger.info("metrics request refused", extra={"remote_addr": address, "status": response.status_code})
    return response


# --- exposition -------------------------------------------------------------------------------------

@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encoder(metrics_registry()), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


class _ThisProcess:
    """The default registry: this process's own metrics (and the library's process and Python figures)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def metrics_registry() -> CollectorRegistry:
    """What one scrape exposes, gathered afresh: the processes' metrics and the database's figures."""
    registry = CollectorRegistry()
    directory = multiprocess_dir()
    if directory:
        # Every process's files; the serving process's own figures (memory, CPU) would stand for one
        # process among many, so they are left out.
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector())
    return registry


# --- figures read from the database -------------------------------------------------------------------

@dataclass(frozen=True)
class _ProviderRow:
    labels: tuple[str, str]
    name: str
    is_active: bool
    is_paused: bool
    circuit: str
    circuit_failures: int


def _age_seconds(now: datetime, since: datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since else 0.0


def _gauge(name: str, documentation: str, *extra_labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=[*PROVIDER_LABELS, *extra_labels])


class DatabaseCollector:
    """Queue depths, circuits and AI spend as the database has them when scraped."""

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        try:
            families = database_families(timezone.now())
        except DatabaseError:
            # The processes' own metrics are still worth serving: a missing figure, not a failed scrape.
            logger.warning("metrics: the database figures could not be read", exc_info=True)
            families, up = [], 0
        else:
            up = 1
        yield from families
        yield GaugeMetricFamily("whatsapp_metrics_database_up",
                                "1 when this scrape could read the figures kept in the database, 0 when not (they "
                                "are missing then).", value=up)
        yield GaugeMetricFamily("whatsapp_metrics_database_seconds",
                                "Seconds this scrape took to read the figures kept in the database.",
                                value=time.monotonic() - started)


def database_families(now: datetime) -> list[Metric]:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}")
        providers = _providers()
        return [*_provider_families(providers), *_inbox_families(providers, now),
                *_outbound_families(providers, now), *_ai_families(providers)]


def _providers() -> dict[int, _ProviderRow]:
    rows = Provider.objects.order_by("pk").values_list("pk", "kind", "name", "is_active", "is_paused",
                                                       "circuit_state", "circuit_failures")
    return {pk: _ProviderRow((kind, str(pk)), name, is_active, is_paused, state, failures)
            for pk, kind, name, is_active, is_paused, state, failures in rows}


def _labels_of(providers: dict[int, _ProviderRow], provider_id: int | None) -> tuple[str, str]:
    row = providers.get(provider_id) if provider_id is not None else None
    if row is not None:
        return row.labels
    # A provider made after the list was read, or a deleted one's rows.
    return NO_PROVIDER_LABELS if provider_id is None else ("unknown", str(provider_id))


def _provider_families(providers: dict[int, _ProviderRow]) -> list[Metric]:
    info = GaugeMetricFamily("whatsapp_provider_info", "Each configured provider with its name, always 1: joined "
                             "onto the other series by provider_id.", labels=[*PROVIDER_LABELS, "name"])
    active = _gauge("whatsapp_provider_active", "1 when the provider is active (inactive ones answer 404 to "
                                                "webhooks and send nothing).")
    paused = _gauge("whatsapp_provider_paused", "1 when sending is paused for the provider (its messages are held).")
    circuit = _gauge("whatsapp_provider_circuit_state",
                     "The provider's send circuit breaker: 0 closed (sending), 1 half-open (probing), 2 open "
                     "(holding messages).")
    failures = _gauge("whatsapp_provider_circuit_failures", "Consecutive failed provider calls counted by the "
                                                            "send circuit breaker.")
    for row in providers.values():
        info.add_metric([*row.labels, row.name], 1)
        active.add_metric(row.labels, int(row.is_active))
        paused.add_metric(row.labels, int(row.is_paused))
        circuit.add_metric(row.labels, CIRCUIT_VALUES.get(row.circuit, 2))
        failures.add_metric(row.labels, row.circuit_failures)
    return [info, active, paused, circuit, failures]


def _inbox_families(providers: dict[int, _ProviderRow], now: datetime) -> list[Metric]:
    Status = WebhookEvent.Status
    rows = (WebhookEvent.objects.filter(status__in=[Status.PENDING, Status.FAILED]).order_by()
            .values("provider_id").annotate(
                pending=Count("pk", filter=Q(status=Status.PENDING)),
                retrying=Count("pk", filter=Q(status=Status.FAILED, next_attempt_at__isnull=False)),
                given_up=Count("pk", filter=Q(status=Status.FAILED, next_attempt_at__isnull=True)),
                oldest_pending=Min("received_at", filter=Q(status=Status.PENDING))))
    # Every provider has a value, 0 included: a series that vanishes when its queue empties reads as "no data".
    figures = {row.labels: {"pending": 0, "retrying": 0, "given_up": 0, "oldest_pending": None}
               for row in providers.values()}
    for row in rows:
        labels = _labels_of(providers, row.pop("provider_id"))
        figures[labels] = row
    pending = _gauge("whatsapp_webhook_events_pending", "Inbox events (accepted webhooks) waiting to be processed.")
    retrying = _gauge("whatsapp_webhook_events_retrying", "Inbox events that failed and wait for another attempt.")
    given_up = _gauge("whatsapp_webhook_events_failed", "Inbox events given up (a permanent error, or "
                                                        "WEBHOOK_MAX_ATTEMPTS reached): they wait for a replay.")
    oldest = _gauge("whatsapp_webhook_oldest_pending_seconds", "Age of the oldest inbox event waiting to be "
                                                               "processed; 0 when none waits.")
    for labels, row in figures.items():
        pending.add_metric(labels, row["pending"])
        retrying.add_metric(labels, row["retrying"])
        given_up.add_metric(labels, row["given_up"])
        oldest.add_metric(labels, _age_seconds(now, row["oldest_pending"]))
    return [pending, retrying, given_up, oldest]


def _outbound_families(providers: dict[int, _ProviderRow], now: datetime) -> list[Metric]:
    queued_only = Q(status=MessageStatus.QUEUED)
    # Queued and sending rows are the ones the send path's partial index holds.
    rows = (Message.objects.filter(status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]).order_by()
            .values("provider_id", "lane").annotate(
                queued=Count("pk", filter=queued_only),
                sending=Count("pk", filter=Q(status=MessageStatus.SENDING)),
                oldest_queued=Min("queued_at", filter=queued_only),
                oldest_due=Min("next_attempt_at", filter=queued_only & Q(next_attempt_at__lte=now))))
    empty = {"queued": 0, "sending": 0, "oldest_queued": None, "oldest_due": None}
    figures = {(row.labels, lane): dict(empty) for row in providers.values() for lane in Message.Lane.values}
    for row in rows:
        provider_id, lane = row.pop("provider_id"), row.pop("lane")
        if provider_id in providers and providers[provider_id].is_paused:
            row["oldest_due"] = None  # held on purpose: not waiting for a worker
        figures[(_labels_of(providers, provider_id), lane)] = row
    queued = _gauge("whatsapp_outbound_queued_messages", "Outbound messages queued (due, or waiting for a retry, a "
                                                         "rate limit or a hold), by lane.", "lane")
    sending = _gauge("whatsapp_outbound_sending_messages", "Outbound messages in a provider call right now, by lane.",
                     "lane")
    oldest_queued = _gauge("whatsapp_outbound_oldest_queued_seconds",
                           "Age of the oldest queued outbound message, counted from when it was queued; 0 when "
                           "none is.", "lane")
    oldest_due = _gauge("whatsapp_outbound_oldest_due_seconds",
                        "How long the longest-due queued outbound message has been due without a worker sending "
                        "it (paused providers left out); 0 when none is overdue.", "lane")
    for (labels, lane), row in figures.items():
        queued.add_metric([*labels, lane], row["queued"])
        sending.add_metric([*labels, lane], row["sending"])
        oldest_queued.add_metric([*labels, lane], _age_seconds(now, row["oldest_queued"]))
        oldest_due.add_metric([*labels, lane], _age_seconds(now, row["oldest_due"]))

    dead = {row.labels: 0 for row in providers.values()}
    for provider_id, count in (Message.objects.filter(status=MessageStatus.DEAD_LETTER).order_by()
                               .values("provider_id").annotate(count=Count("pk"))
                               .values_list("provider_id", "count")):
        dead[_labels_of(providers, provider_id)] = count
    dead_letters = _gauge("whatsapp_dead_letter_messages", "Outbound messages in the dead-letter view, waiting for a "
                                                           "person to retry or discard them.")
    for labels, count in dead.items():
        dead_letters.add_metric(labels, count)
    return [queued, sending, oldest_queued, oldest_due, dead_letters]


def _ai_families(providers: dict[int, _ProviderRow]) -> list[Metric]:
    ai_circuit = GaugeMetricFamily("whatsapp_ai_circuit_state", "The AI API's circuit breaker: 0 closed, 1 "
                                                                "half-open (probing), 2 open (AI steps wait).",
                                   value=CIRCUIT_VALUES.get(circuit_state()["state"], 2))
    # The budget's day (AI_BUDGET_TIME_ZONE), so that spend and budget compare.
    rows = (AiCall.objects.filter(created_at__gte=budget_day_start()).order_by()
            .values("provider_id", "status").annotate(calls=Count("pk"), cost=Sum("cost")))
    spend = {row.labels: Decimal(0) for row in providers.values()}
    calls = {(row.labels, status): 0 for row in providers.values() for status in AiCall.Status.values}
    for row in rows:
        labels = _labels_of(providers, row["provider_id"])
        spend[labels] = spend.get(labels, Decimal(0)) + (row["cost"] or Decimal(0))
        calls[(labels, row["status"])] = row["calls"]
    spend_family = _gauge("whatsapp_ai_spend_today_usd", "US dollars spent on AI calls since the start of the "
                                                         "budget day (AI_BUDGET_TIME_ZONE).")
    for labels, cost in spend.items():
        spend_family.add_metric(labels, float(cost))
    calls_family = _gauge("whatsapp_ai_calls_today", "AI calls since the start of the budget day, by status (ok, "
                                                     "failed, retry, skipped).", "status")
    for (labels, status), count in calls.items():
        calls_family.add_metric([*labels, status], count)
    budget = _gauge("whatsapp_ai_daily_budget_usd", "The provider's daily AI budget in US dollars (only providers "
                                                    "that have one).")
    for provider_id, amount in (ProviderAiSettings.objects.filter(daily_budget__isnull=False).order_by("provider_id")
                                .values_list("provider_id", "daily_budget")):
        budget.add_metric(_labels_of(providers, provider_id), float(amount))
    requests = GaugeMetricFamily("whatsapp_ai_requests_pending", "Reply suggestions and summaries asked for and "
                                                                 "not made yet.",
                                 value=AiRequest.objects.filter(status=StepStatus.PENDING).count())
    return [ai_circuit, spend_family, calls_family, budget, requests]
