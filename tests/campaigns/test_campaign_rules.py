"""
Campaign rules without workers: schedules in people's own zones and hours, what each person is sent, who is
skipped and why, pause/resume/cancel, replies and WhatsApp's marketing cap, and the A/B statistics.
"""

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient, CampaignVariant, MarketingSuppression
from campaigns.services import dispatch as dispatching
from campaigns.services.content import ContentMissing, RecipientFacts, fill
from campaigns.services.control import campaign_cancel, campaign_pause, campaign_resume, campaign_send_winner
from campaigns.services.jobs import campaigns_tick
from campaigns.services.launch import CampaignInvalid, campaign_launch
from campaigns.services.reactions import reply_attribute, send_failure_reaction
from campaigns.services.results import campaign_report, compare, two_proportion_test, user_sections, variant_results
from campaigns.services.scheduling import SendWindow, next_send_time, phone_time_zone
from campaigns.services.segments import SegmentInvalid, segment_contacts, segment_validate
from contacts.models import Contact, ContactUserMapping
from tests.campaigns.conftest import (
    LOS_ANGELES,
    NEW_YORK,
    SAO_PAULO,
    approved_template,
    campaign_for,
    people,
    person,
)
from tests.conftest import event_id
from tests.signing import META_PHONE_NUMBER_ID, META_WABA_ID, post_meta
from whatsapp.models import Message
from whatsapp.providers.events import MessageStatus, MessageType
from whatsapp.services.inbound import conversation_get_or_create
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

Status = CampaignRecipient.Status


def recipients(campaign, **filters):
    return CampaignRecipient.objects.filter(campaign=campaign, **filters)


def dispatch_all(campaign):
    """Dispatch until nothing more is due now (the sender is not running: nothing is sent)."""
    while True:
        result = dispatching.campaign_dispatch(campaign.pk)
        if result is None or not result.queued:
            return


# --- schedules ---------------------------------------------------------------------------------------

def test_phone_numbers_give_their_regions_zone():
    assert phone_time_zone("+12125550001") == "America/New_York"
    assert phone_time_zone("+13105550001") == "America/Los_Angeles"
    assert phone_time_zone("+5511955000001") == "America/Sao_Paulo"
    # A UK mobile names four zones that agree; a Russian mobile names zones that do not.
    assert phone_time_zone("+447911123456") in {"Europe/London", "Europe/Guernsey", "Europe/Isle_of_Man",
                                                "Europe/Jersey"}
    assert phone_time_zone("+79161234567") == ""


def test_next_send_time_moves_into_business_hours_and_days():
    window = SendWindow(time(9), time(18), frozenset(range(5)))  # weekdays 9:00-18:00
    friday_evening_ny = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # 18:30 in New York
    due = next_send_time(friday_evening_ny, "America/New_York", window)
    assert due == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)  # Monday 9:00 in New York
    assert next_send_time(datetime(2026, 12, 7, 15, tzinfo=UTC), "America/New_York", window) == datetime(
        2026, 12, 7, 15, tzinfo=UTC)
    overnight = SendWindow(time(22), time(6))
    assert next_send_time(datetime(2026, 12, 7, 8, tzinfo=UTC), "UTC", overnight) == datetime(2026, 12, 7, 22,
                                                                                                tzinfo=UTC)
    assert next_send_time(datetime(2026, 12, 7, 3, tzinfo=UTC), "UTC", overnight) == datetime(2026, 12, 7, 3,
                                                                                               tzinfo=UTC)
    assert next_send_time(datetime(2026, 12, 7, 3, tzinfo=UTC), "UTC", SendWindow(days=frozenset())) is None
    # At an hour of their own (the hour they read most), inside the window.
    assert next_send_time(datetime(2026, 12, 7, 15, tzinfo=UTC), "America/New_York", window, hour=16) == datetime(
        2026, 12, 7, 21, tzinfo=UTC)


