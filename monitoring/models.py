from django.db import models


class WorkerHeartbeat(models.Model):
    """When a Celery worker last ran the heartbeat job that beat enqueues: one fresh row proves that beat
    schedules, the broker delivers and a worker consumes. Kept in the database, the one store every process
    of every setup shares (the cache is per process without Redis)."""

    name = models.CharField(max_length=64, unique=True, help_text="What beats: the worker pool.")
    hostname = models.CharField(max_length=255, blank=True, help_text="The worker that ran it last.")
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} seen {self.seen_at:%Y-%m-%d %H:%M:%S} ({self.hostname})"
