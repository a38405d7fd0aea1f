"""
Pause, resume, cancel, and sending the winner of an A/B test to the rest.

A pause takes back the campaign's messages the sender has not claimed yet (at most CAMPAIGN_BACKLOG_SECONDS of
the number's rate; the few the sender holds go out): their recipients are pending again and go when the
campaign resumes, at their own time. Nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient, CampaignVariant
from campaigns.services.launch import CampaignInvalid, dispatch_wake
from campaigns.services.scheduling import next_send_time, window_of
from core.audit import audit_record
from whatsapp.models import Message
from whatsapp.providers.events import MessageStatus


def _locked(campaign: Campaign) -> Campaign:
    return Campaign.objects.select_for_update().get(pk=campaign.pk)


def _withdraw_queued(campaign: Campaign) -> int:
    """Take back the campaign's messages still queued and not being claimed by a sender (SKIP LOCKED)."""
    ids = list(Message.objects.select_for_update(skip_locked=True)
               .filter(campaign_recipient__campaign=campaign, status=MessageStatus.QUEUED)
               .values_list("pk", flat=True))
    if not ids:
        return 0
    CampaignRecipient.objects.filter(message_id__in=ids).update(status=CampaignRecipient.Status.PENDING,
                                                                message=None, queued_at=None)
    Message.objects.filter(pk__in=ids, status=MessageStatus.QUEUED).delete()
    return len(ids)


@transaction.atomic
def campaign_pause(campaign: Campaign, *, actor: Any = None) -> int:
    """Pause a running campaign; returns how many queued messages were taken back."""
    campaign = _locked(campaign)
    if campaign.status != Campaign.Status.RUNNING:
        raise CampaignInvalid(f"only a running campaign can be paused (it is {campaign.get_status_display().lower()})")
    withdrawn = _withdraw_queued(campaign)
    campaign.status = Campaign.Status.PAUSED
    campaign.save(update_fields=["status", "updated_at"])
    audit_record(action="campaign.pause", obj=campaign, actor=actor, after={"withdrawn": withdrawn})
    return withdrawn


@transaction.atomic
def campaign_resume(campaign: Campaign, *, actor: Any = None) -> None:
    campaign = _locked(campaign)
    if campaign.status != Campaign.Status.PAUSED:
        raise CampaignInvalid(f"only a paused campaign can be resumed (it is {campaign.get_status_display().lower()})")
    campaign.status = Campaign.Status.RUNNING
    campaign.save(update_fields=["status", "updated_at"])
    audit_record(action="campaign.resume", obj=campaign, actor=actor)
    dispatch_wake.now(campaign.pk)


@transaction.atomic
def campaign_cancel(campaign: Campaign, *, actor: Any = None) -> int:
    """Cancel a campaign: nothing more is sent (what the sender already holds goes out). Returns how many
    recipients will not get it."""
    campaign = _locked(campaign)
    if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED):
        raise CampaignInvalid(f"the campaign is already {campaign.get_status_display().lower()}")
    _withdraw_queued(campaign)
    cancelled = CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.PENDING).update(
        status=CampaignRecipient.Status.CANCELLED)
    campaign.status, campaign.finished_at, campaign.next_run_at = Campaign.Status.CANCELLED, timezone.now(), None
    campaign.save(update_fields=["status", "finished_at", "next_run_at", "updated_at"])
    audit_record(action="campaign.cancel", obj=campaign, actor=actor, after={"cancelled_recipients": cancelled})
    return cancelled


@transaction.atomic
def campaign_send_winner(campaign: Campaign, variant: CampaignVariant, *, actor: Any = None) -> int:
    """Give the rest of the audience (those outside the A/B test) the chosen variant; they become due at their
    own next business hour. Returns how many."""
    campaign = _locked(campaign)
    if variant.campaign_id != campaign.pk:
        raise CampaignInvalid("that variant belongs to another campaign")
    if campaign.winner_id:
        raise CampaignInvalid(f"the winner was already sent ({campaign.winner.name})")
    if campaign.status not in (Campaign.Status.RUNNING, Campaign.Status.PAUSED):
        raise CampaignInvalid(f"the campaign is {campaign.get_status_display().lower()}")
    waiting = list(CampaignRecipient.objects.filter(campaign=campaign, run=campaign.runs,
                                                    group=CampaignRecipient.Group.REST, variant__isnull=True,
                                                    status=CampaignRecipient.Status.PENDING))
    now, window, due = timezone.now(), window_of(campaign), {}
    for recipient in waiting:
        if recipient.time_zone not in due:
            due[recipient.time_zone] = next_send_time(now, recipient.time_zone, window)
        recipient.variant, recipient.due_at = variant, due[recipient.time_zone]
    CampaignRecipient.objects.bulk_update(waiting, ["variant", "due_at"], batch_size=2000)
    campaign.winner = variant
    campaign.save(update_fields=["winner", "updated_at"])
    audit_record(action="campaign.send_winner", obj=campaign, actor=actor,
                 after={"variant": variant.name, "recipients": len(waiting)})
    if campaign.status == Campaign.Status.RUNNING:
        dispatch_wake.now(campaign.pk)
    return len(waiting)
