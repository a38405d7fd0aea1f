"""
Odd input, signed: every webhook endpoint answers it with a 4xx and a readable reason or stores it, and
every stored event ends `processed` (its updates that cannot be stored listed on it) or `failed` with a
reason; only transient failures are retried, and only WEBHOOK_MAX_ATTEMPTS times.
"""

import io
import json
import logging
from datetime import timedelta

import pytest
from django.db import DataError, OperationalError
from django.utils import timezone

from tests.conftest import event_id, fixture_bytes, json_body
from tests.signing import (
    META_PHONE_NUMBER_ID,
    make_chatwoot,
    make_meta,
    make_twilio,
    post_chatwoot,
    post_meta,
    post_twilio,
    webhook_path,
)
from whatsapp import sandbox_phone
from whatsapp.models import Message, WebhookEvent
from whatsapp.services.webhooks import webhook_event_process, webhook_event_replay, webhook_events_requeue_due

pytestmark = pytest.mark.django_db


def _meta_body(messages=(), statuses=()) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": META_PHONE_NUMBER_ID},
             "contacts": [{"wa_id": "15551230001", "profile": {"name": "Ana"}}],
             "messages": list(messages), "statuses": list(statuses)}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}).encode()


def _meta_text(message_id: str, text: str = "hi", **fields) -> dict:
    return {"from": "15551230001", "id": message_id, "timestamp": "1767225600", "type": "text",
            "text": {"body": text}, **fields}


def _chatwoot_body(**changes) -> bytes:
    payload = json.loads(fixture_bytes("chatwoot", "message_created_text.json"))
    return json.dumps({**payload, **changes}).encode()


def _processed(response) -> WebhookEvent:
    assert response.status_code == 200, response.content
    event = webhook_event_process(event_id(response))
    assert event.status == "processed", event.last_error
    return event


def _post_sandbox(client, provider, body: bytes, **extra):
    signature = sandbox_phone.signed_headers(provider, body)["X-Sandbox-Signature"]
    return client.post(webhook_path(provider), data=body, content_type="application/json",
                       HTTP_X_SANDBOX_SIGNATURE=signature, **extra)


# --- updates that cannot be stored are listed, the others applied ---------------------------------

def test_meta_ids_too_long_for_their_column_are_listed_and_the_other_updates_applied(client):
    provider = make_meta()
    body = _meta_body(
        messages=[_meta_text("wamid.ok-1", "first"), _meta_text("wamid." + "x" * 200),
                  _meta_text("wamid.ok-3", "third")],
        statuses=[{"id": "wamid." + "s" * 300, "status": "delivered", "timestamp": "1767225600",
                   "recipient_id": "15551230001"}])
    event = _processed(post_meta(client, provider, body))
    assert set(Message.objects.values_list("text", flat=True)) == {"first", "third"}
    assert [(item["update"], item["kind"]) for item in event.invalid_updates] == [(1, "InboundMessage"),
                                                                                  (3, "StatusUpdate")]
    assert all("at most 128 fit" in item["reason"] for item in event.invalid_updates)
    assert (event.attempts, event.next_attempt_at, event.last_error) == (1, None, "")


def test_meta_identity_too_long_spoils_only_its_own_update(client):
    provider = make_meta()
    body = _meta_body(messages=[_meta_text("wamid.ok-1", "kept"),
                                _meta_text("wamid.bad-2", from_user_id="US." + "9" * 300)])
    event = _processed(post_meta(client, provider, body))
    assert list(Message.objects.values_list("text", flat=True)) == ["kept"]
    assert event.invalid_updates[0]["update"] == 1 and "identity value" in event.invalid_updates[0]["reason"]


@pytest.mark.parametrize("attachments", [5, True, "files", {"file_type": "image"}])
def test_chatwoot_attachments_of_the_wrong_type_are_read_as_none(client, attachments):
    provider = make_chatwoot()
    _processed(post_chatwoot(client, provider, _chatwoot_body(attachments=attachments)))
    assert Message.objects.get().message_type == "text"


@pytest.mark.parametrize("created_at", [2**70, -(2**70), "2026-13-45T00:00:00Z", "2026-01-01T00:00:00+99:00"])
def test_chatwoot_times_that_do_not_read_are_the_time_received(client, created_at):
    provider = make_chatwoot()
    event = _processed(post_chatwoot(client, provider, _chatwoot_body(created_at=created_at)))
    assert abs(Message.objects.get().received_at - event.received_at) < timedelta(minutes=1)


