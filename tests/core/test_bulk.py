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
