"""
What a campaign achieved: each recipient's progress copied from its message (sent, delivered, read, failed),
counts per variant and for the holdout, and whether a variant's rate differs from another's by more than
chance (a two-proportion z-test with a confidence interval for the difference).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient, MarketingSuppression
from campaigns.selectors import contacts_phones
from contacts.models import ConsentSource, Contact
from whatsapp.models import Message
from whatsapp.providers.events import MessageStatus

Status = CampaignRecipient.Status
Group = CampaignRecipient.Group
Fallback = CampaignRecipient.FallbackStatus
# Statuses a message can still move a recipient out of.
IN_FLIGHT = (Status.QUEUED, Status.SENT, Status.DELIVERED)
MESSAGE_TO_RECIPIENT = {
    MessageStatus.QUEUED: Status.QUEUED, MessageStatus.SENDING: Status.QUEUED, MessageStatus.SENT: Status.SENT,
    MessageStatus.DELIVERED: Status.DELIVERED, MessageStatus.READ: Status.READ, MessageStatus.PLAYED: Status.READ,
    MessageStatus.FAILED: Status.FAILED, MessageStatus.DEAD_LETTER: Status.FAILED,
}
REFRESH_SECONDS = 3


def campaign_refresh(campaign: Campaign) -> int:
    """Copy each in-flight recipient's progress from its message; mark those who opted out since. Returns how
    many recipients changed."""
    changed = 0
    messages = Message.objects.filter(pk=OuterRef("message_id"))
    moving = (CampaignRecipient.objects.filter(campaign=campaign, status__in=IN_FLIGHT, message__isnull=False)
              .exclude(message__status=MessageStatus.QUEUED)
              .annotate(message_status=Subquery(messages.values("status")))
              .values_list("pk", "status", "message_status"))
    by_status: dict[str, list[int]] = {}
    for pk, current, message_status in moving:
        new = MESSAGE_TO_RECIPIENT.get(message_status, current)
        if new != current:
            by_status.setdefault(new, []).append(pk)
    for status, ids in by_status.items():
        for start in range(0, len(ids), 5000):
            # Still in flight: a reply or a failure recorded meanwhile is not overwritten.
            changed += CampaignRecipient.objects.filter(pk__in=ids[start:start + 5000],
                                                        status__in=IN_FLIGHT).update(
                status=status,
                sent_at=Subquery(messages.values("sent_at")),
                delivered_at=Subquery(messages.values("delivered_at")),
                read_at=Subquery(messages.values("read_at")),
                failed_at=Subquery(messages.values("failed_at")),
                error_code=Subquery(messages.values("error_code")))
    # Opting out after the campaign's message counts against it; an opt-out the provider's own error made (not
    # on WhatsApp, blocked) is the message failing, not the person answering it.
    contacts = Contact.objects.filter(pk=OuterRef("contact_id"))
    changed += (CampaignRecipient.objects
                .filter(campaign=campaign, queued_at__isnull=False, opted_out_at__isnull=True,
                        contact__consent=Contact.Consent.OPTED_OUT, contact__consent_changed_at__gte=F("queued_at"))
                .exclude(contact__consent_source=ConsentSource.PROVIDER_ERROR).exclude(status=Status.FAILED)
                .update(opted_out_at=Subquery(contacts.values("consent_changed_at")), status=Status.OPTED_OUT))
    return changed


@dataclass
class VariantResult:
    name: str
    recipients: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    compared: bool = True

    def rate(self, metric: str) -> float:
        base = self.counts.get("sent", 0)
        return self.counts.get(metric, 0) / base if base else 0.0


def _counted(queryset) -> dict[str, int]:
    return queryset.aggregate(
        recipients=Count("pk"),
        pending=Count("pk", filter=Q(status=Status.PENDING)),
        queued=Count("pk", filter=Q(status=Status.QUEUED)),
        skipped=Count("pk", filter=Q(status=Status.SKIPPED)),
        cancelled=Count("pk", filter=Q(status=Status.CANCELLED)),
        sent=Count("pk", filter=Q(sent_at__isnull=False)),
        delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
        read=Count("pk", filter=Q(read_at__isnull=False)),
        replied=Count("pk", filter=Q(replied_at__isnull=False)),
        converted=Count("pk", filter=Q(converted_at__isnull=False)),
        opted_out=Count("pk", filter=Q(opted_out_at__isnull=False)),
        failed=Count("pk", filter=Q(status=Status.FAILED)),
        sms=Count("pk", filter=Q(fallback_status__in=[Fallback.SENT, Fallback.SENDING])),
        # Those the message was meant for: not skipped (opted out, unreachable) nor cancelled before it went.
        eligible=Count("pk", filter=~Q(status__in=[Status.SKIPPED, Status.CANCELLED])),
    )


def campaign_counts(campaign: Campaign) -> dict[str, int]:
    return _counted(CampaignRecipient.objects.filter(campaign=campaign))


HOLDOUT = "holdout"


def variant_results(campaign: Campaign) -> list[VariantResult]:
    """The test group's variants, then the holdout (sent nothing: what it "converts" is what people do anyway),
    then the rest that got the winner. Only the first two are compared: the rest was sent later, on purpose."""
    recipients = CampaignRecipient.objects.filter(campaign=campaign)
    results = []
    for variant in campaign.variants.order_by("name"):
        counts = _counted(recipients.filter(group=Group.TEST, variant=variant))
        results.append(VariantResult(variant.name, counts["recipients"], counts))
    holdout = _counted(recipients.filter(group=Group.HOLDOUT))
    if holdout["recipients"]:
        results.append(VariantResult(HOLDOUT, holdout["recipients"], holdout))
    rest = _counted(recipients.filter(group=Group.REST, variant__isnull=False))
    if rest["recipients"]:
        results.append(VariantResult(f"{campaign.winner.name if campaign.winner else '?'} to the rest",
                                     rest["recipients"], rest, compared=False))
    return results


@dataclass
class Comparison:
    metric: str
    a: str
    b: str
    rate_a: float
    rate_b: float
    difference: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def two_proportion_test(successes_a: int, total_a: int, successes_b: int, total_b: int,
                        confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(difference b - a, interval low, interval high, two-sided p-value). The p-value pools the two rates
    (the null hypothesis: they are equal); the interval does not (Wald)."""
    if not total_a or not total_b:
        return 0.0, 0.0, 0.0, 1.0
    rate_a, rate_b = successes_a / total_a, successes_b / total_b
    difference = rate_b - rate_a
    pooled = (successes_a + successes_b) / (total_a + total_b)
    pooled_error = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    p_value = math.erfc(abs(difference) / pooled_error / math.sqrt(2)) if pooled_error else 1.0
    error = math.sqrt(rate_a * (1 - rate_a) / total_a + rate_b * (1 - rate_b) / total_b)
    z = _normal_quantile(0.5 + confidence / 2)
    return difference, difference - z * error, difference + z * error, p_value


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection on erf (no statistics package needed for one number)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        middle = (low + high) / 2
        if 0.5 * math.erfc(-middle / math.sqrt(2)) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def compare(results: list[VariantResult], metric: str) -> list[Comparison]:
    """Each variant of the test group (and the holdout) against the first variant, on `metric` per person the
    message was meant for (not skipped): the holdout, sent nothing, is counted the same way, so it compares like
    with like."""
    results = [result for result in results if result.compared]
    if len(results) < 2:
        return []
    base = results[0]

    def totals(result: VariantResult) -> tuple[int, int]:
        return result.counts.get(metric, 0), result.counts["eligible"]

    comparisons = []
    for other in results[1:]:
        (sa, ta), (sb, tb) = totals(base), totals(other)
        difference, low, high, p_value = two_proportion_test(sa, ta, sb, tb)
        comparisons.append(Comparison(metric, base.name, other.name, sa / ta if ta else 0.0, sb / tb if tb else 0.0,
                                      difference, low, high, p_value))
    return comparisons


