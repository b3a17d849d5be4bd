"""Tiers: configuration, the member's current tier per program, and the two ways it is recomputed.

Lifetime tiers are recomputed inside the ledger transaction that changes `lifetime_earned`
(points.services calls `tier_recompute_for_account` with the member's account row locked): one
indexed query in the common case (nothing changes), none when the program has no lifetime tiers,
a few writes when the member moves up.
Rolling 12-month tiers would need a sum over a year of transfers on every earn, so the periodic
job `tiers_recompute` (django-celery-beat, hourly) does them, in batches, off the hot path; it
also catches members up after an operator changes thresholds.

Lock order: the member's point account row, then the MemberTier row (the ledger takes the account
lock first, so the hot path and the job never wait on each other in a circle).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty import sql
from loyalty.engagement.exceptions import InvalidInput, TierBasisMismatch, TiersNotOffered
from loyalty.engagement.models import (
    ActivityEntry,
    ActivityKind,
    MemberTier,
    Tier,
    TierBasis,
    TierChange,
    TierChangeReason,
)
from loyalty.engagement.selectors import ROLLING_WINDOW, rolling_earned
from points.models import AccountKind, PointAccount, PointProgram, ProgramMode

# --- configuration -----------------------------------------------------------------------------


def tier_check(*, program: PointProgram, basis: str, tier_pk: int | None = None) -> None:
    """Raise TiersNotOffered for a balance-only follower program, TierBasisMismatch when the
    program's other tiers use another basis. Used by the services and the admin form."""
    if program.mode == ProgramMode.FOLLOWER_BALANCE:
        raise TiersNotOffered(field="program")
    if basis not in TierBasis.values:
        raise InvalidInput(f"basis: must be one of {', '.join(TierBasis.values)}", field="basis")
    others = Tier.objects.filter(program=program).exclude(pk=tier_pk).exclude(basis=basis)
    if others.exists():
        raise TierBasisMismatch(field="basis")


def _multiplier(value) -> Decimal:
    try:
        multiplier = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidInput("earnMultiplier: must be a number", field="earnMultiplier") from None
    if not (Decimal(0) < multiplier <= Decimal(100)) or multiplier.as_tuple().exponent < -3:
        raise InvalidInput(
            "earnMultiplier: must be above 0 and at most 100, with 3 decimals at most",
            field="earnMultiplier",
        )
    return multiplier


def tier_save(*, tier: Tier) -> Tier:
    """Create or change a tier (admin and demo): validated under the program's row lock.

    Raises TiersNotOffered, TierBasisMismatch, InvalidInput; IntegrityError for a duplicate
    name or threshold. Members are moved to their new tiers by a recompute job after commit.
    """
    tier.earn_multiplier = _multiplier(tier.earn_multiplier)
    with transaction.atomic():
        # Serialises tier changes of one program, so two operators cannot mix bases.
        program = PointProgram.objects.select_for_update().get(pk=tier.program_id)
        tier_check(program=program, basis=tier.basis, tier_pk=tier.pk)
        tier.save()
        _recompute_after_commit(program_id=program.pk)
    return tier


def tier_create(
    *,
    program: PointProgram,
    name: str,
    threshold: int,
    basis: str = TierBasis.LIFETIME,
    earn_multiplier: Decimal | int | str = 1,
    description: str = "",
) -> Tier:
    return tier_save(
        tier=Tier(
            program=program,
            name=name,
            threshold=threshold,
            basis=basis,
            earn_multiplier=earn_multiplier,
            description=description,
        )
    )


def tier_delete(*, tier: Tier) -> None:
    """Remove a tier; its members move to the tier below at the recompute after commit."""
    with transaction.atomic():
        program_id = tier.program_id
        tier.delete()
        _recompute_after_commit(program_id=program_id)


def _recompute_after_commit(*, program_id: int) -> None:
    def dispatch():
        from loyalty.engagement.tasks import tiers_recompute_task

        tiers_recompute_task.delay(program_id=program_id)

    transaction.on_commit(dispatch)


# --- the member's tier --------------------------------------------------------------------------


def _member_tier_set(
    *,
    program: PointProgram,
    member_id,
    tier: Tier | None,
    qualifying_points: int,
    reason: str,
    now: dt.datetime,
) -> bool:
    """Move the member to `tier` (caller holds the member's account lock). True if it changed."""
    current = (
        MemberTier.objects.select_for_update(of=("self",))
        .select_related("tier")
        .filter(member_id=member_id, program_id=program.pk)
        .first()
    )
    old = current.tier if current is not None else None
    if (old.pk if old else None) == (tier.pk if tier else None):
        return False
    if current is None:
        try:
            with transaction.atomic():
                MemberTier.objects.create(
                    member_id=member_id,
                    program_id=program.pk,
                    tier=tier,
                    qualifying_points=qualifying_points,
                    since=now,
                )
        except IntegrityError:
            # Only writers that skipped the account lock could get here; let the next run fix it.
            return False
    else:
        MemberTier.objects.filter(pk=current.pk).update(
            tier=tier, qualifying_points=qualifying_points, since=now, updated_at=now
        )
    TierChange.objects.create(
        member_id=member_id,
        program_id=program.pk,
        from_name=old.name if old else "",
        to_name=tier.name if tier else "",
        qualifying_points=qualifying_points,
        reason=reason,
    )
    ActivityEntry.objects.create(
        organization_id=program.organization_id,
        member_id=member_id,
        kind=ActivityKind.TIER_CHANGED,
        summary=f"{program.key}: tier {old.name if old else 'none'} -> "
        f"{tier.name if tier else 'none'}",
        data={
            "programKey": program.key,
            "from": old.name if old else None,
            "to": tier.name if tier else None,
            "qualifyingPoints": qualifying_points,
        },
        actor="system",
    )
    return True