def test_a_time_the_session_window_cannot_follow_is_listed(client):
    provider = make_chatwoot()
    event = _processed(post_chatwoot(client, provider, _chatwoot_body(created_at="9999-12-31T23:59:59Z")))
    assert not Message.objects.exists()
    assert "timestamp 9999-12-31T23:59:59+00:00 is out of range" in event.invalid_updates[0]["reason"]


def test_twilio_nul_characters_are_cleaned_before_storing(client):
    provider = make_twilio()
    response = post_twilio(client, provider, {"MessageSid": "SM\x00nul", "From": "whatsapp:+15551230001",
                                              "Body": "a\x00b", "ProfileName": "N\x00ul"})
    _processed(response)
    message = Message.objects.get()
    assert (message.provider_message_id, message.text) == ("SMnul", "ab")


def test_twilio_message_sid_that_is_only_a_nul_is_refused_with_a_reason(client):
    provider = make_twilio()
    response = post_twilio(client, provider, {"MessageSid": "\x00", "From": "whatsapp:+15551230001", "Body": "hi"})
    assert response.status_code == 400 and "MessageSid" in json_body(response)["error"]
    assert WebhookEvent.objects.get().status == "rejected"


# --- bodies: one decoder for the check and the parser --------------------------------------------

def test_a_body_with_a_utf8_bom_is_read(client, sandbox_provider):
    body = b"\xef\xbb\xbf" + fixture_bytes("sandbox", "inbound_text.json")
    _processed(_post_sandbox(client, sandbox_provider, body))
    assert Message.objects.count() == 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_utf16_or_utf32_body_is_read_as_json_says(client, encoding):
    provider = make_meta()
    body = _meta_body(messages=[_meta_text("wamid.utf16", "Olá ☃")]).decode().encode(encoding)
    _processed(post_meta(client, provider, body))
    assert Message.objects.get().text == "Olá ☃"


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper than 64 levels"),
    (b'{"events": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper than 64 levels"),
    (b'{"events": [{"type": "message", "id": ' + b"9" * 5000 + b"}]}", "more than 100 digits"),
    (b'{"events": [{"type": "message", "timestamp": 1e400}]}', "out of range"),
    (b'{"events": [{"type": "message", "timestamp": NaN}]}', "NaN is not a JSON value"),
    (b'{"events": ["\xed\xa0\x80"], "x": "\xff"}', "not UTF-8"),
])
def test_signed_bodies_that_cannot_be_held_get_400_with_the_reason(client, sandbox_provider, body, reason):
    response = _post_sandbox(client, sandbox_provider, body)
    assert response.status_code == 400 and reason in json_body(response)["error"]
    rejected = WebhookEvent.objects.get()
    assert (rejected.status, rejected.http_status, rejected.signature_valid) == ("rejected", 400, True)
    assert reason in rejected.rejection_reason


def test_a_huge_unsigned_content_length_is_413_not_a_database_error(client, sandbox_provider, caplog):
    with caplog.at_level(logging.ERROR):
        response = client.post(webhook_path(sandbox_provider), data=b"{}", content_type="application/json",
                               CONTENT_LENGTH="2147483648")
    assert response.status_code == 413
    assert WebhookEvent.objects.get().body_size == 2147483648
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def _chunked(client, provider, body: bytes, *, terminated: bool = True):
    environ = {"wsgi.input": io.BytesIO(body), "HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_TYPE": "application/json",
               "HTTP_X_SANDBOX_SIGNATURE": sandbox_phone.signed_headers(provider, body)["X-Sandbox-Signature"]}
    if terminated:
        environ["wsgi.input_terminated"] = True
    return client.generic("POST", webhook_path(provider), **environ)


def test_a_chunked_body_is_read(client, sandbox_provider):
    _processed(_chunked(client, sandbox_provider, fixture_bytes("sandbox", "inbound_text.json")))
    assert Message.objects.count() == 1


