"""Every write to the points ledger.

Each service runs in one database transaction and locks the member's account row first
(`SELECT ... FOR UPDATE`), so every writer of an account is serialised on that one row and the
lock order is always account, then hold. Database constraints (points/models.py) are the last
line behind these checks. Callers pass an actor string (`vendor:<id>`, `client:<id>`,
`user:<id>`, `system`) recorded on every transfer.

Program-mode routing (a follower program's adjustments go to the point master) lives above this
module; here a follower program simply refuses the operations only a master may do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from loyalty.models import Member
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
    PointProgram,
    ProgramMode,
    Transfer,
    TransferKind,
)

# No single operation may move more than this: it keeps sums far inside 64 bits and catches
# unit mistakes (cents for points) before they reach the ledger.
MAX_POINTS_PER_OPERATION = 1_000_000_000


# --- accounts ------------------------------------------------------------------------------


def program_system_accounts_ensure(*, program: PointProgram) -> None:
    """Create the program's issued / redeemed / expired accounts if they do not exist yet."""
    for kind in (AccountKind.ISSUED, AccountKind.REDEEMED, AccountKind.EXPIRED):
        _get_or_create_account(program=program, kind=kind, member=None)


def account_get_or_create(*, program: PointProgram, member: Member) -> PointAccount:
    """The member's account in the program, created empty on first use (race-safe)."""
    if member.organization_id != program.organization_id:
        raise ValueError("member and program belong to different organisations")
    return _get_or_create_account(program=program, kind=AccountKind.MEMBER, member=member)


def _get_or_create_account(*, program, kind, member) -> PointAccount:
    lookup = {"program": program, "kind": kind, "member": member}
    account = PointAccount.objects.filter(**lookup).first()
    if account is not None:
        return account
    try:
        # A savepoint, so losing the race to a concurrent creator does not break the caller's
        # transaction; the unique constraint decides the winner.
        with transaction.atomic():
            return PointAccount.objects.create(**lookup)
    except IntegrityError:
        return PointAccount.objects.get(**lookup)


def _system_account_id(program_id: int, kind: str) -> int:
    account_id = (
        PointAccount.objects.filter(program_id=program_id, kind=kind)
        .values_list("id", flat=True)
        .first()
    )
    if account_id is None:
        program = PointProgram.objects.get(pk=program_id)
        account_id = _get_or_create_account(program=program, kind=kind, member=None).pk
    return account_id


def _lock_account(account_id: int) -> PointAccount:
    return PointAccount.objects.select_for_update().get(pk=account_id)


def _check_amount(amount: object) -> int:
    # bool is an int in Python; True points are a bug, not one point.
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidAmount()
    if amount > MAX_POINTS_PER_OPERATION:
        raise InvalidAmount(f"points must be at most {MAX_POINTS_PER_OPERATION}")
    return amount


def _refuse_follower(program: PointProgram) -> None:
    if program.mode != ProgramMode.MASTER:
        raise ProgramIsFollower()


# --- posting primitives (caller holds the account lock) --------------------------------------


def _post_transfer(
    *,
    account: PointAccount,
    counter_kind: str,
    amount: int,
    credit_member: bool,
    kind: str,
    source: str,
    description: str,
    reference: str,
    actor: str,
    hold: Hold | None = None,
    idempotency_key: str | None = None,
) -> Transfer:
    """Write the transfer row; the caller has already moved account.balance."""
    counter_id = _system_account_id(account.program_id, counter_kind)
    debit_id, credit_id = (counter_id, account.pk) if credit_member else (account.pk, counter_id)
    return Transfer.objects.create(
        program_id=account.program_id,
        debit_account_id=debit_id,
        credit_account_id=credit_id,
        member_account_id=account.pk,
        amount=amount,
        kind=kind,
        source=source[:64],
        description=description[:500],
        reference=reference[:200],
        actor=actor[:200],
        member_balance_after=account.balance,
        hold=hold,
        idempotency_key=idempotency_key,
    )


