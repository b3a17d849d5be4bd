"""Ledger services: earn, burn, adjust, holds, lots over time, follower balances."""

import datetime as dt

import pytest
from django.utils import timezone

from points import services
from points.exceptions import (
    HoldAlreadyResolved,
    HoldConflict,
    HoldExpired,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidAmount,
    ProgramIsFollower,
    ProgramNotFollower,
)
from points.models import (
    AccountKind,
    Hold,
    HoldStatus,
    LotStatus,
    PointAccount,
    PointLot,
    ProgramMode,
    Transfer,
    TransferKind,
)
from points.selectors import balance_get, ledger_verify, system_account_balances

pytestmark = pytest.mark.django_db

VENDOR = "vendor:test"


def assert_ledger_clean(program):
    report = ledger_verify(program=program)
    assert report.ok, report.mismatches


def test_earn_credits_member_from_issued_and_creates_a_lot(program, member):
    result = services.earn(program=program, member=member, amount=100, reference="order-1")

    assert balance_get(program=program, member=member).balance == 100
    transfer = result.transfer
    assert transfer.amount == 100
    assert transfer.debit_account.kind == AccountKind.ISSUED
    assert transfer.credit_account.member == member
    assert transfer.member_balance_after == 100
    assert result.lot.remaining == 100 and result.lot.status == LotStatus.ACTIVE
    assert system_account_balances(program=program)[AccountKind.ISSUED] == -100
    assert_ledger_clean(program)


def test_earn_with_future_valid_from_is_pending_until_activated(program, member):
    now = timezone.now()
    services.earn(
        program=program, member=member, amount=40, valid_from=now + dt.timedelta(days=2), now=now
    )

    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.pending) == (0, 40)
    assert Transfer.objects.filter(program=program).count() == 0

    assert services.activate_due_lots(now=now + dt.timedelta(days=1)) == 0
    assert services.activate_due_lots(now=now + dt.timedelta(days=3)) == 1

    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.pending, balance.lifetime_earned) == (40, 0, 40)
    assert_ledger_clean(program)


def test_earn_is_idempotent_on_its_key(program, member):
    first = services.earn(program=program, member=member, amount=10, idempotency_key="k1")
    again = services.earn(program=program, member=member, amount=10, idempotency_key="k1")

    assert again.replayed and again.lot.pk == first.lot.pk
    assert balance_get(program=program, member=member).balance == 10
    with pytest.raises(IdempotencyConflict):
        services.earn(program=program, member=member, amount=11, idempotency_key="k1")
    assert balance_get(program=program, member=member).balance == 10


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, None, 10**12])
def test_invalid_amounts_are_refused_and_change_nothing(program, member, amount):
    with pytest.raises(InvalidAmount):
        services.earn(program=program, member=member, amount=amount)
    assert Transfer.objects.count() == 0
    assert PointLot.objects.count() == 0


def earn_lots_expiring(program, member, *days):
    """A lot of 50 points per number of days until it expires (None: it never does)."""
    now = timezone.now()
    return [
        services.earn(
            program=program,
            member=member,
            amount=50,
            valid_to=None if days_left is None else now + dt.timedelta(days=days_left),
            now=now,
        ).lot
        for days_left in days
    ]


def test_burn_consumes_soonest_expiring_lots_first(program, member):
    never, late, soon = earn_lots_expiring(program, member, None, 90, 10)

    services.burn(program=program, member=member, amount=70)

    soon.refresh_from_db(), late.refresh_from_db(), never.refresh_from_db()
    assert (soon.remaining, soon.status) == (0, LotStatus.CLOSED)
    assert late.remaining == 30
    assert never.remaining == 50
    assert balance_get(program=program, member=member).balance == 80
    assert_ledger_clean(program)


@pytest.mark.parametrize(
    ("amount", "soon_after", "late_after"),
    [
        (20, (30, LotStatus.ACTIVE), (50, LotStatus.ACTIVE)),  # the first lot holds enough
        (50, (0, LotStatus.CLOSED), (50, LotStatus.ACTIVE)),  # ... exactly: it is used up
        (60, (0, LotStatus.CLOSED), (40, LotStatus.ACTIVE)),  # it does not: on to the next
    ],
)
def test_a_burn_takes_from_the_first_lot_and_goes_on_only_when_it_falls_short(
    program, member, amount, soon_after, late_after
):
    late, soon = earn_lots_expiring(program, member, 90, 10)

    services.burn(program=program, member=member, amount=amount)

    soon.refresh_from_db(), late.refresh_from_db()
    assert ((soon.remaining, soon.status), (late.remaining, late.status)) == (
        soon_after,
        late_after,
    )
    assert_ledger_clean(program)


