"""A drainer's look for waiting requests stays cheap however many were processed since the last
vacuum: PostgreSQL keeps their entries in the partial index of accepted requests until then,
and only a plain index scan marks them dead as it passes (a bitmap scan reads them every time:
2 ms a look after a 25 s burst in bench/, several looks a second per drainer)."""

import pytest
from django.db import connection

from integrations.partner import services
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from tests.partner.conftest import CALLBACK_URL, submit_accepted
from tests.perf.plans import executed_plan, pages_read, scans

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.usefixtures("public_dns"),
]

PROCESSED = 3000


def _look() -> dict:
    """The plan of one look (services._WAITING_SQL), as PostgreSQL ran it."""
    return executed_plan(services._WAITING_SQL, [0, 200])


def test_a_look_for_waiting_requests_skips_those_processed_since_the_last_vacuum(
    partner, earn_rule, member
):
    # given a burst of requests, accepted and then processed (committed, not yet vacuumed)
    first = submit_accepted(
        partner,
        rule=earn_rule,
        member=member,
        amount=10,
        request_id="burst-0",
        callback_url=CALLBACK_URL,
    )
    fields = {
        field.attname: getattr(first, field.attname)
        for field in PartnerRequest._meta.concrete_fields
        if not field.primary_key
    }
    PartnerRequest.objects.bulk_create(
        [PartnerRequest(**{**fields, "request_id": f"burst-{n}"}) for n in range(1, PROCESSED)],
        batch_size=1000,
    )
    processed = PartnerRequest.objects.filter(status=PartnerRequestStatus.ACCEPTED).update(
        status=PartnerRequestStatus.FAILED
    )
    assert processed >= PROCESSED - 1  # the first may have been processed in-process already
    with connection.cursor() as cursor:  # statistics as autovacuum leaves them: none waiting
        cursor.execute(f'ANALYZE "{PartnerRequest._meta.db_table}"')

    # when drainers look for waiting requests: the first look passes the processed ones once
    first_look = _look()
    later_looks = [_look() for _ in range(3)]

    # then every look walks the partial index of accepted requests in id order (a bitmap scan
    # would read the processed requests' rows on every look) ...
    assert scans(first_look) == [("Index Only Scan", "partner_request_accepted_idx")]
    # ... and later looks read the index's few pages, not the processed requests' rows again
    assert max(map(pages_read, later_looks)) * 5 < pages_read(first_look)