def _consume_lots(*, account: PointAccount, amount: int) -> None:
    """Take `amount` from the account's active lots, soonest-expiring first."""
    left = amount
    lots = (
        PointLot.objects.filter(account=account, status=LotStatus.ACTIVE, remaining__gt=0)
        .order_by(F("valid_to").asc(nulls_last=True), "id")
        .only("id", "remaining")
    )
    for lot in lots.iterator(chunk_size=200):
        if left == 0:
            break
        take = min(lot.remaining, left)
        remaining = lot.remaining - take
        PointLot.objects.filter(pk=lot.pk).update(
            remaining=remaining, status=LotStatus.CLOSED if remaining == 0 else LotStatus.ACTIVE
        )
        left -= take
    if left:
        # balance == sum(remaining of active lots) is an invariant; reaching here means the
        # ledger is corrupt, and the transaction must not go on.
        raise RuntimeError(f"account {account.pk}: lots hold {amount - left} of {amount} points")


def _credit(
    *,
    account: PointAccount,
    amount: int,
    kind: str,
    source: str,
    description: str,
    reference: str,
    actor: str,
    valid_from: dt.datetime,
    valid_to: dt.datetime | None,
    now: dt.datetime,
    idempotency_key: str | None,
) -> PointLot:
    pending = valid_from > now
    lot = PointLot(
        account=account,
        amount=amount,
        remaining=amount,
        valid_from=valid_from,
        valid_to=valid_to,
        status=LotStatus.PENDING if pending else LotStatus.ACTIVE,
        source=source,
        description=description,
        reference=reference,
        actor=actor,
        idempotency_key=idempotency_key,
    )
    if pending:
        account.pending += amount
        account.save(update_fields=["pending", "updated_at"])
        lot.save()
        return lot
    account.balance += amount
    account.lifetime_earned += amount
    account.save(update_fields=["balance", "lifetime_earned", "updated_at"])
    # Lifetime tiers move in the transaction that changes lifetime_earned (imported here:
    # loyalty.engagement builds on this module).
    from loyalty.engagement.services import tier_recompute_for_account

    tier_recompute_for_account(account=account)
    lot.transfer = _post_transfer(
        account=account,
        counter_kind=AccountKind.ISSUED,
        amount=amount,
        credit_member=True,
        kind=kind,
        source=source,
        description=description,
        reference=reference,
        actor=actor,
        idempotency_key=idempotency_key,
    )
    lot.save()
    return lot


def _debit(
    *,
    account: PointAccount,
    amount: int,
    kind: str,
    counter_kind: str,
    source: str,
    description: str,
    reference: str,
    actor: str,
    hold: Hold | None = None,
    idempotency_key: str | None = None,
) -> Transfer:
    _consume_lots(account=account, amount=amount)
    account.balance -= amount
    update_fields = ["balance", "updated_at"]
    if hold is not None:
        account.held -= amount
        update_fields.append("held")
    account.save(update_fields=update_fields)
    return _post_transfer(
        account=account,
        counter_kind=counter_kind,
        amount=amount,
        credit_member=False,
        kind=kind,
        source=source,
        description=description,
        reference=reference,
        actor=actor,
        hold=hold,
        idempotency_key=idempotency_key,
    )


def _replayed_transfer(
    *, program: PointProgram, account: PointAccount, idempotency_key: str | None, amount: int
) -> Transfer | None:
    if idempotency_key is None:
        return None
    existing = Transfer.objects.filter(program=program, idempotency_key=idempotency_key).first()
    if existing is None:
        return None
    if existing.member_account_id != account.pk or existing.amount != amount:
        raise IdempotencyConflict()
    return existing


# --- earn, burn, adjust -----------------------------------------------------------------------


@dataclass(frozen=True)
class EarnResult:
    lot: PointLot
    transfer: Transfer | None  # None while the lot is pending
    replayed: bool = False


