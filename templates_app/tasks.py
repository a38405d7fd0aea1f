"""Celery tasks: thin wrappers that take ids and call services."""

from celery import shared_task

from templates_app.services.provider_submission import template_submit, templates_submit_due
from templates_app.services.sync import templates_sync_all


@shared_task
def template_submit_task(template_id: int) -> str:
    return template_submit(template_id)


@shared_task
def templates_submit_due_task() -> int:
    return templates_submit_due()


@shared_task
def templates_sync_task() -> list[str]:
    return [report.summary() for report in templates_sync_all()]