def campaign_costs(campaign: Campaign) -> dict[str, float]:
    """What the campaign cost so far: WhatsApp per delivered message at its category's price, SMS per segment."""
    prices = settings.CAMPAIGN_WHATSAPP_PRICES
    whatsapp = 0.0
    for variant in campaign.variants.select_related("template"):
        category = variant.template.category if variant.template_id else "service"
        delivered = CampaignRecipient.objects.filter(campaign=campaign, variant=variant,
                                                     delivered_at__isnull=False).count()
        whatsapp += delivered * float(prices.get(category, prices.get("service", 0)))
    sms = CampaignRecipient.objects.filter(campaign=campaign).aggregate(total=Sum("fallback_cost"))["total"]
    return {"whatsapp": round(whatsapp, 4), "sms": round(float(sms or 0), 4)}


def campaign_report(campaign: Campaign, *, refresh: bool = True) -> dict[str, Any]:
    """Everything the admin page, the API and the CSV show."""
    # Receipts are copied at most every REFRESH_SECONDS per campaign (a page polling it, several people looking):
    # the beat job copies them anyway.
    if refresh and cache.add(f"campaign-refresh:{campaign.pk}", True, REFRESH_SECONDS):
        campaign_refresh(campaign)
    results = variant_results(campaign)
    return {
        "campaign": campaign.pk, "status": campaign.status, "run": campaign.runs,
        "counts": campaign_counts(campaign),
        "costs": campaign_costs(campaign),
        "variants": [{"name": result.name, **result.counts} for result in results],
        "comparisons": [comparison.__dict__ | {"significant": comparison.significant}
                        for metric in ("read", "replied", "converted")
                        for comparison in compare(results, metric)],
        "generated_at": timezone.now().isoformat(),
    }


