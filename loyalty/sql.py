"""Hand-written SQL for the hot paths (issue 10), with the ORM's own conversions.

Building a query with the ORM costs about as much Python as everything else a request does
(2-3 ms a query on a busy 2-core machine, bench/). The few statements that every EAI, partner
and balance request runs are written here instead, once, as SQL strings built from the models'
own table and column names at import time. Values are always bound parameters.

On PostgreSQL these statements go through a server-side binding cursor and are prepared on
their connection (DB_PREPARED_STATEMENTS, on by default): the server plans each once per
connection, not once per request. Everything else keeps Django's client-side binding.
Errors are Django's (its error wrapper) and, whenever a query log or an execute wrapper is on
(the query-count tests), statements go through Django's cursor wrapper and are counted; when
neither is on, one kept cursor per connection runs them with the same checks, for less Python.

Rows come back as model instances through `Columns`, which applies the same database
converters the ORM would (SQLite stores UUIDs as hex and datetimes as text).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from functools import cached_property

from django.db import DEFAULT_DB_ALIAS, connections
from django.db import connection as default_connection
from django.db.backends.utils import CursorDebugWrapper
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init


def _prepared_statements(connection) -> bool:
    options = connection.settings_dict.get("OPTIONS", {})
    return connection.vendor == "postgresql" and "prepare_threshold" in options


@contextmanager
def cursor(connection=default_connection):
    """A cursor for hot-path statements: prepared server-side on PostgreSQL."""
    if connection is default_connection:
        # The real wrapper, once: each attribute read through django.db.connection's proxy
        # costs a thread-local look-up, and a statement makes about ten of them.
        connection = connections[DEFAULT_DB_ALIAS]
    if not _prepared_statements(connection):
        with connection.cursor() as plain:
            yield plain
        return
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    if not (connection.queries_logged or connection.execute_wrappers):
        # The usual case: no query log and no execute wrappers to run, so Django's cursor
        # wrapper would only add its checks, which are made here, at half the cost of a
        # statement; and one cursor serves every statement on the connection.
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors:
            yield _kept_cursor(connection, ServerBindingCursor)
        return
    with connection.wrap_database_errors:
        # The connection's prepare_threshold (settings) prepares these on first use; Django's
        # own client-side binding cursors are never prepared.
        raw = ServerBindingCursor(connection.connection)
    wrapped = (
        _LoggedCursor(raw, connection) if connection.queries_logged else connection.make_cursor(raw)
    )
    with wrapped:
        yield wrapped


def _kept_cursor(connection, cursor_class):
    """The connection's own server-binding cursor, made on first use and replaced along with
    the database connection. A client-side cursor holds nothing on the server, and each
    execute() starts afresh, so reusing it is safe."""
    kept = connection.__dict__.get("_loyalty_hot_cursor")
    if kept is None or kept.connection is not connection.connection or kept.closed:
        kept = connection._loyalty_hot_cursor = cursor_class(connection.connection)
    return kept


class _LoggedCursor(CursorDebugWrapper):
    """Django's query log for prepared statements: psycopg keeps no text of a server-bound
    query, so the log shows the statement as written (with %s) beside its parameters."""

    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        return super().debug_sql(sql, params, use_last_executed_query=False, many=many)


def fetch_one(sql: str, params: Sequence = (), connection=default_connection) -> tuple | None:
    with cursor(connection) as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def fetch_all(sql: str, params: Sequence = (), connection=default_connection) -> list[tuple]:
    with cursor(connection) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def execute(sql: str, params: Sequence = (), connection=default_connection) -> int:
    """Run a statement; return its row count."""
    with cursor(connection) as cur:
        cur.execute(sql, params)
        return cur.rowcount


def execute_many(sql: str, rows: Sequence[Sequence], connection=default_connection) -> None:
    """Run a statement once per row, as one batch (psycopg pipelines it on PostgreSQL); a
    single row runs as a plain prepared statement."""
    with cursor(connection) as cur:
        if len(rows) == 1:
            cur.execute(sql, rows[0])
        else:
            cur.executemany(sql, rows)


def param(model: type[Model], field_name: str, value, connection=default_connection):
    """`value` as the database stores `model.field_name` (a UUID is hex text on SQLite)."""
    return model._meta.get_field(field_name).get_db_prep_value(value, connection)


class Columns:
    """The columns of some of a model's fields, as a SELECT list and back into an instance."""

    def __init__(self, model: type[Model], field_names: Sequence[str] | None = None):
        self.model = model
        meta = model._meta
        self.fields = (
            [meta.get_field(name) for name in field_names]
            if field_names is not None
            else list(meta.concrete_fields)
        )
        self.attnames = [field.attname for field in self.fields]

    def select(self, alias: str) -> str:
        return ", ".join(f'{alias}."{field.column}"' for field in self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    @cached_property
    def _converters(self) -> list[tuple[int, list, object]]:
        table = self.model._meta.db_table
        converters = []
        for index, field in enumerate(self.fields):
            col = field.get_col(table)
            found = default_connection.ops.get_db_converters(col) + col.get_db_converters(
                default_connection
            )
            if found:
                converters.append((index, found, col))
        return converters

    def instance(self, row: Sequence, start: int = 0) -> Model:
        """A model instance (as the ORM would load it) from row[start:start + len(self)]."""
        values = list(row[start : start + len(self.fields)])
        for index, converters, col in self._converters:
            for converter in converters:
                values[index] = converter(values[index], col, default_connection)
        model = self.model
        if pre_init.has_listeners(model) or post_init.has_listeners(model):
            return model.from_db(default_connection.alias, self.attnames, values)
        # What from_db builds, without Model.__init__, which sets each field through its
        # descriptor and sends the init signals (none listen here): a third less time per
        # instance. A fresh instance has no related object cached for a foreign key's
        # descriptor to clear, and a field not selected stays deferred, as from_db leaves it.
        instance = model.__new__(model)
        instance.__dict__.update(zip(self.attnames, values, strict=True))
        state = instance._state = ModelState()
        state.adding = False
        state.db = default_connection.alias
        return instance


def instances(row: Sequence, *columns: Columns) -> tuple[Model | None, ...]:
    """One instance per Columns, read from consecutive parts of a joined row (None for a part
    whose primary key is NULL: an outer join that found nothing)."""
    found, start = [], 0
    for part in columns:
        pk_at = start + part.attnames.index(part.model._meta.pk.attname)
        found.append(part.instance(row, start) if row[pk_at] is not None else None)
        start += len(part)
    return tuple(found)


def for_update(of: str = "", connection=default_connection) -> str:
    """The row-lock clause to append to a SELECT, or nothing where the database has no row locks
    (SQLite serialises writers instead)."""
    if not connection.features.has_select_for_update:
        return ""
    if of and connection.features.has_select_for_update_of:
        return f" FOR UPDATE OF {of}"
    return " FOR UPDATE"
