"""The inbox is the queue: drains claim stored rows in batches, and the endpoint's provider lookup is cached."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import json_body
from tests.signing import make_twilio, post_twilio
from whatsapp import hooks
from whatsapp.models import Message, WebhookEvent
from whatsapp.services import webhooks
from whatsapp.services.providers import provider_apply_options
from whatsapp.services.webhooks import webhook_inbox_drain


def _body(number: int, *, sender: str | None = None) -> bytes:
    return json.dumps({"events": [{
        "type": "message", "id": f"sbx-drain-{number:05d}", "from": sender or f"+1555200{number:04d}",
        "name": f"Customer {number}", "text": f"message {number}", "timestamp": 1795430400 + number,
    }]}).encode()


def _post_many(provider, post, count: int, **kwargs) -> list[int]:
    ids = []
    for number in range(count):
        response = post(provider, _body(number, **kwargs))
        assert response.status_code == 200, response.content
        ids.append(json_body(response)["event"])
    return ids


@pytest.mark.django_db
def test_a_batch_is_applied_with_each_rows_contacts_and_archive(sandbox_provider, post_sandbox):
    ids = _post_many(sandbox_provider, post_sandbox, 7)
    assert WebhookEvent.objects.filter(status="pending").count() == 7

    assert webhook_inbox_drain(batch_size=3, seconds=60) == 7

    events = WebhookEvent.objects.filter(pk__in=ids).order_by("pk")
    assert [(e.status, e.attempts, e.event_count) for e in events] == [("processed", 1, 1)] * 7
    assert all(e.archive_status == "pending" for e in events)
    assert [e.contacts.get().profile_name for e in events] == [f"Customer {n}" for n in range(7)]
    assert sorted(Message.objects.values_list("text", flat=True)) == sorted(f"message {n}" for n in range(7))


@pytest.mark.django_db
def test_messages_of_one_contact_keep_their_order_in_a_batch(sandbox_provider, post_sandbox):
    _post_many(sandbox_provider, post_sandbox, 5, sender="+15552009999")
    webhook_inbox_drain()
    messages = Message.objects.order_by("pk")
    assert [m.text for m in messages] == [f"message {n}" for n in range(5)]
    assert messages.values("conversation").distinct().count() == 1


@pytest.mark.django_db
def test_a_row_that_breaks_its_batch_does_not_hold_back_the_others(sandbox_provider, post_sandbox, monkeypatch):
    ids = _post_many(sandbox_provider, post_sandbox, 4)
    conclude = webhooks._conclude

    def fails_for_the_third(event, outcome):
        if event.pk == ids[2] and not outcome.permanent:  # its attempt fails; recording that failure works
            raise ValueError("this row cannot be concluded")
        conclude(event, outcome)

    monkeypatch.setattr(webhooks, "_conclude", fails_for_the_third)
    assert webhook_inbox_drain() == 4

    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert [statuses[i] for i in ids] == ["processed", "processed", "failed", "processed"]
    broken = WebhookEvent.objects.get(pk=ids[2])
    assert "this row cannot be concluded" in broken.last_error and broken.next_attempt_at is None
    # Nothing of the broken row's attempt was kept; the others' messages were.
    assert sorted(Message.objects.values_list("text", flat=True)) == ["message 0", "message 1", "message 3"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_share_the_inbox_without_applying_a_row_twice(sandbox_provider, post_sandbox):
    ids = _post_many(sandbox_provider, post_sandbox, 60)
    counts: list[int] = []
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            counts.append(webhook_inbox_drain(batch_size=4, seconds=60))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sum(counts) == 60
    assert set(WebhookEvent.objects.filter(pk__in=ids).values_list("status", "attempts")) == {("processed", 1)}
    assert Message.objects.count() == 60
    assert sum(Message.objects.values_list("duplicate_count", flat=True)) == 0


@pytest.mark.django_db
def test_a_redelivery_is_one_row_counted_as_a_duplicate(client):
    provider = make_twilio()
    form = {"MessageSid": "SM0001", "From": "whatsapp:+15551230001", "Body": "hi"}
    first, again = (post_twilio(client, provider, form, **{"I-Twilio-Idempotency-Token": "token-1"})
                    for _ in range(2))
    assert first.status_code == again.status_code == 200
    event = WebhookEvent.objects.get()
    assert (first["X-Webhook-Event"], again["X-Webhook-Event"]) == (str(event.pk), str(event.pk))
    assert event.duplicate_count == 1


@pytest.mark.django_db
def test_the_endpoint_sees_a_changed_secret_and_a_deactivation_at_once(sandbox_provider, post_sandbox):
    assert post_sandbox(sandbox_provider, _body(1)).status_code == 200  # cached from here on

    provider_apply_options(sandbox_provider, {"webhook_secret": "a-brand-new-secret"})
    sandbox_provider.save()
    assert post_sandbox(sandbox_provider, _body(2)).status_code == 200  # signed with the new secret

    sandbox_provider.is_active = False
    sandbox_provider.save(update_fields=["is_active"])
    response = post_sandbox(sandbox_provider, _body(3))
    assert response.status_code == 404


def _message(number: int, *, sender: str, at: int, text: str = "", quoting: str = "", name: str = "Ana") -> dict:
    event = {"type": "message", "id": f"sbx-bulk-{number:05d}", "from": sender, "name": name,
             "text": text or f"message {number}", "timestamp": at}
    if quoting:
        event["reply_to"] = quoting
    return event


def _post_events(provider, post, *events: dict) -> int:
    response = post(provider, json.dumps({"events": list(events)}).encode())
    assert response.status_code == 200, response.content
    return json_body(response)["event"]


@pytest.mark.django_db
def test_a_batch_keeps_sessions_duplicates_and_new_people_as_one_at_a_time_would(sandbox_provider, post_sandbox):
    start = 1795430400
    day = 24 * 3600
    _post_events(sandbox_provider, post_sandbox, _message(1, sender="+15552000001", at=start))
    # The same message delivered again in another request, and a message 30 hours later: a new session.
    _post_events(sandbox_provider, post_sandbox, _message(1, sender="+15552000001", at=start),
                 _message(2, sender="+15552000001", at=start + day + 6 * 3600))
    # A new person, twice in the batch, written once with spaces: one contact.
    _post_events(sandbox_provider, post_sandbox, _message(3, sender="+1 555 200 0002", at=start + 60, name="Ben"),
                 _message(4, sender="15552000002", at=start + 120, name="Ben O."))

    assert webhook_inbox_drain() == 3

    first = Message.objects.get(provider_message_id="sbx-bulk-00001")
    assert first.duplicate_count == 1 and Message.objects.count() == 4
    ana = first.conversation
    sessions = list(ana.sessions.order_by("opened_at"))
    assert [s.state for s in sessions] == ["closed", "open"]
    assert sessions[0].closed_at == sessions[0].expires_at
    assert Message.objects.get(provider_message_id="sbx-bulk-00002").session == sessions[1]
    assert ana.last_message_at.timestamp() == start + day + 6 * 3600
    ben = Message.objects.get(provider_message_id="sbx-bulk-00004").conversation
    assert ben.contact.profile_name == "Ben O." and ben.messages.count() == 2
    assert ben.contact.last_seen_at.timestamp() == start + 120
    assert ben.awaiting_reply_since.timestamp() == start + 60


@pytest.mark.django_db
def test_a_message_that_fails_in_a_batch_fails_alone(sandbox_provider, post_sandbox):
    def refuses_boom(message):
        if message.text == "boom":
            raise ValueError("a receiver refused this message")

    hooks.inbound_message_saved.register(refuses_boom)
    try:
        ids = [_post_events(sandbox_provider, post_sandbox, _message(n, sender=f"+155520001{n:02d}", at=1795430400 + n,
                                                                     text="boom" if n == 2 else ""))
               for n in range(4)]
        assert webhook_inbox_drain() == 4
    finally:
        hooks.inbound_message_saved.unregister(refuses_boom)
    statuses = dict(WebhookEvent.objects.values_list("pk", "status"))
    assert [statuses[i] for i in ids] == ["processed", "processed", "failed", "processed"]
    assert "a receiver refused this message" in WebhookEvent.objects.get(pk=ids[2]).last_error
    assert sorted(Message.objects.values_list("text", flat=True)) == ["message 0", "message 1", "message 3"]


@pytest.mark.django_db
def test_a_quote_in_a_batch_points_at_the_stored_message(sandbox_provider, post_sandbox):
    _post_events(sandbox_provider, post_sandbox, _message(1, sender="+15552000001", at=1795430400))
    webhook_inbox_drain()
    _post_events(sandbox_provider, post_sandbox, _message(2, sender="+15552000001", at=1795430460,
                                                          quoting="sbx-bulk-00001"),
                 _message(3, sender="+15552000001", at=1795430470, quoting="sbx-never-stored"))
    webhook_inbox_drain()
    second, third = (Message.objects.get(provider_message_id=f"sbx-bulk-0000{n}") for n in (2, 3))
    assert second.reply_to == Message.objects.get(provider_message_id="sbx-bulk-00001")
    assert third.reply_to is None and third.content["quoted_message_id"] == "sbx-never-stored"


@pytest.mark.django_db
def test_a_quote_of_a_message_in_the_same_request_is_linked(sandbox_provider, post_sandbox):
    _post_events(sandbox_provider, post_sandbox, _message(1, sender="+15552000001", at=1795430400),
                 _message(2, sender="+15552000003", at=1795430401, quoting="sbx-bulk-00001"))
    webhook_inbox_drain()
    assert (Message.objects.get(provider_message_id="sbx-bulk-00002").reply_to
            == Message.objects.get(provider_message_id="sbx-bulk-00001"))


@pytest.mark.django_db
def test_each_hook_sees_its_message_and_what_came_before_not_after(sandbox_provider, post_sandbox):
    seen: list[tuple[str, int]] = []

    def count_at_hook_time(message):
        seen.append((message.text, message.conversation.messages.count()))

    hooks.inbound_message_saved.register(count_at_hook_time)
    try:
        _post_events(sandbox_provider, post_sandbox, *(_message(n, sender="+15552000001", at=1795430400 + n)
                                                       for n in range(3)),
                     _message(9, sender="+15552000009", at=1795430400))
        webhook_inbox_drain()
    finally:
        hooks.inbound_message_saved.unregister(count_at_hook_time)
    assert sorted(seen) == [("message 0", 1), ("message 1", 2), ("message 2", 3), ("message 9", 1)]


@pytest.mark.django_db
def test_the_endpoint_returns_the_row_it_stored(sandbox_provider):
    from whatsapp.providers.base import WebhookRequest
    from whatsapp.services.webhooks import webhook_event_record

    request = WebhookRequest(method="POST", public_url="", body=_body(1), headers={}, content_type="application/json")
    event, created = webhook_event_record(kind="sandbox", provider=sandbox_provider, request=request,
                                          remote_addr="203.0.113.9", signature_valid=True)
    stored = WebhookEvent.objects.get(pk=event.pk)
    for name in ("kind", "status", "http_status", "signature_valid", "body_size", "remote_addr", "received_at",
                 "next_attempt_at", "provider_id"):
        assert getattr(event, name) == getattr(stored, name), name
    assert created and bytes(stored.body) == _body(1) and event.signature_valid is True


@pytest.mark.django_db
def test_a_row_whose_drain_died_comes_back_alone_and_is_given_up_in_the_end(sandbox_provider, post_sandbox,
                                                                           settings):
    ids = _post_many(sandbox_provider, post_sandbox, 3)
    past = timezone.now() - timedelta(seconds=1)
    # What a drain killed mid-batch leaves: claimed, counted, never concluded; its lease over.
    WebhookEvent.objects.filter(pk__in=ids).update(claimed_at=past, attempts=1, next_attempt_at=past)
    WebhookEvent.objects.filter(pk=ids[2]).update(attempts=settings.WEBHOOK_MAX_ATTEMPTS)

    assert webhook_inbox_drain() == 3

    rows = {row.pk: row for row in WebhookEvent.objects.filter(pk__in=ids)}
    assert [(rows[i].status, rows[i].attempts) for i in ids[:2]] == [("processed", 2), ("processed", 2)]
    assert rows[ids[2]].status == "failed" and rows[ids[2]].next_attempt_at is None
    assert "stopped" in rows[ids[2]].last_error and rows[ids[0]].claimed_at is None
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_webhooks_are_stored_while_the_shared_cache_is_down(sandbox_provider, post_sandbox, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0",
                                   "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}}
    provider_apply_options(sandbox_provider, {"webhook_secret": "rotated-while-redis-is-down"})
    sandbox_provider.save()  # saving works, and this process sees the new secret at once
    response = post_sandbox(sandbox_provider, _body(1))
    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.get().status == "pending"


@pytest.mark.django_db
def test_a_batch_holds_no_more_than_its_bytes_of_bodies(sandbox_provider, post_sandbox, settings):
    ids = _post_many(sandbox_provider, post_sandbox, 5)
    settings.WEBHOOK_DRAIN_BATCH_BYTES = 2 * len(_body(1)) + 10  # two rows' worth
    assert webhook_inbox_drain(batch_size=100, seconds=0) == 2  # one batch, cut by size; out of time
    assert WebhookEvent.objects.filter(pk__in=ids, status="pending").count() == 3
    assert webhook_inbox_drain(batch_size=100, seconds=60) == 3
    settings.WEBHOOK_DRAIN_BATCH_BYTES = 1  # a body larger than the limit still goes, alone
    _post_many(sandbox_provider, post_sandbox, 1)
    assert webhook_inbox_drain() == 1
