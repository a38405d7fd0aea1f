"""
Cheap refusal of a flood of bad requests to a webhook URL.

Every rejected webhook is recorded as a row, which makes a stream of unsigned requests a stream of database
writes. A client address whose requests to one URL were rejected more than WEBHOOK_REJECTION_RATE allows is
answered 429 before anything is read or looked up; and past WEBHOOK_REJECTIONS_RECORDED_RATE rejections per URL
(from however many addresses) the rest are answered without a row of their own, counted in the log. A
correctly signed request is never refused by either: the counts grow only with rejections, and a provider's
own addresses are rejected only when its requests are.
"""

import logging
import uuid

from django.conf import settings

from core.rate_limits import hit, parse_rate, peek

logger = logging.getLogger(__name__)


def _address_name(kind: str, public_id: uuid.UUID | str, address: str | None) -> str:
    return f"webhook-rejections:{kind}:{public_id}:{address}"


def webhook_flood_wait(kind: str, public_id: uuid.UUID | str, address: str | None) -> int | None:
    """Seconds the address should wait before its next request to this URL, if it is flooding it."""
    rate = parse_rate(settings.WEBHOOK_REJECTION_RATE)
    if rate is None or not peek(_address_name(kind, public_id, address), rate):
        return None
    return rate.period


def webhook_rejection_counted(kind: str, public_id: uuid.UUID | str, address: str | None) -> bool:
    """Count a rejection; True while this URL's rejections are still few enough to record each one."""
    address_rate = parse_rate(settings.WEBHOOK_REJECTION_RATE)
    if address_rate is not None and hit(_address_name(kind, public_id, address), address_rate,
                                        count_refused=True).refused:
        logger.warning("webhook flood: refusing an address for a while",
                       extra={"kind": kind, "provider_public_id": str(public_id), "remote_addr": address})
    url_rate = parse_rate(settings.WEBHOOK_REJECTIONS_RECORDED_RATE)
    if url_rate is None:
        return True
    verdict = hit(f"webhook-rejections-recorded:{kind}:{public_id}", url_rate, count_refused=True)
    if verdict.refused:
        logger.debug("webhook rejected, not recorded (too many rejections for this URL)",
                    extra={"kind": kind, "provider_public_id": str(public_id)})
    return verdict.allowed
