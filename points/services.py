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
import operator
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace

from django.db import DataError, IntegrityError, connection, connections, router, transaction
from django.db.models import F, Model, Q
from django.utils import timezone

from loyalty import sql
from loyalty.engagement.models import Tier, TierBasis
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


# --- the hot paths' statements ------------------------------------------------------------------
#
# Written once, here, from the models' own tables and columns (loyalty/sql.py): building them
# with the ORM costs more Python than the rest of an EAI or partner request. Values are bound
# parameters. The kinds and statuses a statement is about are literals of it, so that
# PostgreSQL's plan of the prepared statement can use the partial indexes that name them
# (account_one_system_account_per_kind: with the kind as a parameter, finding a system account
# scans the program's member accounts).


def _names(model: type[Model]) -> SimpleNamespace:
    """The model's quoted table (`.table`) and its fields' quoted columns, by field name."""
    columns = {field.name: f'"{field.column}"' for field in model._meta.concrete_fields}
    return SimpleNamespace(table=f'"{model._meta.db_table}"', **columns)


def _literal(choice: str) -> str:
    """A model choice as an SQL literal (choices are lowercase words: nothing to escape)."""
    if not (choice.replace("_", "").isalpha() and choice.islower()):
        raise ValueError(f"not a plain choice: {choice!r}")
    return f"'{choice}'"


_A = _names(PointAccount)
_L = _names(PointLot)
_T = _names(Transfer)
_H = _names(Hold)
_TIER = _names(Tier)
_ACCOUNT_COLUMNS = sql.Columns(PointAccount)
_TRANSFER_COLUMNS = sql.Columns(Transfer)
_HOLD_COLUMNS = sql.Columns(Hold)

# SQLite has no row locks: its write transactions take the database's lock at BEGIN.
_LOCK_ACCOUNT_ROW = sql.for_update(of="a")


def _system_account_sql(*, program: str, kind: str) -> str:
    """SELECT the id of the program's system account of `kind` (`program`: an SQL expression)."""
    return (
        f"SELECT s.{_A.id} FROM {_A.table} s WHERE s.{_A.program} = {program} "  # noqa: S608
        f"AND s.{_A.kind} = {_literal(kind)}"
    )


def _spendable_lots_sql(*, account: str) -> str:
    """FROM and WHERE of an account's lots that points can be taken from, in spending order:
    soonest-expiring first (`account`: an SQL expression)."""
    return (
        f"FROM {_L.table} WHERE {_L.account} = {account} "
        f"AND {_L.status} = {_literal(LotStatus.ACTIVE)} AND {_L.remaining} > 0 "
        f"ORDER BY {_L.valid_to} ASC NULLS LAST, {_L.id}"
    )


def _lot_take_sql(*, amount: str, lot: str = "") -> str:
    """SET clause taking `amount` (an SQL expression) from the lot being updated, closing it
    when it is used up; `lot` is the table's alias, if it has one."""
    of = f"{lot}." if lot else ""
    return (
        f"{_L.remaining} = {of}{_L.remaining} - {amount}, "
        f"{_L.status} = CASE WHEN {of}{_L.remaining} = {amount} "
        f"THEN {_literal(LotStatus.CLOSED)} ELSE {of}{_L.status} END"
    )


def _account_lock_sql(*, where: str, counter_kind: str | None, with_hold: bool = False) -> str:
    """Lock account `a` (FOR UPDATE OF a) and read it, then the id of its program's system
    account of `counter_kind` and whether the program has lifetime tiers; with `with_hold`, the
    hold `h` (joined to its account) comes first."""
    counter = "NULL"
    if counter_kind is not None:
        counter = f"({_system_account_sql(program=f'a.{_A.program}', kind=counter_kind)})"
    tiers = (
        f"EXISTS (SELECT 1 FROM {_TIER.table} t WHERE t.{_TIER.program} = a.{_A.program} "  # noqa: S608
        f"AND t.{_TIER.basis} = {_literal(TierBasis.LIFETIME)})"
    )
    columns, source = _ACCOUNT_COLUMNS.select("a"), f"{_A.table} a"
    if with_hold:
        columns = f"{_HOLD_COLUMNS.select('h')}, {columns}"
        source = f"{_H.table} h JOIN {source} ON a.{_A.id} = h.{_H.account}"
    return f"SELECT {columns}, {counter}, {tiers} FROM {source} WHERE {where}{_LOCK_ACCOUNT_ROW}"  # noqa: S608


_COUNTER_KINDS = (None, AccountKind.ISSUED, AccountKind.REDEEMED, AccountKind.EXPIRED)
_LOCK_ACCOUNT_SQL = {
    kind: _account_lock_sql(where=f"a.{_A.id} = %s", counter_kind=kind) for kind in _COUNTER_KINDS
}
_LOCK_MEMBER_ACCOUNT_SQL = {
    kind: _account_lock_sql(where=f"a.{_A.program} = %s AND a.{_A.member} = %s", counter_kind=kind)
    for kind in _COUNTER_KINDS
}
_LOCK_HOLD_ACCOUNT_SQL = {
    kind: _account_lock_sql(
        where=f"h.{_H.owner} = %s AND h.{_H.transaction_id} = %s",
        counter_kind=kind,
        with_hold=True,
    )
    for kind in _COUNTER_KINDS
}
_SYSTEM_ACCOUNT_ID_SQL = {
    kind: _system_account_sql(program="%s", kind=kind)
    for kind in _COUNTER_KINDS
    if kind is not None
}
_ACCOUNT_SAVE_SQL = {
    fields: f"UPDATE {_A.table} SET "  # noqa: S608
    + ", ".join(f"{getattr(_A, name)} = %s" for name in (*fields, "updated_at"))
    + f" WHERE {_A.id} = %s"
    for fields in (("balance",), ("balance", "held"), ("balance", "lifetime_earned"), ("pending",))
}
_ACCOUNT_HELD_RELEASE_SQL = (
    f"UPDATE {_A.table} SET {_A.held} = {_A.held} - %s, {_A.updated_at} = %s WHERE {_A.id} = %s"  # noqa: S608
)
_EARMARK_SQL = (
    f"UPDATE {_A.table} SET {_A.held} = {_A.held} + %s "  # noqa: S608
    f"WHERE {_A.program} = %s AND {_A.member} = %s AND {_A.balance} - {_A.held} >= %s "
    f"RETURNING {_A.id}"
)
_EARN_KEY_USED_SQL = (
    f"SELECT EXISTS (SELECT 1 FROM {_L.table} WHERE {_L.account} = %s "  # noqa: S608
    f"AND {_L.idempotency_key} = %s), "
    f"EXISTS (SELECT 1 FROM {_T.table} WHERE {_T.program} = %s AND {_T.idempotency_key} = %s)"
)
_TRANSFER_BY_KEY_SQL = (
    f"SELECT {_TRANSFER_COLUMNS.select('t')} FROM {_T.table} t "  # noqa: S608
    f"WHERE t.{_T.program} = %s AND t.{_T.idempotency_key} = %s"
)
_ACTIVE_LOTS_SQL = f"SELECT {_L.id}, {_L.remaining} {_spendable_lots_sql(account='%s')} LIMIT %s"
_LOT_REMAINING_SQL = f"UPDATE {_L.table} SET {_L.remaining} = %s WHERE {_L.id} = %s"  # noqa: S608
# The common debit: the first lot in spending order holds enough. One statement takes the
# points from it (closing it when it is used up); no row when it does not hold enough.
_TAKE_FROM_FIRST_LOT_SQL = (
    f"UPDATE {_L.table} SET {_lot_take_sql(amount='%s')} "  # noqa: S608
    f"WHERE {_L.id} = (SELECT {_L.id} {_spendable_lots_sql(account='%s')} LIMIT 1) "
    f"AND {_L.remaining} >= %s RETURNING {_L.id}"
)
_HOLD_RESOLVE_SQL = (
    f"UPDATE {_H.table} SET {_H.status} = %s, {_H.resolved_at} = %s, {_H.resolved_by} = %s "  # noqa: S608
    f"WHERE {_H.id} = %s"
)
_HOLD_TAKE_SQL = f"{_HOLD_RESOLVE_SQL} AND {_H.status} = {_literal(HoldStatus.HELD)}"


