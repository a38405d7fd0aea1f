"""Nothing acknowledged is lost: partial failures, retries with backoff, replays and duplicates."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import fixture_bytes, json_body
from whatsapp.models import Conversation, Message, MessageStatusEvent, WebhookEvent
from whatsapp.services.webhooks import (
    webhook_event_process,
    webhook_event_replay,
    webhook_events_prune_rejected,
    webhook_events_requeue_due,
    webhook_inbox_drain,
)

pytestmark = pytest.mark.django_db


def _post(provider, post, fixture):
    response = post(provider, fixture_bytes("sandbox", fixture))
    assert response.status_code == 200
    return WebhookEvent.objects.get(pk=json_body(response)["event"])


def test_one_bad_event_does_not_hold_back_the_others(sandbox_provider, post_sandbox):
    event = webhook_event_process(_post(sandbox_provider, post_sandbox, "batch_with_one_bad_event.json").pk)
    texts = set(Message.objects.values_list("text", flat=True))
    assert texts == {"first, fine", "third, fine, odd time", "lone ? surrogate"}
    # The id too long for its column is listed on the event, never retried: it would fail forever.
    assert (event.status, event.event_count, event.next_attempt_at) == ("processed", 4, None)
    assert event.invalid_updates == [{"update": 1, "kind": "InboundMessage",
                                      "reason": "provider message id is 154 characters long; at most 128 fit"}]

    # A replay applies everything again; what was stored is not stored twice.
    webhook_event_replay(event=event)
    again = webhook_event_process(event.pk)
    assert again.attempts == 1 and Message.objects.count() == 3 and len(again.invalid_updates) == 1


def _database_busy(monkeypatch):
    from django.db import OperationalError

    def busy(**kwargs):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr("whatsapp.services.webhooks.event_apply", busy)


def test_failed_events_wait_for_their_backoff_then_drain_again(sandbox_provider, post_sandbox, monkeypatch):
    _database_busy(monkeypatch)
    event = webhook_event_process(_post(sandbox_provider, post_sandbox, "inbound_text.json").pk)
    assert event.status == "failed" and "lock timeout" in event.last_error
    first_delay = event.next_attempt_at - timezone.now()
    assert webhook_events_requeue_due() == 0  # not due yet: the sweep wakes nothing
    assert webhook_inbox_drain() == 0  # and a drain leaves it alone
    for attempt in (2, 3, 4):
        WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        assert webhook_events_requeue_due() == 1
        assert webhook_inbox_drain() == 1
        event.refresh_from_db()
        assert (event.status, event.attempts) == ("failed", attempt)
    assert event.next_attempt_at - timezone.now() > first_delay * 4


def test_the_drain_takes_the_oldest_rows_first(sandbox_provider, post_sandbox):
    older = _post(sandbox_provider, post_sandbox, "inbound_text.json")
    newer = _post(sandbox_provider, post_sandbox, "inbound_two_messages.json")
    assert webhook_events_requeue_due() == 2
    assert webhook_inbox_drain(batch_size=1, seconds=0) == 1  # one full batch, then out of time
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, newer.status) == ("processed", "pending")
    assert webhook_inbox_drain() == 1
    assert Message.objects.count() == 3


def test_replay_resets_attempts_and_is_audited(sandbox_provider, post_sandbox, superuser):
    from core.models import AuditLog

    event = webhook_event_process(_post(sandbox_provider, post_sandbox, "inbound_text.json").pk)
    webhook_event_replay(event=event, actor=superuser)
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("pending", 0)
    assert webhook_event_process(event.pk).status == "processed"
    assert Message.objects.count() == 1 and Message.objects.get().duplicate_count == 1
    assert AuditLog.objects.filter(action="webhook_event.replay", actor=superuser).exists()


def test_duplicate_status_reports_are_one_row(sandbox_provider, post_sandbox):
    webhook_event_process(_post(sandbox_provider, post_sandbox, "inbound_text.json").pk)
    Message.objects.create(provider=sandbox_provider, conversation=Conversation.objects.get(),
                           direction="outbound", status="sent", provider_message_id="sbx-out-0001")
    for _ in range(3):
        webhook_event_process(_post(sandbox_provider, post_sandbox, "status_read_then_delivered.json").pk)
    assert MessageStatusEvent.objects.count() == 2


def test_status_reports_never_touch_inbound_messages(sandbox_provider, post_sandbox):
    webhook_event_process(_post(sandbox_provider, post_sandbox, "inbound_text.json").pk)
    Message.objects.filter(direction="inbound").update(provider_message_id="sbx-out-0001")
    webhook_event_process(_post(sandbox_provider, post_sandbox, "status_read_then_delivered.json").pk)
    assert Message.objects.get().status == "received"


def test_rejected_bodies_keep_only_a_prefix_and_are_pruned(sandbox_provider, post_sandbox):
    big = b'{"events": [], "pad": "' + b"x" * 100_000 + b'"}'
    response = post_sandbox(sandbox_provider, big, sign=False)
    assert response.status_code == 401
    event = WebhookEvent.objects.get()
    assert event.body_size == len(big) and len(bytes(event.body)) == 4096
    assert webhook_events_prune_rejected(older_than_days=1) == 0
    WebhookEvent.objects.update(received_at=timezone.now() - timedelta(days=2))
    assert webhook_events_prune_rejected(older_than_days=1) == 1


def test_chatwoot_redelivery_with_a_long_delivery_id_is_a_duplicate(client, db):
    import time

    from whatsapp.providers.base import hmac_sha256_hex
    from whatsapp.services.providers import provider_create

    provider = provider_create(kind="chatwoot", name="Chatwoot", options={
        "base_url": "https://chat.example.com", "account_id": "1", "inbox_id": "2", "api_token": "t",
        "webhook_secret": "cw-secret"})
    body = b'{"event": "message_created", "id": 1}'
    timestamp = str(int(time.time()))
    headers = {"X-Chatwoot-Signature": "sha256=" + hmac_sha256_hex("cw-secret", timestamp.encode() + b"." + body),
               "X-Chatwoot-Timestamp": timestamp, "X-Chatwoot-Delivery": "d" * 200}
    url = f"/webhooks/chatwoot/{provider.public_id}/"
    first = client.post(url, data=body, content_type="application/json", headers=headers)
    second = client.post(url, data=body, content_type="application/json", headers=headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert json_body(second) == {"status": "duplicate", "event": json_body(first)["event"]}
    assert WebhookEvent.objects.get().duplicate_count == 1


def test_undecryptable_credentials_answer_503(sandbox_provider, client, settings):
    from cryptography.fernet import Fernet

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # not the key it was written with
    response = client.post(f"/webhooks/sandbox/{sandbox_provider.public_id}/", data=b'{"events": []}',
                             content_type="application/json")
    assert response.status_code == 503
    assert "retry" in json_body(response)["error"]
