"""Celery tasks: thin wrappers that take ids and call services."""

from celery import shared_task

from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.fallback import sms_fallback_send
from campaigns.services.jobs import campaigns_results_refresh, campaigns_tick


@shared_task
def campaign_dispatch_task(campaign_id: int) -> int:
    result = campaign_dispatch(campaign_id)
    return result.queued if result else 0


@shared_task
def campaigns_tick_task() -> int:
    return campaigns_tick()


@shared_task
def campaigns_results_refresh_task() -> int:
    return campaigns_results_refresh()


@shared_task
def sms_fallback_task(recipient_id: int, reason: str) -> str:
    return sms_fallback_send(recipient_id, reason)