CSV_COLUMNS = ("contact_id", "name", "phone", "variant", "status", "skip_reason", "time_zone", "due_at", "queued_at",
               "sent_at", "delivered_at", "read_at", "replied_at", "converted_at", "opted_out_at", "failed_at",
               "error_code", "sms_fallback", "sms_fallback_reason", "sms_cost")


def recipients_csv_rows(campaign: Campaign, *, chunk: int = 2000) -> Iterator[list[str]]:
    """The campaign's recipients as CSV rows (a header first), read a chunk at a time; core.spreadsheet.csv_lines
    makes them safe cells."""
    yield list(CSV_COLUMNS)
    recipients = (CampaignRecipient.objects.filter(campaign=campaign).order_by("pk")
                  .values_list("pk", "contact_id", "contact__profile_name", "variant__name", "status", "skip_reason",
                               "time_zone", "due_at", "queued_at", "sent_at", "delivered_at", "read_at", "replied_at",
                               "converted_at", "opted_out_at", "failed_at", "error_code", "fallback_status",
                               "fallback_reason", "fallback_cost"))
    last = 0
    while True:
        rows = list(recipients.filter(pk__gt=last)[:chunk])
        if not rows:
            return
        last = rows[-1][0]
        phones = contacts_phones([row[1] for row in rows])
        for _pk, contact_id, name, variant, *rest in rows:
            group = "holdout" if rest[0] == Status.HELD_OUT else (variant or "")
            yield [contact_id, name, phones.get(contact_id, ""), group, *rest]



def user_sections(user) -> list[tuple[str, Iterator[dict[str, Any]]]]:
    """Receiver of contacts.hooks.user_export_sections: the campaigns the user's contacts were sent, with what
    happened (their data export)."""
    rows = (CampaignRecipient.objects.filter(contact__user_mapping__user=user).order_by("pk")
            .values("id", "campaign__name", "run", "variant__name", "status", "skip_reason", "due_at", "queued_at",
                    "sent_at", "delivered_at", "read_at", "replied_at", "converted_at", "opted_out_at",
                    "fallback_status", "fallback_sent_at"))
    suppressions = (MarketingSuppression.objects.filter(contact__user_mapping__user=user).order_by("pk")
                    .values("id", "provider__name", "until", "error_code", "strikes", "created_at"))
    return [("campaign_messages", rows.iterator()), ("marketing_suppressions", suppressions.iterator())]
