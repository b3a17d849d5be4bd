"""Races on PostgreSQL with real commits: threads released together against one account."""

import datetime as dt
from collections import Counter

import pytest
from django.utils import timezone

from points import services
from points.exceptions import (
    HoldAlreadyResolved,
    HoldConflict,
    HoldExpired,
    HoldNotFound,
    InsufficientPoints,
)
from points.models import Hold, HoldStatus, LotStatus, PointLot, Transfer, TransferKind
from points.selectors import balance_get, ledger_verify
from tests.concurrency_support import run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

VENDOR = "vendor:race"


def test_100_holds_of_one_point_on_50_available_give_exactly_50(program, member):
    services.earn(program=program, member=member, amount=50)

    outcomes = run_together(
        lambda i=i: services.hold_create(
            program=program, member=member, amount=1, owner=VENDOR, transaction_id=f"t{i}"
        )
        for i in range(100)
    )

    assert outcomes == Counter({"ok": 50, InsufficientPoints.__name__: 50})
    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.held, balance.available) == (50, 50, 0)
    assert Hold.objects.filter(status=HoldStatus.HELD).count() == 50
    assert ledger_verify().ok, ledger_verify().mismatches


def test_one_transaction_id_raced_gives_one_hold_and_replays(program, member):
    # given a member with points, and twenty vendor retries of one commit at once
    services.earn(program=program, member=member, amount=50)

    results = []
    outcomes = run_together(
        lambda: results.append(
            services.hold_create(
                program=program, member=member, amount=7, owner=VENDOR, transaction_id="same"
            )
        )
        for _ in range(20)
    )

    # then one hold earmarks the points once, and every other call is answered as its repeat
    assert outcomes == Counter({"ok": 20})
    assert sorted(result.replayed for result in results) == [False] + [True] * 19
    assert len({result.hold.pk for result in results}) == 1
    assert balance_get(program=program, member=member).held == 7
    assert ledger_verify().ok, ledger_verify().mismatches


def test_a_hold_outside_a_transaction_is_one_statement_and_refusals_change_nothing(
    program, member, django_assert_num_queries
):
    # given a member with points whose account exists
    services.earn(program=program, member=member, amount=50)

    # when a vendor commits outside any transaction (as the EAI API does): one statement
    with django_assert_num_queries(1):
        result = services.hold_create(
            program=program, member=member, amount=20, owner=VENDOR, transaction_id="one"
        )
    assert (result.replayed, result.hold.account.member_id) == (False, member.pk)

    # then a repeat replays, a reuse with another amount conflicts, too many points are refused
    again = services.hold_create(
        program=program, member=member, amount=20, owner=VENDOR, transaction_id="one"
    )
    assert (again.replayed, again.hold.pk) == (True, result.hold.pk)
    with pytest.raises(HoldConflict):
        services.hold_create(
            program=program, member=member, amount=21, owner=VENDOR, transaction_id="one"
        )
    with pytest.raises(InsufficientPoints):
        services.hold_create(
            program=program, member=member, amount=31, owner=VENDOR, transaction_id="two"
        )
    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.held) == (50, 20)
    assert Hold.objects.count() == 1
    assert ledger_verify().ok, ledger_verify().mismatches


def test_100_burns_of_one_point_on_50_available_give_exactly_50(program, member):
    services.earn(program=program, member=member, amount=50)

    outcomes = run_together(
        lambda: services.burn(program=program, member=member, amount=1) for _ in range(100)
    )

    assert outcomes == Counter({"ok": 50, InsufficientPoints.__name__: 50})
    assert balance_get(program=program, member=member).balance == 0
    assert Transfer.objects.filter(kind="burn").count() == 50
    assert ledger_verify().ok, ledger_verify().mismatches


def test_racing_confirms_and_rollbacks_of_one_hold_resolve_it_once(program, member):
    services.earn(program=program, member=member, amount=10)
    services.hold_create(
        program=program, member=member, amount=10, owner=VENDOR, transaction_id="h"
    )

    calls = []
    for _ in range(8):
        calls.append(lambda: services.hold_confirm(owner=VENDOR, transaction_id="h"))
        calls.append(lambda: services.hold_rollback(owner=VENDOR, transaction_id="h"))
    outcomes = run_together(calls)

    hold = Hold.objects.get()
    # One side wins; its repeats are idempotent successes, the other side is refused.
    assert outcomes["ok"] == 8
    assert outcomes[HoldAlreadyResolved.__name__] == 8
    balance = balance_get(program=program, member=member)
    if hold.status == HoldStatus.CONFIRMED:
        assert (balance.balance, balance.held) == (0, 0)
        assert Transfer.objects.filter(hold=hold).count() == 1
    else:
        assert hold.status == HoldStatus.ROLLED_BACK
        assert (balance.balance, balance.held) == (10, 0)
        assert not Transfer.objects.filter(hold=hold).exists()
    assert ledger_verify().ok, ledger_verify().mismatches


