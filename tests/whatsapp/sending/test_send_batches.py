"""
The sender's batches, in one process against a local server speaking Meta's Graph API: many messages
claimed, called at once and recorded together; replies ahead of bulk; a conversation's messages in order;
each error settled on its own; and the limiter's runs of slots the batches take. (A sender in a real
worker, killed mid-call or sharing the number's rate with another, is in test_send_workers.py.)
"""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from templates_app.models import MessageTemplate
from tests.conftest import customer
from tests.fakes import meta_accepted, meta_error
from whatsapp.models import Message, Provider, SendAttempt
from whatsapp.providers.events import TemplateStatus
from whatsapp.services import delivery, rate_limits, send_rules
from whatsapp.services.delivery import CallStart, attempts_start, call_begins, message_deliver
from whatsapp.services.outbound import SendRequest, message_send, message_send_text, messages_hold_while_paused
from whatsapp.services.send_batches import provider_send_due

pytestmark = pytest.mark.django_db


def customers(provider, count: int, first: int = 0):
    return [customer(provider, f"+1650555{first + n:04d}") for n in range(count)]


def bulk(provider, contact, text: str) -> Message:
    return message_send(SendRequest(provider=provider, contact=contact, message_type="text", text=text,
                                    lane=Message.Lane.BULK))[0]


def arrived_texts(fake) -> list[str]:
    return [json.loads(request.body)["text"]["body"] for request in fake.hits(fake.send_path)]


def test_a_batch_sends_each_message_once_and_records_them_together(meta, fake_meta):
    meta.rate_limit_per_second = 1000  # the whole batch's slots within a few milliseconds
    meta.save(update_fields=["rate_limit_per_second"])
    messages = [message_send_text(provider=meta, contact=c, text=f"hello {n}")
                for n, c in enumerate(customers(meta, 15))]
    with CaptureQueriesContext(connection) as queries:
        assert provider_send_due(meta.pk) == 15
    # Claimed, marked and recorded in statements per batch, not per message (one at a time takes about ten
    # each); results are recorded as they come back, so a few rounds rather than one.
    assert len(queries) < 60
    assert sum("INSERT INTO \"whatsapp_sendattempt\"" in q["sql"] for q in queries.captured_queries) <= 4

    rows = Message.objects.filter(pk__in=[m.pk for m in messages])
    assert list(rows.order_by().values_list("status", flat=True).distinct()) == ["sent"]
    assert rows.filter(provider_message_id__startswith="wamid.test-").count() == 15
    assert sorted(arrived_texts(fake_meta)) == sorted(m.text for m in messages)
    attempts = SendAttempt.objects.filter(message__in=rows)
    assert list(attempts.order_by().values_list("outcome", "number").distinct()) == [("sent", 1)]
    assert attempts.count() == 15 and not attempts.filter(finished_at__isnull=True).exists()


def test_replies_go_ahead_of_bulk_and_a_conversation_keeps_its_order(meta, fake_meta, settings):
    settings.SEND_BATCH_SIZE = 3
    settings.SEND_PAIR_INTERVAL_SECONDS = 0
    settings.SEND_RATE_HEADROOM = 0.2  # a busy test machine's late call keeps its slot: the order is the claim's
    bulk_contacts = customers(meta, 4)
    for n, contact in enumerate(bulk_contacts):
        bulk(meta, contact, f"offer {n}")
    ana, bruno = customer(meta, "+16505559001"), customer(meta, "+16505559002")
    for text in ("one", "two", "three"):
        message_send_text(provider=meta, contact=ana, text=text)
    message_send_text(provider=meta, contact=bruno, text="hello Bruno")

    assert provider_send_due(meta.pk) == 8
    texts = arrived_texts(fake_meta)
    # The first claim takes the replies that are due and may go (only "one" of Ana's), then bulk.
    assert sorted(texts[:2]) == ["hello Bruno", "one"] and texts[2] == "offer 0"
    assert [t for t in texts if t in ("one", "two", "three")] == ["one", "two", "three"]
    assert [t for t in texts if t.startswith("offer")] == [f"offer {n}" for n in range(4)]