# --- content -------------------------------------------------------------------------------------------

def test_placeholders_fill_from_contact_attributes_and_the_csv_row():
    facts = RecipientFacts(name="Ana Souza", phone="+5511955000001", attributes={"plan": "gold"},
                           row={"coupon": "SPRING-7"})
    assert fill("Hi {contact.first_name}, {contact.attributes.plan} code {row.coupon}", facts) == \
        "Hi Ana, gold code SPRING-7"
    assert fill("Hi {contact.attributes.city|there}", facts) == "Hi there"
    with pytest.raises(ContentMissing, match=r"row\.order"):
        fill("{row.order}", facts)


# --- segments ------------------------------------------------------------------------------------------

def test_segments_filter_and_refuse_unknown_filters(meta):
    ana = person(meta, "+12125550001", language="pt_BR", attributes={"plan": "gold"})
    person(meta, "+13105550002", language="en")
    carl = person(meta, "+5511955000003", language="pt", consent=Contact.Consent.OPTED_OUT)
    assert set(segment_contacts({"languages": ["pt"]})) == {ana, carl}
    assert set(segment_contacts({"languages": ["pt"], "consent": ["unknown"]})) == {ana}
    assert set(segment_contacts({"countries": ["BR"]})) == {carl}
    assert set(segment_contacts({"attributes": {"plan": "gold"}})) == {ana}
    with pytest.raises(SegmentInvalid, match="unknown filter"):
        segment_validate({"langauge": ["pt"]})
    with pytest.raises(SegmentInvalid, match="ISO country"):
        segment_validate({"countries": ["Narnia"]})


# --- launching and dispatching ---------------------------------------------------------------------------