@cache
def _lots_close_sql(count: int) -> str:
    """Close `count` used-up lots, by id (built once per count)."""
    return (
        f"UPDATE {_L.table} SET {_L.remaining} = 0, {_L.status} = {_literal(LotStatus.CLOSED)} "  # noqa: S608
        f"WHERE {_L.id} IN ({', '.join(['%s'] * count)})"
    )


@cache
def _insert_statement(model: type[Model], skip_conflicts: bool) -> tuple[str, list]:
    """INSERT of all the model's columns but database-generated ones, returning the primary
    key; with `skip_conflicts`, no row (and no error) when a unique constraint objects. Built
    once per model (RETURNING after INSERT needs SQLite 3.35 or later)."""
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.db_returning]
    columns = ", ".join(f'"{field.column}"' for field in fields)
    conflicts = " ON CONFLICT DO NOTHING" if skip_conflicts else ""
    statement = (
        f'INSERT INTO "{meta.db_table}" ({columns}) '  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}){conflicts} "
        f'RETURNING "{meta.pk.column}"'
    )
    return statement, fields


def _insert(obj: Model, *, skip_conflicts: bool = False) -> bool:
    """INSERT the unsaved instance with the values save() would write (auto_now_add times,
    defaults); True when the row went in, and then its primary key and state are set as save()
    sets them."""
    statement, fields = _insert_statement(type(obj), skip_conflicts)
    row = sql.fetch_one(statement, _insert_values(obj, fields))
    if row is None:
        return False
    if obj._meta.pk.db_returning:
        obj.pk = row[0]
    _mark_saved(obj)
    return True


def _insert_values(obj: Model, fields: list) -> list:
    """What save() would write for these fields of the unsaved instance (auto_now_add times,
    defaults), as the database takes them."""
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]


def _mark_saved(obj: Model) -> None:
    obj._state.adding = False
    obj._state.db = connection.alias


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
    row = sql.fetch_one(_SYSTEM_ACCOUNT_ID_SQL[kind], [program_id])
    if row is not None:
        return row[0]
    program = PointProgram.objects.get(pk=program_id)
    return _get_or_create_account(program=program, kind=kind, member=None).pk


def _lock_account(account_id: int, counter_kind: str | None = None) -> PointAccount:
    """Lock the account row (FOR UPDATE) and return it.

    With `counter_kind`, the same query also reads the id of the program's system account of
    that kind into `account.counter_id` (None when it does not exist yet), so posting the
    transfer needs no look-up of its own. System accounts are never changed or deleted once
    created, so the id read here stays right for the whole transaction. It also reads whether
    the program has lifetime tiers (`account.program_has_lifetime_tiers`): without, a credit
    has no tier to recompute.
    """
    row = sql.fetch_one(_LOCK_ACCOUNT_SQL[counter_kind], [account_id])
    if row is None:
        raise PointAccount.DoesNotExist(f"no point account {account_id}")
    return _locked_account(row, 0, counter_kind)


def _locked_account(row: tuple, start: int, counter_kind: str | None) -> PointAccount:
    """The account read by one of the _LOCK_*_SQL statements, from row[start:]."""
    account = _ACCOUNT_COLUMNS.instance(row, start)
    end = start + len(_ACCOUNT_COLUMNS)
    account.counter_kind = counter_kind
    account.counter_id = row[end]
    account.program_has_lifetime_tiers = bool(row[end + 1])
    return account


