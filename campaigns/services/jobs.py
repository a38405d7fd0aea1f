"""The campaigns' beat jobs: the safety net under the dispatcher's own wakes, recurring runs, and results."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient
from campaigns.services.fallback import overdue_fallbacks
from campaigns.services.launch import CampaignInvalid, campaign_launch, dispatch_later
from campaigns.services.results import campaign_refresh

logger = logging.getLogger(__name__)

# Results keep changing for a while after the last message went out (receipts, replies, opt-outs).
RESULTS_FOLLOW_DAYS = 7


def campaigns_tick() -> int:
    """Wake the dispatcher of every running campaign with a recipient due (a wake lost with a worker or the
    broker), send the SMS fallbacks whose WhatsApp deadline passed, and start the recurring campaigns' runs that
    are due. Returns how many were woken, sent or started."""
    now = timezone.now()
    due = CampaignRecipient.objects.filter(campaign=OuterRef("pk"), status=CampaignRecipient.Status.PENDING,
                                           due_at__lte=now)
    woken = 0
    running = Campaign.objects.filter(Exists(due), status=Campaign.Status.RUNNING)
    for campaign_id in running.values_list("pk", flat=True):
        dispatch_later(campaign_id, countdown=0)
        woken += 1
    woken += overdue_fallbacks()
    for campaign in Campaign.objects.filter(status=Campaign.Status.SCHEDULED, next_run_at__lte=now):
        try:
            campaign_launch(campaign)
            woken += 1
        except CampaignInvalid as exc:
            logger.warning("recurring campaign run not started", extra={"campaign_id": campaign.pk,
                                                                        "reason": str(exc)})
    return woken


def campaigns_results_refresh() -> int:
    """Copy receipts into the recipients of campaigns still sending or recently finished."""
    since = timezone.now() - timedelta(days=RESULTS_FOLLOW_DAYS)
    active = Campaign.objects.filter(Q(status__in=[Campaign.Status.RUNNING, Campaign.Status.PAUSED])
                                     | Q(finished_at__gte=since))
    return sum(campaign_refresh(campaign) for campaign in active)
