"""Fast loader of the benchmark data set: members, accounts, lots and transfers by COPY.

The rows it writes keep every ledger invariant (each transfer is an earn from the program's
issued account with a matching active lot, and each account's balance is the sum), so
`verify_ledger` stays clean on the loaded data; members sit in the lifetime tier their
lifetime_earned reaches, as the ledger would have put them.
"""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg

# Each member earns the same amount in every loaded transfer, between 1 and EARN_AMOUNT_MAX points
# by its account id: lifetime totals spread over the demo's tiers (Bronze 0, Silver 1000, Gold
# 5000) instead of every member sitting on one threshold, where each new earn would move a tier.
EARN_AMOUNT_MAX = 30


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_members(
    conn: psycopg.Connection, *, org_id: str, program_id: int, count: int, prefix: str
) -> None:
    """Create `count` members with empty accounts (external ids prefix1..prefixN)."""
    now = _utc_now()
    with conn.cursor() as cur:
        with cur.copy(
            "COPY loyalty_member (id, organization_id, external_id, first_name, last_name, "
            "email, status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(1, count + 1):
                copy.write_row(
                    (
                        uuid.uuid4(),
                        org_id,
                        f"{prefix}{n}",
                        "Bench",
                        f"Member {n}",
                        "",
                        "active",
                        now,
                        now,
                    )
                )
        cur.execute(
            """
            INSERT INTO points_pointaccount (program_id, member_id, kind, balance, held, pending,
                lifetime_earned, updated_at)
            SELECT %s, id, 'member', 0, 0, 0, 0, now() FROM loyalty_member
            WHERE organization_id = %s AND external_id LIKE %s
            """,
            [program_id, org_id, f"{prefix}%"],
        )
    conn.commit()


def load_transfers(
    conn: psycopg.Connection, *, program_id: int, prefix: str, per_member: dict[str, int]
) -> int:
    """Add earn transfers (and their lots) for members by external id; returns rows added.

    Done in SQL with generate_series so a million rows load in seconds.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM points_pointaccount WHERE program_id = %s AND kind = 'issued'",
            [program_id],
        )
        issued_id = cur.fetchone()[0]
        cur.execute(
            """
            SELECT a.id, m.external_id FROM points_pointaccount a
            JOIN loyalty_member m ON m.id = a.member_id
            WHERE a.program_id = %s AND m.external_id LIKE %s
            """,
            [program_id, f"{prefix}%"],
        )
        accounts = cur.fetchall()
        cur.execute(
            "CREATE TEMP TABLE bench_plan (account_id bigint, n int, amount int) ON COMMIT DROP"
        )
        with cur.copy("COPY bench_plan (account_id, n, amount) FROM STDIN") as copy:
            for account_id, external_id in accounts:
                n = per_member.get(external_id, per_member.get("*", 0))
                if n:
                    copy.write_row((account_id, n, 1 + account_id * 7919 % EARN_AMOUNT_MAX))
        # One row per planned transfer, numbered per account, with the running balance.
        cur.execute(
            """
            CREATE TEMP TABLE bench_rows ON COMMIT DROP AS
            SELECT p.account_id, p.amount, a.balance + p.amount * g.i AS balance_after
            FROM bench_plan p
            JOIN points_pointaccount a ON a.id = p.account_id
            CROSS JOIN LATERAL generate_series(1, p.n) AS g(i)
            """
        )
        cur.execute(
            """
            WITH inserted AS (
                INSERT INTO points_transfer (program_id, debit_account_id, credit_account_id,
                    member_account_id, amount, kind, source, description, reference, actor,
                    member_balance_after, created_at)
                SELECT %s, %s, account_id, account_id, amount, 'earn', 'Bench', 'bench data', '',
                    'system:bench', balance_after, now()
                FROM bench_rows ORDER BY account_id, balance_after
                RETURNING id, credit_account_id, amount
            )
            INSERT INTO points_pointlot (account_id, amount, remaining, valid_from, status,
                transfer_id, source, description, reference, actor, created_at)
            SELECT credit_account_id, amount, amount, now(), 'active', id, 'Bench', 'bench data',
                '', 'system:bench', now()
            FROM inserted
            """,
            [program_id, issued_id],
        )
        added = cur.rowcount
        cur.execute(
            """
            UPDATE points_pointaccount a
            SET balance = a.balance + p.amount * p.n,
                lifetime_earned = a.lifetime_earned + p.amount * p.n
            FROM bench_plan p WHERE a.id = p.account_id
            """
        )
        _assign_lifetime_tiers(cur, program_id=program_id)
    conn.commit()
    # The state autovacuum would bring a production ledger to (statistics, visibility map,
    # hint bits), so the workloads do not pay for the bulk load's aftermath. VACUUM runs
    # outside a transaction.
    conn.autocommit = True
    try:
        conn.execute(
            "VACUUM ANALYZE loyalty_member, points_transfer, points_pointlot, "
            "points_pointaccount, engagement_membertier"
        )
    finally:
        conn.autocommit = False
    return added


def _assign_lifetime_tiers(cur: psycopg.Cursor, *, program_id: int) -> None:
    """Put every member in the lifetime tier their lifetime_earned reaches, as the ledger would
    have (without this the first earn of every member would move it, which is not a steady
    state). No tier history rows: the data set starts with these tiers."""
    cur.execute(
        """
        INSERT INTO engagement_membertier (qualifying_points, since, updated_at, member_id,
            program_id, tier_id)
        SELECT a.lifetime_earned, now(), now(), a.member_id, a.program_id, reached.id
        FROM points_pointaccount a
        CROSS JOIN LATERAL (
            SELECT t.id FROM engagement_tier t
            WHERE t.program_id = a.program_id AND t.basis = 'lifetime'
              AND t.threshold <= a.lifetime_earned
            ORDER BY t.threshold DESC LIMIT 1
        ) reached
        WHERE a.program_id = %s AND a.kind = 'member'
        ON CONFLICT (member_id, program_id) DO UPDATE
        SET tier_id = EXCLUDED.tier_id, qualifying_points = EXCLUDED.qualifying_points,
            updated_at = now()
        """,
        [program_id],
    )