def _lock_member_account(
    *, program: PointProgram, member: Member, counter_kind: str | None = None
) -> PointAccount:
    """The member's account in the program, locked (see _lock_account); created empty first
    when missing. One query when the account exists."""
    if member.organization_id != program.organization_id:
        raise ValueError("member and program belong to different organisations")
    row = sql.fetch_one(
        _LOCK_MEMBER_ACCOUNT_SQL[counter_kind],
        [program.pk, sql.param(PointAccount, "member", member.pk)],
    )
    if row is None:
        account = account_get_or_create(program=program, member=member)
        return _lock_account(account.pk, counter_kind)
    return _locked_account(row, 0, counter_kind)


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
    counter_id = None
    if getattr(account, "counter_kind", None) == counter_kind:
        counter_id = account.counter_id  # read with the account's lock (_lock_account)
    if counter_id is None:
        counter_id = _system_account_id(account.program_id, counter_kind)
    debit_id, credit_id = (counter_id, account.pk) if credit_member else (account.pk, counter_id)
    transfer = Transfer(
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
    _insert(transfer)
    return transfer


def _consume_lots(*, account: PointAccount, amount: int) -> None:
    """Take `amount` from the account's active lots, soonest-expiring first.

    Every active lot holds at least one point, so the first `amount` lots in that order are
    all that can be needed: they are read in one query (at most 500 at a time), the ones used
    up are closed by one UPDATE and the one left part-used (at most one) by another. When the
    first lot holds enough (the usual small debit), one statement does it all.
    """
    if sql.fetch_one(_TAKE_FROM_FIRST_LOT_SQL, [amount, amount, account.pk, amount]):
        return
    left = amount
    while left:
        lots = sql.fetch_all(_ACTIVE_LOTS_SQL, [account.pk, min(left, 500)])
        if not lots:
            # balance == sum(remaining of active lots) is an invariant; reaching here means the
            # ledger is corrupt, and the transaction must not go on.
            raise RuntimeError(
                f"account {account.pk}: lots hold {amount - left} of {amount} points"
            )
        used_up = []
        for lot_id, remaining in lots:
            take = min(remaining, left)
            left -= take
            if take == remaining:
                used_up.append(lot_id)
            else:
                sql.execute(_LOT_REMAINING_SQL, [remaining - take, lot_id])
            if left == 0:
                break
        if used_up:
            sql.execute(_lots_close_sql(len(used_up)), used_up)


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
        _account_save(account, "pending")
        _insert(lot)
        return lot
    account.balance += amount
    account.lifetime_earned += amount
    _account_save(account, "balance", "lifetime_earned")
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
    _insert(lot)
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
    if hold is None:
        _account_save(account, "balance")
    else:
        account.held -= amount
        _account_save(account, "balance", "held")
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


def _account_save(account: PointAccount, *fields: str) -> None:
    """account.save(update_fields=[*fields, "updated_at"]) as one prepared statement."""
    account.updated_at = timezone.now()
    sql.execute(
        _ACCOUNT_SAVE_SQL[fields],
        [
            *(getattr(account, name) for name in fields),
            sql.param(PointAccount, "updated_at", account.updated_at),
            account.pk,
        ],
    )


def _replayed_transfer(
    *, program: PointProgram, account: PointAccount, idempotency_key: str | None, amount: int
) -> Transfer | None:
    if idempotency_key is None:
        return None
    row = sql.fetch_one(_TRANSFER_BY_KEY_SQL, [program.pk, idempotency_key])
    if row is None:
        return None
    existing = _TRANSFER_COLUMNS.instance(row)
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
    savepoint: bool = True,
) -> EarnResult:
    """Credit points to the member as a new lot (issued -> member).

    A lot whose valid_from is in the future is pending: it counts in `pending` and is posted by
    `activate_due_lots`. valid_to defaults to the program's default validity. With an
    idempotency_key, a repeat returns the first result (replayed=True); the same key with another
    member or amount raises IdempotencyConflict. Raises InvalidAmount, ProgramIsFollower.
    savepoint=False: the caller's own atomic block undoes a failure (one savepoint less).
    """
    amount = _check_amount(amount)
    _refuse_follower(program)
    now = now or timezone.now()
    valid_from = valid_from or now
    if valid_to is None and program.default_validity_days:
        valid_to = valid_from + dt.timedelta(days=program.default_validity_days)
    if valid_to is not None and valid_to <= valid_from:
        raise InvalidAmount("validTo must be after validFrom")
    with transaction.atomic(savepoint=savepoint):
        account = _lock_member_account(
            program=program, member=member, counter_kind=AccountKind.ISSUED
        )
        if idempotency_key is not None:
            # One query (after the lock, so it sees what a concurrent holder of it committed):
            # is the key on a lot of this account, or on any transfer of the program?
            on_lot, on_transfer = sql.fetch_one(
                _EARN_KEY_USED_SQL, [account.pk, idempotency_key, program.pk, idempotency_key]
            )
            if on_lot:
                lot = PointLot.objects.get(account=account, idempotency_key=idempotency_key)
                if lot.amount != amount:
                    raise IdempotencyConflict()
                return EarnResult(lot=lot, transfer=lot.transfer, replayed=True)
            # The same key on another member's account (or on a debit) is a conflict, not a
            # new earn.
            if on_transfer:
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


@dataclass(frozen=True)
class EarnItem:
    """One earn of earn_many: the arguments of earn() that it takes."""

    program: PointProgram
    member: Member
    amount: int
    source: str = "Purchase"
    description: str = ""
    reference: str = ""
    actor: str = "system"
    idempotency_key: str | None = None


def earn_many(
    *,
    items: list[EarnItem],
    kind: str = TransferKind.EARN,
    now: dt.datetime | None = None,
    savepoint: bool = True,
) -> list[tuple[int, int]]:
    """earn() for several items in one transaction, in a few statements for all of them;
    returns each item's (lot id, transfer id), in order.

    Every item is checked first (InvalidAmount, ProgramIsFollower, ValueError for a member of
    another organisation, as earn). Then the items' accounts are locked in id order (missing
    ones created), every idempotency key is looked up at once, and the credits are posted item
    after item as earn posts them: active lots, expiring after the program's default validity.
    A key already used (by an earlier earn, or twice in the items) raises IdempotencyConflict
    before anything is written: whether it is a repeat or a conflict is earn()'s to tell, item
    by item. savepoint=False: the caller's own atomic block undoes a failure (and cannot go on
    after one).
    """
    now = now or timezone.now()
    for item in items:
        _check_amount(item.amount)
        _refuse_follower(item.program)
        if item.member.organization_id != item.program.organization_id:
            raise ValueError("member and program belong to different organisations")
    keys = [item.idempotency_key for item in items if item.idempotency_key is not None]
    if len(set(keys)) != len(keys):
        raise IdempotencyConflict("an idempotency key appears twice")
    with transaction.atomic(savepoint=savepoint):
        accounts, _created = _member_accounts_lock_bulk(
            pairs={(item.program, item.member) for item in items}
        )
        # After the locks, so that a key a concurrent holder of one committed is seen.
        keyed = [
            (accounts[item.program.pk, item.member.pk].pk, item.program.pk, item.idempotency_key)
            for item in items
            if item.idempotency_key is not None
        ]
        if keyed and _idempotency_keys_used(keyed):
            raise IdempotencyConflict("an idempotency key is already used")
        credits = []
        for item in items:
            validity = item.program.default_validity_days
            credits.append(
                _Credit(
                    account=accounts[item.program.pk, item.member.pk],
                    amount=item.amount,
                    valid_from=now,
                    valid_to=now + dt.timedelta(days=validity) if validity else None,
                    source=item.source,
                    description=item.description,
                    reference=item.reference,
                    actor=item.actor,
                    idempotency_key=item.idempotency_key,
                )
            )
        return _credits_write(credits, kind=kind, now=now)


def _idempotency_keys_used(keyed: list[tuple[int, int, str]]) -> bool:
    """Whether any (account id, program id, key) has its key on a lot of the account or on a
    transfer of the program: what earn looks up, for many items, in one statement."""
    if connection.vendor == "postgresql":
        arrays = [list(column) for column in zip(*keyed, strict=True)]
        return bool(sql.fetch_one(_KEYS_USED_SQL, arrays)[0])
    params = []
    for account_id, program_id, key in keyed:
        params += [account_id, key, program_id, key]
    return bool(sql.fetch_one(_keys_used_sql(len(keyed)), params)[0])