def test_burn_beyond_available_is_refused_and_changes_nothing(program, member):
    services.earn(program=program, member=member, amount=30)
    services.hold_create(
        program=program, member=member, amount=20, owner=VENDOR, transaction_id="t1"
    )
    transfers_before = Transfer.objects.count()

    with pytest.raises(InsufficientPoints):
        services.burn(program=program, member=member, amount=11)

    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.held, balance.available) == (30, 20, 10)
    assert Transfer.objects.count() == transfers_before


def test_adjust_credits_and_debits_with_reason_and_actor(program, member):
    services.adjust(program=program, member=member, amount=25, reason="goodwill", actor="user:7")
    debit = services.adjust(
        program=program, member=member, amount=-5, reason="correction", actor="user:7"
    )

    assert balance_get(program=program, member=member).balance == 20
    assert (debit.kind, debit.description, debit.actor) == (
        TransferKind.ADJUST,
        "correction",
        "user:7",
    )
    with pytest.raises(InsufficientPoints):
        services.adjust(program=program, member=member, amount=-21, reason="too much", actor="x")
    with pytest.raises(InvalidAmount):
        services.adjust(program=program, member=member, amount=5, reason=" ", actor="x")
    assert_ledger_clean(program)


def test_hold_confirm_posts_a_burn_linked_to_the_hold(program, member):
    services.earn(program=program, member=member, amount=100)
    hold = services.hold_create(
        program=program, member=member, amount=60, owner=VENDOR, transaction_id="tx-1"
    ).hold

    held = balance_get(program=program, member=member)
    assert (held.balance, held.held, held.available) == (100, 60, 40)

    services.hold_confirm(owner=VENDOR, transaction_id="tx-1", member=member)

    hold.refresh_from_db()
    assert hold.status == HoldStatus.CONFIRMED
    burn = hold.confirm_transfer
    assert (burn.amount, burn.reference, burn.actor) == (60, "tx-1", VENDOR)
    after = balance_get(program=program, member=member)
    assert (after.balance, after.held) == (40, 0)
    assert_ledger_clean(program)


def test_hold_repeats_are_idempotent_and_opposites_refused(program, member):
    services.earn(program=program, member=member, amount=100)
    services.hold_create(
        program=program, member=member, amount=10, owner=VENDOR, transaction_id="a"
    )
    again = services.hold_create(
        program=program, member=member, amount=10, owner=VENDOR, transaction_id="a"
    )
    assert again.replayed
    assert balance_get(program=program, member=member).held == 10

    services.hold_confirm(owner=VENDOR, transaction_id="a")
    assert services.hold_confirm(owner=VENDOR, transaction_id="a").replayed
    with pytest.raises(HoldAlreadyResolved, match="points already deducted"):
        services.hold_rollback(owner=VENDOR, transaction_id="a")

    services.hold_create(
        program=program, member=member, amount=10, owner=VENDOR, transaction_id="b"
    )
    services.hold_rollback(owner=VENDOR, transaction_id="b")
    assert services.hold_rollback(owner=VENDOR, transaction_id="b").replayed
    with pytest.raises(HoldAlreadyResolved, match="points already rolled back"):
        services.hold_confirm(owner=VENDOR, transaction_id="b")

    assert balance_get(program=program, member=member).balance == 90
    assert_ledger_clean(program)


def test_hold_transaction_id_reused_with_other_details_conflicts(org, program, member, make_member):
    other = make_member(org)
    services.earn(program=program, member=member, amount=100)
    services.earn(program=program, member=other, amount=100)
    services.hold_create(
        program=program, member=member, amount=10, owner=VENDOR, transaction_id="x"
    )

    with pytest.raises(HoldConflict):
        services.hold_create(
            program=program, member=member, amount=11, owner=VENDOR, transaction_id="x"
        )
    with pytest.raises(HoldConflict):
        services.hold_create(
            program=program, member=other, amount=10, owner=VENDOR, transaction_id="x"
        )
    # Another vendor's ids are its own.
    services.hold_create(
        program=program, member=other, amount=10, owner="vendor:other", transaction_id="x"
    )
    assert Hold.objects.count() == 2