def test_a_chunked_body_past_the_limit_is_413(client, sandbox_provider, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 100
    response = _chunked(client, sandbox_provider, b'{"events": [], "pad": "' + b"x" * 200 + b'"}')
    assert response.status_code == 413


def test_a_chunked_body_the_server_cannot_end_is_411(client, sandbox_provider):
    response = _chunked(client, sandbox_provider, fixture_bytes("sandbox", "inbound_text.json"), terminated=False)
    assert response.status_code == 411 and "Content-Length" in json_body(response)["error"]


# --- retries: transient failures only, bounded ---------------------------------------------------

def _event(client, provider) -> int:
    response = _post_sandbox(client, provider, fixture_bytes("sandbox", "inbound_text.json"))
    assert response.status_code == 200
    return event_id(response)


def _failing(monkeypatch, exc: Exception, target: str = "whatsapp.services.webhooks.event_apply"):
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(target, fail)


def test_transient_failures_are_retried_up_to_the_limit_then_given_up(client, sandbox_provider, settings,
                                                                      monkeypatch):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    _failing(monkeypatch, OperationalError("canceling statement due to lock timeout"))
    pk = _event(client, sandbox_provider)
    for attempt in (1, 2):
        event = webhook_event_process(pk)
        assert (event.status, event.attempts) == ("failed", attempt) and event.next_attempt_at > timezone.now()
    event = webhook_event_process(pk)
    assert (event.status, event.attempts, event.next_attempt_at) == ("failed", 3, None)
    assert event.last_error.startswith("gave up after 3 attempt(s)") and "lock timeout" in event.last_error
    assert webhook_events_requeue_due() == 0
    assert webhook_event_process(pk).attempts == 3  # given up: only a replay brings it back
    monkeypatch.undo()
    webhook_event_replay(event=event)
    assert webhook_event_process(pk).status == "processed"


def test_a_permanent_error_fails_the_event_at_once_with_the_reason(client, sandbox_provider, monkeypatch):
    _failing(monkeypatch, ValueError("a \x00 value no column takes"))
    event = webhook_event_process(_event(client, sandbox_provider))
    assert (event.status, event.attempts, event.next_attempt_at) == ("failed", 1, None)
    assert "ValueError: a  value no column takes" in event.last_error
    stored = WebhookEvent.objects.get(pk=event.pk)
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("failed", 1, None)


@pytest.mark.parametrize(("exc", "retried"), [(OperationalError("server closed the connection"), True),
                                               (DataError("value too long"), False)])
def test_the_attempt_is_recorded_even_when_its_own_transaction_fails(client, sandbox_provider, monkeypatch, exc,
                                                                     retried):
    _failing(monkeypatch, exc, "whatsapp.services.webhooks._apply_rows")
    pk = _event(client, sandbox_provider)
    webhook_event_process(pk)
    event = WebhookEvent.objects.get(pk=pk)
    assert (event.status, event.attempts) == ("failed", 1)
    assert type(exc).__name__ in event.last_error
    assert (event.next_attempt_at is not None) is retried


def test_health_counts_events_given_up_and_the_oldest_pending(client, sandbox_provider, monkeypatch):
    _failing(monkeypatch, ValueError("broken"))
    webhook_event_process(_event(client, sandbox_provider))
    _event(client, sandbox_provider)
    WebhookEvent.objects.filter(status="pending").update(received_at=timezone.now() - timedelta(minutes=5))
    inbox = json_body(client.get("/health/"))["inbox"]
    assert inbox["failed"] == 1 and inbox["retrying"] == 0 and inbox["oldest_pending_seconds"] >= 299


def test_admin_tells_events_given_up_from_those_retried(admin_client_logged, sandbox_provider, monkeypatch):
    client = admin_client_logged
    _failing(monkeypatch, ValueError("broken"))
    given_up = webhook_event_process(_event(client, sandbox_provider))
    _failing(monkeypatch, OperationalError("busy"))
    retrying = webhook_event_process(_event(client, sandbox_provider))
    page = client.get("/admin/whatsapp/webhookevent/", {"outcome": "gave_up"})
    assert page.status_code == 200
    assert list(page.context["cl"].queryset) == [given_up]
    page = client.get("/admin/whatsapp/webhookevent/", {"outcome": "retrying"})
    assert list(page.context["cl"].queryset) == [retrying]
    assert b"gave up" in client.get("/admin/whatsapp/webhookevent/").content
