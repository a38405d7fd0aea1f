from celery import shared_task


@shared_task(bind=True)
def worker_heartbeat_task(self) -> None:
    from monitoring.services import worker_heartbeat_record

    worker_heartbeat_record(hostname=self.request.hostname or "")