def test_refused_hold_leaves_the_transaction_id_free(program, member):
    services.earn(program=program, member=member, amount=5)
    with pytest.raises(InsufficientPoints):
        services.hold_create(
            program=program, member=member, amount=6, owner=VENDOR, transaction_id="t"
        )
    assert not Hold.objects.exists()

    services.earn(program=program, member=member, amount=5)
    assert not services.hold_create(
        program=program, member=member, amount=6, owner=VENDOR, transaction_id="t"
    ).replayed


def test_unknown_or_other_members_transaction_is_not_found(org, program, member, make_member):
    services.earn(program=program, member=member, amount=10)
    services.hold_create(program=program, member=member, amount=5, owner=VENDOR, transaction_id="t")
    with pytest.raises(HoldNotFound):
        services.hold_confirm(owner=VENDOR, transaction_id="nope")
    with pytest.raises(HoldNotFound):
        services.hold_confirm(owner=VENDOR, transaction_id="t", member=make_member(org))
    with pytest.raises(HoldNotFound):
        services.hold_confirm(owner="vendor:other", transaction_id="t")


def test_confirm_after_expires_at_is_refused_before_and_after_the_job(program, member):
    now = timezone.now()
    services.earn(program=program, member=member, amount=50, now=now)
    services.hold_create(
        program=program, member=member, amount=20, owner=VENDOR, transaction_id="t", now=now
    )
    late = now + dt.timedelta(seconds=program.hold_ttl_seconds + 1)

    with pytest.raises(HoldExpired):
        services.hold_confirm(owner=VENDOR, transaction_id="t", now=late)
    assert balance_get(program=program, member=member).balance == 50

    assert services.expire_stale_holds(now=late) == 1
    assert Hold.objects.get().status == HoldStatus.EXPIRED
    assert balance_get(program=program, member=member).held == 0
    with pytest.raises(HoldExpired):
        services.hold_confirm(owner=VENDOR, transaction_id="t", now=late)
    with pytest.raises(HoldExpired):
        services.hold_rollback(owner=VENDOR, transaction_id="t", now=late)
    assert balance_get(program=program, member=member).balance == 50
    assert_ledger_clean(program)


def test_expiry_takes_only_unheld_points_and_a_rollback_lets_them_expire(program, member):
    now = timezone.now()
    services.earn(
        program=program, member=member, amount=30, valid_to=now + dt.timedelta(days=1), now=now
    )
    services.hold_create(
        program=program, member=member, amount=20, owner=VENDOR, transaction_id="t", now=now
    )
    after_expiry = now + dt.timedelta(days=2)
    # Keep the hold open past the lot's expiry.
    Hold.objects.filter(transaction_id="t").update(expires_at=now + dt.timedelta(days=5))

    assert services.expire_due_lots(now=after_expiry) == 10
    balance = balance_get(program=program, member=member)
    assert (balance.balance, balance.held) == (20, 20)

    services.hold_rollback(owner=VENDOR, transaction_id="t", now=after_expiry)
    assert services.expire_due_lots(now=after_expiry) == 20
    assert balance_get(program=program, member=member).balance == 0
    assert_ledger_clean(program)


def test_confirm_succeeds_on_points_whose_lot_expired_while_held(program, member):
    now = timezone.now()
    services.earn(
        program=program, member=member, amount=20, valid_to=now + dt.timedelta(days=1), now=now
    )
    services.hold_create(
        program=program, member=member, amount=20, owner=VENDOR, transaction_id="t", now=now
    )
    Hold.objects.filter(transaction_id="t").update(expires_at=now + dt.timedelta(days=5))
    later = now + dt.timedelta(days=2)

    assert services.expire_due_lots(now=later) == 0
    services.hold_confirm(owner=VENDOR, transaction_id="t", now=later)

    assert balance_get(program=program, member=member).balance == 0
    assert_ledger_clean(program)


