"""
The dispatcher: turns a running campaign's due recipients into queued messages, a batch at a time, keeping
about CAMPAIGN_BACKLOG_SECONDS of the number's rate queued for the sender and no more.

    lock the campaign row (SKIP LOCKED: one dispatcher per campaign at a time, others return at once)
    -> room = the number's rate x backlog seconds - bulk messages already queued on the number
    -> the earliest due pending recipients
    -> guards: opted out, no address, WhatsApp's marketing cap (suppressed), our frequency cap, outside the
       person's business hours now (due again at the next opening), free text with the window closed, a
       value missing -> skipped with the reason (or due later)
    -> their messages made in one insert (whatsapp.services.outbound.messages_queue_bulk), each recipient
       pointing at its message, all in the same transaction: after a crash anywhere, a recipient either has
       its message (and the sender's exactly-once rules take over) or is still pending; never both, never none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient, CampaignVariant, MarketingSuppression
from campaigns.selectors import contacts_identity_rows, contacts_phones
from campaigns.services.content import ContentMissing, RecipientFacts, variant_message
from campaigns.services.launch import (
    SKIP_NO_ADDRESS,
    SKIP_NO_WINDOW,
    SKIP_OPTED_OUT,
    dispatch_later,
    dispatch_look_begins,
)
from campaigns.services.scheduling import next_send_time, window_of
from contacts.models import Contact
from core.bulk import bulk_update_rows
from templates_app.models import MessageTemplate
from whatsapp.models import CircuitState, Message, Session
from whatsapp.providers import backend_for
from whatsapp.providers.events import Identity, MessageStatus, MessageType
from whatsapp.services.delivery import number_rate
from whatsapp.services.outbound import PENDING_STATUSES, BulkSend, messages_queue_bulk

logger = logging.getLogger(__name__)

# Longest wait between two looks at a campaign whose next recipient is due later (the broker's countdowns
# stay short; the beat job is the safety net).
IDLE_LOOK_SECONDS = 30.0
# A window that opens again within this long is treated as open (no reschedule for a few seconds).
WINDOW_SLACK = timedelta(seconds=60)
# Free text needs the person's 24-hour window open for a little while yet when it is sent.
WINDOW_MARGIN = timedelta(minutes=5)

SKIP_SUPPRESSED = "WhatsApp held marketing back from this person recently (its per-person cap)"
SKIP_CAPPED = "frequency cap: {cap} marketing messages in {days} days"
SKIP_WINDOW_CLOSED = "free text needs an open 24-hour window; this person has not written recently"


@dataclass
class Dispatched:
    queued: int = 0
    skipped: int = 0
    rescheduled: int = 0


def is_marketing(variant: CampaignVariant | None) -> bool:
    """Marketing content counts towards the frequency cap and WhatsApp's marketing cap: marketing templates and
    campaign free text; utility and authentication templates do not."""
    return variant is not None and (variant.template is None
                                    or variant.template.category == MessageTemplate.Category.MARKETING)


def campaign_dispatch(campaign_id: int) -> Dispatched | None:
    """Queue what is due of one running campaign (the task's body). None when it is not running, or another
    dispatcher has it."""
    dispatch_look_begins(campaign_id)
    with transaction.atomic():
        campaign = (Campaign.objects.select_for_update(skip_locked=True, of=("self",)).select_related("provider")
                    .filter(pk=campaign_id).first())
        if campaign is None or campaign.status != Campaign.Status.RUNNING:
            return None
        result = Dispatched()
        provider = campaign.provider
        if provider.is_paused or not provider.is_active or provider.circuit_state == CircuitState.OPEN:
            # Anything queued now would only be held: look again later.
            dispatch_later(campaign.pk, countdown=IDLE_LOOK_SECONDS)
            return result
        room, queued = _backlog(campaign)
        if room > 0:
            now = timezone.now()
            rows = list(CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.PENDING,
                                                         due_at__lte=now)
                        .select_related("variant__template").order_by("due_at", "pk")
                        [:min(room, settings.CAMPAIGN_DISPATCH_BATCH)])
            if rows:
                # A backlog still queued has a sender at work on it: topping it up needs no wake.
                _dispatch(campaign, rows, result, wake_sender=queued == 0)
        _plan_next(campaign, result, room)
    return result


def _backlog(campaign: Campaign) -> tuple[int, int]:
    """(room, queued): how many more messages the number's bulk backlog takes, and how many it holds."""
    wanted = int(number_rate(campaign.provider) * settings.CAMPAIGN_BACKLOG_SECONDS) + 1
    queued = Message.objects.filter(provider_id=campaign.provider_id, status=MessageStatus.QUEUED,
                                    lane=Message.Lane.BULK).count()
    return wanted - queued, queued


def _plan_next(campaign: Campaign, result: Dispatched, room: int) -> None:
    """Wake again soon while there is work; finish the run when nothing is pending."""
    if result.queued or result.rescheduled or room <= 0:
        dispatch_later(campaign.pk, countdown=settings.CAMPAIGN_DISPATCH_INTERVAL_SECONDS)
        return
    pending = CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.PENDING)
    next_due = pending.filter(due_at__isnull=False).aggregate(at=Min("due_at"))["at"]
    if next_due is not None:
        wait = (next_due - timezone.now()).total_seconds()
        dispatch_later(campaign.pk, countdown=min(max(wait, settings.CAMPAIGN_DISPATCH_INTERVAL_SECONDS),
                                                       IDLE_LOOK_SECONDS))
        return
    if pending.exists():
        return  # the rest waits for a winner to be chosen
    if Message.objects.filter(campaign_recipient__campaign=campaign, status__in=PENDING_STATUSES).exists():
        # Messages still with the sender (a backoff, a hold): a pause or a cancel can still take them back.
        dispatch_later(campaign.pk, countdown=IDLE_LOOK_SECONDS)
        return
    campaign_run_finish(campaign)