# Each item's key is looked up by equality on the unique index of its account's lots and of its
# program's transfers. A list of keys (`key IN (...)`) let PostgreSQL read every keyed transfer
# of the program and filter them: the look grew with the ledger.
_KEYS_USED_SQL = (
    "SELECT EXISTS (SELECT 1 FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) "  # noqa: S608
    "AS k(account_id, program_id, key) "
    f"WHERE EXISTS (SELECT 1 FROM {_L.table} l "
    f"WHERE l.{_L.account} = k.account_id AND l.{_L.idempotency_key} = k.key) "
    f"OR EXISTS (SELECT 1 FROM {_T.table} t "
    f"WHERE t.{_T.program} = k.program_id AND t.{_T.idempotency_key} = k.key))"
)


@cache
def _keys_used_sql(items: int) -> str:
    """_KEYS_USED_SQL without arrays (SQLite): two probes per item."""
    probe = (
        f"EXISTS (SELECT 1 FROM {_L.table} WHERE {_L.account} = %s "  # noqa: S608
        f"AND {_L.idempotency_key} = %s) OR EXISTS (SELECT 1 FROM {_T.table} "
        f"WHERE {_T.program} = %s AND {_T.idempotency_key} = %s)"
    )
    return "SELECT " + " OR ".join([probe] * items)


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
    savepoint: bool = True,
) -> Transfer:
    """Debit available points (member -> redeemed), soonest-expiring lots first.

    Raises InsufficientPoints when balance - held < amount (nothing changes), InvalidAmount,
    ProgramIsFollower, IdempotencyConflict. A repeat with the same idempotency_key returns the
    first transfer. savepoint=False: the caller's own atomic block undoes a failure.
    """
    amount = _check_amount(amount)
    _refuse_follower(program)
    with transaction.atomic(savepoint=savepoint):
        account = _lock_member_account(
            program=program, member=member, counter_kind=AccountKind.REDEEMED
        )
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


