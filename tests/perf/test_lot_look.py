"""A debit takes points from the account's first lot in spending order (soonest-expiring first,
then the oldest), and PostgreSQL finds that lot as the first entry of lot_spending_order_idx.
With an index that stopped at valid_to, lots without an end (every lot of a program without
validity days) all tied: each debit read and sorted every active lot of the account, a cost
that grew with the member's history."""

import pytest
from django.db import connection

from points import services
from points.models import PointAccount
from tests.perf.plans import executed_plan

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

LOTS = 300
OTHERS = 30


def _index_scans(plan: dict) -> list[dict]:
    found = [plan] if plan["Node Type"].startswith("Index") else []
    for child in plan.get("Plans", []):
        found += _index_scans(child)
    return found


def test_a_debit_reads_the_first_lot_not_every_lot(program, member, make_member, org):
    # given a member with hundreds of lots that never expire, among other members' lots
    others = [make_member(org) for _ in range(OTHERS)]
    services.earn_many(
        items=[
            services.EarnItem(program=program, member=holder, amount=2)
            for holder in [member] * LOTS + others * (LOTS // 10)
        ]
    )
    account = PointAccount.objects.get(program=program, member=member)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE points_pointlot")
        cursor.execute("SET LOCAL enable_seqscan = off")  # plan as at scale

    # when the first lot in spending order is looked up, as a debit looks it up
    plan = executed_plan(services._ACTIVE_LOTS_SQL, [account.pk, 1])

    # then the index hands it over first: one entry read, nothing sorted
    (scan,) = _index_scans(plan)
    assert scan["Index Name"] == "lot_spending_order_idx"
    assert scan["Actual Rows"] == 1
    assert "Sort" not in str(plan)
