"""
Nothing acknowledged is lost: with the broker down, gunicorn still answers 200 to every signed
webhook (the inbox row is the record); once the broker is back, the requeue job (run by a real
worker, as beat would) hands every row to the workers and each becomes exactly one message.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from celery import Celery

from tests.conftest import (
    free_port,
    start_redis,
    start_web,
    start_worker,
    stop_process,
    stop_web,
    stop_worker,
    wait_until,
)
from tests.signing import META_WABA_ID, make_meta, meta_headers
from whatsapp.models import Message, WebhookEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COUNT = 200


def _webhook(provider, index: int) -> bytes:
    sender = f"55119000{index:05d}"
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": provider.external_id},
             "contacts": [{"profile": {"name": f"Customer {index}"}, "wa_id": sender}],
             "messages": [{"from": sender, "id": f"wamid.ZEROLOSS{index:05d}", "timestamp": "1793000000",
                           "type": "text", "text": {"body": f"message {index}"}}]}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": META_WABA_ID, "changes": [{"field": "messages", "value": value}]}]}).encode()


@pytest.fixture
def gunicorn(worker_env, tmp_path):
    port, broker_port = free_port(), free_port()
    env = {**worker_env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{broker_port}/0",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "WEBHOOK_STALE_AFTER_SECONDS": "1",
           "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "GUNICORN_CONTROL_SOCKET": str(tmp_path / "gunicorn.ctl")}
    process = start_web(env, tmp_path / "gunicorn.log")
    try:
        yield f"http://127.0.0.1:{port}", env, broker_port
    finally:
        stop_web(process)


def test_webhooks_acknowledged_while_the_broker_is_down_are_all_processed_once_it_is_back(gunicorn, tmp_path):
    url, env, broker_port = gunicorn
    provider = make_meta()
    path = f"{url}/webhooks/meta/{provider.public_id}/"
    bodies = [_webhook(provider, index) for index in range(COUNT)]

    def post(body):
        return httpx.post(path, content=body, timeout=30,
                          headers={"Content-Type": "application/json", **meta_headers(body)}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(post, bodies))
    assert statuses == [200] * COUNT  # the broker is down, and every webhook is still acknowledged
    assert WebhookEvent.objects.filter(status="pending").count() == COUNT
    assert Message.objects.count() == 0

    broker = start_redis(broker_port)
    worker = start_worker(env, tmp_path / "worker.log", "zero-loss")
    try:
        # Not the current app: tasks sent by the tests that run after this one must still reach the test broker.
        beat = Celery(broker=env["CELERY_BROKER_URL"], set_as_current=False)

        def all_processed():
            # What beat does every minute: run the requeue job (here every 2 s). It takes rows pending for
            # WEBHOOK_STALE_AFTER_SECONDS, so rows stored in the last second wait for the next run.
            beat.send_task("whatsapp.tasks.requeue_due_webhook_events_task")
            return WebhookEvent.objects.filter(status="processed").count() == COUNT

        wait_until(all_processed, 90, interval=2, message="every stored webhook to be processed")
    finally:
        stop_worker(worker)
        stop_process(broker)
    assert Message.objects.count() == COUNT
    assert sorted(Message.objects.values_list("provider_message_id", flat=True)) == [
        f"wamid.ZEROLOSS{index:05d}" for index in range(COUNT)]
    assert not Message.objects.filter(duplicate_count__gt=0).exists()
    assert WebhookEvent.objects.count() == COUNT
