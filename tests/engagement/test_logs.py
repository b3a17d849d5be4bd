"""Point audit log and activity log: newest first, keyset pages, index-backed at any depth."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty.engagement.pagination import cursor_encode
from points import services as point_services
from points.models import AccountKind, PointAccount, Transfer

pytestmark = pytest.mark.django_db


def walk(api, url, limit):
    """Every page of a log, following nextCursor; returns the entries and the cursors seen."""
    entries, cursors, cursor = [], [], None
    while True:
        query = ("&" if "?" in url else "?") + f"limit={limit}"
        query += f"&cursor={cursor}" if cursor else ""
        response = api.get(url + query)
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["results"]) <= limit
        entries.extend(body["results"])
        cursor = body["nextCursor"]
        if cursor is None:
            return entries, cursors
        cursors.append(cursor)


def test_the_point_log_pages_through_every_transfer_newest_first(api, program, member):
    for number in range(1, 46):
        point_services.earn(program=program, member=member, amount=number, reference=f"r{number}")
    point_services.burn(program=program, member=member, amount=7)

    entries, cursors = walk(api, f"/api/v1/customers/{member.external_id}/point-log", 20)

    assert len(cursors) == 2  # pages of 20, 20 and 6
    ids = [entry["id"] for entry in entries]
    assert ids == sorted(ids, reverse=True)
    assert ids == list(
        Transfer.objects.filter(member_account__member=member)
        .order_by("-id")
        .values_list("id", flat=True)
    )
    assert entries[0] | {"createdAt": None} == {
        "id": ids[0],
        "programKey": program.key,
        "kind": "burn",
        "source": "Redemption",
        "points": -7,
        "balanceAfter": sum(range(1, 46)) - 7,
        "description": "",
        "reference": "",
        "createdAt": None,
    }
    assert entries[-1]["points"] == 1


def test_the_point_log_merges_the_programs_of_a_member_in_order(
    api, org, program, make_program, member
):
    second = make_program(org, key="second")
    for number in range(6):
        point_services.earn(program=program if number % 2 else second, member=member, amount=5)

    entries, _ = walk(api, f"/api/v1/customers/{member.external_id}/point-log", 4)
    only_second, _ = walk(
        api, f"/api/v1/customers/{member.external_id}/point-log?program=second", 2
    )

    ids = [entry["id"] for entry in entries]
    assert len(ids) == 6 and ids == sorted(ids, reverse=True)
    assert {entry["programKey"] for entry in entries} == {program.key, "second"}
    assert [e["programKey"] for e in only_second] == ["second"] * 3


def test_a_point_log_page_costs_four_queries(api, program, member, django_assert_num_queries):
    for _ in range(30):
        point_services.earn(program=program, member=member, amount=1)
    first = api.get(f"/api/v1/customers/{member.external_id}/point-log?limit=10").json()

    # the token with its client (one joined query), the member, the member's accounts, the page
    with django_assert_num_queries(4):
        response = api.get(
            f"/api/v1/customers/{member.external_id}/point-log?limit=10"
            f"&cursor={first['nextCursor']}"
        )
    assert len(response.json()["results"]) == 10


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=" + cursor_encode(kind="activity", last_id=5), "cursor"),  # another list's
        ("cursor=" + cursor_encode(kind="transfers", last_id=0), "cursor"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("program=nope", "program"),
    ],
)
def test_bad_paging_parameters_are_400_naming_them(api, program, member, query, field):
    point_services.earn(program=program, member=member, amount=1)

    response = api.get(f"/api/v1/customers/{member.external_id}/point-log?{query}")

    assert response.status_code == 400
    assert response.json()["details"]["field"] == field


def test_limit_is_capped_at_100(api, program, member):
    for _ in range(105):
        point_services.earn(program=program, member=member, amount=1)

    body = api.get(f"/api/v1/customers/{member.external_id}/point-log?limit=1000").json()

    assert len(body["results"]) == 100
    assert body["nextCursor"] is not None


def test_default_page_is_20_and_the_last_page_has_no_cursor(api, program, member):
    for _ in range(20):
        point_services.earn(program=program, member=member, amount=1)

    body = api.get(f"/api/v1/customers/{member.external_id}/point-log").json()

    assert len(body["results"]) == 20
    assert body["nextCursor"] is None


def test_the_activity_log_lists_what_happened_newest_first_in_pages(api, program, member):
    api.post(f"/api/v1/customers/{member.external_id}/tags", {"tags": ["a", "b"]}, format="json")
    api.patch(f"/api/v1/customers/{member.external_id}", {"firstName": "New"}, format="json")
    api.delete(f"/api/v1/customers/{member.external_id}/tags/a")

    entries, cursors = walk(api, f"/api/v1/customers/{member.external_id}/activity-log", 2)

    assert [entry["type"] for entry in entries] == [
        "tag_removed",
        "profile_updated",
        "tag_added",
        "tag_added",
    ]
    assert len(cursors) == 1
    assert entries[0]["summary"] == "Untagged a"


@pytest.mark.postgres
def test_walking_10000_transfers_returns_each_once_in_order_and_deep_pages_use_the_index(
    api, program, member, make_member
):
    # given 10,000 transfers of the member between another member's (inserted in one
    # statement; the accounts' balances are not kept in step, so this ledger does not verify)
    neighbour = make_member(program.organization)
    issued = PointAccount.objects.get(program=program, kind=AccountKind.ISSUED)
    mine, theirs = (
        point_services.account_get_or_create(program=program, member=m) for m in (member, neighbour)
    )
    with connection.cursor() as cursor:
        # Checked row by row, not queued to the end of the test's transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            """
            INSERT INTO points_transfer (program_id, debit_account_id, credit_account_id,
                member_account_id, amount, kind, source, description, reference, actor,
                member_balance_after, created_at)
            SELECT %(program)s, %(issued)s, account, account, 1, 'earn', 'Bulk', '',
                   'bulk-' || n, 'test', n, now()
            FROM (
                SELECT n, CASE WHEN n %% 2 = 0 THEN %(mine)s ELSE %(theirs)s END AS account
                FROM generate_series(1, 20000) AS n
            ) AS rows
            """,
            {"program": program.pk, "issued": issued.pk, "mine": mine.pk, "theirs": theirs.pk},
        )
        cursor.execute("ANALYZE points_transfer")
    expected = list(
        Transfer.objects.filter(member_account=mine).order_by("-id").values_list("id", flat=True)
    )

    # when a client walks the whole log a page at a time
    url = f"/api/v1/customers/{member.external_id}/point-log"
    entries, cursors = walk(api, url, 100)

    # then every transfer comes exactly once, newest first
    ids = [entry["id"] for entry in entries]
    assert len(ids) == 10_000
    assert ids == expected

    # and a deep page is read from an index, in index order: no table scan, no sort
    with CaptureQueriesContext(connection) as queries:
        api.get(f"{url}?limit=100&cursor={cursors[95]}")
    page_sql = next(q["sql"] for q in queries if 'FROM "points_transfer"' in q["sql"])
    assert "OFFSET" not in page_sql.upper()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + page_sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index" in plan, plan
    assert "Seq Scan on points_transfer" not in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.postgres
@pytest.mark.parametrize("statement", ["UPDATE {table} SET summary = 'x'", "DELETE FROM {table}"])
def test_the_activity_log_is_append_only_in_the_database(api, member, statement):
    from django.db import IntegrityError, transaction

    from loyalty.engagement.models import ActivityEntry

    api.post(f"/api/v1/customers/{member.external_id}/tags", {"tags": ["a"]}, format="json")

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement.format(table="engagement_activityentry"))

    assert ActivityEntry.objects.get(member=member).summary == "Tagged a"