def test_follower_program_refuses_master_operations(org, make_program, member):
    follower = make_program(
        org,
        key="follower",
        mode=ProgramMode.FOLLOWER_TRANSACTIONS,
        master_webhook_url="https://master.example.com/hook",
        master_webhook_key="k" * 44,
    )
    for call in (
        lambda: services.earn(program=follower, member=member, amount=1),
        lambda: services.burn(program=follower, member=member, amount=1),
        lambda: services.adjust(program=follower, member=member, amount=1, reason="r", actor="a"),
        lambda: services.hold_create(
            program=follower, member=member, amount=1, owner=VENDOR, transaction_id="t"
        ),
        lambda: services.earn_many(
            items=[services.EarnItem(program=follower, member=member, amount=5)]
        ),
    ):
        with pytest.raises(ProgramIsFollower):
            call()
    assert not Transfer.objects.exists()


def test_set_balance_moves_by_the_difference_and_skips_older_updates(org, make_program, member):
    follower = make_program(
        org,
        key="follower",
        mode=ProgramMode.FOLLOWER_BALANCE,
        master_webhook_url="https://master.example.com/hook",
        master_webhook_key="k" * 44,
    )
    t0 = timezone.now()
    first = services.set_balance(program=follower, member=member, amount=120, as_of=t0, actor="m")
    down = services.set_balance(
        program=follower, member=member, amount=70, as_of=t0 + dt.timedelta(minutes=1), actor="m"
    )
    stale = services.set_balance(
        program=follower, member=member, amount=999, as_of=t0 - dt.timedelta(minutes=1), actor="m"
    )

    assert first.applied and first.transfer.amount == 120
    assert down.applied and down.transfer.amount == 50
    assert not stale.applied
    assert balance_get(program=follower, member=member).balance == 70
    assert_ledger_clean(follower)


def test_set_balance_refuses_a_master_program(program, member):
    with pytest.raises(ProgramNotFollower):
        services.set_balance(
            program=program, member=member, amount=1, as_of=timezone.now(), actor="m"
        )


def test_master_debit_beyond_balance_takes_the_account_to_zero(org, make_program, member):
    follower = make_program(
        org,
        key="follower",
        mode=ProgramMode.FOLLOWER_TRANSACTIONS,
        master_webhook_url="https://master.example.com/hook",
        master_webhook_key="k" * 44,
    )
    services.master_transaction_apply(
        program=follower, member=member, amount=30, source="Purchase", description="", actor="m"
    )
    result = services.master_transaction_apply(
        program=follower, member=member, amount=-50, source="Return", description="", actor="m"
    )

    assert (result.requested, result.applied) == (-50, -30)
    assert balance_get(program=follower, member=member).balance == 0
    assert_ledger_clean(follower)


def test_accounts_are_unique_per_member_and_program(program, member):
    first = services.account_get_or_create(program=program, member=member)
    again = services.account_get_or_create(program=program, member=member)
    assert first.pk == again.pk
    assert PointAccount.objects.filter(member=member).count() == 1


def assert_as_loaded(*objs) -> None:
    """Each instance is saved and holds exactly what the ORM loads from its row."""
    for obj in objs:
        assert obj.pk is not None
        assert not obj._state.adding
        assert obj._state.db == "default"
        stored = type(obj).objects.get(pk=obj.pk)
        for field in obj._meta.concrete_fields:
            assert getattr(obj, field.attname) == getattr(stored, field.attname), field.name


def test_the_ledger_returns_instances_as_the_orm_would_load_them(program, member):
    # the ledger writes and reads these rows with its own statements (loyalty/sql.py)
    earned = services.earn(program=program, member=member, amount=100, idempotency_key="e")
    assert_as_loaded(earned.lot, earned.transfer)
    assert earned.lot.transfer_id == earned.transfer.pk

    burned = services.burn(program=program, member=member, amount=5, idempotency_key="b")
    replayed = services.burn(program=program, member=member, amount=5, idempotency_key="b")
    assert_as_loaded(burned, replayed)
    assert replayed.pk == burned.pk

    held = services.hold_create(
        program=program, member=member, amount=10, owner=VENDOR, transaction_id="tx"
    ).hold
    assert_as_loaded(held)
    confirmed = services.hold_confirm(owner=VENDOR, transaction_id="tx", member=member).hold
    assert_as_loaded(confirmed)
    assert confirmed.status == HoldStatus.CONFIRMED
    assert_ledger_clean(program)
