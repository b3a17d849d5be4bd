"""earn_many looks up its items' idempotency keys by equality on the unique indexes: the look
reads a few pages per item, however many keyed transfers the program already has. With a list
of keys (`key IN (...)`) PostgreSQL read every keyed transfer of the program and filtered them,
so a partner batch's look grew with the ledger (4 ms at 10,000 partner earns)."""

import pytest
from django.db import connection

from points import services
from points.models import PointAccount
from tests.perf.plans import executed_plan, pages_read

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

KEYED = 3000
BATCH = 25


def _pages_read(keyed: list[tuple[int, int, str]]) -> int:
    arrays = [list(column) for column in zip(*keyed, strict=True)]
    return pages_read(executed_plan(services._KEYS_USED_SQL, arrays))


def test_the_key_look_reads_pages_per_item_not_per_keyed_transfer(program, make_member, org):
    # given a program whose ledger holds thousands of keyed earns
    members = [make_member(org) for _ in range(BATCH)]
    services.earn_many(
        items=[
            services.EarnItem(
                program=program,
                member=members[n % BATCH],
                amount=1,
                idempotency_key=f"partner:1:earlier-{n}",
            )
            for n in range(KEYED)
        ]
    )
    with connection.cursor() as cursor:
        # A few thousand rows are one sequential scan away; a ledger is not: plan as at scale.
        cursor.execute("SET LOCAL enable_seqscan = off")
    accounts = {
        account.member_id: account.pk for account in PointAccount.objects.filter(program=program)
    }

    # when a batch of new keys is looked up, and a batch of keys already used
    new = [(accounts[m.pk], program.pk, f"partner:1:new-{n}") for n, m in enumerate(members)]
    used = [(accounts[m.pk], program.pk, f"partner:1:earlier-{n}") for n, m in enumerate(members)]

    # then the look tells them apart ...
    assert not services._idempotency_keys_used(new)
    assert services._idempotency_keys_used(used)
    # ... reading a handful of index pages per item, not the program's keyed transfers
    assert _pages_read(new) < 10 * BATCH < KEYED
