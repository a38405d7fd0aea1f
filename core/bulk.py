"""
Set-based writes for batches. Django's bulk_update builds one CASE WHEN per row and field, which costs
more to compile than the rows cost to write (100 rows of 12 fields: about 100 ms of CPU); on PostgreSQL the
same update is one `UPDATE ... FROM unnest(...)` with one array parameter per column, so that neither the
statement nor its placeholders grow with the rows (the driver scans every placeholder of a statement in
Python: 600 of them cost more than the update itself).
"""

import re
from collections.abc import Sequence

from django.db import connections, models, router

ROWS_PER_STATEMENT = 1000


def bulk_update_rows(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write `fields` of these saved instances of one model, in one statement per thousand rows. Like
    QuerySet.bulk_update: no signals, no save(), auto_now fields only when named."""
    if not objs or not fields:
        return
    if len({obj.pk for obj in objs}) < len(objs):
        raise ValueError("bulk_update_rows: the same row twice (one statement would write either)")
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objs, list(fields))
        return
    quote = connection.ops.quote_name
    pk = model._meta.pk
    columns = [pk, *(model._meta.get_field(name) for name in fields)]
    # The base type (varchar, not varchar(n)): a cast to a length would cut a longer value silently, where
    # the column itself refuses it as save() would.
    arrays = ", ".join(f"%s::{_base_type(column.cast_db_type(connection))}[]" for column in columns)
    names = ", ".join(quote(column.column) for column in columns)
    assignments = ", ".join(f"{quote(column.column)} = v.{quote(column.column)}" for column in columns[1:])
    # Table and column names from the model's metadata; every value is in a parameter.
    sql = (f"UPDATE {quote(model._meta.db_table)} AS t SET {assignments} "  # noqa: S608
           f"FROM unnest({arrays}) AS v({names}) WHERE t.{quote(pk.column)} = v.{quote(pk.column)}")
    for start in range(0, len(objs), ROWS_PER_STATEMENT):
        chunk = objs[start:start + ROWS_PER_STATEMENT]
        params = [[column.get_db_prep_save(getattr(obj, column.attname), connection) for obj in chunk]
                  for column in columns]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def bulk_insert_rows(objs: Sequence[models.Model]) -> None:
    """
    Insert these new instances of one model, one statement per thousand rows, and set their primary keys.
    Like QuerySet.bulk_create without its options: no save(), no signals, auto_now(_add) fields filled.
    On PostgreSQL one `INSERT ... SELECT FROM unnest(...)` with one array parameter per column: Django's
    bulk_create compiles a placeholder per row and field (a hundred messages of 45 fields: 4,500 values to
    prepare and quote in Python), the larger part of inserting them.
    """
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs)
        return
    quote = connection.ops.quote_name
    pk = model._meta.pk
    columns = [field for field in model._meta.concrete_fields if field is not pk or not pk.db_returning]
    arrays = ", ".join(f"%s::{_base_type(column.cast_db_type(connection))}[]" for column in columns)
    names = ", ".join(quote(column.column) for column in columns)
    # Table and column names from the model's metadata; every value is in a parameter. The rows are inserted,
    # and their keys returned, in the order of the arrays (as bulk_create's RETURNING relies on too).
    sql = (f"INSERT INTO {quote(model._meta.db_table)} ({names}) "  # noqa: S608
           f"SELECT * FROM unnest({arrays}) RETURNING {quote(pk.column)}")
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="bulk_insert_rows")
    for start in range(0, len(objs), ROWS_PER_STATEMENT):
        chunk = objs[start:start + ROWS_PER_STATEMENT]
        params = [[column.get_db_prep_save(column.pre_save(obj, True), connection) for obj in chunk]
                  for column in columns]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            keys = [row[0] for row in cursor.fetchall()]
        for obj, key in zip(chunk, keys, strict=True):
            setattr(obj, pk.attname, key)
            obj._state.adding, obj._state.db = False, connection.alias


def _base_type(db_type: str) -> str:
    return re.sub(r"\(\d+(,\s*\d+)?\)$", "", db_type)