def _one_statement_possible() -> bool:
    """A data-modifying WITH (PostgreSQL) run outside any transaction is atomic on its own, so
    a write that fits in one statement needs no BEGIN and COMMIT round trips."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


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
    hold = Hold(
        program=program,
        amount=amount,
        owner=owner,
        transaction_id=transaction_id,
        description=description[:500],
        expires_at=now + dt.timedelta(seconds=program.hold_ttl_seconds),
    )
    if _one_statement_possible():
        # The common case as one statement, atomic on its own (no BEGIN and COMMIT round
        # trips): earmark the points on the account (its row lock, the available check) and
        # insert the hold. A taken transaction id fails the whole statement (nothing written);
        # no account or too few points insert nothing. The checks below answer both.
        try:
            if _earmark_and_hold(hold, member=member):
                return HoldResult(hold=hold)
        except IntegrityError:
            pass
    with transaction.atomic():
        # The same in two statements: one conditional UPDATE locks the account, checks the
        # available points and earmarks them; then the hold goes in unless its transaction id
        # is taken (the unique constraint decides, no savepoint needed). Lock order stays
        # account, then hold.
        account_id = _earmark(program=program, member=member, amount=amount)
        if account_id is not None:
            hold.account_id = account_id
            if insert_unless_conflict(hold):
                return HoldResult(hold=hold)
            # The transaction id is taken: give the points back; the checks below answer.
            PointAccount.objects.filter(pk=account_id).update(held=F("held") - amount)
        return _hold_create_checked(hold=hold, member=member)


def _hold_create_checked(*, hold: Hold, member: Member) -> HoldResult:
    """hold_create step by step for the unsaved `hold`: a repeat, a conflict, a missing account
    or too few points."""
    account = account_get_or_create(program=hold.program, member=member)
    account = _lock_account(account.pk)
    existing = Hold.objects.filter(owner=hold.owner, transaction_id=hold.transaction_id).first()
    if existing is not None:
        if existing.account_id != account.pk or existing.amount != hold.amount:
            raise HoldConflict()
        return HoldResult(hold=existing, replayed=True)
    if account.available < hold.amount:
        raise InsufficientPoints(available=account.available, requested=hold.amount)
    PointAccount.objects.filter(pk=account.pk).update(held=F("held") + hold.amount)
    hold.account = account
    try:
        with transaction.atomic():
            hold.save(force_insert=True)
    except IntegrityError:
        # The same transaction id was just used on another member's account.
        raise HoldConflict() from None
    return HoldResult(hold=hold)


@cache
def _earmark_and_hold_statement() -> tuple[str, list]:
    """_EARMARK_SQL and the hold's INSERT in one statement (PostgreSQL: data-modifying WITH);
    the hold's account is the earmarked one. Returns the hold's id and account id."""
    meta = Hold._meta
    _, fields = _insert_statement(Hold, skip_conflicts=False)
    account = meta.get_field("account")
    columns = ", ".join(f'"{field.column}"' for field in fields)
    values = ", ".join('earmarked."id"' if field is account else "%s" for field in fields)
    statement = (
        f"WITH earmarked AS ({_EARMARK_SQL}) "  # noqa: S608
        f'INSERT INTO "{meta.db_table}" ({columns}) SELECT {values} FROM earmarked '
        f'RETURNING "{meta.pk.column}", "{account.column}"'
    )
    return statement, [field for field in fields if field is not account]


def _earmark_and_hold(hold: Hold, *, member: Member) -> bool:
    """Run _earmark_and_hold_statement for the unsaved hold; True (and the hold saved) when the
    points were earmarked and the hold inserted. Raises IntegrityError for a taken id."""
    statement, fields = _earmark_and_hold_statement()
    earmark = [
        hold.amount,
        hold.program_id,
        sql.param(PointAccount, "member", member.pk),
        hold.amount,
    ]
    row = sql.fetch_one(statement, earmark + _insert_values(hold, fields))
    if row is None:
        return False
    hold.pk, hold.account_id = row
    _mark_saved(hold)
    return True


def _earmark(*, program: PointProgram, member: Member, amount: int) -> int | None:
    """held += amount on the member's account if it has that many available points.

    Returns the account id, or None when there is no account or too few points (nothing
    changed). The UPDATE takes the account's row lock; under READ COMMITTED a concurrent writer
    makes it wait and then re-check the condition on the new row.
    """
    row = sql.fetch_one(
        _EARMARK_SQL,
        [amount, program.pk, sql.param(PointAccount, "member", member.pk), amount],
    )
    return row[0] if row else None


def insert_unless_conflict(obj) -> bool:
    """INSERT the unsaved model instance, or nothing if it would break a unique constraint.

    True when the row went in (an auto primary key is set on `obj`). For rows whose unique
    constraint is an idempotency key: a conflict means the key was used, by an earlier or a
    concurrent writer, and the caller looks that row up. Costs one statement where
    `create()` in a savepoint costs three.
    """
    return _insert(obj, skip_conflicts=True)


def _hold_for_update(
    *, owner: str, transaction_id: str, member: Member | None, counter_kind: str | None = None
) -> tuple[Hold, PointAccount]:
    """The hold (as read before locking) and its account, locked (see _lock_account), in one
    statement.

    Every change of a hold's status happens under its account's lock, so once the account is
    locked a conditional UPDATE of the hold (_hold_take) or a re-read sees its settled state.
    """
    row = sql.fetch_one(_LOCK_HOLD_ACCOUNT_SQL[counter_kind], [owner, transaction_id])
    if row is None:
        raise HoldNotFound()
    hold = _HOLD_COLUMNS.instance(row)
    account = _locked_account(row, len(_HOLD_COLUMNS), counter_kind)
    if member is not None and account.member_id != member.pk:
        raise HoldNotFound()
    return hold, account


def _hold_take(hold: Hold, *, status: str, actor: str, now: dt.datetime) -> bool:
    """Resolve an open, unexpired hold (caller holds the account lock); False if it is not."""
    if hold.status != HoldStatus.HELD or hold.expires_at <= now:
        return False
    taken = sql.execute(
        _HOLD_TAKE_SQL,
        [status, sql.param(Hold, "resolved_at", now), actor, sql.param(Hold, "id", hold.pk)],
    )
    if taken:
        hold.status, hold.resolved_at, hold.resolved_by = status, now, actor
    return bool(taken)


@cache
def _confirm_in_one_statement_sql() -> tuple[str, list]:
    """hold_confirm's usual case as one statement (PostgreSQL: data-modifying WITH), for a hold
    whose first lot in spending order covers it. Returns the statement and the Transfer fields
    whose values are parameters (the others come from the rows it reads).

    `seen` reads the open hold, its account (with the row version, xmin), the first lot and
    the redeemed account from the statement's snapshot. `account` then debits the account:
    its UPDATE takes the row lock, and if another transaction changed the row after the
    snapshot, PostgreSQL re-checks the row as it is now, its xmin no longer matches, and
    nothing is written. Every change to an account's holds or lots also updates the account
    row (balance or held), so a matching xmin means what `seen` read is still true under the
    lock. The lock order is the ledger's: account, then hold and lot. The last line is a guard
    that cannot fire while that rule holds: should the hold or lot not move with the account,
    the cast fails and the whole statement with it.
    """
    _, fields = _insert_statement(Transfer, skip_conflicts=False)
    meta = Transfer._meta
    from_rows = {
        "program": f"account.{_A.program}",
        "debit_account": f"account.{_A.id}",
        "credit_account": "account.counter_id",
        "member_account": f"account.{_A.id}",
        "amount": "account.amount",
        "description": "account.description",
        "member_balance_after": f"account.{_A.balance}",
        "hold": "account.hold_id",
    }
    columns = ", ".join(f'"{field.column}"' for field in fields)
    values = ", ".join(from_rows.get(field.name, "%s") for field in fields)
    active, held = _literal(LotStatus.ACTIVE), _literal(HoldStatus.HELD)
    statement = (
        "WITH seen AS MATERIALIZED ("  # noqa: S608
        f"SELECT h.{_H.id} AS hold_id, h.{_H.amount} AS amount, h.{_H.description} AS description,"
        f" a.{_A.id} AS account_id, a.xmin AS version, l.{_L.id} AS lot_id, "
        f"({_system_account_sql(program=f'a.{_A.program}', kind=AccountKind.REDEEMED)}) "
        "AS counter_id "
        f"FROM {_H.table} h JOIN {_A.table} a ON a.{_A.id} = h.{_H.account} "
        f"JOIN LATERAL (SELECT {_L.id}, {_L.remaining} "
        f"{_spendable_lots_sql(account=f'a.{_A.id}')} LIMIT 1) l "
        f"ON l.{_L.remaining} >= h.{_H.amount} "
        f"WHERE h.{_H.owner} = %s AND h.{_H.transaction_id} = %s AND a.{_A.member} = %s "
        f"AND h.{_H.status} = {held} AND h.{_H.expires_at} > %s), "
        f"account AS (UPDATE {_A.table} a SET {_A.balance} = a.{_A.balance} - seen.amount, "
        f"{_A.held} = a.{_A.held} - seen.amount, {_A.updated_at} = %s FROM seen "
        f"WHERE a.{_A.id} = seen.account_id AND a.xmin = seen.version "
        f"RETURNING a.{_A.id}, a.{_A.program}, a.{_A.balance}, seen.hold_id, seen.amount, "
        "seen.description, seen.lot_id, seen.counter_id), "
        f"taken AS (UPDATE {_H.table} h SET {_H.status} = {_literal(HoldStatus.CONFIRMED)}, "
        f"{_H.resolved_at} = %s, {_H.resolved_by} = %s FROM account "
        f"WHERE h.{_H.id} = account.hold_id AND h.{_H.status} = {held} "
        f"RETURNING {_HOLD_COLUMNS.select('h')}), "
        f"lot AS (UPDATE {_L.table} l SET {_lot_take_sql(amount='account.amount', lot='l')} "
        "FROM account "
        f"WHERE l.{_L.id} = account.lot_id AND l.{_L.remaining} >= account.amount "
        f"AND l.{_L.status} = {active} RETURNING l.{_L.id}), "
        f'transfer AS (INSERT INTO "{meta.db_table}" ({columns}) SELECT {values} FROM account '
        f'RETURNING "{meta.pk.column}") '
        f"SELECT taken.*, CASE WHEN (SELECT count(*) FROM lot) = 1 AND taken.{_H.id} IS NOT NULL "
        "THEN 0 ELSE ('hold ' || account.hold_id || ' moved without its account')::int END "
        "FROM account LEFT JOIN taken ON true"
    )
    return statement, [field for field in fields if field.name not in from_rows]


def _confirm_in_one_statement(
    *, owner: str, transaction_id: str, member: Member, actor: str, now: dt.datetime
) -> Hold | None:
    """The confirmed hold, when _confirm_in_one_statement_sql could do it all; None when it
    wrote nothing (not an open hold of this member, a debit spanning lots, an account changed
    meanwhile, no redeemed account yet): hold_confirm's transaction then decides."""
    statement, fields = _confirm_in_one_statement_sql()
    transfer = Transfer(
        kind=TransferKind.BURN,
        source="Redemption",
        reference=transaction_id[:200],
        actor=owner[:200],
    )
    params = [
        owner,
        transaction_id,
        sql.param(PointAccount, "member", member.pk),
        sql.param(Hold, "expires_at", now),
        sql.param(PointAccount, "updated_at", now),
        sql.param(Hold, "resolved_at", now),
        actor,
        *_insert_values(transfer, fields),
    ]
    try:
        row = sql.fetch_one(statement, params)
    except (IntegrityError, DataError):
        return None  # nothing was written: the statement failed as a whole
    return _HOLD_COLUMNS.instance(row) if row is not None else None


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
    if member is not None and _one_statement_possible():
        # The usual confirmation in one statement, atomic on its own (no BEGIN and COMMIT round
        # trips); anything unusual writes nothing there and is decided below.
        hold = _confirm_in_one_statement(
            owner=owner, transaction_id=transaction_id, member=member, actor=actor or owner, now=now
        )
        if hold is not None:
            return HoldResult(hold=hold)
    with transaction.atomic():
        hold, account = _hold_for_update(
            owner=owner,
            transaction_id=transaction_id,
            member=member,
            counter_kind=AccountKind.REDEEMED,
        )
        if not _hold_take(hold, status=HoldStatus.CONFIRMED, actor=actor or owner, now=now):
            hold = (
                Hold.objects.select_for_update(of=("self",))
                .select_related("program")
                .get(pk=hold.pk)
            )
            if hold.status == HoldStatus.CONFIRMED:
                return HoldResult(hold=hold, replayed=True)
            if hold.status == HoldStatus.ROLLED_BACK:
                raise HoldAlreadyResolved("points already rolled back", status=hold.status)
            if hold.status == HoldStatus.EXPIRED or hold.expires_at <= now:
                raise HoldExpired()
            # Still open and unexpired: a hold never returns to "held", so _hold_take cannot
            # have missed it under the lock; refuse rather than guess.
            if not _hold_take(hold, status=HoldStatus.CONFIRMED, actor=actor or owner, now=now):
                raise RuntimeError(f"hold {hold.pk} could not be confirmed")
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
        hold, _account = _hold_for_update(owner=owner, transaction_id=transaction_id, member=member)
        if _hold_take(hold, status=HoldStatus.ROLLED_BACK, actor=actor or owner, now=now):
            _account_release(account_id=hold.account_id, amount=hold.amount, now=now)
            return HoldResult(hold=hold)
        hold = (
            Hold.objects.select_for_update(of=("self",)).select_related("program").get(pk=hold.pk)
        )
        if hold.status == HoldStatus.ROLLED_BACK:
            return HoldResult(hold=hold, replayed=True)
        if hold.status == HoldStatus.CONFIRMED:
            raise HoldAlreadyResolved("points already deducted", status=hold.status)
        if hold.status == HoldStatus.EXPIRED or hold.expires_at <= now:
            raise HoldExpired()
        _release_hold(hold=hold, status=HoldStatus.ROLLED_BACK, actor=actor or owner, now=now)
        return HoldResult(hold=hold)