def campaign_run_finish(campaign: Campaign) -> None:
    """Nothing left to dispatch in this run: completed, or scheduled for its next run."""
    campaign.status = Campaign.Status.SCHEDULED if campaign.next_run_at else Campaign.Status.COMPLETED
    campaign.finished_at = timezone.now()
    campaign.save(update_fields=["status", "finished_at", "updated_at"])
    logger.info("campaign run finished", extra={"campaign_id": campaign.pk, "run": campaign.runs})


def _dispatch(campaign: Campaign, rows: list[CampaignRecipient], result: Dispatched, *, wake_sender: bool) -> None:
    now = timezone.now()
    contact_ids = [row.contact_id for row in rows]
    contacts = {contact.pk: contact for contact in Contact.objects.filter(pk__in=contact_ids).only(
        "pk", "consent", "profile_name", "language", "time_zone", "attributes")}
    phones = contacts_phones(contact_ids)
    identities = contacts_identity_rows(contact_ids)
    backend = backend_for(campaign.provider)
    marketing_ids = [row.contact_id for row in rows if is_marketing(row.variant)]
    suppressed = set(MarketingSuppression.objects.filter(provider_id=campaign.provider_id, until__gt=now,
                                                         contact_id__in=marketing_ids)
                     .values_list("contact_id", flat=True))
    capped = _over_frequency_cap(marketing_ids, now)
    in_window = _open_windows(campaign, [row.contact_id for row in rows if row.variant and not row.variant.template_id],
                              now)
    window = window_of(campaign)
    sending: list[tuple[CampaignRecipient, BulkSend]] = []
    for row in rows:
        contact = contacts.get(row.contact_id)
        reason = _refusal(row, contact, identities, backend, suppressed, capped, in_window)
        if reason:
            _skip(row, reason, result)
            continue
        opens = next_send_time(now, row.time_zone, window)
        if opens is None:
            _skip(row, SKIP_NO_WINDOW, result)
            continue
        if opens > now + WINDOW_SLACK:
            row.due_at = opens
            result.rescheduled += 1
            continue
        facts = RecipientFacts(name=contact.profile_name, phone=phones.get(row.contact_id, ""),
                               language=contact.language, time_zone=row.time_zone, attributes=contact.attributes or {},
                               row=row.values or {})
        try:
            content = variant_message(row.variant, facts)
        except ContentMissing as missing:
            _skip(row, str(missing), result)
            continue
        sending.append((row, BulkSend(contact_id=row.contact_id, message_type=content.message_type, text=content.text,
                                      template=row.variant.template if content.message_type == MessageType.TEMPLATE
                                      else None, template_variables=content.template_variables)))
    messages = messages_queue_bulk(campaign.provider, [send for _row, send in sending],
                                   purpose=Message.Purpose.CAMPAIGN, wake=wake_sender)
    for (row, _send), message in zip(sending, messages, strict=True):
        row.message, row.status, row.queued_at = message, CampaignRecipient.Status.QUEUED, now
    result.queued = len(messages)
    bulk_update_rows(rows, ["status", "skip_reason", "due_at", "message", "queued_at"])


def _refusal(row: CampaignRecipient, contact: Contact | None, identities, backend, suppressed: set[int],
             capped: set[int], in_window: set[int]) -> str:
    if contact is None or row.variant is None:
        return "the person or the variant is gone"
    if contact.consent == Contact.Consent.OPTED_OUT:
        return SKIP_OPTED_OUT
    if not backend.recipient_address(tuple(Identity(*item) for item in identities.get(row.contact_id, ()))):
        return SKIP_NO_ADDRESS
    if row.contact_id in suppressed:
        return SKIP_SUPPRESSED
    if row.contact_id in capped:
        return SKIP_CAPPED.format(cap=settings.CAMPAIGN_FREQUENCY_CAP, days=settings.CAMPAIGN_FREQUENCY_CAP_DAYS)
    if not row.variant.template_id and row.contact_id not in in_window:
        return SKIP_WINDOW_CLOSED
    return ""


def _skip(row: CampaignRecipient, reason: str, result: Dispatched) -> None:
    row.status, row.skip_reason = CampaignRecipient.Status.SKIPPED, reason[:255]
    result.skipped += 1


def _over_frequency_cap(contact_ids: list[int], now) -> set[int]:
    """People who already got CAMPAIGN_FREQUENCY_CAP marketing campaign messages within the cap's days."""
    cap = settings.CAMPAIGN_FREQUENCY_CAP
    if cap <= 0 or not contact_ids:
        return set()
    since = now - timedelta(days=settings.CAMPAIGN_FREQUENCY_CAP_DAYS)
    counted = (CampaignRecipient.objects
               .filter(contact_id__in=contact_ids, queued_at__gte=since)
               .exclude(status__in=[CampaignRecipient.Status.FAILED, CampaignRecipient.Status.CANCELLED])
               .exclude(variant__template__category__in=[MessageTemplate.Category.UTILITY,
                                                         MessageTemplate.Category.AUTHENTICATION])
               .values("contact_id").annotate(sent=Count("pk")).filter(sent__gte=cap))
    return {row["contact_id"] for row in counted}


def _open_windows(campaign: Campaign, contact_ids: list[int], now) -> set[int]:
    if not contact_ids:
        return set()
    return set(Session.objects.filter(conversation__provider_id=campaign.provider_id,
                                      conversation__contact_id__in=contact_ids, state=Session.State.OPEN,
                                      expires_at__gt=now + WINDOW_MARGIN)
               .values_list("conversation__contact_id", flat=True))
