"""Django's PostgreSQL backend with a health check that costs no round trip when it can.

DB_CONN_HEALTH_CHECKS makes Django check a reused connection before each request's first query
with `SELECT 1`: a round trip on every request. A server that closed the connection (a restart,
pg_terminate_backend, an idle timeout) has sent an error and EOF first, so the socket is
readable. An idle connection with nothing to read is taken as usable without a query; anything
waiting on the socket gets Django's SELECT 1 as before. A silently vanished server passes both
checks alike and fails the request's first query (a 503, as without health checks).

It also reads timestamptz columns with psycopg's compiled loader: Django registers a subclass of
psycopg's pure-Python one (to set the time zone), which costs about 3 microseconds a value, a
noticeable share of the hot paths' CPU (the partner API's accept reads a dozen). The result is
the same datetime, with the same tzinfo.
"""

from __future__ import annotations

import functools
import select

import psycopg
from django.db.backends.postgresql import base
from psycopg.adapt import Loader
from psycopg.pq import Format, TransactionStatus

# psycopg's own timestamptz loader: the compiled one with psycopg[binary] (the requirement).
TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid
_PSYCOPG_TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)


@functools.cache
def timestamptz_loader(timezone) -> type[Loader]:
    """A loader that does what Django's does (psycopg's loading, then the connection's
    `timezone` set as tzinfo) with psycopg's compiled loading. `timezone` is what Django's
    cursor creation compares to decide whether to register its own loader."""

    class TimestamptzLoader(Loader):
        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            self._load = _PSYCOPG_TIMESTAMPTZ_LOADER(oid, context).load

        def load(self, data):
            return self._load(data).replace(tzinfo=timezone)

    TimestamptzLoader.timezone = timezone
    return TimestamptzLoader


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        connection.adapters.register_loader("timestamptz", timestamptz_loader(self.timezone))
        return connection

    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status == TransactionStatus.IDLE:
            try:
                poller = select.poll()
                poller.register(connection.fileno(), select.POLLIN)
                if not poller.poll(0):
                    return True
            except (OSError, ValueError):
                return False
        return super().is_usable()
