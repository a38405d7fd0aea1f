"""
Launching a campaign: check it, then write one record per recipient before anything is sent, each with its
variant (or the holdout), its time zone and the moment it is due. The records are the campaign's queue: the
dispatcher (dispatch.py) sends what is due, so a crash at any point resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Func, IntegerField
from django.utils import timezone

from campaigns.models import AudienceMember, Campaign, CampaignRecipient, CampaignVariant
from campaigns.selectors import contacts_identity_rows, contacts_phones
from campaigns.services.scheduling import next_send_time, recipient_time_zone, window_of, zone_named
from campaigns.services.segments import segment_contacts
from contacts.models import Contact
from core.access import scoped
from core.audit import audit_record
from core.queueing import Wake
from whatsapp.models import Message
from whatsapp.providers import backend_for
from whatsapp.providers.events import Identity, TemplateStatus

dispatch_wake = Wake("campaigns.tasks.campaign_dispatch_task", interval=0.5, delay=0.5)


# A look scheduled this long ago may still be running (and will schedule the next one itself).
LOOK_GRACE_SECONDS = 5.0


def _next_look_key(campaign_id: int) -> str:
    return f"campaign-next-look:{campaign_id}"


def dispatch_later(campaign_id: int, *, countdown: float) -> None:
    """The campaign's next look, unless one is already scheduled no later: one chain of looks per campaign (a second
    one, started by the beat job or a button, dies at its next turn instead of doubling the work)."""
    now = time.time()
    due = now + countdown
    scheduled = cache.get(_next_look_key(campaign_id))
    if scheduled is not None and now - LOOK_GRACE_SECONDS <= scheduled <= due:
        return
    cache.set(_next_look_key(campaign_id), due, timeout=math.ceil(countdown + LOOK_GRACE_SECONDS) + 1)
    dispatch_wake.later(campaign_id, countdown=countdown)


def dispatch_look_begins(campaign_id: int) -> None:
    """A look runs: the one scheduled for now is no longer ahead (its run schedules the next)."""
    scheduled = cache.get(_next_look_key(campaign_id))
    if scheduled is not None and scheduled <= time.time() + 0.5:
        cache.delete(_next_look_key(campaign_id))
BUCKETS = 10_000
RECURRENCE_STEP = {Campaign.Recurrence.DAILY: timedelta(days=1), Campaign.Recurrence.WEEKLY: timedelta(days=7)}
SKIP_OPTED_OUT = "opted out"
SKIP_NO_ADDRESS = "no phone number or id this provider can send to"
SKIP_NO_WINDOW = "the send days and hours never open"


class CampaignInvalid(ValueError):
    pass


def campaign_problems(campaign: Campaign) -> list[str]:
    """What stops the campaign from launching, readable; empty when it can."""
    problems = []
    if (campaign.segment_id is None) == (campaign.audience_id is None):
        problems.append("choose an audience: a segment or an imported list (one of them)")
    if campaign.audience_id and campaign.audience.provider_id != campaign.provider_id:
        problems.append("the imported list was imported for another provider")
    variants = list(campaign.variants.select_related("template"))
    if not variants:
        problems.append("add at least one variant (the message to send)")
    elif sum(variant.split_percent for variant in variants) != 100:
        problems.append("the variants' split percentages must add up to 100 "
                        f"(now {sum(variant.split_percent for variant in variants)})")
    for variant in variants:
        problems += [f"variant {variant.name}: {problem}" for problem in variant_problems(campaign, variant)]
    if campaign.sms_fallback_provider_id:
        if not campaign.sms_fallback_text.strip():
            problems.append("an SMS fallback needs its text")
        if not backend_for(campaign.sms_fallback_provider).sends_sms:
            problems.append(f"{campaign.sms_fallback_provider} cannot send SMS (choose a Twilio provider)")
    if not window_of(campaign).days:
        problems.append("tick at least one send day")
    return problems


def variant_problems(campaign: Campaign, variant: CampaignVariant) -> list[str]:
    if variant.template_id is None:
        return [] if variant.text.strip() else ["give a template, or a text for people whose window is open"]
    template = variant.template
    problems = []
    if template.provider_id != campaign.provider_id and not (
            backend_for(campaign.provider).templates_shared_by_account
            and template.provider.business_account_id
            and template.provider.business_account_id == campaign.provider.business_account_id):
        problems.append(f"template {template} belongs to another business account")
    if template.status != TemplateStatus.APPROVED:
        problems.append(f"template {template} is {template.get_status_display().lower()}, not approved")
    return problems


@dataclass(frozen=True)
class _Candidate:
    contact_id: int
    consent: str
    time_zone: str
    values: dict[str, Any]


def _audience(campaign: Campaign) -> list[_Candidate]:
    if campaign.audience_id:
        rows = (AudienceMember.objects.filter(audience_id=campaign.audience_id).order_by("line")
                .values_list("contact_id", "contact__consent", "contact__time_zone", "values"))
        return [_Candidate(*row) for row in rows]
    # A segment reaches the contacts the campaign's author may see (their teams' numbers), not everyone's.
    rows = (scoped(segment_contacts(campaign.segment.filters), campaign.created_by).order_by("pk")
            .values_list("pk", "consent", "time_zone"))
    return [_Candidate(*row, {}) for row in rows]


def _addressable(campaign: Campaign, contact_ids: list[int]) -> set[int]:
    """Contacts the provider can send to (a phone number, or the provider's own id for them)."""
    backend = backend_for(campaign.provider)
    return {contact_id for contact_id, rows in contacts_identity_rows(contact_ids).items()
            if backend.recipient_address(tuple(Identity(*row) for row in rows))}


def _best_hours(contact_ids: list[int]) -> dict[int, int]:
    """The UTC hour at which each person has most often read our messages (those who read any)."""
    counts: dict[int, Counter] = {}
    for start in range(0, len(contact_ids), 10_000):
        rows = (Message.objects.filter(conversation__contact_id__in=contact_ids[start:start + 10_000],
                                       direction=Message.Direction.OUTBOUND, read_at__isnull=False)
                .annotate(hour=Func(F("read_at"), function="EXTRACT", template="EXTRACT(HOUR FROM %(expressions)s)",
                                    output_field=IntegerField()))
                .values_list("conversation__contact_id", "hour").annotate(reads=Count("pk")))
        for contact_id, hour, reads in rows:
            counts.setdefault(contact_id, Counter())[int(hour)] += reads
    return {contact_id: counter.most_common(1)[0][0] for contact_id, counter in counts.items()}


def _variant_for(campaign: Campaign, variants: list[CampaignVariant], contact_id: int) -> tuple[str, Any]:
    """(group, variant): a stable draw per campaign and person. The holdout comes first, then the test group's
    variants by their splits; the rest waits for the winner (None until one is chosen)."""
    Group = CampaignRecipient.Group
    bucket = zlib.crc32(f"{campaign.pk}:{contact_id}".encode()) % BUCKETS
    holdout = campaign.holdout_percent * BUCKETS // 100
    if bucket < holdout:
        return Group.HOLDOUT, None
    share = (bucket - holdout) / (BUCKETS - holdout)
    if share >= campaign.test_percent / 100:
        return Group.REST, campaign.winner
    position = share / (campaign.test_percent / 100) * 100
    for variant in variants:
        position -= variant.split_percent
        if position < 0:
            return Group.TEST, variant
    return Group.TEST, variants[-1]


@transaction.atomic
def campaign_launch(campaign: Campaign, *, actor: Any = None) -> int:
    """Write the next run's recipients and start sending them as they come due. Returns how many were written.
    Raises CampaignInvalid with every problem."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        raise CampaignInvalid(f"the campaign is {campaign.get_status_display().lower()}; only a draft launches")
    if problems := campaign_problems(campaign):
        raise CampaignInvalid("; ".join(problems))
    now = timezone.now()
    start = max(campaign.start_at or now, now) if campaign.runs == 0 else max(campaign.next_run_at or now, now)
    campaign.runs += 1
    written = recipients_build(campaign, run=campaign.runs, start=start)
    step = RECURRENCE_STEP.get(campaign.recurrence)
    campaign.next_run_at = start + step if step else None
    if campaign.next_run_at and campaign.recurrence_until and campaign.next_run_at > campaign.recurrence_until:
        campaign.next_run_at = None
    campaign.status, campaign.launched_at, campaign.finished_at = Campaign.Status.RUNNING, now, None
    campaign.save(update_fields=["runs", "next_run_at", "status", "launched_at", "finished_at", "updated_at"])
    audit_record(action="campaign.launch", obj=campaign, actor=actor,
                 after={"run": campaign.runs, "recipients": written, "starts": start.isoformat()})
    dispatch_wake.soon(campaign.pk)
    return written


def recipients_build(campaign: Campaign, *, run: int, start: datetime) -> int:
    candidates = _audience(campaign)
    contact_ids = [candidate.contact_id for candidate in candidates]
    phones = contacts_phones(contact_ids)
    addressable = _addressable(campaign, contact_ids)
    best_hours = _best_hours(contact_ids) if campaign.at_best_hour else {}
    variants = list(campaign.variants.order_by("name"))
    window = window_of(campaign)
    due_cache: dict[tuple[str, int | None], datetime | None] = {}
    rows = []
    for candidate in candidates:
        zone = recipient_time_zone(candidate.time_zone, phones.get(candidate.contact_id, ""),
                                   campaign.default_time_zone)
        group, variant = _variant_for(campaign, variants, candidate.contact_id)
        status, reason, due = CampaignRecipient.Status.PENDING, "", None
        # Who could not be sent anything is skipped in whatever group the draw put them: the holdout is then
        # drawn from the same people as the variants, and compares with them.
        if candidate.consent == Contact.Consent.OPTED_OUT:
            status, reason = CampaignRecipient.Status.SKIPPED, SKIP_OPTED_OUT
        elif candidate.contact_id not in addressable:
            status, reason = CampaignRecipient.Status.SKIPPED, SKIP_NO_ADDRESS
        elif group == CampaignRecipient.Group.HOLDOUT:
            status = CampaignRecipient.Status.HELD_OUT
        elif variant is not None:
            key = (zone, _local_hour(best_hours.get(candidate.contact_id), zone, start))
            if key not in due_cache:
                due_cache[key] = next_send_time(start, zone, window, hour=key[1])
            due = due_cache[key]
            if due is None:
                status, reason = CampaignRecipient.Status.SKIPPED, SKIP_NO_WINDOW
        rows.append((candidate.contact_id, variant.pk if variant else None, group, status, reason, zone, due,
                     candidate.values))
    _insert_recipients(campaign, run, rows)
    return len(rows)


def _local_hour(utc_hour: int | None, zone: str, start: datetime) -> int | None:
    if utc_hour is None:
        return None
    at = start.replace(hour=utc_hour, minute=0, second=0, microsecond=0)
    return at.astimezone(zone_named(zone)).hour if zone_named(zone) else utc_hour


def _insert_recipients(campaign: Campaign, run: int, rows: list[tuple]) -> None:
    """One INSERT per 5,000 rows, one array per column (PostgreSQL); Django's bulk_create elsewhere."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        CampaignRecipient.objects.bulk_create([CampaignRecipient(
            campaign=campaign, run=run, contact_id=contact_id, variant_id=variant_id, group=group, status=status,
            skip_reason=reason, time_zone=zone, due_at=due, values=values)
            for contact_id, variant_id, group, status, reason, zone, due, values in rows], batch_size=1000)
        return
    table = CampaignRecipient._meta.db_table
    # Only the table name is formatted in; every value is a parameter.
    sql = (f"INSERT INTO {table} (campaign_id, run, contact_id, variant_id, \"group\", status, skip_reason, "  # noqa: S608
           "time_zone, due_at, \"values\", created_at, error_code, fallback_status, fallback_reason, fallback_sid, "
           "fallback_error) SELECT %s, %s, c, v, g, s, r, z, d, j::jsonb, %s, '', '', '', '', '' "
           "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], "
           "%s::timestamptz[], %s::text[]) AS t(c, v, g, s, r, z, d, j)")
    with connection.cursor() as cursor:
        for begin in range(0, len(rows), 5000):
            chunk = rows[begin:begin + 5000]
            columns = list(zip(*chunk, strict=True))
            cursor.execute(sql, [campaign.pk, run, now, *(list(column) for column in columns[:7]),
                                 [json.dumps(values) for values in columns[7]]])
