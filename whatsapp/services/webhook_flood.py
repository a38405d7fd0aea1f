"""
What a flood of bad webhook requests costs: no database write past a few a minute.

Every rejected webhook is normally recorded as a row, which would make a stream of unsigned requests a
stream of writes. Rejections are counted per client address, across every webhook URL (so inventing URLs
does not reset the count): past WEBHOOK_REJECTION_RATE an address's rejected requests are answered 429
with Retry-After and not recorded. Past WEBHOOK_REJECTIONS_RECORDED_RATE rejections for one provider (or
for unknown URLs together), from however many addresses, the rest are answered with their reason but not
recorded either. Only rejections count and the signature is checked first, so a correctly signed request
is never refused, whichever address it comes from.
"""

import logging
from dataclasses import dataclass

from django.conf import settings

from core.client_address import rate_limit_subject
from core.rate_limits import hit, parse_rate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RejectionHandling:
    record: bool  # store the rejection as a row of its own
    retry_after: int | None = None  # answer 429 with this Retry-After instead of the rejection's own status


def webhook_rejection_handling(provider_id: int | None, address: str | None) -> RejectionHandling:
    """Count one rejected webhook request and say how to answer it."""
    address_rate = parse_rate(settings.WEBHOOK_REJECTION_RATE)
    if address_rate is not None:
        verdict = hit(f"webhook-rejections:{rate_limit_subject(address)}", address_rate, count_refused=True)
        if verdict.refused:
            logger.debug("webhook request refused: too many rejected requests from this address",
                         extra={"remote_addr": address})
            return RejectionHandling(record=False, retry_after=verdict.retry_after)
    url_rate = parse_rate(settings.WEBHOOK_REJECTIONS_RECORDED_RATE)
    if url_rate is None:
        return RejectionHandling(record=True)
    verdict = hit(f"webhook-rejections-recorded:{provider_id or 'unknown'}", url_rate, count_refused=True)
    if verdict.refused:
        logger.debug("webhook rejected, not recorded: too many rejections for this URL",
                     extra={"provider_id": provider_id})
    return RejectionHandling(record=verdict.allowed)
