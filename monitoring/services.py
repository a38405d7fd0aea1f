"""Worker heartbeat: written by a worker running the beat-enqueued heartbeat job, read by /health/."""

from django.utils import timezone

from monitoring.models import WorkerHeartbeat

WORKER = "celery-worker"


def worker_heartbeat_record(hostname: str = "") -> None:
    WorkerHeartbeat.objects.update_or_create(name=WORKER, defaults={"hostname": hostname[:255],
                                                                     "seen_at": timezone.now()})


def worker_last_seen_seconds() -> float | None:
    """Seconds since a worker last ran the heartbeat job; None when none ever did."""
    seen_at = WorkerHeartbeat.objects.filter(name=WORKER).values_list("seen_at", flat=True).first()
    return None if seen_at is None else max(0.0, (timezone.now() - seen_at).total_seconds())
