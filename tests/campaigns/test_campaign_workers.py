"""
Campaigns through real Celery workers on Redis, against a local server speaking Meta's Graph API: 500 people in
three time zones get the campaign only inside their business hours, and a worker killed mid-campaign leaves
nothing sent twice and nobody left out once another worker takes over.
"""

import json
import os
import signal
import time
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient
from campaigns.services.control import campaign_cancel, campaign_pause, campaign_resume
from campaigns.services.jobs import campaigns_tick
from campaigns.services.launch import campaign_launch
from campaigns.services.results import campaign_report
from contacts.models import Contact, ContactIdentity
from tests.campaigns.conftest import LOS_ANGELES, NEW_YORK, SAO_PAULO, campaign_for
from tests.conftest import event_id, start_worker, stop_worker, wait_until
from tests.fakes import form_of, twilio_message_created
from tests.signing import META_PHONE_NUMBER_ID, META_WABA_ID, TWILIO_ACCOUNT_SID, make_twilio, post_meta
from whatsapp.models import Message, Provider
from whatsapp.providers.events import IdentityKind
from whatsapp.services.outbound import messages_requeue_due
from whatsapp.services.webhooks import webhook_event_process

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker_env")]


@pytest.fixture
def campaign_env(worker_env, fake_meta):
    return {**worker_env, "META_GRAPH_BASE_URL": fake_meta.url, "SEND_PAIR_INTERVAL_SECONDS": "0",
            "CAMPAIGN_DISPATCH_INTERVAL_SECONDS": "0.3"}


def crowd(prefix: str, count: int) -> list[str]:
    """`count` contacts with phone numbers under `prefix`, made in two statements; their numbers."""
    digits = (14 if prefix.startswith("+55") else 12) - len(prefix)
    phones = [f"{prefix}{n:0{digits}d}" for n in range(count)]
    contacts = Contact.objects.bulk_create([Contact(profile_name=f"Person {n}") for n in range(count)])
    ContactIdentity.objects.bulk_create([ContactIdentity(contact=contact, kind=IdentityKind.PHONE, value=phone)
                                         for contact, phone in zip(contacts, phones, strict=True)])
    return phones


def numbers_at_the_fake(fake_meta) -> Counter:
    return Counter("+" + json.loads(request.body)["to"].lstrip("+") for request in fake_meta.hits(fake_meta.send_path))


def test_500_people_in_three_zones_get_it_only_inside_their_business_hours(meta, template, fake_meta, campaign_env,
                                                                          tmp_path):
    # A window open now in New York and São Paulo (two hours ahead) and closed in Los Angeles (three behind).
    new_york_hour = timezone.now().astimezone(ZoneInfo("America/New_York")).hour
    opens, closes = (new_york_hour - 1) % 24, (new_york_hour + 4) % 24
    open_now = crowd(NEW_YORK, 170) + crowd(SAO_PAULO, 160)
    closed_now = crowd(LOS_ANGELES, 170)
    campaign = campaign_for(meta, template=template, send_window_start=f"{opens:02d}:00",
                            send_window_end=f"{closes:02d}:00")
    assert campaign_launch(campaign) == 500
    worker = start_worker(campaign_env, tmp_path / "worker.log", "campaign")
    try:
        wait_until(lambda: sum(numbers_at_the_fake(fake_meta).values()) >= len(open_now), 60,
                   message="everyone inside their hours to be sent the campaign")
        wait_until(lambda: Message.objects.filter(purpose="campaign", status="sent").count() >= len(open_now), 30,
                   message="the sends to be recorded")
        time.sleep(1)  # anything wrongly sent would arrive now
    finally:
        stop_worker(worker)
    received = numbers_at_the_fake(fake_meta)
    assert set(received) == set(open_now) and set(received.values()) == {1}
    la_opening = datetime.now(ZoneInfo("America/Los_Angeles")).replace(hour=opens, minute=0, second=0, microsecond=0)
    if la_opening < timezone.now():
        la_opening += timedelta(days=1)
    waiting = CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.PENDING)
    assert waiting.count() == len(closed_now)
    assert set(waiting.values_list("due_at", flat=True)) == {la_opening}
    report = campaign_report(campaign)
    assert report["counts"]["sent"] == len(open_now) and report["counts"]["pending"] == len(closed_now)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING


