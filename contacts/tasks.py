"""Celery tasks of the contacts app: thin wrappers that take ids and call services."""

from celery import shared_task

from contacts.services.export import data_export_build, data_exports_expire, data_exports_requeue_due


@shared_task
def data_export_build_task(export_id: int) -> str:
    # No Celery-level retry: a pending export has a due time in the database and the beat job hands it back.
    export = data_export_build(export_id)
    return export.status if export else "missing"


@shared_task
def data_exports_requeue_due_task() -> int:
    return data_exports_requeue_due()


@shared_task
def data_exports_expire_task() -> int:
    return data_exports_expire()
