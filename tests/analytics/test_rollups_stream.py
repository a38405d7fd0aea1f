"""
The squashed counts against a direct count, after a mixed stream that real workers processed: customers
writing (and their messages redelivered), people answering, sends that Meta accepts, refuses for good or
keeps failing, and status reports that come late, out of order, twice, or take a failure back.
"""

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.db.models import Count

from analytics.models import CountDelta, HourlyCount
from analytics.services.rollups import counts_check, counts_rebuild, counts_squash, rolled_up
from contacts.models import Contact
from tests.analytics.streams import inbound_text, statuses
from tests.conftest import start_worker, stop_worker, wait_until
from tests.fakes import FakeServer, Reply, meta_accepted, meta_error
from tests.signing import make_meta, meta_headers
from whatsapp.models import Message, WebhookEvent
from whatsapp.services.outbound import message_send_text

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOUR = 3600


def _refusing(by_recipient: dict[str, Reply]):
    def route(request):
        to = json.loads(request.body)["to"].lstrip("+")
        return by_recipient.get(to) or meta_accepted(request)
    return route


def _post(live_server, provider, body: bytes) -> None:
    response = httpx.post(f"{live_server.url}/webhooks/meta/{provider.public_id}/", content=body,
                          headers={**meta_headers(body), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def _all_processed() -> bool:
    return not WebhookEvent.objects.filter(status="pending").exists()


def _sends_settled() -> bool:
    return not Message.objects.filter(direction="outbound", status__in=["queued", "sending"]).exists()


def test_rollups_equal_a_direct_count_after_a_mixed_stream(worker_env, live_server, tmp_path):
    now = time.time()
    customers = [f"5511987{n:06d}" for n in range(12)]
    refused_for_good, always_failing = customers[10], customers[11]
    with FakeServer() as graph:
        graph.routes["/v25.0/109900112233445/messages"] = _refusing({
            refused_for_good: meta_error(131049, 400, "healthy ecosystem"),
            always_failing: meta_error(131000, 500, "something went wrong"),
        })
        env = {**worker_env, "META_GRAPH_BASE_URL": graph.url, "META_GRAPH_API_VERSION": "v25.0",
               "SEND_RETRY_BASE_SECONDS": "0.05", "SEND_RETRY_MAX_SECONDS": "0.2", "SEND_MAX_ATTEMPTS": "2",
               "SEND_PAIR_INTERVAL_SECONDS": "0"}
        worker = start_worker(env, tmp_path / "worker.log", "rollups")
        try:
            provider = make_meta()
            writers = set()
            # Customers write over the last three hours; every third message is delivered twice.
            for n, wa_id in enumerate(customers):
                for k in range(2):
                    at = int(now - (n % 3) * HOUR - k * 60)
                    writers.add((wa_id, at // HOUR))
                    body = inbound_text(wa_id, f"wamid.in-{n}-{k}", f"question {k}", at=at)
                    _post(live_server, provider, body)
                    if (n + k) % 3 == 0:
                        _post(live_server, provider, body)
            wait_until(lambda: Message.objects.filter(direction="inbound").count() == 24 and _all_processed(), 60,
                       message="the inbound messages")

            # A person answers each customer; the worker sends through the fake Graph API.
            for contact in Contact.objects.all():
                message_send_text(provider=provider, contact=contact, text="Thanks, on it.")
            wait_until(_sends_settled, 60, message="the sends to settle")
            sent = list(Message.objects.filter(direction="outbound", status="sent").order_by("pk"))
            assert len(sent) == 10

            # Receipts: in order, read before delivered, duplicated, a delivered time earlier than the first
            # report's (moving it into another hour), a failure, and a failure taken back by a delivery.
            reports = []
            wa_id = "0"  # reports are matched by message id
            for n, message in enumerate(sent):
                mid = message.provider_message_id
                if n < 4:
                    reports += [(mid, "delivered", now + 5, wa_id), (mid, "read", now + 9, wa_id)]
                elif n < 6:
                    reports += [(mid, "read", now + 9, wa_id), (mid, "delivered", now + 5, wa_id),
                                (mid, "read", now + 9, wa_id)]
                elif n == 6:
                    reports += [(mid, "delivered", now + 5, wa_id), (mid, "delivered", now - 2 * HOUR, wa_id)]
                elif n == 7:
                    reports += [(mid, "failed", now + 5, wa_id, 131026)]
                elif n == 8:
                    reports += [(mid, "failed", now + 5, wa_id, 131053), (mid, "delivered", now + 8, wa_id)]
            for report in reports:
                _post(live_server, provider, statuses(report))
            _post(live_server, provider, statuses(*reports[:3]))  # a replayed batch
            # A customer answers again after the reply: the conversation waits anew.
            again = int(time.time())
            writers.add((customers[0], again // HOUR))
            _post(live_server, provider, inbound_text(customers[0], "wamid.in-again", "and one more thing", at=again))
            wait_until(lambda: _all_processed() and Message.objects.filter(direction="inbound").count() == 25, 60,
                       message="the receipts")
        finally:
            stop_worker(worker)

    statuses_now = dict(Message.objects.filter(direction="outbound").values_list("status").annotate(n=Count("pk")))
    assert statuses_now == {"read": 6, "delivered": 2, "failed": 2, "dead_letter": 1, "sent": 1}, statuses_now

    check = counts_check()
    assert check.ok, check.differences
    hourly, _ = rolled_up(check.start, check.end)

    def total(prefix: str) -> int:
        return sum(count for (_, _, metric), (count, _) in hourly.items() if metric.startswith(prefix))

    assert total("received:") == 25
    assert total("sent:") == 10 and total("delivered") == 8 and total("read") == 6
    assert total("failed:131049") == 1 and total("failed:131026") == 1 and total("failed:131053") == 0
    assert total("dead_letter") == 1
    assert total("contacts") == len(writers)  # each customer once per hour they wrote in
    assert total("new_contacts") == 12 and total("conversations_opened") == 12
    assert total("reply_time") == 12 and total("first_response") == 12
    waited = sum(seconds for (_, _, metric), (_, seconds) in hourly.items() if metric == "first_response")
    assert waited > Decimal(12 * 60)

    # Folding the deltas in changes no figure; neither does recounting everything from the messages.
    assert CountDelta.objects.exists()
    counts_squash()
    assert not CountDelta.objects.exists() and HourlyCount.objects.exists()
    assert rolled_up(check.start, check.end)[0] == hourly
    counts_rebuild()
    assert rolled_up(check.start, check.end)[0] == hourly
    assert counts_check().ok
    assert {hour for (_, hour, metric) in hourly if metric == "delivered"} >= {
        datetime.fromtimestamp((now - 2 * HOUR) // HOUR * HOUR, UTC)}  # the late report's own hour
