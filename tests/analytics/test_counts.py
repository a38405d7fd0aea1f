"""What each figure counts, and that the squash never loses a delta written while it runs."""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ai.services.calls import CallScope, record
from analytics.models import CountDelta, TemplateReply
from analytics.services.rollups import counts_check, counts_rebuild, counts_squash, rolled_up
from contacts.models import ConsentKeyword
from templates_app.models import MessageTemplate
from tests.conftest import customer, in_threads
from whatsapp.models import Conversation, Message
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db


def _figures(prefix: str = "") -> dict[str, list]:
    """Totals per metric over everything, as the dashboard sees them."""
    hourly, _ = rolled_up(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    totals: dict[str, list] = {}
    for (_, _, metric), (count, total) in hourly.items():
        if metric.startswith(prefix):
            entry = totals.setdefault(metric, [0, Decimal("0")])
            entry[0] += count
            entry[1] += total
    return totals


def _per_template() -> dict[str, int]:
    _, daily = rolled_up(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    totals: dict[str, int] = {}
    for (_, _, _, metric), count in daily.items():
        totals[metric] = totals.get(metric, 0) + count
    return totals


def test_a_reply_records_how_long_the_customer_waited(say, sandbox_provider, superuser):
    contact = say("+34600100200", "Is my order on its way?", at=time.time() - 90)
    say("+34600100200", "Hello?", at=time.time() - 30)
    conversation = Conversation.objects.get(contact=contact)
    assert conversation.awaiting_reply_since is not None

    first = message_send_text(provider=sandbox_provider, contact=contact, text="Yes, it ships today.", actor=superuser)
    second = message_send_text(provider=sandbox_provider, contact=contact, text="Tracking follows.", actor=superuser)
    say("+34600100200", "Thanks!")
    third = message_send_text(provider=sandbox_provider, contact=contact, text="You're welcome.", actor=superuser)

    first.refresh_from_db()
    assert first.first_response and first.response_seconds == pytest.approx(90, abs=5)
    assert second.response_seconds is None and not second.first_response  # nothing was waiting
    assert third.response_seconds == pytest.approx(0, abs=5) and not third.first_response
    figures = _figures()
    assert figures["first_response"][0] == 1 and figures["first_response"][1] == pytest.approx(Decimal(90), abs=5)
    assert figures["reply_time"][0] == 2
    assert figures["received:text"][0] == 3 and figures["contacts"][0] >= 1
    assert figures["new_contacts"][0] == 1 and figures["conversations_opened"][0] == 1
    assert counts_check().ok


def test_template_replies_and_opt_outs_are_credited_to_the_latest_template(say, sandbox_provider):
    ConsentKeyword.objects.get_or_create(language="en", keyword="STOP", action="opt_out",
                                         defaults={"confirmation": "You will get no more messages."})
    contact = customer(sandbox_provider, "+34600100300")
    conversation = Conversation.objects.get(contact=contact)
    older = MessageTemplate.objects.create(provider=sandbox_provider, name="old_offer", language="en",
                                           status="approved")
    newer = MessageTemplate.objects.create(provider=sandbox_provider, name="new_offer", language="en",
                                           status="approved")
    now = timezone.now()
    for template, ago in ((older, 3), (newer, 1)):
        Message.objects.create(provider=sandbox_provider, conversation=conversation, direction="outbound",
                               message_type="template", template=template, status="delivered",
                               sent_at=now - timedelta(hours=ago), delivered_at=now - timedelta(hours=ago))
    say("+34600100300", "Tell me more")
    say("+34600100300", "And the price?")  # the template was already answered: no second credit
    say("+34600100300", "STOP")

    assert TemplateReply.objects.count() == 1
    assert TemplateReply.objects.get().message.template == newer
    per_template = _per_template()
    assert per_template == {"sent": 2, "delivered": 2, "replied": 1, "opted_out": 1}
    assert _figures("opt_outs")["opt_outs"][0] == 1
    assert counts_check().ok


def test_ai_calls_are_counted_with_their_cost_and_skips_are_not(sandbox_provider):
    record(CallScope(feature="classification", provider=sandbox_provider), "ok", cost=Decimal("0.000420"))
    record(CallScope(feature="classification", provider=sandbox_provider), "failed", cost=Decimal("0.000100"))
    record(CallScope(feature="classification", provider=sandbox_provider), "skipped", reason="over budget")
    assert _figures("ai_calls:") == {"ai_calls:classification": [2, Decimal("0.000520")]}
    assert counts_check().ok


def test_a_rebuilt_range_matches_what_the_deltas_said(say, sandbox_provider):
    for n in range(5):
        say(f"+3460010040{n}", "hi", at=time.time() - n * 3600)
    before = _figures()
    counts_rebuild(timezone.now() - timedelta(days=1), timezone.now())
    assert not CountDelta.objects.exists()
    assert _figures() == before


@pytest.mark.django_db(transaction=True)
def test_squashing_while_writers_write_loses_nothing():
    provider = provider_create(kind="sandbox", name="Busy sandbox", options={})
    conversations = [Conversation.objects.get(contact=customer(provider, f"+3460020{n:04d}"))
                     for n in range(4)]
    writers_done = []

    def write(conversation):
        def run():
            for k in range(60):
                message = Message.objects.create(
                    provider=provider, conversation=conversation, direction="outbound", status="sent",
                    sent_at=timezone.now(), message_type="text", text=f"update {k}")
                message.status, message.delivered_at = "delivered", timezone.now()
                message.save(update_fields=["status", "delivered_at"])
            writers_done.append(conversation.pk)
        return run

    def squash():
        rounds = 0
        while len(writers_done) < len(conversations) or rounds < 3:
            counts_squash(batch=7)
            rounds += 1
        return rounds

    in_threads(*(write(c) for c in conversations), squash)
    counts_squash()
    figures = _figures()
    assert figures["sent:text"][0] == 240 and figures["delivered"][0] == 240
    assert not CountDelta.objects.exists()
    assert counts_check().ok


def test_a_late_customer_message_older_than_the_last_reply_does_not_wait(say, sandbox_provider, superuser):
    contact = say("+34600100500", "Hi", at=time.time() - 600)
    reply = message_send_text(provider=sandbox_provider, contact=contact, text="Hello!", actor=superuser)
    assert reply.response_seconds == pytest.approx(600, abs=5)
    # Delivered late by the provider: written before our reply, so our reply answered it.
    say("+34600100500", "Are you there?", at=time.time() - 300)
    conversation = Conversation.objects.get(contact=contact)
    assert conversation.awaiting_reply_since is None
    later = message_send_text(provider=sandbox_provider, contact=contact, text="Still here.", actor=superuser)
    assert later.response_seconds is None
    assert _figures("reply_time")["reply_time"][0] == 1