def test_launch_writes_one_record_per_person_due_in_their_own_business_hours(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    people(meta, NEW_YORK, 3)
    people(meta, LOS_ANGELES, 3)
    people(meta, SAO_PAULO, 3)
    campaign = campaign_for(meta, template=template, send_window_start=time(9), send_window_end=time(17),
                            start_at=datetime(2026, 12, 7, 13, 0, tzinfo=UTC))  # a Monday, 8:00 in New York
    assert campaign_launch(campaign) == 9
    due = {zone: set(recipients(campaign, time_zone=zone).values_list("due_at", flat=True))
           for zone in ("America/New_York", "America/Los_Angeles", "America/Sao_Paulo")}
    assert due == {"America/New_York": {datetime(2026, 12, 7, 14, tzinfo=UTC)},
                   "America/Los_Angeles": {datetime(2026, 12, 7, 17, tzinfo=UTC)},
                   # São Paulo is already open at 10:00 local.
                   "America/Sao_Paulo": {datetime(2026, 12, 7, 13, tzinfo=UTC)}}
    with pytest.raises(CampaignInvalid, match="only a draft"):
        campaign_launch(campaign)


def test_dispatch_queues_due_people_with_their_own_values_in_the_bulk_lane(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    ana, bob = person(meta, "+12125550001", "Ana Lima"), person(meta, "+12125550002", "")
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatch_all(campaign)
    assert recipients(campaign, status=Status.QUEUED).count() == 2
    texts = dict(Message.objects.filter(purpose=Message.Purpose.CAMPAIGN)
                 .values_list("conversation__contact_id", "text"))
    assert texts == {ana.pk: "Hi Ana, spring sale: 20% off today.", bob.pk: "Hi there, spring sale: 20% off today."}
    message = Message.objects.get(conversation__contact=ana)
    assert (message.lane, message.status, message.message_type) == ("bulk", "queued", MessageType.TEMPLATE)
    assert message.template_variables == {"body": {"1": "Ana", "2": "20%"}}
    campaign.refresh_from_db()
    # Nothing left to dispatch, but the messages are still queued (no sender runs here): a pause could take them
    # back, so the campaign is not over yet.
    assert campaign.status == Campaign.Status.RUNNING
    Message.objects.filter(purpose="campaign").update(status="sent")
    dispatching.campaign_dispatch(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_the_backlog_never_exceeds_its_seconds_of_the_number_rate(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 1
    meta.rate_limit_per_second = 5
    meta.save()
    people(meta, NEW_YORK, 20)
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatch_all(campaign)
    assert recipients(campaign, status=Status.QUEUED).count() == 6  # 5/s x 1 s, and one
    assert recipients(campaign, status=Status.PENDING).count() == 14


def test_guards_skip_opted_out_capped_suppressed_and_closed_windows(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    settings.CAMPAIGN_FREQUENCY_CAP, settings.CAMPAIGN_FREQUENCY_CAP_DAYS = 1, 7
    fine, opted_out, capped, suppressed = (person(meta, f"+1212555000{n}") for n in range(4))
    Contact.objects.filter(pk=opted_out.pk).update(consent=Contact.Consent.OPTED_OUT)
    earlier = campaign_for(meta, template=template, name="Earlier", filters={"attributes": {"x": 1}})
    CampaignRecipient.objects.create(campaign=earlier, contact=capped, status=Status.DELIVERED,
                                     queued_at=timezone.now() - timedelta(days=2))
    MarketingSuppression.objects.create(contact=suppressed, provider=meta, error_code="131049",
                                        until=timezone.now() + timedelta(hours=10))
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatch_all(campaign)
    reasons = dict(recipients(campaign).values_list("contact_id", "skip_reason"))
    assert reasons[fine.pk] == ""
    assert reasons[opted_out.pk] == "opted out"
    assert reasons[capped.pk].startswith("frequency cap: 1 marketing messages in 7 days")
    assert "per-person cap" in reasons[suppressed.pk]
    # A utility template is not marketing: neither cap applies.
    utility = campaign_for(meta, template=approved_template(meta, name="order_update", category="utility"),
                           name="Utility")
    campaign_launch(utility)
    dispatch_all(utility)
    assert set(recipients(utility, status=Status.QUEUED).values_list("contact_id", flat=True)) == {
        fine.pk, capped.pk, suppressed.pk}

    # Free text only where the person's window is open.
    open_window = person(meta, "+12125550009", "Zoe", in_window=True, attributes={"texting": True})
    Contact.objects.filter(pk=fine.pk).update(attributes={"texting": True})
    texting = campaign_for(meta, name="Text", variants=[], filters={"attributes": {"texting": True}})
    CampaignVariant.objects.create(campaign=texting, name="A", text="Thanks {contact.first_name|friend}!")
    campaign_launch(texting)
    dispatch_all(texting)
    assert dict(recipients(texting).values_list("contact_id", "status")) == {
        open_window.pk: Status.QUEUED, fine.pk: Status.SKIPPED}
    assert Message.objects.get(conversation__contact=open_window, purpose="campaign").text == "Thanks Zoe!"


def test_pause_takes_back_queued_messages_and_resume_sends_them(meta, template, settings, superuser):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    people(meta, NEW_YORK, 5)
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatching.campaign_dispatch(campaign.pk)
    assert Message.objects.filter(purpose="campaign").count() == 5
    assert campaign_pause(campaign, actor=superuser) == 5
    assert Message.objects.filter(purpose="campaign").count() == 0
    assert recipients(campaign, status=Status.PENDING).count() == 5
    assert dispatching.campaign_dispatch(campaign.pk) is None  # paused: nothing dispatched
    campaign_resume(campaign, actor=superuser)
    dispatch_all(campaign)
    assert recipients(campaign, status=Status.QUEUED).count() == 5
    assert Message.objects.filter(purpose="campaign").count() == 5


def test_cancel_leaves_the_rest_unsent(meta, template, settings, superuser):
    settings.CAMPAIGN_BACKLOG_SECONDS = 1
    meta.rate_limit_per_second = 2
    meta.save()
    people(meta, NEW_YORK, 6)
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatching.campaign_dispatch(campaign.pk)
    assert campaign_cancel(campaign, actor=superuser) == 6
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert recipients(campaign, status=Status.CANCELLED).count() == 6
    assert not Message.objects.filter(purpose="campaign").exists()
    with pytest.raises(CampaignInvalid):
        campaign_resume(campaign)


def test_marketing_cap_suppresses_and_a_reply_counts_with_its_keyword(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    ana, bob = person(meta, "+12125550001", "Ana"), person(meta, "+12125550002", "Bob")
    campaign = campaign_for(meta, template=template, conversion_keyword="YES")
    campaign_launch(campaign)
    dispatch_all(campaign)
    capped = Message.objects.get(conversation__contact=bob)
    Message.objects.filter(pk=capped.pk).update(status=MessageStatus.FAILED, error_code="131049")
    capped.refresh_from_db()
    send_failure_reaction(capped)
    suppression = MarketingSuppression.objects.get(contact=bob)
    assert timedelta(hours=47) < suppression.until - timezone.now() <= timedelta(hours=48)
    send_failure_reaction(capped)  # the same message reported again: the same episode
    suppression.refresh_from_db()
    assert suppression.strikes == 1
    # A later message held too: the cap is still on, and the wait doubles.
    Message.objects.filter(pk=capped.pk).update(queued_at=timezone.now() + timedelta(seconds=1))
    capped.refresh_from_db()
    send_failure_reaction(capped)
    suppression.refresh_from_db()
    assert suppression.strikes == 2 and suppression.until - timezone.now() > timedelta(hours=95)

    reply = Message.objects.create(provider=meta, conversation=conversation_get_or_create(provider=meta, contact=ana),
                                   direction="inbound", status="received", text="yes please!")
    reply_attribute(reply)
    assert recipients(campaign).get(contact=ana).replied_at is None  # its message had not gone out yet
    Message.objects.filter(conversation__contact=ana, purpose="campaign").update(status="sent",
                                                                              sent_at=timezone.now())
    reply_attribute(reply)
    recipient = recipients(campaign).get(contact=ana)
    assert recipient.status == Status.REPLIED and recipient.converted_at and recipient.read_at
    assert recipients(campaign).get(contact=bob).status == Status.FAILED


# --- A/B ---------------------------------------------------------------------------------------------------

def test_split_holdout_and_sending_the_winner_to_the_rest(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 1000
    people(meta, NEW_YORK, 400)
    campaign = campaign_for(meta, template=template, holdout_percent=10, test_percent=50, variants=[
        ("A", 50, {"body": {"1": "{contact.first_name}", "2": "20%"}}),
        ("B", 50, {"body": {"1": "{contact.first_name}", "2": "30%"}})])
    campaign_launch(campaign)
    held = recipients(campaign, status=Status.HELD_OUT).count()
    a, b = (recipients(campaign, variant__name=name).count() for name in "AB")
    waiting = recipients(campaign, variant__isnull=True, status=Status.PENDING).count()
    assert 20 <= held <= 60 and abs(a - b) <= 50 and 120 <= a + b <= 240
    assert held + a + b + waiting == 400
    dispatch_all(campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING  # the rest waits for the winner
    winner = campaign.variants.get(name="B")
    assert campaign_send_winner(campaign, winner) == waiting
    dispatch_all(campaign)
    assert recipients(campaign, variant=winner, status=Status.QUEUED).count() == b + waiting
    with pytest.raises(CampaignInvalid, match="already"):
        campaign_send_winner(campaign, winner)


def test_significance_on_known_counts():
    # 1,000 sends each: 100 against 150 replies. z = 3.38, p = 0.0007; difference 5 points, 95 % CI 2.1-7.9.
    difference, low, high, p_value = two_proportion_test(100, 1000, 150, 1000)
    assert difference == pytest.approx(0.05)
    assert p_value == pytest.approx(0.00072, abs=0.00005)
    assert low == pytest.approx(0.0211, abs=0.0005) and high == pytest.approx(0.0789, abs=0.0005)
    # 10 against 12 of 100: no evidence.
    assert two_proportion_test(10, 100, 12, 100)[3] > 0.5


def test_report_counts_per_variant_from_message_receipts(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    people(meta, NEW_YORK, 4)
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatch_all(campaign)
    ids = list(Message.objects.filter(purpose="campaign").order_by("pk").values_list("pk", flat=True))
    now = timezone.now()
    Message.objects.filter(pk__in=ids[:3]).update(status="delivered", sent_at=now, delivered_at=now)
    Message.objects.filter(pk=ids[0]).update(status="read", read_at=now)
    Message.objects.filter(pk=ids[3]).update(status="failed", failed_at=now, error_code="131026")
    report = campaign_report(campaign)
    assert {key: report["counts"][key] for key in ("sent", "delivered", "read", "failed")} == {
        "sent": 3, "delivered": 3, "read": 1, "failed": 1}
    assert [row["name"] for row in report["variants"]] == ["A"]
    assert compare(variant_results(campaign), "read") == []


@override_settings(CAMPAIGN_BACKLOG_SECONDS=100)
def test_a_campaign_with_problems_says_them_all(meta):
    campaign = Campaign.objects.create(name="Empty", provider=meta)
    with pytest.raises(CampaignInvalid) as refused:
        campaign_launch(campaign)
    assert "choose an audience" in str(refused.value) and "add at least one variant" in str(refused.value)


def test_a_users_export_holds_the_campaigns_their_contact_got(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    ana = person(meta, "+12125550001", "Ana")
    user = get_user_model().objects.create_user("ana")
    ContactUserMapping.objects.create(contact=ana, user=user)
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatch_all(campaign)
    sections = {name: list(rows) for name, rows in user_sections(user)}
    assert [(row["campaign__name"], row["status"]) for row in sections["campaign_messages"]] == [
        ("Spring sale", "queued")]
    assert sections["marketing_suppressions"] == []


def test_a_window_crossing_midnight_belongs_to_the_evening_it_starts():
    weekdays_evenings = SendWindow(time(22), time(2), frozenset(range(5)))  # Mon-Fri 22:00 to 02:00
    saturday_1am = datetime(2026, 12, 5, 1, tzinfo=UTC)   # Friday evening's window
    monday_1am = datetime(2026, 12, 7, 1, tzinfo=UTC)     # Sunday evening: closed
    assert weekdays_evenings.allows(saturday_1am) and not weekdays_evenings.allows(monday_1am)
    assert next_send_time(monday_1am, "UTC", weekdays_evenings) == datetime(2026, 12, 7, 22, tzinfo=UTC)


def test_the_holdout_is_drawn_from_people_who_can_be_sent_to_and_its_replies_count(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 1000
    people(meta, NEW_YORK, 200)
    Contact.objects.filter(pk__in=Contact.objects.order_by("pk").values("pk")[:50]).update(
        consent=Contact.Consent.OPTED_OUT)
    campaign = campaign_for(meta, template=template, holdout_percent=30, conversion_keyword="YES")
    campaign_launch(campaign)
    held = recipients(campaign, group="holdout")
    assert held.exists() and not held.filter(contact__consent=Contact.Consent.OPTED_OUT).exclude(
        status=Status.SKIPPED).exists()
    one = held.filter(status=Status.HELD_OUT).first()
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now())
    reply = Message.objects.create(provider=meta, conversation=conversation_get_or_create(provider=meta,
                                                                                          contact=one.contact),
                                   direction="inbound", status="received", text="yes")
    reply_attribute(reply)
    one.refresh_from_db()
    assert one.converted_at and one.replied_at and one.status == Status.HELD_OUT
    holdout = next(row for row in variant_results(campaign) if row.name == "holdout")
    assert holdout.counts["converted"] == 1 and holdout.counts["eligible"] == held.filter(
        status=Status.HELD_OUT).count()


def test_at_their_best_hour_each_person_gets_it_when_they_read_most(meta, template, settings):
    ana = person(meta, "+12125550001", "Ana")
    conversation = conversation_get_or_create(provider=meta, contact=ana)
    for day in (1, 2, 3):  # three reads at 19:xx New York time (00:xx UTC), one at 10:xx
        Message.objects.create(provider=meta, conversation=conversation, direction="outbound", status="read",
                               read_at=datetime(2026, 11, day, 0, 20, tzinfo=UTC))
    Message.objects.create(provider=meta, conversation=conversation, direction="outbound", status="read",
                           read_at=datetime(2026, 11, 4, 15, 0, tzinfo=UTC))
    campaign = campaign_for(meta, template=template, at_best_hour=True, send_window_start=time(9),
                            send_window_end=time(21), start_at=datetime(2026, 12, 7, 14, tzinfo=UTC))
    campaign_launch(campaign)
    assert recipients(campaign).get(contact=ana).due_at == datetime(2026, 12, 8, 0, tzinfo=UTC)  # 19:00 local


def test_a_marketing_hold_reported_by_webhook_suppresses_the_person_for_the_next_campaign(meta, template, client,
                                                                                        settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    ana = person(meta, "+12125550001", "Ana")
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    dispatch_all(campaign)
    sent = Message.objects.get(conversation__contact=ana, purpose="campaign")
    Message.objects.filter(pk=sent.pk).update(status="sent", provider_message_id="wamid.capped-1")
    status = {"object": "whatsapp_business_account", "entry": [{"id": META_WABA_ID, "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": META_PHONE_NUMBER_ID},
            "statuses": [{"id": "wamid.capped-1", "status": "failed", "recipient_id": "12125550001",
                          "timestamp": str(int(timezone.now().timestamp())),
                          "errors": [{"code": 131049, "title": "This message was not delivered to maintain "
                                                                "healthy ecosystem engagement."}]}]}}]}]}
    webhook_event_process(event_id(post_meta(client, meta, json.dumps(status).encode())))
    assert recipients(campaign).get(contact=ana).status == Status.FAILED
    assert MarketingSuppression.objects.filter(contact=ana, provider=meta, error_code="131049").exists()
    Contact.objects.filter(pk=ana.pk).update(consent=Contact.Consent.UNKNOWN)  # not an opt-out either way
    later = campaign_for(meta, template=template, name="Later")
    campaign_launch(later)
    dispatch_all(later)
    assert "per-person cap" in recipients(later).get(contact=ana).skip_reason


def test_a_daily_campaign_runs_again_with_records_of_its_own(meta, template, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    ana = person(meta, "+12125550001", "Ana")
    campaign = campaign_for(meta, template=template, recurrence=Campaign.Recurrence.DAILY,
                            name="Daily tip", variants=[("A", 100, {"body": {"1": "{contact.first_name}",
                                                                              "2": "5%"}})])
    campaign_launch(campaign)
    dispatch_all(campaign)
    Message.objects.filter(purpose="campaign").update(status="sent", sent_at=timezone.now())
    dispatching.campaign_dispatch(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED and campaign.runs == 1
    assert timedelta(hours=23) < campaign.next_run_at - timezone.now() <= timedelta(days=1)

    Campaign.objects.filter(pk=campaign.pk).update(next_run_at=timezone.now() - timedelta(seconds=1))
    settings.CAMPAIGN_FREQUENCY_CAP = 0
    assert campaigns_tick() >= 1
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING and campaign.runs == 2
    assert list(recipients(campaign, contact=ana).order_by("run").values_list("run", flat=True)) == [1, 2]
