"""
How campaigns hear about what happens after a send, through the messaging core's hooks:

- a person writes back within CAMPAIGN_REPLY_ATTRIBUTION_HOURS of a campaign message: the recipient replied
  (and converted, when the reply carries the campaign's keyword);
- WhatsApp refuses a marketing message under its per-person cap (Meta 131049, Twilio 63049): the person is
  suppressed from marketing for a while, doubling with each hold in a row, instead of being retried.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from campaigns.models import CampaignRecipient, MarketingSuppression
from campaigns.services.fallback import NOT_ON_WHATSAPP, fallback_enqueue
from contacts.models import ConsentKeyword
from whatsapp.models import Message
from whatsapp.providers import backend_for

logger = logging.getLogger(__name__)

Status = CampaignRecipient.Status
# A reply does not turn these back into "replied".
SETTLED = (Status.FAILED, Status.OPTED_OUT, Status.SKIPPED, Status.CANCELLED)


def reply_attribute(message: Message) -> None:
    """Receiver of inbound_message_saved: a reply to a recent campaign message."""
    since = timezone.now() - timedelta(hours=settings.CAMPAIGN_REPLY_ATTRIBUTION_HOURS)
    recipient = (CampaignRecipient.objects
                 .filter(contact_id=message.conversation.contact_id, queued_at__gte=since,
                         campaign__provider_id=message.provider_id)
                 .select_related("campaign", "message").order_by("-queued_at").first())
    if recipient is None:
        return
    now = timezone.now()
    fields = []
    if recipient.replied_at is None:
        recipient.replied_at = now
        sent = recipient.message
        # Writing back means they got it and saw it, whatever receipts are still on their way.
        recipient.sent_at = recipient.sent_at or (sent.sent_at if sent else None) or now
        recipient.delivered_at = recipient.delivered_at or (sent.delivered_at if sent else None) or now
        recipient.read_at = recipient.read_at or (sent.read_at if sent else None) or now
        fields += ["replied_at", "sent_at", "delivered_at", "read_at"]
        if recipient.status not in SETTLED:
            recipient.status = Status.REPLIED
            fields.append("status")
    keyword = recipient.campaign.conversion_keyword
    if keyword and recipient.converted_at is None and _mentions(message.text, keyword):
        recipient.converted_at = now
        fields.append("converted_at")
    if fields:
        recipient.save(update_fields=fields)


def _mentions(text: str, keyword: str) -> bool:
    """Whether the reply carries the keyword as a word (case, accents and punctuation do not matter)."""
    wanted = ConsentKeyword.normalize(keyword)
    words = ConsentKeyword.normalize(text or "").split()
    return wanted in words or ConsentKeyword.normalize(text or "") == wanted


def send_failure_reaction(message: Message, error_code: str = "") -> None:
    """Receiver of status_failed_reported and send_failed: a campaign message WhatsApp would not deliver."""
    if message.purpose != Message.Purpose.CAMPAIGN:
        return
    code = error_code or message.error_code
    recipient = CampaignRecipient.objects.filter(message=message).select_related("campaign").first()
    if recipient is None:
        return
    now = timezone.now()
    recipient.status, recipient.failed_at, recipient.error_code = Status.FAILED, recipient.failed_at or now, code[:32]
    recipient.save(update_fields=["status", "failed_at", "error_code"])
    backend = backend_for(message.provider)
    if code in backend.marketing_cap_error_codes:
        marketing_suppress(recipient.contact_id, message.provider_id, code)
    if code in backend.not_on_whatsapp_error_codes and recipient.campaign.sms_fallback_provider_id:
        fallback_enqueue(recipient.pk, NOT_ON_WHATSAPP)


def marketing_suppress(contact_id: int, provider_id: int, error_code: str) -> MarketingSuppression:
    """Leave the person out of marketing for CAMPAIGN_SUPPRESSION_HOURS, doubled for each hold in a row."""
    now = timezone.now()
    hours = settings.CAMPAIGN_SUPPRESSION_HOURS
    suppression, created = MarketingSuppression.objects.get_or_create(
        contact_id=contact_id, provider_id=provider_id,
        defaults={"until": now + timedelta(hours=hours), "error_code": error_code[:32]})
    if not created:
        # A hold soon after the last one ended: the cap is still on, so wait longer.
        strikes = suppression.strikes + 1 if suppression.until > now - timedelta(hours=hours) else 1
        MarketingSuppression.objects.filter(pk=suppression.pk).update(
            strikes=strikes, until=now + timedelta(hours=hours * 2 ** min(strikes - 1, 4)),
            error_code=error_code[:32], updated_at=now)
        suppression.refresh_from_db()
    logger.info("marketing suppressed", extra={"contact_id": contact_id, "provider_id": provider_id,
                                               "until": suppression.until.isoformat()})
    return suppression



def conversion_record(campaign_id: int, contact_id: int) -> CampaignRecipient | None:
    """A conversion the business reports itself (an order, a sign-up): it counts for the person's latest record
    in the campaign. None when the person was not in it."""
    recipient = (CampaignRecipient.objects.filter(campaign_id=campaign_id, contact_id=contact_id)
                 .order_by("-run").first())
    if recipient is not None and recipient.converted_at is None:
        recipient.converted_at = timezone.now()
        recipient.save(update_fields=["converted_at"])
    return recipient
