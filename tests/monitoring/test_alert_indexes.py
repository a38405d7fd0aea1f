"""The indexes the alert windows read (whatsapp migration 0015): a rerun after an interrupted concurrent build
builds again an index the interruption left invalid, instead of keeping it because its name exists."""

import importlib

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from tests.conftest import customer
from whatsapp.models import Message
from whatsapp.providers.events import MessageStatus

indexes = importlib.import_module("whatsapp.migrations.0015_alert_window_indexes")

# CREATE and DROP INDEX CONCURRENTLY cannot run inside a transaction.
pytestmark = pytest.mark.django_db(transaction=True)

NAME = "message_failed_at_idx"


def index_row(name: str) -> tuple[int, bool, str] | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexrelid::bigint, indisvalid, pg_get_indexdef(indexrelid) FROM pg_index "
                       "WHERE indexrelid = to_regclass(%s)", [name])
        return cursor.fetchone()


def run_migration() -> None:
    with connection.schema_editor(atomic=False) as editor:
        indexes.create_indexes(None, editor)


def interrupted_build(name: str) -> None:
    """Leave `name` as an interrupted concurrent build does: present, and marked invalid. A unique build over
    duplicate rows fails halfway, as a cancelled one would."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        with pytest.raises(IntegrityError):
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON whatsapp_message (failed_at) "
                           f"WHERE failed_at IS NOT NULL")


def test_an_index_left_invalid_by_an_interrupted_build_is_built_again(sandbox_provider):
    conversation = customer(sandbox_provider).conversations.get()
    failed_at = timezone.now()
    for _ in range(2):
        Message.objects.create(provider=sandbox_provider, conversation=conversation,
                               direction=Message.Direction.OUTBOUND, status=MessageStatus.FAILED, text="hello",
                               failed_at=failed_at)
    try:
        interrupted_build(NAME)
        assert index_row(NAME)[1] is False

        run_migration()
        _, valid, definition = index_row(NAME)
        assert valid and "UNIQUE" not in definition and "WHERE (failed_at IS NOT NULL)" in definition

        # A rerun over finished indexes leaves them as they are.
        before = {name: index_row(name) for name, *_ in indexes.INDEXES}
        run_migration()
        assert {name: index_row(name) for name, *_ in indexes.INDEXES} == before
    finally:
        run_migration()  # never leave the test database with the invalid index