def _release_hold(*, hold: Hold, status: str, actor: str, now: dt.datetime) -> None:
    _account_release(account_id=hold.account_id, amount=hold.amount, now=now)
    hold.status = status
    hold.resolved_at = now
    hold.resolved_by = actor
    sql.execute(
        _HOLD_RESOLVE_SQL,
        [status, sql.param(Hold, "resolved_at", now), actor, sql.param(Hold, "id", hold.pk)],
    )


def _account_release(*, account_id: int, amount: int, now: dt.datetime) -> None:
    """held -= amount: a hold's points are available again (caller holds the account lock)."""
    sql.execute(
        _ACCOUNT_HELD_RELEASE_SQL,
        [amount, sql.param(PointAccount, "updated_at", now), account_id],
    )


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
                account = _lock_account(account_id, AccountKind.ISSUED)
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
        account = _lock_account(account_id, AccountKind.EXPIRED)
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
    with transaction.atomic():
        account = _lock_member_account(program=program, member=member)
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
    lot_id: int | None  # the credit's lot
    transfer_id: int | None  # None for a pending credit and for a debit that took nothing


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
    reference: str = "",
) -> MasterTransactionResult:
    """Apply one transaction pushed by the point master (seed 002, all-transaction mode).

    A credit becomes a lot (pending until valid_from, expiring at valid_to). A debit takes at
    most the balance: the master is the truth and a follower never goes negative; the shortfall
    shows as applied != requested. `reference` is recorded on the lot and the transfer (e.g.
    batch:<id>:<index>). Runs in the caller's transaction when there is one.
    """
    _refuse_master(program)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidAmount("amount must be a non-zero whole number")
    if abs(amount) > MAX_POINTS_PER_OPERATION:
        raise InvalidAmount(f"points must be at most {MAX_POINTS_PER_OPERATION}")
    now = now or timezone.now()
    with transaction.atomic():
        account = _lock_member_account(
            program=program,
            member=member,
            counter_kind=AccountKind.ISSUED if amount > 0 else AccountKind.REDEEMED,
        )
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
                reference=reference,
                actor=actor,
                valid_from=valid_from,
                valid_to=valid_to,
                now=now,
                idempotency_key=None,
            )
            return MasterTransactionResult(
                requested=amount, applied=amount, lot_id=lot.pk, transfer_id=lot.transfer_id
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
                reference=reference,
                actor=actor,
            )
        return MasterTransactionResult(
            requested=amount,
            applied=-take,
            lot_id=None,
            transfer_id=transfer.pk if transfer is not None else None,
        )


# --- follower mode in bulk: a whole batch from the point master ---------------------------------


@dataclass(frozen=True)
class MasterTransaction:
    """One item of master_transactions_apply_bulk (the arguments of master_transaction_apply)."""

    program: PointProgram
    member: Member
    amount: int
    source: str
    description: str
    valid_from: dt.datetime | None = None
    valid_to: dt.datetime | None = None
    reference: str = ""


@dataclass(frozen=True)
class MasterTransactionsResult:
    results: list[MasterTransactionResult]  # one per item, in the items' order
    accounts_created: int