def earn(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    source: str = "Purchase",
    description: str = "",
    reference: str = "",
    actor: str = "system",
    valid_from: dt.datetime | None = None,
    valid_to: dt.datetime | None = None,
    idempotency_key: str | None = None,
    kind: str = TransferKind.EARN,
    now: dt.datetime | None = None,
) -> EarnResult:
    """Credit points to the member as a new lot (issued -> member).

    A lot whose valid_from is in the future is pending: it counts in `pending` and is posted by
    `activate_due_lots`. valid_to defaults to the program's default validity. With an
    idempotency_key, a repeat returns the first result (replayed=True); the same key with another
    member or amount raises IdempotencyConflict. Raises InvalidAmount, ProgramIsFollower.
    """
    amount = _check_amount(amount)
    _refuse_follower(program)
    now = now or timezone.now()
    valid_from = valid_from or now
    if valid_to is None and program.default_validity_days:
        valid_to = valid_from + dt.timedelta(days=program.default_validity_days)
    if valid_to is not None and valid_to <= valid_from:
        raise InvalidAmount("validTo must be after validFrom")
    account = account_get_or_create(program=program, member=member)
    with transaction.atomic():
        account = _lock_account(account.pk)
        if idempotency_key is not None:
            lot = PointLot.objects.filter(account=account, idempotency_key=idempotency_key).first()
            if lot is not None:
                if lot.amount != amount:
                    raise IdempotencyConflict()
                return EarnResult(lot=lot, transfer=lot.transfer, replayed=True)
            # The same key on another member's account is a conflict, not a new earn.
            if _replayed_transfer(
                program=program, account=account, idempotency_key=idempotency_key, amount=amount
            ):
                raise IdempotencyConflict()
        lot = _credit(
            account=account,
            amount=amount,
            kind=kind,
            source=source,
            description=description,
            reference=reference,
            actor=actor,
            valid_from=valid_from,
            valid_to=valid_to,
            now=now,
            idempotency_key=idempotency_key,
        )
        return EarnResult(lot=lot, transfer=lot.transfer)


def burn(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    source: str = "Redemption",
    description: str = "",
    reference: str = "",
    actor: str = "system",
    idempotency_key: str | None = None,
    kind: str = TransferKind.BURN,
) -> Transfer:
    """Debit available points (member -> redeemed), soonest-expiring lots first.

    Raises InsufficientPoints when balance - held < amount (nothing changes), InvalidAmount,
    ProgramIsFollower, IdempotencyConflict. A repeat with the same idempotency_key returns the
    first transfer.
    """
    amount = _check_amount(amount)
    _refuse_follower(program)
    account = account_get_or_create(program=program, member=member)
    with transaction.atomic():
        account = _lock_account(account.pk)
        replayed = _replayed_transfer(
            program=program, account=account, idempotency_key=idempotency_key, amount=amount
        )
        if replayed is not None:
            return replayed
        if account.available < amount:
            raise InsufficientPoints(available=account.available, requested=amount)
        return _debit(
            account=account,
            amount=amount,
            kind=kind,
            counter_kind=AccountKind.REDEEMED,
            source=source,
            description=description,
            reference=reference,
            actor=actor,
            idempotency_key=idempotency_key,
        )


def adjust(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    reason: str,
    actor: str,
    source: str = "Adjustment",
    idempotency_key: str | None = None,
) -> Transfer:
    """An operator's or automation's signed correction: credit when positive, debit when negative.

    A debit takes only available points (raises InsufficientPoints otherwise). The reason is
    recorded as the transfer's description. Raises ProgramIsFollower for follower programs: the
    caller routes those adjustments to the point master instead.
    """
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidAmount("the adjustment must be a non-zero whole number")
    if not reason or not reason.strip():
        raise InvalidAmount("an adjustment needs a reason")
    if amount > 0:
        result = earn(
            program=program,
            member=member,
            amount=amount,
            source=source,
            description=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            kind=TransferKind.ADJUST,
        )
        return result.transfer
    return burn(
        program=program,
        member=member,
        amount=-amount,
        source=source,
        description=reason,
        actor=actor,
        idempotency_key=idempotency_key,
        kind=TransferKind.ADJUST,
    )


# --- holds (two-phase deduction) ----------------------------------------------------------------


@dataclass(frozen=True)
class HoldResult:
    hold: Hold
    replayed: bool = False


