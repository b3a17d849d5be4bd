"""earn_many: several earns in one transaction, item for item what earn() does."""

from __future__ import annotations

import datetime as dt

import pytest

from loyalty.engagement.models import Tier, TierBasis, TierChange
from points import services
from points.exceptions import IdempotencyConflict
from points.models import PointAccount, PointLot, Transfer, TransferKind
from points.selectors import ledger_verify

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def _tiered(make_program, org, key):
    program = make_program(org, key=key, default_validity_days=365)
    for name, threshold in (("Bronze", 0), ("Silver", 500), ("Gold", 2000)):
        Tier.objects.create(
            program=program, name=name, threshold=threshold, basis=TierBasis.LIFETIME
        )
    return program


def _state(program, members):
    state = {}
    for member in members:
        account = PointAccount.objects.get(program=program, member=member)
        state[member.external_id] = {
            "account": (account.balance, account.held, account.pending, account.lifetime_earned),
            "lots": list(
                PointLot.objects.filter(account=account)
                .order_by("id")
                .values_list(
                    "amount", "remaining", "status", "valid_from", "valid_to", "idempotency_key"
                )
            ),
            "transfers": list(
                Transfer.objects.filter(member_account=account)
                .order_by("id")
                .values_list("amount", "kind", "member_balance_after", "source", "idempotency_key")
            ),
            "tiers": list(
                TierChange.objects.filter(program=program, member=member)
                .order_by("id")
                .values_list("from_name", "to_name")
            ),
        }
    return state


def test_earn_many_gives_every_item_what_earn_gives_it(org, make_program, make_member):
    # given two identical tiered programs; one member has earned before, one has no account
    together, alone = _tiered(make_program, org, "together"), _tiered(make_program, org, "alone")
    a, b = make_member(org), make_member(org)
    for program in (together, alone):
        services.earn(program=program, member=a, amount=100, now=NOW)
    items = [(a, 450, "k1"), (b, 30, "k2"), (a, 1600, "k3"), (b, 5, None)]

    # when one program takes the items with earn_many and the other with earn, one by one
    written = services.earn_many(
        items=[
            services.EarnItem(
                program=together,
                member=member,
                amount=amount,
                source="Partner",
                idempotency_key=key,
            )
            for member, amount, key in items
        ],
        now=NOW,
    )
    for member, amount, key in items:
        services.earn(
            program=alone,
            member=member,
            amount=amount,
            source="Partner",
            idempotency_key=key,
            now=NOW,
        )

    # then accounts, lots, transfers and tier changes are the same (a crossed Silver and Gold
    # within the items), and each item got its own lot and transfer
    assert _state(together, [a, b]) == _state(alone, [a, b])
    assert list(
        TierChange.objects.filter(program=together, member=a)
        .order_by("id")
        .values_list("to_name", flat=True)
    ) == ["Bronze", "Silver", "Gold"]
    lots = PointLot.objects.in_bulk([lot_id for lot_id, _ in written])
    transfers = Transfer.objects.in_bulk([transfer_id for _, transfer_id in written])
    for (_, amount, _), (lot_id, transfer_id) in zip(items, written, strict=True):
        assert lots[lot_id].amount == transfers[transfer_id].amount == amount
        assert lots[lot_id].transfer_id == transfer_id
        assert transfers[transfer_id].kind == TransferKind.EARN
    assert ledger_verify(program=together).ok


def test_a_key_used_before_or_twice_refuses_all_items_and_writes_nothing(
    program, member, make_member, org
):
    # given a key already used by an earn
    services.earn(program=program, member=member, amount=10, idempotency_key="used")
    before = Transfer.objects.count()
    other = make_member(org)

    # when earn_many meets it again, for the same member or another, or twice among its items
    for items in (
        [(other, "fresh"), (member, "used")],
        [(other, "fresh"), (other, "used")],
        [(other, "twice"), (member, "twice")],
    ):
        with pytest.raises(IdempotencyConflict):
            services.earn_many(
                items=[
                    services.EarnItem(program=program, member=m, amount=5, idempotency_key=key)
                    for m, key in items
                ]
            )

    # then nothing was written, not even the items before the conflicting one
    assert Transfer.objects.count() == before
    assert not PointAccount.objects.filter(member=other).exclude(balance=0).exists()


def test_earn_many_refuses_a_bad_amount_and_writes_nothing(program, member):
    # (a follower program's refusal is in test_services.py, with earn's and burn's)
    with pytest.raises(services.InvalidAmount):
        services.earn_many(
            items=[
                services.EarnItem(program=program, member=member, amount=5),
                services.EarnItem(program=program, member=member, amount=0),
            ]
        )
    assert not Transfer.objects.filter(program=program).exists()