def master_transactions_apply_bulk(
    *, items: list[MasterTransaction], actor: str, now: dt.datetime | None = None
) -> MasterTransactionsResult:
    """Apply a batch of the master's transactions: the same outcome, item for item, as calling
    master_transaction_apply for each in order, in far fewer statements.

    Everything is validated before anything is written (ProgramNotFollower, InvalidAmount,
    ValueError for a member of another organisation, as master_transaction_apply). Then, in
    one transaction: missing accounts are created in one INSERT (in a fixed order, so concurrent
    batches creating the same accounts queue instead of deadlocking), every account of the
    batch is locked in id order by one query, and

    * accounts that only receive credits are done in bulk: their lots and transfers are
      inserted with one INSERT each, their balances written by one UPDATE, and lifetime tiers
      recomputed only for members whose tier changes;
    * accounts with a debit take the item-by-item path (a debit consumes lots, possibly ones
      credited earlier in the same batch), under the locks already held.

    Accounts are independent of each other, so this split changes no item's outcome.
    """
    now = now or timezone.now()
    prepared = []
    for item in items:
        _refuse_master(item.program)
        amount = item.amount
        if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
            raise InvalidAmount("amount must be a non-zero whole number")
        if abs(amount) > MAX_POINTS_PER_OPERATION:
            raise InvalidAmount(f"points must be at most {MAX_POINTS_PER_OPERATION}")
        if item.member.organization_id != item.program.organization_id:
            raise ValueError("member and program belong to different organisations")
        valid_from = valid_to = None
        if amount > 0:
            valid_from, valid_to = item.valid_from or now, item.valid_to
            if valid_to is not None and valid_to <= valid_from:
                raise InvalidAmount("validTo must be after validFrom")
        prepared.append((item, valid_from, valid_to))

    with transaction.atomic():
        accounts, created = _member_accounts_lock_bulk(
            pairs={(item.program, item.member) for item in items}
        )
        with_debits = {
            accounts[item.program.pk, item.member.pk].pk for item in items if item.amount < 0
        }
        results: list[MasterTransactionResult | None] = [None] * len(items)
        credited, credits = [], []
        for index, (item, valid_from, valid_to) in enumerate(prepared):
            account = accounts[item.program.pk, item.member.pk]
            if account.pk in with_debits:
                results[index] = master_transaction_apply(
                    program=item.program,
                    member=item.member,
                    amount=item.amount,
                    source=item.source,
                    description=item.description,
                    actor=actor,
                    valid_from=valid_from,
                    valid_to=valid_to,
                    now=now,
                    reference=item.reference,
                )
            else:
                credited.append(index)
                credits.append(
                    _Credit(
                        account=account,
                        amount=item.amount,
                        valid_from=valid_from,
                        valid_to=valid_to,
                        source=item.source,
                        description=item.description,
                        reference=item.reference,
                        actor=actor,
                    )
                )
        written = _credits_write(credits, kind=TransferKind.SYNC, now=now)
        for index, credit, (lot_id, transfer_id) in zip(credited, credits, written, strict=True):
            results[index] = MasterTransactionResult(
                requested=credit.amount,
                applied=credit.amount,
                lot_id=lot_id,
                transfer_id=transfer_id,
            )
    return MasterTransactionsResult(results=results, accounts_created=created)


# The batch's member accounts as (program, member) pairs passed as two arrays: one short
# statement whatever the batch's size (an IN list of a thousand placeholders costs more to
# build and parse than the query costs to run).
_BATCH_PAIRS = (
    f'FROM "{PointAccount._meta.db_table}" a '
    "JOIN unnest(%s::bigint[], %s::uuid[]) AS pair(program_id, member_id) "
    'ON a."program_id" = pair.program_id AND a."member_id" = pair.member_id'
)
_BATCH_ACCOUNTS_EXISTING_SQL = f'SELECT a."program_id", a."member_id" {_BATCH_PAIRS}'
_BATCH_ACCOUNTS_LOCK_SQL = (
    f'SELECT {_ACCOUNT_COLUMNS.select("a")} {_BATCH_PAIRS} ORDER BY a."id" FOR UPDATE OF a'
)


def _member_accounts_lock_bulk(
    *, pairs: set[tuple[PointProgram, Member]]
) -> tuple[dict[tuple[int, object], PointAccount], int]:
    """Create the missing member accounts, then lock all of them in id order.

    Returns {(program id, member id): account} and how many accounts were missing.
    """
    wanted = {(program.pk, member.pk) for program, member in pairs}
    if connection.vendor == "postgresql":
        arrays = [[pair[0] for pair in wanted], [pair[1] for pair in wanted]]
        existing = set(sql.fetch_all(_BATCH_ACCOUNTS_EXISTING_SQL, arrays))
    else:
        existing = set(
            PointAccount.objects.filter(_pairs_q(wanted)).values_list("program_id", "member_id")
        )
    missing = sorted(wanted - existing, key=lambda pair: (pair[0], str(pair[1])))
    if missing:
        PointAccount.objects.bulk_create(
            [
                PointAccount(program_id=program_id, member_id=member_id, kind=AccountKind.MEMBER)
                for program_id, member_id in missing
            ],
            ignore_conflicts=True,
        )
    if connection.vendor == "postgresql":
        locked = map(_ACCOUNT_COLUMNS.instance, sql.fetch_all(_BATCH_ACCOUNTS_LOCK_SQL, arrays))
    else:
        locked = PointAccount.objects.select_for_update().filter(_pairs_q(wanted)).order_by("pk")
    return {(account.program_id, account.member_id): account for account in locked}, len(missing)


def _pairs_q(pairs: set[tuple[int, object]]) -> Q:
    by_program: dict[int, list] = {}
    for program_id, member_id in pairs:
        by_program.setdefault(program_id, []).append(member_id)
    wanted = Q()
    for program_id, member_ids in by_program.items():
        wanted |= Q(program_id=program_id, member_id__in=member_ids)
    return wanted


@dataclass(slots=True)
class _Credit:
    """One credit for _credits_write, to a locked member account."""

    account: PointAccount
    amount: int
    valid_from: dt.datetime
    valid_to: dt.datetime | None
    source: str
    description: str
    reference: str
    actor: str
    idempotency_key: str | None = None