def test_errors_in_a_batch_are_settled_each_on_its_own(meta, fake_meta, settings):
    settings.SEND_RETRY_BASE_SECONDS = 30  # the retry stays in the future while the test looks
    refused, failing, fine = "+16505550001", "+16505550002", "+16505550003"

    def answer(request):
        to = json.loads(request.body)["to"]
        if to == refused:
            return meta_error(131026, 400, "Message undeliverable")
        if to == failing:
            return meta_error(131000, 500, "Something went wrong")
        return meta_accepted(request)

    fake_meta.routes[fake_meta.send_path] = answer
    sent = {phone: message_send_text(provider=meta, contact=customer(meta, phone), text=phone)
            for phone in (refused, failing, fine)}
    assert provider_send_due(meta.pk) == 1

    statuses = {phone: Message.objects.get(pk=m.pk) for phone, m in sent.items()}
    assert (statuses[refused].status, statuses[refused].error_code) == ("failed", "131026")
    retrying = statuses[failing]
    assert (retrying.status, retrying.error_code) == ("queued", "131000")
    assert retrying.next_attempt_at > timezone.now() and retrying.hold_reason.startswith("retry after")
    assert statuses[fine].status == "sent"
    outcomes = dict(SendAttempt.objects.filter(message__in=sent.values()).values_list("message__text", "outcome"))
    assert outcomes == {refused: "failed", failing: "retry", fine: "sent"}


def test_a_paused_provider_holds_every_due_message_not_only_the_first_of_each_conversation(meta, fake_meta):
    contact = customer(meta)
    ids = [message_send_text(provider=meta, contact=contact, text=f"part {n}").pk for n in range(3)]
    meta.is_paused = True
    meta.save(update_fields=["is_paused"])
    assert provider_send_due(meta.pk) == 0
    held = Message.objects.filter(pk__in=ids)
    assert list(held.order_by().values_list("status", "hold_reason", "next_attempt_at").distinct()) == [
        ("queued", "provider paused", None)]
    assert fake_meta.requests == []


@pytest.mark.parametrize("limiter", ["redis", "local"])
def test_a_run_of_slots_takes_as_many_as_start_within_the_longest_wait(limiter):
    slots = rate_limits.limiter() if limiter == "redis" else rate_limits.LocalLimiter()
    key = f"test-run:{limiter}:{timezone.now().timestamp()}"
    first = slots.reserve_run(key, 0.1, max_wait=0.45, count=10)
    assert first.count == 5 and first.wait < 0.01
    assert [round(first.offset(n) - first.wait, 2) for n in range(5)] == [0.0, 0.1, 0.2, 0.3, 0.4]
    refused = slots.reserve_run(key, 0.1, max_wait=0.45, count=3)
    assert refused.count == 0 and 0.45 < refused.wait <= 0.5
    later = slots.reserve_run(f"{key}:lead", 0.1, max_wait=1.0, count=2, lead=0.3)
    assert later.count == 2 and 0.28 < later.wait < 0.31


def test_a_message_refused_at_send_time_fails_alone_and_the_batch_goes_out(meta, fake_meta):
    template = MessageTemplate.objects.create(provider=meta, name="order_update", language="en_US",
                                              status=TemplateStatus.APPROVED,
                                              components=[{"type": "BODY", "text": "Hi {{1}}"}])
    broken = message_send(SendRequest(provider=meta, contact=customer(meta, "+16505550101"), message_type="template",
                                      template=template, template_variables={"body": ["Ana"]}))[0]
    # The template changed under the queued message (its body lost the variable): refused when its turn comes.
    MessageTemplate.objects.filter(pk=template.pk).update(components=[{"type": "BODY", "text": "Hi there"}])
    fine = message_send_text(provider=meta, contact=customer(meta, "+16505550102"), text="still goes")

    assert provider_send_due(meta.pk) == 1
    broken.refresh_from_db()
    assert (broken.status, broken.error_code) == ("failed", "template_variables")
    assert Message.objects.get(pk=fine.pk).status == "sent"
    assert arrived_texts(fake_meta) == ["still goes"]


