"""Locks for keys that have no row to lock yet, consistent read snapshots, and commit durability."""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


def _key(parts: tuple[object, ...]) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(keys: list[tuple[object, ...]]) -> None:
    """Like lock_key for several keys in one statement, taken in a fixed order so that two
    transactions locking overlapping sets never deadlock."""
    if connection.vendor != "postgresql" or not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
                       [sorted({_key(parts) for parts in keys})])


def lock_key(*parts: object) -> None:
    """
    Hold a lock on a key until the current transaction ends (PostgreSQL advisory lock). Used where two
    transactions race on something that may not exist as a row yet, e.g. a provider message id that a
    status report names before the send has recorded it. SQLite serializes writers anyway: no-op.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_key(parts)])


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


@contextmanager
def try_session_lock(*parts: object) -> Iterator[bool]:
    """
    Hold the lock on a key for the duration of the block if nobody holds it (yields False at once if
    someone does), outside any transaction: for a job that calls the network while holding it, so that
    no database transaction stays open meanwhile. Conflicts with lock_key on the same key.
    SQLite: always True.
    """
    if connection.vendor != "postgresql":
        yield True
        return
    key = _key(parts)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        locked = bool(cursor.fetchone()[0])
    try:
        yield locked
    finally:
        if locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


@contextmanager
def read_snapshot(*, work_mem: str = "") -> Iterator[None]:
    """
    Run the block in one transaction that sees one snapshot of the database (PostgreSQL's REPEATABLE
    READ), so that several statements read mutually consistent rows: e.g. counts folded from one table into
    another between two reads are seen in exactly one of them. Inside a caller's transaction it only joins
    it (the caller chose its isolation). `work_mem` (e.g. "32MB") lets its sorts stay in memory. SQLite
    serializes writers: a plain transaction.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if work_mem:
                    # Sorting memory for this transaction only (a reader that groups many rows).
                    cursor.execute("SELECT set_config('work_mem', %s, true)", [work_mem])
        yield


@contextmanager
def session_lock(*parts: object) -> Iterator[None]:
    """
    Hold the lock on a key for the block, waiting for it if someone holds it, taken outside any transaction:
    for a job that must start its transaction (and so its snapshot) only once it holds the lock. Conflicts
    with try_session_lock and lock_key on the same key. SQLite: no-op.
    """
    if connection.vendor != "postgresql":
        yield
        return
    key = _key(parts)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
