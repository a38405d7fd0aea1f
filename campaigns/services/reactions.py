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
from django.db import transaction
from django.utils import timezone

from campaigns.models import CampaignRecipient, MarketingSuppression
from campaigns.services.fallback import NOT_ON_WHATSAPP, fallback_enqueue
from contacts.models import ConsentKeyword
from whatsapp.models import Message
from whatsapp.providers import backend_for
from whatsapp.providers.events import MessageStatus

logger = logging.getLogger(__name__)

Status = CampaignRecipient.Status
# A reply does not turn these back into "replied".
SETTLED = (Status.FAILED, Status.OPTED_OUT, Status.SKIPPED, Status.CANCELLED, Status.HELD_OUT)
# A campaign message a reply can answer: it reached the provider.
WENT_OUT = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED)


def reply_attribute(message: Message) -> None:
    """Receiver of inbound_message_saved: a reply to a recent campaign message the person got (its message went
    out), or, for someone in a campaign's holdout, a reply within as long of the campaign's launch (what people do
    anyway: the baseline)."""
    now = timezone.now()
    since = now - timedelta(hours=settings.CAMPAIGN_REPLY_ATTRIBUTION_HOURS)
    contact_id, provider_id = message.conversation.contact_id, message.provider_id
    recipient = (CampaignRecipient.objects
                 .filter(contact_id=contact_id, queued_at__gte=since, campaign__provider_id=provider_id,
                         message__status__in=WENT_OUT)
                 .select_related("campaign", "message").order_by("-queued_at").first())
    if recipient is None:
        recipient = (CampaignRecipient.objects
                     .filter(contact_id=contact_id, group=CampaignRecipient.Group.HOLDOUT, status=Status.HELD_OUT,
                             campaign__provider_id=provider_id, campaign__launched_at__gte=since)
                     .select_related("campaign").order_by("-campaign__launched_at").first())
    if recipient is None:
        return
    fields = []
    if recipient.replied_at is None:
        recipient.replied_at = now
        fields.append("replied_at")
        sent = recipient.message
        if sent is not None:
            # Writing back means they got it and saw it, whatever receipts are still on their way.
            recipient.sent_at = recipient.sent_at or sent.sent_at or now
            recipient.delivered_at = recipient.delivered_at or sent.delivered_at or now
            recipient.read_at = recipient.read_at or sent.read_at or now
            fields += ["sent_at", "delivered_at", "read_at"]
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
        marketing_suppress(recipient.contact_id, message.provider_id, code, queued_at=message.queued_at)
    if code in backend.not_on_whatsapp_error_codes and recipient.campaign.sms_fallback_provider_id:
        fallback_enqueue(recipient.pk, NOT_ON_WHATSAPP)


def marketing_suppress(contact_id: int, provider_id: int, error_code: str, *, queued_at=None) -> MarketingSuppression:
    """Leave the person out of marketing for CAMPAIGN_SUPPRESSION_HOURS, doubled for each hold in a row. A hold of
    a message queued before the person was last suppressed is the same episode (messages already on their way):
    it adds no strike."""
    now = timezone.now()
    hours = settings.CAMPAIGN_SUPPRESSION_HOURS
    with transaction.atomic():
        suppression, created = MarketingSuppression.objects.select_for_update().get_or_create(
            contact_id=contact_id, provider_id=provider_id,
            defaults={"until": now + timedelta(hours=hours), "error_code": error_code[:32]})
        same_episode = queued_at is not None and queued_at <= suppression.updated_at
        if not created and not same_episode:
            # A hold soon after the last one ended: the cap is still on, so wait longer.
            recent = suppression.until > now - timedelta(hours=hours)
            suppression.strikes = suppression.strikes + 1 if recent else 1
            suppression.until = now + timedelta(hours=hours * 2 ** min(suppression.strikes - 1, 4))
            suppression.error_code = error_code[:32]
            suppression.save(update_fields=["strikes", "until", "error_code", "updated_at"])
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
