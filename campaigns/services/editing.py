"""Writing campaigns and segments (the API and the admin alike): only drafts change; every change is audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from campaigns.models import Campaign, CampaignVariant, Segment
from campaigns.services.launch import CampaignInvalid
from campaigns.services.segments import segment_validate
from core.audit import audit_record

CAMPAIGN_FIELDS = ("name", "provider", "segment", "audience", "start_at", "recurrence", "recurrence_until",
                   "send_window_start", "send_window_end", "send_days", "default_time_zone", "at_best_hour",
                   "holdout_percent", "test_percent", "conversion_keyword", "sms_fallback_provider",
                   "sms_fallback_text", "sms_fallback_after_minutes")
VARIANT_FIELDS = ("name", "split_percent", "template", "variables", "text")


def _snapshot(campaign: Campaign) -> dict[str, Any]:
    return {name: str(getattr(campaign, name)) for name in CAMPAIGN_FIELDS} | {
        "variants": [{name: str(getattr(variant, name)) for name in VARIANT_FIELDS}
                     for variant in campaign.variants.order_by("name")]}


@transaction.atomic
def campaign_write(campaign: Campaign | None, fields: dict[str, Any], variants: list[dict[str, Any]] | None, *,
                   actor: Any = None) -> Campaign:
    """Create a draft, or change one (its variants replaced when `variants` is given)."""
    if campaign is not None:
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != Campaign.Status.DRAFT:
            raise CampaignInvalid(f"the campaign is {campaign.get_status_display().lower()}: only a draft changes")
        before = _snapshot(campaign)
    else:
        campaign, before = Campaign(created_by=actor if getattr(actor, "is_authenticated", False) else None), None
    for name, value in fields.items():
        if name in CAMPAIGN_FIELDS:
            setattr(campaign, name, value)
    campaign.save()
    if variants is not None:
        campaign.variants.all().delete()
        CampaignVariant.objects.bulk_create([CampaignVariant(campaign=campaign, **{
            name: variant[name] for name in VARIANT_FIELDS if name in variant}) for variant in variants])
    audit_record(action="campaign.create" if before is None else "campaign.update", obj=campaign, actor=actor,
                 before=before, after=_snapshot(campaign))
    return campaign


@transaction.atomic
def segment_write(segment: Segment | None, fields: dict[str, Any], *, actor: Any = None) -> Segment:
    if "filters" in fields:
        segment_validate(fields["filters"])
    before = None if segment is None else {"name": segment.name, "filters": segment.filters}
    segment = segment or Segment(created_by=actor if getattr(actor, "is_authenticated", False) else None)
    for name in ("name", "description", "filters"):
        if name in fields:
            setattr(segment, name, fields[name])
    segment.save()
    audit_record(action="segment.create" if before is None else "segment.update", obj=segment, actor=actor,
                 before=before, after={"name": segment.name, "filters": segment.filters})
    return segment
