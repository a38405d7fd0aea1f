"""
Sending through real Celery workers on Redis, against a local server speaking Meta's Graph API:
a paused provider holds and then sends in order, two workers together keep the per-number rate in
every one-second window, retries end in the dead-letter state and a retry from the admin sends, and a
worker killed during the provider call does not make a second call.
"""

import json
import os
import signal

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import customer, start_worker, stop_worker, wait_until
from tests.fakes import Reply, meta_accepted, meta_error
from tests.signing import META_PHONE_NUMBER_ID, META_WABA_ID, post_meta
from whatsapp.models import Message, Provider
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_set_paused
from whatsapp.services.webhooks import webhook_event_process

# worker_env first: it empties the broker before `meta` is made.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker_env")]


@pytest.fixture
def send_env(worker_env, fake_meta):
    return {**worker_env, "META_GRAPH_BASE_URL": fake_meta.url, "SEND_PAIR_INTERVAL_SECONDS": "0",
            "SEND_RETRY_BASE_SECONDS": "0.2", "SEND_RETRY_MAX_SECONDS": "1", "SEND_MAX_ATTEMPTS": "3"}


def statuses(ids):
    return list(Message.objects.filter(pk__in=ids).order_by("pk").values_list("status", flat=True))


def test_paused_provider_holds_then_sends_in_order(meta, fake_meta, send_env, tmp_path, superuser):
    contact = customer(meta)
    provider_set_paused(provider=meta, paused=True, actor=superuser)
    worker = start_worker(send_env, tmp_path / "worker.log", "pause")
    try:
        ids = [message_send_text(provider=meta, contact=contact, text=f"part {n}").pk for n in range(1, 6)]
        wait_until(lambda: all(h for h in Message.objects.filter(pk__in=ids).values_list("hold_reason", flat=True)),
                   20, message="the worker to hold every message")
        assert statuses(ids) == ["queued"] * 5 and fake_meta.requests == []

        provider_set_paused(provider=meta, paused=False, actor=superuser)
        wait_until(lambda: statuses(ids) == ["sent"] * 5, 30, message="every held message to be sent")
    finally:
        stop_worker(worker)
    texts = [json.loads(r.body)["text"]["body"] for r in fake_meta.hits(fake_meta.send_path)]
    assert texts == [f"part {n}" for n in range(1, 6)]


def largest_count_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_two_workers_never_exceed_the_number_rate_in_any_second(meta, fake_meta, send_env, tmp_path):
    Provider.objects.filter(pk=meta.pk).update(rate_limit_per_second=10)
    contacts = [customer(meta, f"+1650555{n:04d}") for n in range(45)]
    # The headroom absorbs the jitter between our slot and the fake's clock; this busy test machine
    # (workers, PostgreSQL and the fake on 2 cores) gets more than production's default.
    env = {**send_env, "SEND_RATE_HEADROOM": "0.2"}
    workers = [start_worker(env, tmp_path / f"w{n}.log", f"rate{n}") for n in range(2)]
    try:
        ids = [message_send_text(provider=meta, contact=contact, text="Your code is 123456").pk for contact in contacts]
        wait_until(lambda: statuses(ids) == ["sent"] * len(ids), 60, message="every message to be sent")
    finally:
        for worker in workers:
            stop_worker(worker)
    arrivals = [request.at for request in fake_meta.hits(fake_meta.send_path)]
    assert len(arrivals) == 45
    assert largest_count_in_one_second(arrivals) <= 10
    # Both workers ran senders (one that finds the number's slots held by the other stops, the other goes on),
    # and the limiter did not hold them far below the rate.
    assert all(b"succeeded" in (tmp_path / f"w{n}.log").read_bytes() for n in range(2))
    assert (max(arrivals) - min(arrivals)) < 45 / 10 * 1.6


def test_server_errors_dead_letter_then_admin_retry_sends(meta, fake_meta, send_env, tmp_path,
                                                          admin_client_logged):
    fake_meta.routes[fake_meta.send_path] = [meta_error(131000, 500)]
    worker = start_worker(send_env, tmp_path / "worker.log", "dlq")
    try:
        message = message_send_text(provider=meta, contact=customer(meta), text="Persistent")
        wait_until(lambda: statuses([message.pk]) == ["dead_letter"], 30, message="the dead-letter state")
        assert len(fake_meta.hits(fake_meta.send_path)) == 3

        fake_meta.routes[fake_meta.send_path] = meta_accepted
        page = admin_client_logged.get(reverse("admin:whatsapp_deadletter_changelist"))
        assert "Persistent" in page.content.decode()
        admin_client_logged.post(reverse("admin:whatsapp_deadletter_changelist"),
                                 {"action": "retry", "_selected_action": [message.pk]})
        wait_until(lambda: statuses([message.pk]) == ["sent"], 30, message="the retried message to be sent")
    finally:
        stop_worker(worker)
    assert len(fake_meta.hits(fake_meta.send_path)) == 4


def test_worker_killed_during_the_call_does_not_send_twice(meta, fake_meta, send_env, tmp_path, client):
    # The provider accepts the request but answers slowly; the worker dies before the answer arrives.
    fake_meta.routes[fake_meta.send_path] = [Reply.json({"messages": [{"id": "wamid.slow-1"}]}, status=200)]
    fake_meta.routes[fake_meta.send_path][0].delay = 4
    env = {**send_env, "PROVIDER_HTTP_TIMEOUT_SECONDS": "5", "CELERY_VISIBILITY_TIMEOUT": "10"}
    first = start_worker(env, tmp_path / "first.log", "doomed")
    message = message_send_text(provider=meta, contact=customer(meta), text="Exactly once")
    wait_until(lambda: fake_meta.hits(fake_meta.send_path), 20, message="the provider to receive the call")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    second = start_worker(env, tmp_path / "second.log", "survivor")
    try:
        wait_until(lambda: statuses([message.pk]) == ["dead_letter"], 90,
                   message="the redelivered task to settle the message")
    finally:
        stop_worker(second)
    assert len(fake_meta.hits(fake_meta.send_path)) == 1
    message.refresh_from_db()
    assert message.error_code == "send_outcome_unknown" and "not sent again" in message.error_detail

    # Meta's status report echoes our reference: it settles the message.
    status = {"object": "whatsapp_business_account", "entry": [{"id": META_WABA_ID, "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": META_PHONE_NUMBER_ID},
            "statuses": [{"id": "wamid.slow-1", "status": "delivered", "recipient_id": "16505551234",
                          "timestamp": str(int(timezone.now().timestamp())),
                          "biz_opaque_callback_data": str(message.pk)}]}}]}]}
    response = post_meta(client, meta, json.dumps(status).encode())
    webhook_event_process(int(response["X-Webhook-Event"]))
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("delivered", "wamid.slow-1")
