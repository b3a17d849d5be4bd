"""The follower's bulk ledger path: item for item what the one-at-a-time path does, and a cost
that does not grow with the batch (issue 10: follower bulk transactions)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.follower.api import TransactionsCreateApi, plain_transaction_items
from loyalty.engagement.models import Tier, TierBasis, TierChange
from points import services as point_services
from points.models import PointAccount, PointLot, ProgramMode, Transfer
from points.selectors import ledger_verify
from tests.follower.conftest import TRANSACTIONS

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def _items(members):
    """A mixed batch: repeated members, pending and expiring credits, debits, one clamped."""
    a, b, c, d = members
    later, expiry = NOW + dt.timedelta(days=3), NOW + dt.timedelta(days=90)
    return [
        (a, 40, None, None),
        (b, 700, None, expiry),
        (a, 600, None, None),  # a crosses Silver (500) ...
        (c, 25, later, None),  # pending
        (b, -300, None, None),  # b: a debit consumes part of the expiring lot
        (a, 1500, None, None),  # ... and then Gold (2000): two tier changes in one batch
        (d, -10, None, None),  # d has nothing: clamped to 0
        (c, 30, None, expiry),
        (b, -1000, None, None),  # clamped: b has 400 left
        (d, 5, None, None),
    ]


def _state(program, members):
    state = {}
    for member in members:
        account = PointAccount.objects.get(program=program, member=member)
        lots = list(
            PointLot.objects.filter(account=account)
            .order_by("id")
            .values_list("amount", "remaining", "status", "valid_from", "valid_to", "source")
        )
        transfers = list(
            Transfer.objects.filter(member_account=account)
            .order_by("id")
            .values_list("amount", "kind", "member_balance_after", "source", "description")
        )
        tiers = list(
            TierChange.objects.filter(program=program, member=member)
            .order_by("id")
            .values_list("from_name", "to_name", "qualifying_points")
        )
        state[member.external_id] = {
            "account": (account.balance, account.held, account.pending, account.lifetime_earned),
            "lots": lots,
            "transfers": transfers,
            "tiers": tiers,
        }
    return state


def _tiered_program(make_follower_program, org, key):
    program = make_follower_program(org, mode=ProgramMode.FOLLOWER_TRANSACTIONS, key=key)
    for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
        Tier.objects.create(
            program=program, name=name, threshold=threshold, basis=TierBasis.LIFETIME
        )
    return program


def test_the_bulk_path_gives_every_item_the_outcome_of_the_item_by_item_path(
    org, make_member, make_follower_program
):
    # given two identical tiered follower programs and the same members in both
    bulk_program = _tiered_program(make_follower_program, org, "bulk")
    single_program = _tiered_program(make_follower_program, org, "single")
    members = [make_member(org) for _ in range(4)]
    items = _items(members)

    # when one program takes the batch in bulk and the other item by item
    bulk = point_services.master_transactions_apply_bulk(
        items=[
            point_services.MasterTransaction(
                program=bulk_program,
                member=member,
                amount=amount,
                source="Master",
                description=f"item {index}",
                valid_from=valid_from,
                valid_to=valid_to,
                reference=f"batch:x:{index}",
            )
            for index, (member, amount, valid_from, valid_to) in enumerate(items)
        ],
        actor="client:1",
        now=NOW,
    )
    single = [
        point_services.master_transaction_apply(
            program=single_program,
            member=member,
            amount=amount,
            source="Master",
            description=f"item {index}",
            actor="client:1",
            valid_from=valid_from if amount > 0 else None,
            valid_to=valid_to if amount > 0 else None,
            now=NOW,
            reference=f"batch:x:{index}",
        )
        for index, (member, amount, valid_from, valid_to) in enumerate(items)
    ]

    # then every item, account, lot, transfer and tier change is the same
    assert [(r.requested, r.applied, r.transfer_id is None) for r in bulk.results] == [
        (r.requested, r.applied, r.transfer_id is None) for r in single
    ]
    assert bulk.accounts_created == 4
    assert _state(bulk_program, members) == _state(single_program, members)
    # (member a crossed two tiers within the batch: both steps are in its history)
    assert list(
        TierChange.objects.filter(program=bulk_program, member=members[0])
        .order_by("id")
        .values_list("to_name", flat=True)
    ) == ["Bronze", "Silver", "Gold"]
    # each transfer and lot records the batch item it came from
    assert set(
        Transfer.objects.filter(program=bulk_program).values_list("reference", flat=True)
    ) <= {f"batch:x:{index}" for index in range(len(items))}
    assert ledger_verify(program=bulk_program).ok
    assert ledger_verify(program=single_program).ok


def test_a_refused_bulk_item_leaves_nothing_behind(org, make_member, transactions_program):
    # given a batch whose last item has a validity window that ends before it starts
    members = [make_member(org) for _ in range(3)]
    items = [
        point_services.MasterTransaction(
            program=transactions_program, member=member, amount=10, source="M", description=""
        )
        for member in members
    ] + [
        point_services.MasterTransaction(
            program=transactions_program,
            member=members[0],
            amount=5,
            source="M",
            description="",
            valid_from=NOW,
            valid_to=NOW - dt.timedelta(days=1),
        )
    ]

    # when it is applied, then it is refused and no account, lot or transfer exists
    with pytest.raises(point_services.InvalidAmount):
        point_services.master_transactions_apply_bulk(items=items, actor="client:1", now=NOW)
    assert not PointAccount.objects.filter(program=transactions_program, member__in=members)
    assert not Transfer.objects.filter(program=transactions_program).exists()


def _batch(members, definition_id):
    stamp = timezone.now().isoformat()
    return [
        {
            "contactId": member.external_id,
            "amount": 3,
            "definitionId": definition_id,
            "timeStamp": stamp,
            "source": "Purchase",
        }
        for member in members
    ]


def _batch_query_counts(master_api, org, make_member, program, sizes):
    members = [make_member(org) for _ in range(max(sizes))]
    # the members' accounts exist from their first batch on
    assert master_api.post(TRANSACTIONS, _batch(members, program.definition_id)).status_code == 202
    counts = []
    for size in sizes:
        with CaptureQueriesContext(connection) as queries:
            response = master_api.post(TRANSACTIONS, _batch(members[:size], program.definition_id))
        assert response.status_code == 202
        counts.append(len(queries.captured_queries))
    return counts


def test_a_batch_of_credits_costs_a_fixed_number_of_queries(
    org, make_member, transactions_program, master_api
):
    # token; programs; batch (savepoint, insert, release); members; in the ledger's savepoint:
    # existing accounts, lock the accounts, issued account, transfers, lots, accounts, lifetime
    # tiers; the reply; the 2 savepoint statements of the test's transaction. Nothing per item.
    assert _batch_query_counts(master_api, org, make_member, transactions_program, [5, 60]) == [
        18,
        18,
    ]


@pytest.mark.postgres
def test_a_thousand_item_batch_costs_what_a_five_item_batch_costs(
    org, make_member, transactions_program, master_api
):
    counts = _batch_query_counts(master_api, org, make_member, transactions_program, [5, 1000])
    assert counts[0] == counts[1]


# --- the validation fast path ------------------------------------------------------------------


def _drf(data):
    serializer = TransactionsCreateApi.InputSerializer(data=data, many=True)
    assert serializer.is_valid(), serializer.errors
    return [dict(item) for item in serializer.validated_data]


PLAIN = [
    {"contactId": "c-1", "amount": 5, "definitionId": 1, "timeStamp": "2026-05-01T10:00:00Z"},
    {
        "contactId": "C.2:x_y",
        "amount": -1_000_000_000,
        "definitionId": 0,
        "timeStamp": "2026-05-01T10:00:00.123456+02:00",
        "source": "Purchase",
        "description": "",
        "validFrom": None,
        "validTo": None,
    },
    {
        "contactId": "c-3",
        "amount": 1_000_000_000,
        "definitionId": 7,
        "timeStamp": "2026-05-01T10:00:00-05:30",
        "description": "bought a lamp",
        "validFrom": "2026-05-02T00:00:00Z",
        "validTo": "2027-05-02T00:00:00+01:00",
        "unknownKey": "ignored",
    },
]


def test_plain_items_are_validated_exactly_as_the_serializer_does():
    assert plain_transaction_items(PLAIN) == _drf(PLAIN)


@pytest.mark.parametrize(
    "change",
    [
        {"contactId": " c-1"},
        {"contactId": "a b"},
        {"contactId": 42},
        {"amount": "5"},
        {"amount": 5.0},
        {"amount": True},
        {"amount": 0},
        {"amount": 1_000_000_001},
        {"definitionId": -1},
        {"definitionId": "1"},
        {"timeStamp": "2026-05-01T10:00:00"},  # no offset: DRF decides the zone
        {"timeStamp": "yesterday"},
        {"timeStamp": None},
        {"source": ""},
        {"source": " Purchase"},
        {"source": None},
        {"description": "trailing "},
        {"description": "nul\x00"},
        {"validFrom": 20260501},
        {"validTo": "soon"},
    ],
)
def test_any_doubtful_item_goes_to_the_serializer(change):
    body = [dict(PLAIN[0]), {**PLAIN[0], **change}]
    assert plain_transaction_items(body) is None


def test_a_doubtful_body_gets_the_serializers_refusal(master_api, transactions_program):
    body = [
        {"contactId": "c-1", "amount": "5", "definitionId": 1, "timeStamp": "2026-05-01T10:00Z"}
    ]
    response = master_api.post(TRANSACTIONS, body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "amount"
