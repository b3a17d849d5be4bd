"""The tables every earn, hold and callback writes carry no index that another index already
provides: a single-column index whose column leads a composite (same operator class, neither
partial) is one more index to write per row and serves no query the composite does not."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection
from django.db.migrations.state import ProjectState

from integrations.models import DeliveryAttempt, OutboxMessage
from integrations.partner.models import PartnerRequest
from loyalty.migration_operations import DropForeignKeyIndex
from points.models import Hold, PointAccount, PointLot, Transfer

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

HOT_MODELS = (
    Transfer,
    PointLot,
    PointAccount,
    Hold,
    PartnerRequest,
    OutboxMessage,
    DeliveryAttempt,
)
HOT_TABLES = [model._meta.db_table for model in HOT_MODELS]

# Indexes (table, name, the index that covers it) on the given tables.
REDUNDANT_SQL = """
WITH idx AS (
    SELECT i.indrelid::regclass::text AS tbl, c.relname AS name, i.indisunique AS uniq,
           i.indpred IS NOT NULL OR i.indexprs IS NOT NULL AS special,
           string_to_array(i.indkey::text, ' ')::int[] AS cols,
           string_to_array(i.indclass::text, ' ')::oid[] AS opclasses
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid::regclass::text = ANY(%s)
)
SELECT a.tbl, a.name, b.name
FROM idx a JOIN idx b ON a.tbl = b.tbl AND a.name <> b.name
WHERE NOT a.uniq AND NOT a.special AND NOT b.special
  AND cardinality(a.cols) < cardinality(b.cols)
  AND b.cols[1:cardinality(a.cols)] = a.cols
  AND b.opclasses[1:cardinality(a.opclasses)] = a.opclasses
ORDER BY 1, 2
"""


def redundant_indexes(tables: list[str]) -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(REDUNDANT_SQL, [tables])
        return cursor.fetchall()


def test_the_hot_tables_have_no_index_a_composite_already_provides():
    assert redundant_indexes(HOT_TABLES) == []


def test_the_check_finds_such_an_index():
    # Given the index that a migration dropped from transfers' program column, put back
    operation = DropForeignKeyIndex("transfer", "program")
    state = ProjectState.from_apps(apps)
    with connection.schema_editor() as editor:
        operation.database_backwards("points", editor, state, state)
    try:
        # Then the check names it, and the composite that leads with its column
        assert redundant_indexes(HOT_TABLES) == [
            (
                Transfer._meta.db_table,
                "points_transfer_program_id_a336a06f",
                "transfer_program_day_idx",
            )
        ]
    finally:
        with connection.schema_editor() as editor:
            operation.database_forwards("points", editor, state, state)
    assert redundant_indexes(HOT_TABLES) == []
