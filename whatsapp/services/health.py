import logging
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection
from kombu import Connection

from whatsapp.storage import get_storage

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


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "broker": _check_broker,
    "storage": _check_storage,
}
# Webhooks are still taken and kept in the database while the archive storage is out (rows wait as pending
# archive), so a storage failure degrades this instance; it does not make it unhealthy.
DEGRADES_ONLY = {"storage"}


def health_report() -> tuple[bool, dict]:
    """(healthy, report). Status "ok", "degraded" (still healthy: 200) or "fail" (503)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure, it never raises
            # /health/ is public: it names the failing part, the details (hosts, users) go to the log.
            logger.warning("health check failed", extra={"check": name, "error": f"{type(exc).__name__}: {exc}"})
            results[name] = {"status": "degraded" if name in DEGRADES_ONLY else "fail", "error": type(exc).__name__}
        else:
            results[name] = {"status": "ok"}
    if results["database"]["status"] == "ok":
        _add_archive_backlog(results["storage"])
    failing = [name for name, result in results.items() if result["status"] == "fail"]
    degraded = [name for name, result in results.items() if result["status"] == "degraded"]
    report = {"status": "fail" if failing else "degraded" if degraded else "ok", "checks": results}
    if failing:
        report["failing"] = failing
    if degraded:
        report["degraded"] = degraded
    if results["database"]["status"] == "ok":
        report["send_circuits"] = _send_circuits()
    return not failing, report


def _add_archive_backlog(result: dict) -> None:
    from whatsapp.services.archive import archive_backlog

    backlog = archive_backlog()
    # Public: how much waits and for how long, not what is being deleted (erasures are nobody's business).
    result.update({key: backlog[key] for key in ("pending_archive", "oldest_pending_seconds")})
    if backlog["oldest_pending_seconds"] > settings.ARCHIVE_DEGRADED_AFTER_SECONDS and result["status"] == "ok":
        result["status"] = "degraded"
        result["error"] = "archive_backlog"


def _send_circuits() -> dict[str, str]:
    """Each active provider's send circuit (closed, open, half_open). An open circuit holds that
    provider's messages; it does not make this instance unhealthy (it still receives and queues)."""
    from whatsapp.models import Provider

    # Named by kind and id, not by the provider's name: /health/ is public.
    rows = Provider.objects.filter(is_active=True).order_by("pk").values_list("kind", "pk", "circuit_state")
    return {f"{kind}-{pk}": state for kind, pk, state in rows}
