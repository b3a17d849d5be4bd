"""POST /api/v2/point-accounts/transactions: up to 1000 items, validated first, applied together."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from integrations.follower.models import TransactionBatch
from loyalty.models import Member
from points import services as point_services
from points.models import PointAccount, PointLot, ProgramMode, Transfer
from points.selectors import balance_get, ledger_verify
from tests.follower.conftest import TRANSACTIONS, MasterApi, token_for

pytestmark = pytest.mark.django_db


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def item(contact, amount, definition_id, **fields):
    return {
        "contactId": contact,
        "amount": amount,
        "definitionId": definition_id,
        "timeStamp": fields.pop("timeStamp", iso(timezone.now())),
        "source": fields.pop("source", "Purchase"),
        "description": fields.pop("description", "Gilded gauntlets"),
        **fields,
    }


def nothing_stored():
    return (
        TransactionBatch.objects.count(),
        Member.objects.count(),
        PointLot.objects.count(),
        Transfer.objects.count(),
    ) == (0, 0, 0, 0)


def test_1000_items_are_applied_pending_ones_activate_and_expired_ones_leave(
    master_api, transactions_program
):
    # given 500 contacts, each with an active credit expiring in 10 days and a credit pending
    # for a day (1000 items)
    now = timezone.now()
    definition = transactions_program.definition_id
    body = []
    for n in range(500):
        contact = f"contact-{n:04d}"
        body.append(item(contact, 100, definition, validTo=iso(now + dt.timedelta(days=10))))
        body.append(
            item(
                contact,
                50,
                definition,
                validFrom=iso(now + dt.timedelta(days=1)),
                validTo=iso(now + dt.timedelta(days=30)),
            )
        )

    # when the master posts them in one request
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = master_api.post(TRANSACTIONS, body)

    # then all are applied: unknown contacts created (in one INSERT), active points counted,
    # pending ones waiting
    assert response.status_code == 202, response.content
    reply = response.json()
    assert reply["status"] == "applied"
    assert (reply["items"], reply["credited"], reply["pendingCredited"], reply["debited"]) == (
        1000,
        75_000,
        25_000,
        0,
    )
    assert reply["accountsCreated"] == 500
    assert reply["clamped"] == []
    # 500 new contacts are inserted in bulk (one statement on PostgreSQL; SQLite splits a bulk
    # insert by its parameter limit), not one by one
    member_inserts = [sql for sql in statements if 'INTO "loyalty_member"' in sql]
    assert 1 <= len(member_inserts) <= 10
    member = Member.objects.get(
        organization=transactions_program.organization, external_id="contact-0007"
    )
    balance = balance_get(program=transactions_program, member=member)
    assert (balance.balance, balance.pending) == (100, 50)
    assert ledger_verify(program=transactions_program).ok

    # when validFrom passes, the pending points become active
    assert point_services.activate_due_lots(now=now + dt.timedelta(days=1, seconds=1)) == 500
    assert balance_get(program=transactions_program, member=member).balance == 150
    assert ledger_verify(program=transactions_program).ok

    # when validTo of the first lots passes, their points leave
    expired = point_services.expire_due_lots(now=now + dt.timedelta(days=10, seconds=1))
    assert expired == 500 * 100
    balance = balance_get(program=transactions_program, member=member)
    assert (balance.balance, balance.pending) == (50, 0)
    assert ledger_verify(program=transactions_program).ok


def test_1001_items_are_refused_as_too_many_and_nothing_is_stored(master_api, transactions_program):
    body = [item(f"c-{n}", 1, transactions_program.definition_id) for n in range(1001)]

    response = master_api.post(TRANSACTIONS, body)

    assert response.status_code == 400
    assert response.json()["message"] == "Too many items"
    assert nothing_stored()


@pytest.mark.parametrize("mode", [ProgramMode.MASTER, ProgramMode.FOLLOWER_BALANCE])
def test_a_program_not_in_transaction_mode_is_new_point_system_not_active(
    master_api, org, make_follower_program, transactions_program, mode
):
    # given a valid item for the transaction-mode program, and one for a program that is not
    other = make_follower_program(org, mode=mode, key="other")
    body = [
        item("c-1", 10, transactions_program.definition_id),
        item("c-2", 10, other.definition_id),
    ]

    response = master_api.post(TRANSACTIONS, body)

    assert response.status_code == 400
    assert response.json()["message"] == "New point system not active"
    assert response.json()["errors"][0]["index"] == 1
    assert response.json()["errors"][0]["field"] == "definitionId"
    assert nothing_stored()


@pytest.mark.parametrize(
    ("bad_fields", "field"),
    [
        ({"amount": "12"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"contactId": "someone@example.com"}, "contactId"),
        ({"timeStamp": "yesterday"}, "timeStamp"),
        ({"definitionId": 999}, "definitionId"),
        ({"validFrom": "2030-01-02T00:00:00Z", "validTo": "2030-01-01T00:00:00Z"}, "validTo"),
    ],
)
def test_a_bad_item_is_refused_naming_its_index_and_field_and_nothing_is_stored(
    master_api, transactions_program, bad_fields, field
):
    # given four good items and a bad one at index 3
    body = [item(f"c-{n}", 10, transactions_program.definition_id) for n in range(5)]
    body[3].update(bad_fields)

    response = master_api.post(TRANSACTIONS, body)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(3, field)]
    assert response.json()["message"].startswith(f"Invalid item at index 3: {field}")
    assert nothing_stored()


@pytest.mark.parametrize("body", [{"contactId": "c-1"}, "text", []])
def test_a_body_that_is_not_a_list_of_items_is_refused(master_api, transactions_program, body):
    response = master_api.post(TRANSACTIONS, body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "body"
    assert nothing_stored()


def test_a_debit_beyond_the_balance_takes_the_account_to_zero_and_is_reported(
    master_api, transactions_program
):
    # given a contact with 30 points
    definition = transactions_program.definition_id
    assert master_api.post(TRANSACTIONS, [item("c-1", 30, definition)]).status_code == 202

    # when the master debits 50 and 5 from another contact with nothing
    response = master_api.post(
        TRANSACTIONS, [item("c-1", -50, definition), item("c-2", -5, definition)]
    )

    # then the first account goes to zero, and both debits are reported as clamped
    assert response.status_code == 202, response.content
    reply = response.json()
    assert reply["debited"] == 30
    assert reply["clamped"] == [
        {"index": 0, "contactId": "c-1", "requested": -50, "applied": -30},
        {"index": 1, "contactId": "c-2", "requested": -5, "applied": 0},
    ]
    member = Member.objects.get(external_id="c-1")
    assert balance_get(program=transactions_program, member=member).balance == 0
    assert ledger_verify(program=transactions_program).ok


def test_a_repeat_with_the_same_idempotency_key_gets_the_first_reply_and_applies_nothing(
    master_api, transactions_program
):
    body = [item("c-1", 25, transactions_program.definition_id)]
    first = master_api.post(TRANSACTIONS, body, HTTP_IDEMPOTENCY_KEY="batch-1")
    transfers = Transfer.objects.count()

    again = master_api.post(TRANSACTIONS, body, HTTP_IDEMPOTENCY_KEY="batch-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == transfers
    member = Member.objects.get(external_id="c-1")
    assert balance_get(program=transactions_program, member=member).balance == 25


def test_the_same_idempotency_key_with_another_amount_is_409_and_changes_nothing(
    master_api, transactions_program
):
    definition = transactions_program.definition_id
    master_api.post(TRANSACTIONS, [item("c-1", 25, definition)], HTTP_IDEMPOTENCY_KEY="batch-1")
    transfers = Transfer.objects.count()

    response = master_api.post(
        TRANSACTIONS, [item("c-1", 26, definition)], HTTP_IDEMPOTENCY_KEY="batch-1"
    )

    assert response.status_code == 409
    assert Transfer.objects.count() == transfers
    assert TransactionBatch.objects.count() == 1
    member = Member.objects.get(external_id="c-1")
    assert balance_get(program=transactions_program, member=member).balance == 25


def test_idempotency_keys_are_scoped_to_the_client(
    client, org, master_api, make_master_client, transactions_program
):
    other_master = MasterApi(client, token_for(client, make_master_client(org)))
    body = [item("c-1", 25, transactions_program.definition_id)]

    master_api.post(TRANSACTIONS, body, HTTP_IDEMPOTENCY_KEY="k")
    response = other_master.post(TRANSACTIONS, body, HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 202
    assert "Idempotent-Replayed" not in response.headers
    member = Member.objects.get(external_id="c-1")
    assert balance_get(program=transactions_program, member=member).balance == 50


def test_another_organisations_definition_id_is_unknown(
    master_api, make_org, make_follower_program
):
    # given a transaction-mode program that belongs to another organisation
    foreign = make_follower_program(make_org(), definition_id=7)

    response = master_api.post(TRANSACTIONS, [item("c-1", 5, foreign.definition_id)])

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "definitionId"
    assert nothing_stored()


def test_without_a_token_the_master_gets_401(client, transactions_program):
    response = client.post(TRANSACTIONS, "[]", content_type="application/json")

    assert response.status_code == 401
    assert response.json()["errors"] == []
    assert nothing_stored()


def test_a_token_without_follower_write_gets_403_and_nothing_is_stored(
    client, org, make_master_client, transactions_program
):
    partner = make_master_client(org, scopes=["points:read"])
    api = MasterApi(client, token_for(client, partner))

    response = api.post(TRANSACTIONS, [item("c-1", 5, transactions_program.definition_id)])

    assert response.status_code == 403
    assert "follower:write" in response.json()["message"]
    assert nothing_stored()


# --- PostgreSQL: concurrent batches --------------------------------------------------------------


def _run_concurrently(*calls):
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # reported by the assertion below
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_over_the_same_contacts_in_opposite_orders_both_apply(
    live_server, org, master_client, transactions_program
):
    import requests

    token = requests.post(
        f"{live_server.url}/o/token/",
        data={
            "grant_type": "client_credentials",
            "client_id": master_client.client_id,
            "client_secret": master_client.client_secret,
        },
        timeout=10,
    ).json()["access_token"]
    definition = transactions_program.definition_id
    contacts = [f"c-{n:03d}" for n in range(60)]
    forward = [item(c, 10, definition) for c in contacts]
    backward = [item(c, 5, definition) for c in reversed(contacts)]

    def post(body):
        return lambda: (
            requests.post(
                f"{live_server.url}{TRANSACTIONS}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ).status_code
        )

    results = _run_concurrently(post(forward), post(backward), post(forward), post(backward))

    assert results == [202, 202, 202, 202]
    balances = set(
        PointAccount.objects.filter(program=transactions_program, member__isnull=False).values_list(
            "balance", flat=True
        )
    )
    assert balances == {30}
    assert Member.objects.filter(organization=org).count() == 60
    assert ledger_verify(program=transactions_program).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_of_one_idempotency_key_apply_once(
    org, master_client, transactions_program
):
    from integrations.follower.services import TransactionItem, transactions_apply

    items = [
        TransactionItem(
            contact_id="c-1",
            amount=40,
            definition_id=transactions_program.definition_id,
            time_stamp=timezone.now(),
            source="Purchase",
            description="",
            valid_from=None,
            valid_to=None,
        )
    ]

    def apply():
        return transactions_apply(client=master_client.client, items=items, idempotency_key="k")

    results = _run_concurrently(apply, apply, apply)

    assert sorted(r.replayed for r in results) == [False, True, True]
    assert len({r.batch.pk for r in results}) == 1
    member = Member.objects.get(external_id="c-1")
    assert balance_get(program=transactions_program, member=member).balance == 40


def test_a_batch_costs_the_ledger_writes_and_a_few_statements_more(
    master_api, transactions_program
):
    # given 25 contacts the master already sent points for
    definition = transactions_program.definition_id
    body = [item(f"c-{n % 25}", 10, definition) for n in range(100)]
    assert master_api.post(TRANSACTIONS, body).status_code == 202
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    # when 100 more items arrive for them
    with connection.execute_wrapper(record):
        assert master_api.post(TRANSACTIONS, body).status_code == 202

    # then members and accounts are found in bulk: what is left per item is the ledger's own
    # work in points.services.master_transaction_apply (about nine statements per item today)
    assert len(statements) <= 10 * len(body) + 30
    assert sum('FROM "loyalty_member"' in sql for sql in statements) <= 3
