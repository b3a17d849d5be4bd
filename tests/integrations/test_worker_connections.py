"""Celery workers keep their database connection from task to task, as web processes keep theirs
between requests (DB_CONN_MAX_AGE), instead of opening a new one for every task."""

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from integrations.partner.tasks import partner_request_process_task
from loyalty.celery import app, close_old_database_connections

pytestmark = pytest.mark.django_db(transaction=True)


def run_task_signals(task):
    """What a worker runs around a task: Celery's Django fixup, then this project's handler."""
    fixup = DjangoWorkerFixup(app)
    fixup.on_task_prerun(sender=task)
    close_old_database_connections(sender=task)
    fixup.on_task_postrun(sender=task)
    close_old_database_connections(sender=task)


def connect_with_max_age(monkeypatch, seconds):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", seconds)
    connection.close()
    connection.ensure_connection()
    return connection.connection


def test_a_task_keeps_a_connection_within_its_max_age(monkeypatch):
    # given a worker's connection, opened with a CONN_MAX_AGE of a minute
    opened = connect_with_max_age(monkeypatch, 60)

    # when a task starts and ends, then the connection is still the same one
    run_task_signals(partner_request_process_task)
    assert connection.connection is opened


def test_a_task_closes_a_connection_past_its_max_age(monkeypatch):
    # given a worker's connection that may not be kept (CONN_MAX_AGE 0)
    opened = connect_with_max_age(monkeypatch, 0)

    # when a task starts and ends, then the next query uses a new connection
    run_task_signals(partner_request_process_task)
    connection.ensure_connection()
    assert connection.connection is not opened


def test_a_broken_connection_is_replaced_after_the_task(monkeypatch):
    # given a worker's connection that failed during a task
    opened = connect_with_max_age(monkeypatch, 60)
    connection.errors_occurred = True
    monkeypatch.setattr(connection, "is_usable", lambda: False)

    # when the task ends, then the next task gets a new connection
    run_task_signals(partner_request_process_task)
    connection.ensure_connection()
    assert connection.connection is not opened