def test_a_worker_killed_mid_campaign_leaves_no_duplicate_and_no_gap(meta, template, fake_meta, campaign_env,
                                                                     tmp_path, settings):
    Provider.objects.filter(pk=meta.pk).update(rate_limit_per_second=20)
    phones = crowd(NEW_YORK, 200)
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    env = {**campaign_env, "CAMPAIGN_BACKLOG_SECONDS": "2", "PROVIDER_HTTP_TIMEOUT_SECONDS": "2",
           "CELERY_VISIBILITY_TIMEOUT": "8"}
    first = start_worker(env, tmp_path / "first.log", "doomed")
    wait_until(lambda: sum(numbers_at_the_fake(fake_meta).values()) >= 60, 60, message="the campaign to be under way")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    at_kill = sum(numbers_at_the_fake(fake_meta).values())
    assert at_kill < len(phones)

    settings.SEND_STALE_AFTER_SECONDS = 1
    second = start_worker(env, tmp_path / "second.log", "survivor")
    try:
        def everyone_sent() -> bool:
            # What beat runs: the campaigns' tick and the sender's requeue job.
            campaigns_tick()
            messages_requeue_due()
            return sum(numbers_at_the_fake(fake_meta).values()) >= len(phones) and not Message.objects.filter(
                purpose="campaign", status__in=["queued", "sending"]).exists()

        wait_until(everyone_sent, 90, interval=1, message="the second worker to finish the campaign")
        time.sleep(1)
    finally:
        stop_worker(second)
    received = numbers_at_the_fake(fake_meta)
    assert set(received) == set(phones), "a gap: someone never got it"
    assert [phone for phone, times in received.items() if times > 1] == [], "a duplicate"
    assert CampaignRecipient.objects.filter(campaign=campaign, message__isnull=True).count() == 0
    assert Message.objects.filter(purpose="campaign").count() == len(phones)


def meta_status(message: Message, status: str, error_code: int | None = None) -> bytes:
    report = {"id": message.provider_message_id, "status": status, "recipient_id": "12125550000",
              "timestamp": str(int(timezone.now().timestamp()))}
    if error_code:
        report["errors"] = [{"code": error_code, "title": "Message undeliverable",
                             "message": "Message undeliverable", "error_data": {"details": "not on WhatsApp"}}]
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": META_WABA_ID, "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": META_PHONE_NUMBER_ID},
            "statuses": [report]}}]}]}).encode()


