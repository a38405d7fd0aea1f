"""Transaction-scoped helpers: locks for keys that have no row to lock yet, commit durability."""

import hashlib

from django.db import connection


def lock_key(*parts: object) -> None:
    """
    Hold a lock on a key until the current transaction ends (PostgreSQL advisory lock). Used where two
    transactions race on something that may not exist as a row yet, e.g. a provider message id that a
    status report names before the send has recorded it. SQLite serializes writers anyway: no-op.
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def commit_without_waiting_for_disk() -> None:
    """
    Let the current transaction's COMMIT return before its WAL reaches the disk (PostgreSQL's
    synchronous_commit=off, for this transaction only). Only for work that can be derived again: a
    crash may lose the last fraction of a second of such commits, never corrupt anything, and the
    inputs (inbox rows, committed durably when the webhook was acknowledged) make them again.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
