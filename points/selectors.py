"""Reads of the points ledger: balances, history, and the invariant check behind verify_ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty import sql
from loyalty.models import Member
from points.models import (
    AccountKind,
    Hold,
    HoldStatus,
    LotStatus,
    PointAccount,
    PointLot,
    PointProgram,
    Transfer,
)


@dataclass(frozen=True)
class Balance:
    balance: int
    available: int
    held: int
    pending: int
    lifetime_earned: int


EMPTY_BALANCE = Balance(balance=0, available=0, held=0, pending=0, lifetime_earned=0)


def _balance_sql() -> str:
    columns = {
        name: f'"{PointAccount._meta.get_field(name).column}"'
        for name in ("balance", "held", "pending", "lifetime_earned", "program", "member")
    }
    return (
        f"SELECT {columns['balance']}, {columns['held']}, {columns['pending']}, "  # noqa: S608
        f'{columns["lifetime_earned"]} FROM "{PointAccount._meta.db_table}" '
        f"WHERE {columns['program']} = %s AND {columns['member']} = %s"
    )


# Prepared once (loyalty/sql.py): EAI member tokens and the portal read it on every request.
_BALANCE_SQL = _balance_sql()


def balance_get(*, program: PointProgram, member: Member) -> Balance:
    """The member's balance in the program (zeros when the member has no account yet)."""
    row = sql.fetch_one(_BALANCE_SQL, [program.pk, sql.param(PointAccount, "member", member.pk)])
    if row is None:
        return EMPTY_BALANCE
    balance, held, pending, lifetime_earned = row
    return Balance(
        balance=balance,
        available=balance - held,
        held=held,
        pending=pending,
        lifetime_earned=lifetime_earned,
    )


def points_expiring_soon(
    *, program: PointProgram, member: Member, within: dt.timedelta = dt.timedelta(days=30)
) -> int:
    now = timezone.now()
    return PointLot.objects.filter(
        account__program=program,
        account__member=member,
        status=LotStatus.ACTIVE,
        valid_to__isnull=False,
        valid_to__lte=now + within,
    ).aggregate(total=Coalesce(Sum("remaining"), 0))["total"]


def transfers_for_member(*, member: Member, program: PointProgram | None = None):
    """A member's transfers, newest first (index transfer_member_history_idx)."""
    accounts = PointAccount.objects.filter(member=member)
    if program is not None:
        accounts = accounts.filter(program=program)
    return Transfer.objects.filter(member_account__in=accounts).order_by("-id")


def open_holds_for_member(*, member: Member):
    return Hold.objects.filter(account__member=member, status=HoldStatus.HELD).order_by(
        "expires_at"
    )


def system_account_balances(*, program: PointProgram) -> dict[str, int]:
    """Balances of the program's system accounts, derived from the transfers."""
    balances = {}
    for account in PointAccount.objects.filter(program=program).exclude(kind=AccountKind.MEMBER):
        credits = Transfer.objects.filter(credit_account=account).aggregate(
            total=Coalesce(Sum("amount"), 0)
        )["total"]
        debits = Transfer.objects.filter(debit_account=account).aggregate(
            total=Coalesce(Sum("amount"), 0)
        )["total"]
        balances[account.kind] = credits - debits
    return balances


# --- invariants ---------------------------------------------------------------------------------


@dataclass
class LedgerReport:
    programs_checked: int = 0
    accounts_checked: int = 0
    transfers_checked: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def ledger_verify(*, program: PointProgram | None = None) -> LedgerReport:
    """Check every invariant of DESIGN.md's ledger section; return what was checked and found.

    Per program: transfers sum to zero over all accounts, i.e. system balances derived from the
    transfers plus members' materialised balances are zero. Per member account: balance equals
    posted credits - debits and the remaining of active lots; held equals open holds; pending
    equals pending lots; 0 <= held <= balance.
    """
    report = LedgerReport()
    programs = PointProgram.objects.all() if program is None else [program]
    for prog in programs:
        report.programs_checked += 1
        _verify_program(prog, report)
    return report


def _sums_by_account(queryset, key: str, value: str) -> dict[int, int]:
    return {
        row[key]: row["total"]
        for row in queryset.values(key).annotate(total=Coalesce(Sum(value), 0)).order_by()
    }


def _verify_program(program: PointProgram, report: LedgerReport) -> None:
    transfers = Transfer.objects.filter(program=program)
    report.transfers_checked += transfers.count()
    credits = _sums_by_account(transfers, "credit_account", "amount")
    debits = _sums_by_account(transfers, "debit_account", "amount")
    active_lots = _sums_by_account(
        PointLot.objects.filter(account__program=program, status=LotStatus.ACTIVE),
        "account",
        "remaining",
    )
    pending_lots = _sums_by_account(
        PointLot.objects.filter(account__program=program, status=LotStatus.PENDING),
        "account",
        "amount",
    )
    open_holds = _sums_by_account(
        Hold.objects.filter(program=program, status=HoldStatus.HELD), "account", "amount"
    )
    total = 0
    for account in PointAccount.objects.filter(program=program).order_by("pk"):
        report.accounts_checked += 1
        posted = credits.get(account.pk, 0) - debits.get(account.pk, 0)
        if account.kind != AccountKind.MEMBER:
            total += posted
            continue
        total += account.balance
        label = f"program {program} account {account.pk} (member {account.member_id})"
        checks = {
            "balance vs posted transfers": (account.balance, posted),
            "balance vs remaining of active lots": (
                account.balance,
                active_lots.get(account.pk, 0),
            ),
            "held vs open holds": (account.held, open_holds.get(account.pk, 0)),
            "pending vs pending lots": (account.pending, pending_lots.get(account.pk, 0)),
        }
        for name, (stored, computed) in checks.items():
            if stored != computed:
                report.mismatches.append(f"{label}: {name}: stored {stored}, computed {computed}")
        if not (0 <= account.held <= account.balance):
            report.mismatches.append(
                f"{label}: held {account.held} outside 0..balance {account.balance}"
            )
    if total != 0:
        report.mismatches.append(f"program {program}: transfers do not sum to zero ({total})")
    # A transfer's member side must be one of its two accounts (also a CHECK constraint).
    stray = transfers.exclude(
        Q(member_account=F("debit_account")) | Q(member_account=F("credit_account"))
    ).count()
    if stray:
        report.mismatches.append(f"program {program}: {stray} transfers name a stray member side")