def hold_create(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    owner: str,
    transaction_id: str,
    description: str = "",
    now: dt.datetime | None = None,
) -> HoldResult:
    """Earmark `amount` available points for (owner, transaction_id) until the program's TTL.

    An identical repeat (same member and amount) returns the existing hold with replayed=True,
    whatever its state now. Raises InsufficientPoints (nothing is stored, the transaction id stays
    free), HoldConflict (id reused with another member or amount), ProgramIsFollower,
    InvalidAmount.
    """
    amount = _check_amount(amount)
    _refuse_follower(program)
    now = now or timezone.now()
    account = account_get_or_create(program=program, member=member)
    with transaction.atomic():
        account = _lock_account(account.pk)
        existing = Hold.objects.filter(owner=owner, transaction_id=transaction_id).first()
        if existing is not None:
            if existing.account_id != account.pk or existing.amount != amount:
                raise HoldConflict()
            return HoldResult(hold=existing, replayed=True)
        if account.available < amount:
            raise InsufficientPoints(available=account.available, requested=amount)
        PointAccount.objects.filter(pk=account.pk).update(held=F("held") + amount)
        try:
            with transaction.atomic():
                hold = Hold.objects.create(
                    program=program,
                    account=account,
                    amount=amount,
                    owner=owner,
                    transaction_id=transaction_id,
                    description=description[:500],
                    expires_at=now + dt.timedelta(seconds=program.hold_ttl_seconds),
                )
        except IntegrityError:
            # The same transaction id was just used on another member's account.
            raise HoldConflict() from None
        return HoldResult(hold=hold)


def _hold_for_update(*, owner: str, transaction_id: str, member: Member | None) -> Hold:
    hold = (
        Hold.objects.filter(owner=owner, transaction_id=transaction_id)
        .select_related("account")
        .first()
    )
    if hold is None or (member is not None and hold.account.member_id != member.pk):
        raise HoldNotFound()
    _lock_account(hold.account_id)
    return Hold.objects.select_for_update().select_related("program").get(pk=hold.pk)


def hold_confirm(
    *,
    owner: str,
    transaction_id: str,
    member: Member | None = None,
    actor: str = "",
    now: dt.datetime | None = None,
) -> HoldResult:
    """Post the hold: burn its points (member -> redeemed), linked to the hold.

    A repeat after success returns the hold with replayed=True. Raises HoldNotFound (unknown id,
    or another member's), HoldAlreadyResolved (rolled back), HoldExpired (expired, or past
    expires_at even before the release job ran; nothing is burned).
    """
    now = now or timezone.now()
    with transaction.atomic():
        hold = _hold_for_update(owner=owner, transaction_id=transaction_id, member=member)
        if hold.status == HoldStatus.CONFIRMED:
            return HoldResult(hold=hold, replayed=True)
        if hold.status == HoldStatus.ROLLED_BACK:
            raise HoldAlreadyResolved("points already rolled back", status=hold.status)
        if hold.status == HoldStatus.EXPIRED or hold.expires_at <= now:
            raise HoldExpired()
        account = PointAccount.objects.get(pk=hold.account_id)  # locked by _hold_for_update
        hold.status = HoldStatus.CONFIRMED
        hold.resolved_at = now
        hold.resolved_by = actor or owner
        hold.save(update_fields=["status", "resolved_at", "resolved_by"])
        _debit(
            account=account,
            amount=hold.amount,
            kind=TransferKind.BURN,
            counter_kind=AccountKind.REDEEMED,
            source="Redemption",
            description=hold.description,
            reference=hold.transaction_id,
            actor=hold.owner,
            hold=hold,
        )
        return HoldResult(hold=hold)


def hold_rollback(
    *,
    owner: str,
    transaction_id: str,
    member: Member | None = None,
    actor: str = "",
    now: dt.datetime | None = None,
) -> HoldResult:
    """Void the hold: its points become available again.

    A repeat after success returns replayed=True. Raises HoldNotFound, HoldAlreadyResolved
    (confirmed: "points already deducted"), HoldExpired.
    """
    now = now or timezone.now()
    with transaction.atomic():
        hold = _hold_for_update(owner=owner, transaction_id=transaction_id, member=member)
        if hold.status == HoldStatus.ROLLED_BACK:
            return HoldResult(hold=hold, replayed=True)
        if hold.status == HoldStatus.CONFIRMED:
            raise HoldAlreadyResolved("points already deducted", status=hold.status)
        if hold.status == HoldStatus.EXPIRED or hold.expires_at <= now:
            raise HoldExpired()
        _release_hold(hold=hold, status=HoldStatus.ROLLED_BACK, actor=actor or owner, now=now)
        return HoldResult(hold=hold)


def _release_hold(*, hold: Hold, status: str, actor: str, now: dt.datetime) -> None:
    PointAccount.objects.filter(pk=hold.account_id).update(
        held=F("held") - hold.amount, updated_at=now
    )
    hold.status = status
    hold.resolved_at = now
    hold.resolved_by = actor
    hold.save(update_fields=["status", "resolved_at", "resolved_by"])


