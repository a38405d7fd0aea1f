"""
The platform's own Prometheus metrics, counted where the work happens (the webhook view, the inbox worker,
the send path) and exposed by monitoring's /metrics together with figures read from the database.

Several processes count: gunicorn's workers and each Celery worker's pool. With PROMETHEUS_MULTIPROC_DIR
set, every process writes its values to files of its own in that directory and /metrics adds them up;
without it a value lives only in the process that counted it, which is right for a single process only.
The variable is read when this module is imported, so it must be in the environment before the process
starts.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable

from prometheus_client import Counter, Histogram, disable_created_metrics, values

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The provider label of a request that named no provider we have (an unknown or inactive webhook URL).
NO_PROVIDER = "none"

# The library names each process's files by process id. Containers sharing one directory (web and workers
# on a common volume) each number their processes from 1, so the host name goes in the name too.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "host"


def multiprocess_dir() -> str:
    """The directory the processes share their values through; empty when each keeps its own."""
    return os.environ.get(MULTIPROCESS_DIR_VARIABLE, "")


def _process_identifier() -> str:
    # Called on every update (a fork changes the pid, and with it the files to write): kept cheap.
    return f"{_HOST}-{os.getpid()}"


def _configure() -> None:
    # `_created` samples only double the series; the multiprocess mode has none, so neither mode shows them.
    disable_created_metrics()
    directory = multiprocess_dir()
    if not directory:
        return
    # A missing directory would make every update fail; a directory that cannot be made is a deployment
    # error, better met at start-up than as metrics silently missing.
    os.makedirs(directory, exist_ok=True)
    # Before any metric below exists: each takes its value class when it is made.
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)


_configure()

# Received-to-processed includes the wait for a worker and any retries: from tens of milliseconds to hours.
_INBOX_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)
# One provider call, bounded by PROVIDER_HTTP_TIMEOUT_SECONDS (15 s by default).
_CALL_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)
# Queued to accepted by the provider: rate limits, pacing and backoff can hold a message for hours.
_QUEUE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)

WEBHOOKS_RECEIVED = Counter(
    "whatsapp_webhooks_received",
    "Webhook requests acknowledged with 200 and stored in the inbox (outcome: accepted, or duplicate of a "
    "delivery already stored).",
    ["provider_kind", "provider_id", "outcome"],
)
WEBHOOKS_REJECTED = Counter(
    "whatsapp_webhooks_rejected",
    "Webhook requests refused, by reason: invalid_body, signature_missing, signature_invalid, unknown_provider, "
    "length_required, too_large, unsupported_content_type, throttled, other.",
    ["provider_kind", "provider_id", "reason"],
)
WEBHOOK_PROCESSING_SECONDS = Histogram(
    "whatsapp_webhook_processing_seconds",
    "Seconds from a webhook's arrival to the end of its successful processing (worker wait and retries "
    "included).",
    ["provider_kind", "provider_id"],
    buckets=_INBOX_BUCKETS,
)
SEND_CALL_SECONDS = Histogram(
    "whatsapp_send_call_seconds",
    "Seconds one provider send call took, by outcome: sent, provider_error (refused or failed, retried or "
    "not), unexpected_error (the outcome is unknown).",
    ["provider_kind", "provider_id", "outcome"],
    buckets=_CALL_BUCKETS,
)
SEND_QUEUED_TO_SENT_SECONDS = Histogram(
    "whatsapp_send_queued_to_sent_seconds",
    "Seconds from an outbound message being queued to the provider accepting it, by lane.",
    ["provider_kind", "provider_id", "lane"],
    buckets=_QUEUE_BUCKETS,
)

_failure_logged = False


def _record(update: Callable[[], None]) -> None:
    global _failure_logged  # one warning per process, not one per request
    try:
        update()
    except Exception:  # a metric must never fail the work it measures
        if not _failure_logged:
            _failure_logged = True
            logger.warning("a metric could not be recorded (PROMETHEUS_MULTIPROC_DIR unwritable?)", exc_info=True)


def _provider_label(provider_id: int | None) -> str:
    return NO_PROVIDER if provider_id is None else str(provider_id)


def webhook_received(kind: str, provider_id: int | None, *, duplicate: bool) -> None:
    _record(lambda: WEBHOOKS_RECEIVED.labels(kind, _provider_label(provider_id),
                                             "duplicate" if duplicate else "accepted").inc())


def webhook_rejected(kind: str, provider_id: int | None, reason: str) -> None:
    _record(lambda: WEBHOOKS_REJECTED.labels(kind, _provider_label(provider_id), reason).inc())


def webhook_processed(kind: str, provider_id: int | None, seconds: float) -> None:
    _record(lambda: WEBHOOK_PROCESSING_SECONDS.labels(kind, _provider_label(provider_id)).observe(max(seconds, 0)))


def send_call(kind: str, provider_id: int, outcome: str, seconds: float) -> None:
    _record(lambda: SEND_CALL_SECONDS.labels(kind, _provider_label(provider_id), outcome).observe(max(seconds, 0)))


def send_queued_to_sent(kind: str, provider_id: int, lane: str, seconds: float) -> None:
    _record(lambda: SEND_QUEUED_TO_SENT_SECONDS.labels(kind, _provider_label(provider_id), lane)
            .observe(max(seconds, 0)))
