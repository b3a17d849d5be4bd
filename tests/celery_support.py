"""A real Celery worker on Redis for tests that prove asynchronous behaviour.

The suite runs tasks in-process by default; `celery_worker` switches the app to the Redis broker
(a database number of its own), purges the queue, starts a worker thread sharing the test
database, and switches back afterwards.
"""

from __future__ import annotations

import contextlib

from celery.contrib.testing.worker import start_worker

from loyalty.celery import app


@contextlib.contextmanager
def real_broker():
    """Tasks go to the Redis broker (no worker yet): what production does when workers are down.

    The broker URL itself is set by loyalty.settings.test (a Redis database of the suite's own).
    """
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield app
    finally:
        app.conf.task_always_eager = previous


def purge_queue() -> None:
    with app.connection_for_write() as connection:
        app.amqp.queues[app.conf.task_default_queue](connection.default_channel).purge()


@contextlib.contextmanager
def running_worker(concurrency: int = 2):
    """A real worker thread consuming from the Redis broker (use inside real_broker())."""
    with start_worker(
        app,
        concurrency=concurrency,
        pool="threads",
        perform_ping_check=False,
        shutdown_timeout=10,
        loglevel="WARNING",
        queues=[app.conf.task_default_queue],
    ) as worker:
        yield worker