def _tier_reached_sql() -> str:
    """The highest lifetime tier `lifetime_earned` reaches in a program not balance-only, and
    the member's current tier (prepared once: it runs inside every credit)."""
    tier, current, program = (model._meta for model in (Tier, MemberTier, PointProgram))

    def column(meta, field_name: str) -> str:
        return f'"{meta.get_field(field_name).column}"'

    return (
        f"SELECT t.{column(tier, 'id')}, (SELECT m.{column(current, 'tier')} "  # noqa: S608
        f'FROM "{current.db_table}" m WHERE m.{column(current, "member")} = %s '
        f"AND m.{column(current, 'program')} = %s) "
        f'FROM "{tier.db_table}" t '
        f'JOIN "{program.db_table}" p ON p.{column(program, "id")} = t.{column(tier, "program")} '
        f"WHERE t.{column(tier, 'program')} = %s AND t.{column(tier, 'basis')} = %s "
        f"AND t.{column(tier, 'threshold')} <= %s AND p.{column(program, 'mode')} <> %s "
        f"ORDER BY t.{column(tier, 'threshold')} DESC LIMIT 1"
    )


_TIER_REACHED_SQL = _tier_reached_sql()


def tier_recompute_for_account(*, account: PointAccount) -> None:
    """Lifetime tiers: put the member in the tier their new lifetime_earned reaches.

    Called by points.services inside the transaction that changed `account.lifetime_earned`,
    with the account row locked. One indexed query (tier_threshold_unique, with the member's
    current tier as a subquery) decides; nothing else runs unless the tier changes. No query
    runs for an account that points.services locked knowing its program has no lifetime tiers
    (`program_has_lifetime_tiers` False); otherwise such a program answers the query with no
    row. Raises nothing of its own.
    """
    if account.member_id is None or not getattr(account, "program_has_lifetime_tiers", True):
        return
    row = sql.fetch_one(
        _TIER_REACHED_SQL,
        [
            sql.param(MemberTier, "member", account.member_id),
            account.program_id,
            account.program_id,
            TierBasis.LIFETIME,
            account.lifetime_earned,
            ProgramMode.FOLLOWER_BALANCE,
        ],
    )
    if row is None or row[0] == row[1]:
        return
    program = PointProgram.objects.get(pk=account.program_id)
    _member_tier_set(
        program=program,
        member_id=account.member_id,
        tier=Tier.objects.get(pk=row[0]),
        qualifying_points=account.lifetime_earned,
        reason=TierChangeReason.EARN,
        now=timezone.now(),
    )


def tier_for_points(tiers_descending: list[Tier], points: int) -> Tier | None:
    """The highest tier whose threshold `points` reaches (tiers sorted by threshold, high first)."""
    for tier in tiers_descending:
        if points >= tier.threshold:
            return tier
    return None


def tiers_recompute(
    *, program_id: int | None = None, now: dt.datetime | None = None, batch_size: int = 500
) -> int:
    """Periodic job: put every member of tiered programs in the tier they qualify for now.

    Rolling programs: points credited in the last 365 days. Lifetime programs: lifetime_earned
    (normally already right; this catches members up after thresholds change). Members move in
    small transactions, each under its account lock. Returns how many members changed tier.
    """
    now = now or timezone.now()
    programs = PointProgram.objects.exclude(mode=ProgramMode.FOLLOWER_BALANCE)
    if program_id is not None:
        programs = programs.filter(pk=program_id)
    else:
        programs = programs.filter(pk__in=Tier.objects.values("program_id")) | programs.filter(
            pk__in=MemberTier.objects.filter(tier__isnull=False).values("program")
        )
    changed = 0
    for program in programs.distinct().order_by("pk"):
        changed += _recompute_program(program=program, now=now, batch_size=batch_size)
    return changed


def _recompute_program(*, program: PointProgram, now: dt.datetime, batch_size: int) -> int:
    tiers = list(Tier.objects.filter(program=program).order_by("-threshold"))
    rolling = bool(tiers) and tiers[0].basis == TierBasis.ROLLING_12_MONTHS
    since = now - ROLLING_WINDOW
    changed = 0
    last_id = 0
    while True:
        accounts = list(
            PointAccount.objects.filter(program=program, kind=AccountKind.MEMBER, pk__gt=last_id)
            .order_by("pk")
            .values_list("pk", "member_id", "lifetime_earned")[:batch_size]
        )
        if not accounts:
            return changed
        last_id = accounts[-1][0]
        earned = (
            rolling_earned(account_ids=[a[0] for a in accounts], since=since) if rolling else {}
        )
        current = dict(
            MemberTier.objects.filter(
                program=program, member_id__in=[a[1] for a in accounts]
            ).values_list("member_id", "tier_id")
        )
        for account_id, member_id, lifetime_earned in accounts:
            points = earned.get(account_id, 0) if rolling else lifetime_earned
            target = tier_for_points(tiers, points)
            if (target.pk if target else None) == current.get(member_id):
                continue
            with transaction.atomic():
                locked = PointAccount.objects.select_for_update().get(pk=account_id)
                if not rolling:
                    points = locked.lifetime_earned  # may have grown since the batch was read
                    target = tier_for_points(tiers, points)
                changed += _member_tier_set(
                    program=program,
                    member_id=member_id,
                    tier=target,
                    qualifying_points=points,
                    reason=TierChangeReason.RECOMPUTE,
                    now=now,
                )
