from celery import shared_task

from monitoring.alerts import alerts_evaluate
from monitoring.services import worker_heartbeat_record


@shared_task(bind=True)
def worker_heartbeat_task(self) -> None:
    worker_heartbeat_record(hostname=self.request.hostname or "")


@shared_task
def alerts_evaluate_task() -> str:
    return alerts_evaluate().summary()
