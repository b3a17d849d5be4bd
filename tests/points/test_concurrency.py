"""Races on PostgreSQL with real commits: threads released together against one account."""

import datetime as dt
from collections import Counter

import pytest
from django.utils import timezone

from points import services
from points.exceptions import HoldAlreadyResolved, InsufficientPoints
from points.models import Hold, HoldStatus, Transfer
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