@pytest.mark.parametrize("check", ["check_template", "check_recipient"])
def test_a_message_the_checks_crash_on_fails_alone_and_the_batch_goes_out(meta, fake_meta, monkeypatch, settings,
                                                                          check):
    """Bad data that makes a check itself raise (not refuse) fails that message as check_failed; the claim,
    which would meet it first again every time, goes on with the others."""
    template = MessageTemplate.objects.create(provider=meta, name="order_update", language="en_US",
                                              status=TemplateStatus.APPROVED,
                                              components=[{"type": "BODY", "text": "Hi {{1}}"}])
    crashing_contact = customer(meta, "+16505550103")
    broken = message_send(SendRequest(provider=meta, contact=crashing_contact, message_type="template",
                                      template=template, template_variables={"body": ["Ana"]}))[0]
    fine = message_send_text(provider=meta, contact=customer(meta, "+16505550104"), text="still goes")
    real = getattr(send_rules, check)
    settings.SEND_PAIR_INTERVAL_SECONDS = 0.01  # the recipient is checked where the pair rate is kept

    def crashes(*args, **kwargs):
        if check == "check_template" or crashing_contact in args:
            raise ValueError("unreadable stored data")
        return real(*args, **kwargs)

    monkeypatch.setattr(send_rules, check, crashes)
    assert provider_send_due(meta.pk) == 1
    broken.refresh_from_db()
    assert (broken.status, broken.error_code) == ("failed", "check_failed")
    assert "ValueError: unreadable stored data" in broken.error_detail
    assert Message.objects.get(pk=fine.pk).status == "sent"
    assert arrived_texts(fake_meta) == ["still goes"]


def test_a_hold_for_a_pause_that_ended_meanwhile_holds_nothing(meta, fake_meta):
    message = message_send_text(provider=meta, contact=customer(meta), text="after the resume")
    seen_paused = Provider.objects.get(pk=meta.pk)
    seen_paused.is_paused = True  # what a sender read just before the resume committed
    assert messages_hold_while_paused(seen_paused) == 0
    assert Message.objects.get(pk=message.pk).hold_reason == ""
    assert provider_send_due(meta.pk) == 1


def test_a_send_whose_worker_died_before_its_call_goes_again_and_one_during_it_does_not(meta, fake_meta, settings,
                                                                                      monkeypatch):
    before, during = (message_send_text(provider=meta, contact=customer(meta, phone), text=text)
                      for phone, text in (("+16505551234", "before"), ("+16505551235", "during")))
    # Claimed by a worker (marked `sending`), which then died: one before its call, one after starting it.
    claimed = [Message.objects.get(pk=before.pk), Message.objects.get(pk=during.pk)]
    attempts_start(claimed)
    assert call_begins(claimed[1]) is CallStart.GO
    # Time passes (the claim is as old as it was: only the clock moves on).
    settings.SEND_STALE_AFTER_SECONDS = 0
    monkeypatch.setattr(delivery, "in_flight_window", lambda: timezone.timedelta(seconds=-1))

    assert message_deliver(before.pk).status == "queued"
    assert message_deliver(during.pk).status == "dead_letter"
    # The dead worker's attempt is fenced: were it only slow, it would find its call refused.
    assert call_begins(claimed[0]) is CallStart.REVOKED
    provider_send_due(meta.pk)
    assert [json.loads(request.body)["text"]["body"] for request in fake_meta.hits(fake_meta.send_path)] == ["before"]
    before.refresh_from_db()
    assert (before.status, before.attempts) == ("sent", 2)
