"""Celery tasks: thin wrappers that take ids and call services."""

from celery import shared_task


@shared_task
def template_submit_task(template_id: int) -> str:
    from templates_app.services.provider_submission import template_submit

    return template_submit(template_id)


@shared_task
def templates_submit_due_task() -> int:
    from templates_app.services.provider_submission import templates_submit_due

    return templates_submit_due()


@shared_task
def templates_sync_task() -> list[str]:
    from templates_app.services.sync import templates_sync_all

    return [report.summary() for report in templates_sync_all()]
