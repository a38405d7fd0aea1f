"""
SMS fallback: a campaign's text by SMS (through a Twilio provider) for a recipient WhatsApp cannot reach, at
most once per recipient.

Two triggers: the provider says the number is not on WhatsApp (Meta 131026, Twilio 63024/63003: the
provider's not_on_whatsapp_error_codes), or WhatsApp has not delivered within the campaign's
sms_fallback_after_minutes. Either way, the recipient is claimed first (fallback_status "" -> sending, in a
transaction that also locks the WhatsApp message and checks it was not delivered): a second trigger, a
second worker or a retried task finds it claimed and sends nothing. A send whose outcome is unknown (the
worker died during the call) stays "sending" and is never retried. A delivery report for the WhatsApp
message that arrives after the SMS went is still recorded: WhatsApp cannot be told to drop a message it
already holds (a template's TTL is the way to make it give up).
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient
from campaigns.selectors import contacts_phones
from campaigns.services.content import ContentMissing, RecipientFacts, fill
from contacts.models import ConsentEvent, ConsentSource, Contact
from core.queueing import publish_on_commit, task_named
from whatsapp.models import Message
from whatsapp.providers.base import ProviderError
from whatsapp.providers.events import MessageStatus
from whatsapp.services.outbound import PENDING_STATUSES, sms_send
from whatsapp.services.send_rules import SendRefused

logger = logging.getLogger(__name__)

Fallback = CampaignRecipient.FallbackStatus
NOT_ON_WHATSAPP = "not_on_whatsapp"
NOT_DELIVERED = "not_delivered_in_time"
DELIVERED = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED)
# GSM-7 fits 160 characters in one SMS (153 a part when split); anything else is UCS-2: 70 (67).
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
           "abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€")
# Beat looks at this many overdue recipients a run; the rest wait for the next one.
OVERDUE_BATCH = 500


def sms_segments(text: str) -> int:
    single, part = (160, 153) if set(text) <= GSM7 else (70, 67)
    return 1 if len(text) <= single else math.ceil(len(text) / part)


def fallback_enqueue(recipient_id: int, reason: str) -> None:
    """Send the fallback in a task once the caller's transaction commits (a hook runs inside the inbox's)."""
    publish_on_commit(lambda: task_named("campaigns.tasks.sms_fallback_task").apply_async((recipient_id, reason)),
                      what=f"sms fallback {recipient_id}")


def _claim(recipient_id: int, reason: str) -> tuple[CampaignRecipient | None, str]:
    """Claim the recipient's one fallback, or say why not. A lasting "not" is written down (fallback skipped, with
    the reason), so the beat job does not ask again; a passing one (the WhatsApp message still on its way) is not."""
    recipient = (CampaignRecipient.objects.select_for_update(of=("self",)).select_related("campaign", "contact")
                 .filter(pk=recipient_id).first())
    if recipient is None:
        return None, "gone"
    campaign = recipient.campaign
    if recipient.fallback_status:
        return None, "already fallen back"
    # Locked: a delivery report for it waits until the claim is committed, and a delivered one stops it.
    message = Message.objects.select_for_update().filter(pk=recipient.message_id).first()
    if message is not None and message.status in PENDING_STATUSES:
        # Still queued or being sent (the provider paused, a backlog): WhatsApp may yet deliver it.
        return None, "the WhatsApp message has not gone out yet"
    lasting = _lasting_refusal(campaign, message, recipient.contact, reason)
    if lasting:
        recipient.fallback_status, recipient.fallback_error = Fallback.SKIPPED, lasting[:255]
        recipient.save(update_fields=["fallback_status", "fallback_error"])
        return None, lasting
    recipient.fallback_status, recipient.fallback_reason = Fallback.SENDING, reason
    recipient.fallback_sent_at = timezone.now()
    recipient.save(update_fields=["fallback_status", "fallback_reason", "fallback_sent_at"])
    return recipient, ""


def _lasting_refusal(campaign: Campaign, message: Message | None, contact: Contact, reason: str) -> str:
    if not campaign.sms_fallback_provider_id or campaign.status == Campaign.Status.CANCELLED:
        return "no SMS fallback for this campaign"
    if message is None:
        return "its WhatsApp message is gone"
    if message.status in DELIVERED or message.delivered_at:
        return "delivered on WhatsApp"
    if contact.consent == Contact.Consent.OPTED_OUT:
        # Only the opt-out WhatsApp's "not on WhatsApp" answer to this very message caused leaves SMS open: the
        # person never asked for it, WhatsApp just cannot reach them. One they asked for, or a block, covers SMS.
        caused_here = (reason == NOT_ON_WHATSAPP and contact.consent_source == ConsentSource.PROVIDER_ERROR
                       and ConsentEvent.objects.filter(contact=contact, message=message).exists())
        if not caused_here:
            return "opted out"
    return ""


def sms_fallback_send(recipient_id: int, reason: str) -> str:
    """The task's body: claim, then send the SMS. Returns what happened."""
    with transaction.atomic():
        recipient, why_not = _claim(recipient_id, reason)
    if recipient is None:
        return why_not
    campaign = recipient.campaign
    phone = contacts_phones([recipient.contact_id]).get(recipient.contact_id, "")
    contact = recipient.contact
    try:
        text = fill(campaign.sms_fallback_text, RecipientFacts(
            name=contact.profile_name, phone=phone, language=contact.language, time_zone=recipient.time_zone,
            attributes=contact.attributes or {}, row=recipient.values or {})).strip()
        if not phone:
            raise ContentMissing("no phone number to text")
        result = sms_send(campaign.sms_fallback_provider, phone, text)
    except (ContentMissing, SendRefused, ProviderError) as exc:
        CampaignRecipient.objects.filter(pk=recipient.pk).update(fallback_status=Fallback.FAILED,
                                                                 fallback_error=str(exc)[:255])
        logger.info("sms fallback failed", extra={"recipient_id": recipient.pk, "reason": str(exc)[:200]})
        return "failed"
    cost = Decimal(str(settings.CAMPAIGN_SMS_SEGMENT_PRICE)) * sms_segments(text)
    CampaignRecipient.objects.filter(pk=recipient.pk).update(fallback_status=Fallback.SENT,
                                                             fallback_sid=result.provider_message_id[:64],
                                                             fallback_cost=cost)
    return "sent"


def overdue_fallbacks() -> int:
    """Beat: recipients of campaigns with a delivery deadline whose WhatsApp message is not delivered in time."""
    now = timezone.now()
    count = 0
    campaigns = (Campaign.objects.filter(sms_fallback_provider__isnull=False, sms_fallback_after_minutes__isnull=False)
                 .exclude(status__in=[Campaign.Status.DRAFT, Campaign.Status.CANCELLED])
                 .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=now - timedelta(days=2))))
    for campaign in campaigns:
        deadline = now - timedelta(minutes=campaign.sms_fallback_after_minutes)
        overdue = (CampaignRecipient.objects
                   .filter(campaign=campaign, fallback_status="", message__isnull=False, queued_at__lt=deadline,
                           delivered_at__isnull=True, read_at__isnull=True)
                   .exclude(message__status__in=(*DELIVERED, *PENDING_STATUSES))
                   .values_list("pk", flat=True)[:OVERDUE_BATCH - count])
        for recipient_id in overdue:
            fallback_enqueue(recipient_id, NOT_DELIVERED)
            count += 1
        if count >= OVERDUE_BATCH:
            break
    return count
