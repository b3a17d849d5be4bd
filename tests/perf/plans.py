"""What PostgreSQL did running a statement: its plan, as EXPLAIN (ANALYZE, BUFFERS) reports it."""

from __future__ import annotations

import json

from django.db import connection


def executed_plan(statement: str, params) -> dict:
    """The top node of the statement's plan, run with `params` (it runs: use it in a test)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", params)
        plan = cursor.fetchone()[0]
    return (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]


def pages_read(plan: dict) -> int:
    """Pages (buffers) the node and those under it read, from shared buffers or not."""
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


def scans(plan: dict) -> list[tuple[str, str | None]]:
    """The plan's scans, depth first: (node type, index name or None)."""
    found = [(plan["Node Type"], plan.get("Index Name"))] if "Scan" in plan["Node Type"] else []
    for child in plan.get("Plans", []):
        found += scans(child)
    return found
