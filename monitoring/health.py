import logging
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q
from django.utils import timezone
from kombu import Connection

from ai.client import ai_configured
from ai.guards import circuit_state
from core.storage import get_storage
from monitoring.alerts import open_incidents_overview
from monitoring.services import worker_last_seen_seconds
from whatsapp.models import Message, MessageStatus, Provider, WebhookEvent
from whatsapp.services.archive_jobs import archive_backlog

logger = logging.getLogger(__name__)
BROKER_TIMEOUT_SECONDS = 2


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        folder.mkdir(parents=True, exist_ok=True)
        return
    with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS,
                    transport_options={"socket_timeout": BROKER_TIMEOUT_SECONDS}) as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        # Redis accepts the TCP connection lazily: a round trip proves it answers.
        channel = conn.default_channel
        client = getattr(channel, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()


def _check_storage() -> None:
    get_storage().check()


class WorkerNotSeen(Exception):
    """No worker ran the heartbeat job lately: nothing consumes the queues (or beat does not run)."""

    def __init__(self, message: str, figures: dict):
        super().__init__(message)
        self.figures = figures


def _check_worker() -> dict:
    # The age is read once and reported with the check's outcome, whichever it is.
    age = worker_last_seen_seconds()
    figures = {"last_seen_seconds": None if age is None else int(age)}
    if age is None or age > settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS:
        raise WorkerNotSeen("no worker heartbeat" if age is None else f"last heartbeat {age:.0f}s ago", figures)
    return figures


# A check raises when its part does not work; it may return figures (or carry them on its exception) that
# the report shows beside its status.
CHECKS: dict[str, Callable[[], dict | None]] = {
    "database": _check_database,
    "broker": _check_broker,
    "storage": _check_storage,
    "worker": _check_worker,
}
# Webhooks are still taken and kept in the database while the archive storage is out (rows wait as pending
# archive), so a storage failure degrades this instance; it does not make it unhealthy.
# Without a worker, webhooks are still taken and stored and messages queued: they wait, nothing is lost, so a
# missing worker or a backlog degrades too (taking this web instance out of rotation would not help).
DEGRADES_ONLY = {"storage", "worker"}


def health_report() -> tuple[bool, dict]:
    """(healthy, report). Status "ok", "degraded" (still healthy: 200) or "fail" (503)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            figures = check() or {}
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure, it never raises
            # /health/ is public: it names the failing part, the details (hosts, users) go to the log.
            logger.warning("health check failed", extra={"check": name, "error": f"{type(exc).__name__}: {exc}"})
            results[name] = {"status": "degraded" if name in DEGRADES_ONLY else "fail", "error": type(exc).__name__,
                             **getattr(exc, "figures", {})}
        else:
            results[name] = {"status": "ok", **figures}
    inbox = None
    if results["database"]["status"] == "ok":
        inbox = _inbox()
        _add_archive_backlog(results["storage"])
        _add_worker_figures(results["worker"], inbox["oldest_pending_seconds"])
    failing = [name for name, result in results.items() if result["status"] == "fail"]
    degraded = [name for name, result in results.items() if result["status"] == "degraded"]
    # An open alert incident means something needs a person, yet webhooks are still taken: degraded, not failing.
    alerts = open_incidents_overview() if inbox is not None else None
    if alerts is not None and alerts["open"]:
        degraded.append("alerts")
    report = {"status": "fail" if failing else "degraded" if degraded else "ok", "checks": results}
    if failing:
        report["failing"] = failing
    if degraded:
        report["degraded"] = degraded
    if inbox is not None:
        report["send_circuits"] = _send_circuits()
        # The AI API's circuit: open means AI steps wait; messages themselves are not affected.
        report["ai"] = {"enabled": ai_configured(), "circuit": circuit_state()}
        report["inbox"] = inbox
        report["alerts"] = alerts
    return not failing, report


def _add_archive_backlog(result: dict) -> None:
    backlog = archive_backlog()
    # Public: how much waits and for how long, not what is being deleted (erasures are nobody's business).
    result.update({key: backlog[key] for key in ("pending_archive", "oldest_pending_seconds")})
    if backlog["oldest_pending_seconds"] > settings.ARCHIVE_DEGRADED_AFTER_SECONDS and result["status"] == "ok":
        result["status"] = "degraded"
        result["error"] = "archive_backlog"


def _inbox() -> dict[str, int]:
    """Webhook events given up (`failed`, no further attempt: a person must look) and how long the oldest
    pending one has waited. Reported, not judged: a backlog does not make this instance unhealthy."""
    Status = WebhookEvent.Status
    counts = WebhookEvent.objects.filter(status__in=[Status.FAILED, Status.PENDING]).aggregate(
        gave_up=Count("pk", filter=Q(status=Status.FAILED, next_attempt_at__isnull=True)),
        retrying=Count("pk", filter=Q(status=Status.FAILED, next_attempt_at__isnull=False)),
        oldest_pending=Min("received_at", filter=Q(status=Status.PENDING)),
    )
    oldest = counts["oldest_pending"]
    return {"failed": counts["gave_up"], "retrying": counts["retrying"],
            "oldest_pending_seconds": int((timezone.now() - oldest).total_seconds()) if oldest else 0}


def _add_worker_figures(result: dict, oldest_pending_event_seconds: int) -> None:
    """How long the oldest work has waited for a worker (how long ago one was seen, _check_worker reports): a
    due outbound message (not one held on purpose: backoff, rate limit, a paused provider) and a pending inbox
    row."""
    now = timezone.now()
    oldest_due = (Message.objects.filter(status=MessageStatus.QUEUED, next_attempt_at__lte=now,
                                         provider__is_paused=False)
                  .aggregate(oldest=Min("next_attempt_at"))["oldest"])
    figures = {
        "oldest_queued_message_seconds": int((now - oldest_due).total_seconds()) if oldest_due else 0,
        "oldest_pending_event_seconds": oldest_pending_event_seconds,
    }
    result.update(figures)
    backlog = max(figures["oldest_queued_message_seconds"], figures["oldest_pending_event_seconds"])
    if backlog > settings.HEALTH_BACKLOG_DEGRADED_AFTER_SECONDS and result["status"] == "ok":
        result["status"] = "degraded"
        result["error"] = "backlog"


def _send_circuits() -> dict[str, str]:
    """Each active provider's send circuit (closed, open, half_open). An open circuit holds that
    provider's messages; it does not make this instance unhealthy (it still receives and queues)."""
    # Named by kind and id, not by the provider's name: /health/ is public.
    rows = Provider.objects.filter(is_active=True).order_by("pk").values_list("kind", "pk", "circuit_state")
    return {f"{kind}-{pk}": state for kind, pk, state in rows}
