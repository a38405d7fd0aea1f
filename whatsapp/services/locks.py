"""Short transaction-scoped locks for keys that have no row to lock yet."""

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