def _credits_write(
    credits: list[_Credit], *, kind: str, now: dt.datetime
) -> list[tuple[int, int | None]]:
    """Post credits to locked member accounts; return each one's (lot id, transfer id).

    Per account, in order, exactly what _credit does: a pending lot (pending += amount) when
    valid_from is still to come (no transfer), else balance and lifetime_earned grow and an
    active lot comes with its transfer (issued -> member, member_balance_after as of that
    credit); lifetime tiers move as they would credit by credit. Lots and transfers are written
    as rows (_rows_insert), not built as model instances: for a thousand credits, building the
    instances cost more than writing them.
    """
    if not credits:
        return []
    issued: dict[int, int] = {}
    transfer_rows, lot_rows, transfer_numbers = [], [], []
    touched: dict[int, PointAccount] = {}
    # account id -> lifetime_earned after each of its active credits, in order (for tiers)
    earned: dict[int, list[int]] = {}
    # Plain values, read once (an enum member's .value is a descriptor call).
    kind = str(kind)
    lot_pending, lot_active = LotStatus.PENDING.value, LotStatus.ACTIVE.value
    for credit in credits:
        account = credit.account
        account_id, program_id, amount = account.id, account.program_id, credit.amount
        pending = credit.valid_from > now
        source, description = credit.source[:64], credit.description[:500]
        reference, actor = credit.reference[:200], credit.actor[:200]
        transfer_number = None
        if pending:
            account.pending += amount
        else:
            if program_id not in issued:
                issued[program_id] = _system_account_id(program_id, AccountKind.ISSUED)
            account.balance += amount
            account.lifetime_earned += amount
            earned.setdefault(account_id, []).append(account.lifetime_earned)
            transfer_number = len(transfer_rows)
            transfer_rows.append(
                {
                    "program_id": program_id,
                    "debit_account_id": issued[program_id],
                    "credit_account_id": account_id,
                    "member_account_id": account_id,
                    "amount": amount,
                    "kind": kind,
                    "source": source,
                    "description": description,
                    "reference": reference,
                    "actor": actor,
                    "member_balance_after": account.balance,
                    "idempotency_key": credit.idempotency_key,
                }
            )
        lot_rows.append(
            {
                "account_id": account_id,
                "amount": amount,
                "remaining": amount,
                "valid_from": credit.valid_from,
                "valid_to": credit.valid_to,
                "status": lot_pending if pending else lot_active,
                "transfer_id": None,  # set below, once the transfers have their ids
                "source": source,
                "description": description,
                "reference": reference,
                "actor": actor,
                "idempotency_key": credit.idempotency_key,
            }
        )
        transfer_numbers.append(transfer_number)
        touched[account_id] = account
    transfer_ids = _rows_insert(Transfer, transfer_rows, now=now)
    for row, number in zip(lot_rows, transfer_numbers, strict=True):
        if number is not None:
            row["transfer_id"] = transfer_ids[number]
    lot_ids = _rows_insert(PointLot, lot_rows, now=now)
    _accounts_store(list(touched.values()), now=now)
    _tiers_recompute_bulk([(touched[account_id], steps) for account_id, steps in earned.items()])
    return [
        (lot_id, transfer_ids[number] if number is not None else None)
        for lot_id, number in zip(lot_ids, transfer_numbers, strict=True)
    ]


def _rows_insert(model: type[Model], rows: list[dict], *, now: dt.datetime) -> list[int]:
    """Insert rows of one model and return their ids, in order.

    Each row maps attnames to plain values (ints, str, aware datetimes, None); a field it does
    not name takes its (non-callable) default, auto_now(_add) fields take `now`. On PostgreSQL
    one query takes as many ids from the table's sequence as there are rows, then COPY writes
    the rows with them: COPY adapts the values in the driver's C code, and none of the ORM's
    per-value preparation runs. (The COPY goes straight to the driver, so it does not appear
    in Django's query log; the id query does.) Other databases use bulk_create.
    """
    if not rows:
        return []
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        objs = model.objects.bulk_create([model(**row) for row in rows])
        return [obj.pk for obj in objs]
    # The rows' own columns, then those every row shares (defaults, auto_now stamps).
    named = [field for field in fields if field.attname in rows[0]]
    shared = [field for field in fields if field.attname not in rows[0]]
    shared_values = tuple(
        now
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        else field.get_default()
        for field in shared
    )
    row_values = operator.itemgetter(*(field.attname for field in named))
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(rows)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        columns = ", ".join(qn(f.column) for f in [meta.pk, *named, *shared])
        with cursor.cursor.copy(f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for pk, row in zip(ids, rows, strict=True):
                copy.write_row((pk, *row_values(row), *shared_values))
    return ids


def _accounts_store(accounts: list[PointAccount], *, now: dt.datetime) -> None:
    """Write balance, pending and lifetime_earned of many locked accounts in one statement."""
    for account in accounts:
        account.updated_at = now
    connection = connections[router.db_for_write(PointAccount)]
    if connection.vendor != "postgresql":
        PointAccount.objects.bulk_update(
            accounts, ["balance", "pending", "lifetime_earned", "updated_at"]
        )
        return
    # PostgreSQL: four arrays unnested into rows; one short statement whatever the count.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE points_pointaccount AS a SET balance = v.balance, pending = v.pending, "
            "lifetime_earned = v.lifetime_earned, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
            "AS v(id, balance, pending, lifetime_earned) WHERE a.id = v.id",
            [
                now,
                [account.pk for account in accounts],
                [account.balance for account in accounts],
                [account.pending for account in accounts],
                [account.lifetime_earned for account in accounts],
            ],
        )


def _tiers_recompute_bulk(earned: list[tuple[PointAccount, list[int]]]) -> None:
    """Lifetime tiers after bulk credits, as _credit would have moved them item by item.

    `earned` pairs each account with its lifetime_earned after each of its credits. Two queries
    (the programs' lifetime tiers, the members' current tiers) find the steps at which a member
    reaches a tier other than the current one; only there is tier_recompute_for_account called,
    with lifetime_earned as of that step, so the tier history is the one the item-by-item path
    writes. Nothing else runs when no tier changes (the common case).
    """
    if not earned:
        return
    from loyalty.engagement.models import MemberTier, Tier, TierBasis
    from loyalty.engagement.services import tier_recompute_for_account

    program_ids = {account.program_id for account, _steps in earned}
    tiers: dict[int, list[tuple[int, int]]] = {}
    for tier_id, program_id, threshold in (
        Tier.objects.filter(program_id__in=program_ids, basis=TierBasis.LIFETIME)
        .exclude(program__mode=ProgramMode.FOLLOWER_BALANCE)
        .order_by("-threshold")
        .values_list("pk", "program_id", "threshold")
    ):
        tiers.setdefault(program_id, []).append((tier_id, threshold))
    if not tiers:
        return
    current = {
        (program_id, member_id): tier_id
        for program_id, member_id, tier_id in MemberTier.objects.filter(
            program_id__in=tiers.keys(),
            member_id__in=[account.member_id for account, _steps in earned],
        ).values_list("program_id", "member_id", "tier_id")
    }
    for account, steps in earned:
        program_tiers = tiers.get(account.program_id)
        if not program_tiers:
            continue
        tier_now = current.get((account.program_id, account.member_id))
        final_lifetime = account.lifetime_earned
        for lifetime in steps:
            reached = next(
                (tier_id for tier_id, threshold in program_tiers if threshold <= lifetime), None
            )
            if reached is not None and reached != tier_now:
                account.lifetime_earned = lifetime
                try:
                    tier_recompute_for_account(account=account)
                finally:
                    account.lifetime_earned = final_lifetime
                tier_now = reached
