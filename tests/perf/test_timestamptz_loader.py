"""The backend's timestamptz loader: Django's result, with psycopg's compiled loading."""

import datetime as dt

import pytest
from django.db import DataError, connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format

from loyalty.backends.postgresql.base import TIMESTAMPTZ_OID, timestamptz_loader

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

VALUES = (
    "SELECT now(), '2020-01-01 00:00:00.000001+05'::timestamptz, "
    "'0001-01-01 00:00:00+00'::timestamptz, '9999-12-31 23:59:59.999999+00'::timestamptz, "
    "'2026-03-29 01:30:00 Europe/Paris'::timestamptz, NULL::timestamptz"
)


def _rows(cursor):
    cursor.execute(VALUES)
    return cursor.fetchone()


def test_connections_read_timestamptz_with_the_backends_loader_and_get_djangos_values():
    # given a connection of the backend, and a cursor with Django's own loader on it
    with connection.cursor() as ours:
        loader = ours.cursor.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        mine = _rows(ours)
    assert loader is timestamptz_loader(connection.timezone)
    with connection.cursor() as theirs:
        register_tzloader(connection.timezone, theirs.cursor)
        assert theirs.cursor.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT) is not loader
        django = _rows(theirs)

    # then both read the same instants with the same tzinfo (now() aside, read twice)
    assert mine[1:] == django[1:]
    assert [value.tzinfo for value in mine if value] == [dt.UTC] * 5
    assert [value.tzinfo for value in django if value] == [dt.UTC] * 5
    assert mine[1] == dt.datetime(2019, 12, 31, 19, 0, 0, 1, tzinfo=dt.UTC)


def test_a_timestamp_python_cannot_hold_is_refused_as_djangos_loader_refuses_it():
    for djangos in (False, True):
        with connection.cursor() as cursor, pytest.raises(DataError, match="infinity"):
            if djangos:
                register_tzloader(connection.timezone, cursor.cursor)
            cursor.execute("SELECT 'infinity'::timestamptz")
            cursor.fetchone()