def expire_stale_holds(*, now: dt.datetime | None = None, batch_size: int = 500) -> int:
    """Release every open hold past its expires_at. Returns how many it expired."""
    now = now or timezone.now()
    expired = 0
    while True:
        due = list(
            Hold.objects.filter(status=HoldStatus.HELD, expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", "account_id")[:batch_size]
        )
        if not due:
            return expired
        for hold_id, account_id in due:
            with transaction.atomic():
                _lock_account(account_id)
                hold = Hold.objects.select_for_update().get(pk=hold_id)
                if hold.status != HoldStatus.HELD:
                    continue  # resolved between the scan and the lock
                _release_hold(hold=hold, status=HoldStatus.EXPIRED, actor="system", now=now)
                expired += 1
        if len(due) < batch_size:
            return expired


# --- lots over time -----------------------------------------------------------------------------


def activate_due_lots(*, now: dt.datetime | None = None, batch_size: int = 500) -> int:
    """Post every pending lot whose valid_from has come. Returns how many it activated."""
    now = now or timezone.now()
    activated = 0
    while True:
        due = list(
            PointLot.objects.filter(status=LotStatus.PENDING, valid_from__lte=now)
            .order_by("valid_from", "id")
            .values_list("pk", "account_id")[:batch_size]
        )
        if not due:
            return activated
        for lot_id, account_id in due:
            with transaction.atomic():
                account = _lock_account(account_id)
                lot = PointLot.objects.get(pk=lot_id)
                if lot.status != LotStatus.PENDING:
                    continue
                account.pending -= lot.amount
                account.balance += lot.amount
                account.lifetime_earned += lot.amount
                account.save(update_fields=["pending", "balance", "lifetime_earned", "updated_at"])
                from loyalty.engagement.services import tier_recompute_for_account

                tier_recompute_for_account(account=account)
                lot.transfer = _post_transfer(
                    account=account,
                    counter_kind=AccountKind.ISSUED,
                    amount=lot.amount,
                    credit_member=True,
                    kind=TransferKind.EARN,
                    source=lot.source,
                    description=lot.description,
                    reference=lot.reference,
                    actor=lot.actor,
                )
                lot.status = LotStatus.ACTIVE
                lot.save(update_fields=["transfer", "status"])
                activated += 1
        if len(due) < batch_size:
            return activated


def expire_due_lots(*, now: dt.datetime | None = None, batch_size: int = 500) -> int:
    """Expire the remaining points of lots past valid_to (member -> expired).

    Never takes held points: per account it expires at most balance - held, so what a hold
    protects stays until the hold resolves (a rolled-back hold's points expire on the next run).
    Returns the number of points expired.
    """
    now = now or timezone.now()
    expired_points = 0
    last_account_id = 0
    while True:
        account_ids = list(
            PointLot.objects.filter(
                status=LotStatus.ACTIVE,
                valid_to__lte=now,
                remaining__gt=0,
                account_id__gt=last_account_id,
            )
            .order_by("account_id")
            .values_list("account_id", flat=True)
            .distinct()[:batch_size]
        )
        if not account_ids:
            return expired_points
        for account_id in account_ids:
            expired_points += _expire_account_lots(account_id=account_id, now=now)
        last_account_id = account_ids[-1]


def _expire_account_lots(*, account_id: int, now: dt.datetime) -> int:
    with transaction.atomic():
        account = _lock_account(account_id)
        expirable = account.balance - account.held
        expired = 0
        due_lots = PointLot.objects.filter(
            account=account, status=LotStatus.ACTIVE, valid_to__lte=now, remaining__gt=0
        ).order_by("valid_to", "id")
        for lot in due_lots:
            take = min(lot.remaining, expirable - expired)
            if take <= 0:
                break
            remaining = lot.remaining - take
            PointLot.objects.filter(pk=lot.pk).update(
                remaining=remaining,
                status=LotStatus.CLOSED if remaining == 0 else LotStatus.ACTIVE,
            )
            account.balance -= take
            account.save(update_fields=["balance", "updated_at"])
            _post_transfer(
                account=account,
                counter_kind=AccountKind.EXPIRED,
                amount=take,
                credit_member=False,
                kind=TransferKind.EXPIRE,
                source="Expiry",
                description="Points expired",
                reference=f"lot:{lot.pk}",
                actor="system",
            )
            expired += take
        return expired


# --- follower mode (the point master is the truth) ----------------------------------------------


def _refuse_master(program: PointProgram) -> None:
    if program.mode == ProgramMode.MASTER:
        raise ProgramNotFollower()


@dataclass(frozen=True)
class SetBalanceResult:
    applied: bool
    previous_balance: int
    balance: int
    transfer: Transfer | None


def set_balance(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    as_of: dt.datetime,
    actor: str,
    source: str = "Sync",
    description: str = "Balance from the point master",
) -> SetBalanceResult:
    """Set the member's balance to the master's `amount` by a transfer of the difference.

    An update older than the last one applied to this account (out-of-order delivery) is skipped
    and reported with applied=False. Raises ProgramNotFollower for a master program.
    """
    _refuse_master(program)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise InvalidAmount("amount must be a whole number of points, zero or more")
    if amount > MAX_POINTS_PER_OPERATION:
        raise InvalidAmount(f"points must be at most {MAX_POINTS_PER_OPERATION}")
    account = account_get_or_create(program=program, member=member)
    with transaction.atomic():
        account = _lock_account(account.pk)
        previous = account.balance
        if account.synced_at is not None and as_of < account.synced_at:
            return SetBalanceResult(
                applied=False, previous_balance=previous, balance=previous, transfer=None
            )
        account.synced_at = as_of
        account.save(update_fields=["synced_at", "updated_at"])
        delta = amount - account.balance
        transfer = None
        if delta > 0:
            now = timezone.now()
            transfer = _credit(
                account=account,
                amount=delta,
                kind=TransferKind.SYNC,
                source=source,
                description=description,
                reference="",
                actor=actor,
                valid_from=now,
                valid_to=None,
                now=now,
                idempotency_key=None,
            ).transfer
        elif delta < 0:
            # A follower program refuses holds, so its whole balance is available.
            transfer = _debit(
                account=account,
                amount=-delta,
                kind=TransferKind.SYNC,
                counter_kind=AccountKind.REDEEMED,
                source=source,
                description=description,
                reference="",
                actor=actor,
            )
        return SetBalanceResult(
            applied=True, previous_balance=previous, balance=account.balance, transfer=transfer
        )


@dataclass(frozen=True)
class MasterTransactionResult:
    requested: int
    applied: int  # signed; a debit beyond the balance applies less than requested
    lot: PointLot | None
    transfer: Transfer | None


def master_transaction_apply(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    source: str,
    description: str,
    actor: str,
    valid_from: dt.datetime | None = None,
    valid_to: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> MasterTransactionResult:
    """Apply one transaction pushed by the point master (seed 002, all-transaction mode).

    A credit becomes a lot (pending until valid_from, expiring at valid_to). A debit takes at
    most the balance: the master is the truth and a follower never goes negative; the shortfall
    shows as applied != requested. Runs in the caller's transaction when there is one.
    """
    _refuse_master(program)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidAmount("amount must be a non-zero whole number")
    if abs(amount) > MAX_POINTS_PER_OPERATION:
        raise InvalidAmount(f"points must be at most {MAX_POINTS_PER_OPERATION}")
    now = now or timezone.now()
    account = account_get_or_create(program=program, member=member)
    with transaction.atomic():
        account = _lock_account(account.pk)
        if amount > 0:
            valid_from = valid_from or now
            if valid_to is not None and valid_to <= valid_from:
                raise InvalidAmount("validTo must be after validFrom")
            lot = _credit(
                account=account,
                amount=amount,
                kind=TransferKind.SYNC,
                source=source,
                description=description,
                reference="",
                actor=actor,
                valid_from=valid_from,
                valid_to=valid_to,
                now=now,
                idempotency_key=None,
            )
            return MasterTransactionResult(
                requested=amount, applied=amount, lot=lot, transfer=lot.transfer
            )
        take = min(-amount, account.balance - account.held)
        transfer = None
        if take > 0:
            transfer = _debit(
                account=account,
                amount=take,
                kind=TransferKind.SYNC,
                counter_kind=AccountKind.REDEEMED,
                source=source,
                description=description,
                reference="",
                actor=actor,
            )
        return MasterTransactionResult(requested=amount, applied=-take, lot=None, transfer=transfer)