def test_concurrent_earns_and_expiry_keep_the_ledger_consistent(program, member):
    now = timezone.now()
    services.earn(
        program=program, member=member, amount=100, valid_to=now + dt.timedelta(days=1), now=now
    )
    later = now + dt.timedelta(days=2)
    calls = [lambda: services.earn(program=program, member=member, amount=1) for _ in range(40)]
    calls += [lambda: services.expire_due_lots(now=later) for _ in range(8)]

    outcomes = run_together(calls)

    assert outcomes == Counter({"ok": 48})
    assert balance_get(program=program, member=member).balance == 40
    assert ledger_verify().ok, ledger_verify().mismatches


def test_a_confirm_outside_a_transaction_is_one_statement_and_the_rest_is_decided_as_before(
    program, member, make_member, org, django_assert_num_queries
):
    # given a member whose one lot covers a vendor's hold
    lot = services.earn(program=program, member=member, amount=50).lot
    services.hold_create(
        program=program, member=member, amount=20, owner=VENDOR, transaction_id="one"
    )

    # when the vendor confirms outside any transaction (as the EAI API does): one statement
    with django_assert_num_queries(1):
        result = services.hold_confirm(
            owner=VENDOR, transaction_id="one", member=member, actor="vendor:race"
        )

    # then the hold is confirmed, the lot and the account are debited, the burn is recorded
    assert (result.replayed, result.hold.status) == (False, HoldStatus.CONFIRMED)
    assert result.hold.resolved_by == "vendor:race"
    burn = Transfer.objects.get(hold=result.hold)
    assert (burn.kind, burn.amount, burn.member_balance_after) == (TransferKind.BURN, 20, 30)
    assert (burn.source, burn.reference, burn.actor) == ("Redemption", "one", VENDOR)
    assert burn.debit_account.member_id == member.pk
    assert burn.credit_account.kind == "redeemed"
    lot.refresh_from_db()
    assert (lot.remaining, lot.status) == (30, LotStatus.ACTIVE)
    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.held) == (30, 0)

    # and what the statement does not do is answered by the transaction, as before: a repeat,
    # another member, a rollback after the confirmation
    again = services.hold_confirm(owner=VENDOR, transaction_id="one", member=member)
    assert (again.replayed, again.hold.pk) == (True, result.hold.pk)
    with pytest.raises(HoldNotFound):
        services.hold_confirm(owner=VENDOR, transaction_id="one", member=make_member(org))
    with pytest.raises(HoldAlreadyResolved):
        services.hold_rollback(owner=VENDOR, transaction_id="one", member=member)
    assert Transfer.objects.filter(kind=TransferKind.BURN).count() == 1
    assert ledger_verify().ok, ledger_verify().mismatches


def test_a_confirm_spanning_lots_or_past_expiry_writes_nothing_in_one_statement(program, member):
    # given two lots of 10, a hold of 15 (more than the first lot) and a hold that has expired
    now = timezone.now()
    first = services.earn(
        program=program, member=member, amount=10, valid_to=now + dt.timedelta(days=1)
    ).lot
    second = services.earn(program=program, member=member, amount=10).lot
    services.hold_create(
        program=program, member=member, amount=15, owner=VENDOR, transaction_id="wide"
    )
    services.hold_create(
        program=program, member=member, amount=5, owner=VENDOR, transaction_id="late", now=now
    )
    late = now + dt.timedelta(seconds=program.hold_ttl_seconds + 1)

    # then the expired one is refused and changes nothing
    with pytest.raises(HoldExpired):
        services.hold_confirm(owner=VENDOR, transaction_id="late", member=member, now=late)
    assert Hold.objects.get(transaction_id="late").status == HoldStatus.HELD

    # and the wide one is confirmed by the transaction, across both lots
    services.hold_confirm(owner=VENDOR, transaction_id="wide", member=member)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.remaining, first.status) == (0, LotStatus.CLOSED)
    assert (second.remaining, second.status) == (5, LotStatus.ACTIVE)
    assert PointLot.objects.filter(account__member=member).count() == 2
    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.held) == (5, 5)
    assert ledger_verify().ok, ledger_verify().mismatches


def test_racing_confirms_of_one_members_holds_each_burn_once(program, member):
    # given ten open holds on one account, and each confirmed twice at once, with rollbacks of
    # the first two racing them (every statement here runs on its own, as the API's do)
    services.earn(program=program, member=member, amount=100)
    for i in range(10):
        services.hold_create(
            program=program, member=member, amount=5, owner=VENDOR, transaction_id=f"h{i}"
        )
    calls = [
        lambda i=i: services.hold_confirm(owner=VENDOR, transaction_id=f"h{i}", member=member)
        for i in range(10)
        for _ in range(2)
    ]
    calls += [
        lambda i=i: services.hold_rollback(owner=VENDOR, transaction_id=f"h{i}", member=member)
        for i in range(2)
    ]

    outcomes = run_together(calls)

    # then every hold is resolved exactly once: a concurrent change of the account makes the
    # single statement write nothing and the transaction decide
    confirmed = Hold.objects.filter(status=HoldStatus.CONFIRMED).count()
    rolled_back = Hold.objects.filter(status=HoldStatus.ROLLED_BACK).count()
    assert confirmed + rolled_back == 10
    assert outcomes["ok"] + outcomes[HoldAlreadyResolved.__name__] == 22
    assert Transfer.objects.filter(kind=TransferKind.BURN).count() == confirmed
    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.held) == (100 - 5 * confirmed, 0)
    assert ledger_verify().ok, ledger_verify().mismatches