def test_sms_fallback_for_not_on_whatsapp_and_not_delivered_in_time_never_twice(meta, template, fake_meta,
                                                                               campaign_env, tmp_path, client):
    twilio = make_twilio(sms_from="+14155550000")
    sms_path = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json"
    fake_meta.routes[sms_path] = twilio_message_created
    not_on_whatsapp, slow, delivered = crowd(NEW_YORK, 3)
    campaign = campaign_for(meta, template=template, sms_fallback_provider=twilio, sms_fallback_after_minutes=5,
                            sms_fallback_text="Spring sale: 20% off today, {contact.first_name|friend}.")
    campaign_launch(campaign)
    env = {**campaign_env, "TWILIO_API_BASE_URL": fake_meta.url}
    worker = start_worker(env, tmp_path / "worker.log", "fallback")
    try:
        wait_until(lambda: sum(numbers_at_the_fake(fake_meta).values()) == 3, 30, message="the WhatsApp sends")
        # The reports below name the provider's ids: wait until the sender has recorded them (just after the
        # provider's answers).
        wait_until(lambda: Message.objects.filter(purpose="campaign", status="sent").count() == 3, 30,
                   message="the sends to be recorded")
        sent = {ContactIdentity.objects.get(contact__conversations__messages=message).value: message
                for message in Message.objects.filter(purpose="campaign")}
        webhook_event_process(event_id(post_meta(client, meta, meta_status(sent[not_on_whatsapp], "failed",
                                                                               131026))))
        webhook_event_process(event_id(post_meta(client, meta, meta_status(sent[delivered], "delivered"))))
        wait_until(lambda: fake_meta.hits(sms_path), 30, message="the SMS for the number not on WhatsApp")

        # Five minutes on, nothing delivered for `slow`: the beat job's run falls back for it alone.
        CampaignRecipient.objects.filter(campaign=campaign).update(queued_at=timezone.now() - timedelta(minutes=6))
        campaigns_tick()
        wait_until(lambda: len(fake_meta.hits(sms_path)) == 2, 30, message="the SMS for the late delivery")
        # Triggers again: a second failure report, later beat runs. Nothing more is sent.
        webhook_event_process(event_id(post_meta(client, meta, meta_status(sent[not_on_whatsapp], "failed",
                                                                               131026))))
        campaigns_tick()
        campaigns_tick()
        time.sleep(2)
    finally:
        stop_worker(worker)
    texts = {form_of(request)["To"][0]: form_of(request)["Body"][0] for request in fake_meta.hits(sms_path)}
    assert len(fake_meta.hits(sms_path)) == 2
    assert texts == {not_on_whatsapp: "Spring sale: 20% off today, Person.",
                     slow: "Spring sale: 20% off today, Person."}
    assert all(form_of(request)["From"] == ["+14155550000"] for request in fake_meta.hits(sms_path))
    recipients = {phone: CampaignRecipient.objects.get(campaign=campaign, contact__identities__value=phone)
                  for phone in (not_on_whatsapp, slow, delivered)}
    assert [(recipients[phone].fallback_status, recipients[phone].fallback_reason) for phone in recipients] == [
        ("sent", "not_on_whatsapp"), ("sent", "not_delivered_in_time"), ("", "")]
    report = campaign_report(campaign)
    assert report["costs"]["sms"] == pytest.approx(0.0226) and report["counts"]["sms"] == 2


def test_pause_stops_the_sends_resume_finishes_them_once_and_cancel_leaves_the_rest(meta, template, fake_meta,
                                                                                    campaign_env, tmp_path):
    Provider.objects.filter(pk=meta.pk).update(rate_limit_per_second=10)
    phones = crowd(NEW_YORK, 60)
    campaign = campaign_for(meta, template=template)
    campaign_launch(campaign)
    worker = start_worker({**campaign_env, "CAMPAIGN_BACKLOG_SECONDS": "1"}, tmp_path / "worker.log", "pause")
    try:
        wait_until(lambda: sum(numbers_at_the_fake(fake_meta).values()) >= 10, 30, message="the first sends")
        campaign_pause(campaign)
        time.sleep(0.5)  # calls the sender had already started
        at_pause = sum(numbers_at_the_fake(fake_meta).values())
        time.sleep(2)
        assert sum(numbers_at_the_fake(fake_meta).values()) == at_pause < len(phones)

        campaign_resume(campaign)
        wait_until(lambda: sum(numbers_at_the_fake(fake_meta).values()) >= len(phones), 30,
                   message="the rest after the resume")
        time.sleep(0.5)
        received = numbers_at_the_fake(fake_meta)
        assert set(received) == set(phones) and set(received.values()) == {1}

        second = campaign_for(meta, template=template, name="Second", filters={"consent": ["unknown"]})
        campaign_launch(second)
        wait_until(lambda: sum(numbers_at_the_fake(fake_meta).values()) >= len(phones) + 10, 30,
                   message="the second campaign under way")
        cancelled = campaign_cancel(second)
        time.sleep(2)
    finally:
        stop_worker(worker)
    sent_second = sum(numbers_at_the_fake(fake_meta).values()) - len(phones)
    assert cancelled > 0 and sent_second + cancelled == len(phones)
    assert CampaignRecipient.objects.filter(campaign=second, status="cancelled").count() == cancelled
