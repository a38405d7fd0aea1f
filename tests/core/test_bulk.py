"""Set-based updates write exactly what the instances hold, NULLs, JSON and text included."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core import bulk
from core.bulk import bulk_update_rows
from whatsapp.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_each_row_gets_its_own_values_in_chunks(monkeypatch):
    monkeypatch.setattr(bulk, "ROWS_PER_STATEMENT", 2)
    now = timezone.now()
    events = [WebhookEvent.objects.create(kind="sandbox", body=b"{}", processed_at=now, attempts=1) for _ in range(5)]
    untouched = WebhookEvent.objects.create(kind="sandbox", body=b"{}", last_error="keep me")
    for number, event in enumerate(events):
        event.attempts = number
        event.last_error = f"it's {number}% \\ done; DROP TABLE x; --" if number % 2 else ""
        event.invalid_updates = [{"update": number, "reason": 'a "quoted" reason'}] if number else []
        event.processed_at = None if number == 3 else now + timedelta(seconds=number)

    bulk_update_rows(events, ["attempts", "last_error", "invalid_updates", "processed_at"])

    for number, event in enumerate(events):
        stored = WebhookEvent.objects.get(pk=event.pk)
        assert (stored.attempts, stored.last_error, stored.invalid_updates, stored.processed_at) == (
            number, event.last_error, event.invalid_updates, event.processed_at)
    assert WebhookEvent.objects.get(pk=untouched.pk).last_error == "keep me"


def test_nothing_to_write_writes_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        bulk_update_rows([], ["attempts"])


def test_inserted_rows_get_their_keys_and_exactly_their_values(monkeypatch, sandbox_provider):
    from contacts.models import Contact
    from whatsapp.models import Conversation, Message

    monkeypatch.setattr(bulk, "ROWS_PER_STATEMENT", 2)
    contact = Contact.objects.create(profile_name="Ana")
    conversation = Conversation.objects.create(provider=sandbox_provider, contact=contact)
    now = timezone.now()
    messages = [Message(provider=sandbox_provider, conversation=conversation, direction="inbound",
                        message_type="text", text=f"it's {n}% \\ done; DROP TABLE x; --" if n % 2 else "",
                        content={"quoted": 'a "quote"', "n": n} if n else {}, provider_message_id=f"sbx-{n}",
                        status="received", received_at=None if n == 3 else now + timedelta(seconds=n))
                for n in range(5)]

    bulk.bulk_insert_rows(messages)

    assert all(message.pk for message in messages) and len({message.pk for message in messages}) == 5
    for n, message in enumerate(messages):
        stored = Message.objects.get(pk=message.pk)
        assert (stored.provider_message_id, stored.text, stored.content, stored.received_at) == (
            f"sbx-{n}", message.text, message.content, message.received_at)
        assert stored.created_at is not None and message._state.adding is False
    assert list(Message.objects.order_by("pk").values_list("provider_message_id", flat=True)) == [
        f"sbx-{n}" for n in range(5)]


def test_nothing_to_insert_inserts_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        bulk.bulk_insert_rows([])
