"""Django's PostgreSQL backend with a health check that costs no round trip when it can.

DB_CONN_HEALTH_CHECKS makes Django check a reused connection before each request's first query
with `SELECT 1`: a round trip on every request. A server that closed the connection (a restart,
pg_terminate_backend, an idle timeout) has sent an error and EOF first, so the socket is
readable. An idle connection with nothing to read is taken as usable without a query; anything
waiting on the socket gets Django's SELECT 1 as before. A silently vanished server passes both
checks alike and fails the request's first query (a 503, as without health checks).
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
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
