from celery import shared_task

from analytics.services.rollups import counts_squash


@shared_task
def counts_squash_task() -> int:
    """Fold the waiting count deltas into the hourly and per-template counts (beat, every minute)."""
    return counts_squash().deltas
