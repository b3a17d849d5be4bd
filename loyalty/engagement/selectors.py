"""Reads of customer engagement: profiles, wallet, tiers, tags, campaigns, stores and the logs.

Every read takes the organisation (or a member already scoped to it) from the caller; nothing
here crosses tenants. Each selector states roughly what it costs, because the profiles API is
built to be light by default (seed 004: get only the data you need when you need it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F, Q, Subquery, Sum
from django.utils import timezone

from loyalty.engagement.exceptions import CustomerNotFound, InvalidInput, NotFound
from loyalty.engagement.models import (
    ActivityEntry,
    Campaign,
    CampaignProgress,
    GoalType,
    MemberTag,
    MemberTier,
    RewardStore,
    StoreOffer,
    Tier,
    TierBasis,
)
from loyalty.engagement.pagination import Page, cursor_decode, page_from_rows
from loyalty.models import Member
from loyalty.validators import EXTERNAL_ID_MAX_LENGTH
from points.models import LotStatus, PointAccount, PointLot, PointProgram, ProgramMode, Transfer

DEFAULT_EXPIRING_SOON_DAYS = 30
# "Rolling 12-month" tiers count the points credited in the last 365 days.
ROLLING_WINDOW = dt.timedelta(days=365)


# --- profiles ------------------------------------------------------------------------------------


def customer_get(*, organization_id, identifier: str) -> Member:
    """The organisation's member with this external id, or else with this platform id (UUID).

    One query. An external id wins over a platform id when a value is both. Raises
    CustomerNotFound (also for another organisation's member: a tenant sees only its own).
    """
    if not identifier or len(identifier) > EXTERNAL_ID_MAX_LENGTH:
        raise CustomerNotFound()
    lookup = Q(external_id=identifier)
    with contextlib.suppress(ValueError):
        lookup |= Q(pk=uuid.UUID(identifier))
    matches = list(Member.objects.filter(organization_id=organization_id).filter(lookup)[:2])
    for member in matches:
        if member.external_id == identifier:
            return member
    if matches:
        return matches[0]
    raise CustomerNotFound()


# --- tiers ---------------------------------------------------------------------------------------


def earn_multiplier_for(*, program: PointProgram, member: Member) -> Decimal:
    """The earn multiplier of the member's current tier in the program (1 without a tier).

    Earning rules multiply event-triggered points by it. One query: the member's tier, or the
    program's entry tier (threshold 0) that every member is in.
    """
    if program.mode == ProgramMode.FOLLOWER_BALANCE:
        return Decimal(1)
    current = MemberTier.objects.filter(member=member, program=program).values("tier_id")[:1]
    value = (
        Tier.objects.filter(program=program)
        .filter(Q(pk=Subquery(current)) | Q(threshold=0))
        .order_by("-threshold")
        .values_list("earn_multiplier", flat=True)
        .first()
    )
    return Decimal(1) if value is None else Decimal(value)


@dataclass(frozen=True)
class TierView:
    name: str
    threshold: int
    earn_multiplier: Decimal


@dataclass(frozen=True)
class MemberTierStatus:
    program_key: str
    basis: str
    qualifying_points: int  # points on the basis now
    tier: TierView | None
    since: dt.datetime | None
    next_tier: TierView | None
    points_to_next_tier: int | None

    @property
    def progress_percent(self) -> int:
        """How far from the current tier's threshold to the next one (100 at the top)."""
        if self.next_tier is None:
            return 100
        floor = self.tier.threshold if self.tier else 0
        span = self.next_tier.threshold - floor
        return max(0, min(100, int(100 * (self.qualifying_points - floor) / span)))


def _view(tier: Tier | None) -> TierView | None:
    if tier is None:
        return None
    return TierView(name=tier.name, threshold=tier.threshold, earn_multiplier=tier.earn_multiplier)


def rolling_earned(*, account_ids: list[int], since: dt.datetime) -> dict[int, int]:
    """Points credited to each account since `since` (what lifetime_earned counts, windowed)."""
    rows = (
        Transfer.objects.filter(
            member_account_id__in=account_ids,
            credit_account_id=F("member_account_id"),
            created_at__gte=since,
        )
        .values("member_account_id")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {row["member_account_id"]: row["total"] for row in rows}


def member_tiers_get(*, member: Member, program: PointProgram | None = None) -> list:
    """The member's tier status in every tiered program of the organisation (or in `program`).

    Four queries at most: tiers, the member's tier rows, accounts, and (rolling programs only)
    the last year's credits. The current tier is the recorded one (MemberTier), or the entry
    tier (threshold 0) for a member who has none recorded yet.
    """
    tiers = Tier.objects.filter(program__organization_id=member.organization_id).exclude(
        program__mode=ProgramMode.FOLLOWER_BALANCE
    )
    if program is not None:
        tiers = tiers.filter(program=program)
    by_program: dict[int, list[Tier]] = {}
    for tier in tiers.select_related("program").order_by("program_id", "threshold"):
        by_program.setdefault(tier.program_id, []).append(tier)
    if not by_program:
        return []
    recorded = {
        row.program_id: row
        for row in MemberTier.objects.filter(member=member, program_id__in=list(by_program))
    }
    accounts = {
        account.program_id: account
        for account in PointAccount.objects.filter(member=member, program_id__in=list(by_program))
    }
    rolling_accounts = [
        accounts[pid].pk
        for pid, ladder in by_program.items()
        if ladder[0].basis == TierBasis.ROLLING_12_MONTHS and pid in accounts
    ]
    rolling = (
        rolling_earned(account_ids=rolling_accounts, since=timezone.now() - ROLLING_WINDOW)
        if rolling_accounts
        else {}
    )
    result = []
    for program_id, ladder in by_program.items():
        account = accounts.get(program_id)
        basis = ladder[0].basis
        if account is None:
            points = 0
        elif basis == TierBasis.ROLLING_12_MONTHS:
            points = rolling.get(account.pk, 0)
        else:
            points = account.lifetime_earned
        row = recorded.get(program_id)
        if row is not None:
            current = next((t for t in ladder if t.pk == row.tier_id), None)
        else:
            current = ladder[0] if ladder[0].threshold == 0 else None
        floor = current.threshold if current else -1
        upcoming = next((t for t in ladder if t.threshold > floor), None)
        result.append(
            MemberTierStatus(
                program_key=ladder[0].program.key,
                basis=basis,
                qualifying_points=points,
                tier=_view(current),
                since=row.since if row is not None and current is not None else None,
                next_tier=_view(upcoming),
                points_to_next_tier=max(0, upcoming.threshold - points) if upcoming else None,
            )
        )
    return result


def member_tier_name(*, program: PointProgram, member: Member) -> str | None:
    """The name of the member's tier in the program, or None (e.g. the partner balance API)."""
    statuses = member_tiers_get(member=member, program=program)
    return statuses[0].tier.name if statuses and statuses[0].tier else None


# --- wallet ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramBalance:
    program_key: str
    program_name: str
    mode: str
    balance: int
    available: int
    held: int
    pending: int
    expiring_soon: int
    lifetime_earned: int


@dataclass(frozen=True)
class RewardBalanceView:
    reward_type: str
    display_name: str
    amount: int


@dataclass(frozen=True)
class OfferView:
    id: uuid.UUID
    store_key: str
    program_key: str
    reward_type: str
    display_name: str
    headline: str
    description: str
    points_price: int
    affordable: bool | None


@dataclass(frozen=True)
class Wallet:
    expiring_within_days: int
    points: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    affordable_offers: list = field(default_factory=list)


def expiring_soon_days() -> int:
    return int(getattr(settings, "ENGAGEMENT_EXPIRING_SOON_DAYS", DEFAULT_EXPIRING_SOON_DAYS))


def wallet_get(*, member: Member, now: dt.datetime | None = None) -> Wallet:
    """Balances per program (balance, available, held, pending, expiring soon), reward balances
    and the offers the member can afford now. Five queries, whatever the member holds."""
    from rewards.models import RewardBalance

    now = now or timezone.now()
    days = expiring_soon_days()
    programs = list(
        PointProgram.objects.filter(organization_id=member.organization_id).order_by("key")
    )
    accounts = {a.program_id: a for a in PointAccount.objects.filter(member=member)}
    expiring = {
        row["account_id"]: row["total"]
        for row in PointLot.objects.filter(
            account__member=member,
            status=LotStatus.ACTIVE,
            valid_to__isnull=False,
            valid_to__lte=now + dt.timedelta(days=days),
        )
        .values("account_id")
        .annotate(total=Sum("remaining"))
        .order_by()
    }
    points = []
    available_by_program = {}
    for program in programs:
        account = accounts.get(program.pk)
        available = account.available if account else 0
        available_by_program[program.pk] = available
        points.append(
            ProgramBalance(
                program_key=program.key,
                program_name=program.name,
                mode=program.mode,
                balance=account.balance if account else 0,
                available=available,
                held=account.held if account else 0,
                pending=account.pending if account else 0,
                expiring_soon=expiring.get(account.pk, 0) if account else 0,
                lifetime_earned=account.lifetime_earned if account else 0,
            )
        )
    rewards = [
        RewardBalanceView(
            reward_type=row.reward_type.reward_type,
            display_name=row.reward_type.display_name,
            amount=row.granted - row.claimed,
        )
        for row in RewardBalance.objects.filter(member=member)
        .select_related("reward_type")
        .order_by("reward_type__reward_type")
        if row.granted > row.claimed
    ]
    offers = [
        offer
        for offer in _offers(organization_id=member.organization_id, now=now)
        if offer.reward_type.points_price <= available_by_program.get(offer.store.program_id, 0)
    ]
    return Wallet(
        expiring_within_days=days,
        points=points,
        rewards=rewards,
        affordable_offers=[_offer_view(offer, affordable=True) for offer in offers],
    )


# --- stores and offers --------------------------------------------------------------------------


def _offers(*, organization_id, now: dt.datetime, store: RewardStore | None = None) -> list:
    """Offers on sale now: active offer in an active store, active reward type with a price."""
    offers = StoreOffer.objects.filter(
        store__organization_id=organization_id,
        store__active=True,
        active=True,
        reward_type__active=True,
        reward_type__points_price__isnull=False,
    ).filter(
        Q(starts_at__isnull=True) | Q(starts_at__lte=now),
        Q(ends_at__isnull=True) | Q(ends_at__gt=now),
    )
    if store is not None:
        offers = offers.filter(store=store)
    return list(
        offers.select_related("store__program", "reward_type").order_by(
            "store__key", "position", "created_at"
        )
    )


def _offer_view(offer: StoreOffer, *, affordable: bool | None) -> OfferView:
    return OfferView(
        id=offer.pk,
        store_key=offer.store.key,
        program_key=offer.store.program.key,
        reward_type=offer.reward_type.reward_type,
        display_name=offer.reward_type.display_name,
        headline=offer.headline or offer.reward_type.display_name,
        description=offer.reward_type.description,
        points_price=offer.reward_type.points_price,
        affordable=affordable,
    )


def stores_list(*, organization_id) -> list[RewardStore]:
    return list(
        RewardStore.objects.filter(organization_id=organization_id, active=True)
        .select_related("program")
        .order_by("key")
    )


def store_get(*, organization_id, key: str) -> RewardStore:
    store = (
        RewardStore.objects.filter(organization_id=organization_id, key=key, active=True)
        .select_related("program")
        .first()
    )
    if store is None:
        raise NotFound("no such store", field="storeKey")
    return store


def store_offers_get(
    *, store: RewardStore, member: Member | None = None, now: dt.datetime | None = None
) -> list[OfferView]:
    """Offers on sale in the store; with a member, each says whether they can afford it."""
    now = now or timezone.now()
    offers = _offers(organization_id=store.organization_id, now=now, store=store)
    available = None
    if member is not None:
        account = PointAccount.objects.filter(member=member, program_id=store.program_id).first()
        available = account.available if account else 0
    return [
        _offer_view(
            offer,
            affordable=None if available is None else offer.reward_type.points_price <= available,
        )
        for offer in offers
    ]


def offer_get(*, organization_id, offer_id) -> StoreOffer:
    """An offer of the organisation (on sale or not: the purchase service judges). NotFound."""
    try:
        offer_uuid = uuid.UUID(str(offer_id))
    except ValueError:
        raise NotFound("offerId: no such offer", field="offerId") from None
    offer = (
        StoreOffer.objects.filter(pk=offer_uuid, store__organization_id=organization_id)
        .select_related("store__program", "reward_type")
        .first()
    )
    if offer is None:
        raise NotFound("offerId: no such offer", field="offerId")
    return offer


# --- campaigns -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberCampaign:
    campaign: Campaign
    opted_in: bool
    opted_in_at: dt.datetime | None
    progress: int
    completed_at: dt.datetime | None

    @property
    def status(self) -> str:
        now = timezone.now()
        if self.completed_at is not None:
            return "completed"
        if self.campaign.ends_at <= now or not self.campaign.active:
            return "ended"
        if self.campaign.starts_at > now:
            return "upcoming"
        return "active"


def campaign_get(*, organization_id, campaign_id: str) -> Campaign:
    """By id or key. Raises NotFound."""
    lookup = Q(key=campaign_id)
    with contextlib.suppress(ValueError):
        lookup |= Q(pk=uuid.UUID(campaign_id))
    campaign = (
        Campaign.objects.filter(organization_id=organization_id)
        .filter(lookup)
        .select_related("goal_program", "reward_program", "reward_type")
        .first()
    )
    if campaign is None:
        raise NotFound("no such campaign", field="campaignId")
    return campaign


def campaigns_live(*, organization_id, now: dt.datetime | None = None) -> list[Campaign]:
    """Active campaigns that have not ended (running and upcoming), soonest ending first."""
    now = now or timezone.now()
    return list(
        Campaign.objects.filter(organization_id=organization_id, active=True, ends_at__gt=now)
        .select_related("goal_program", "reward_program", "reward_type")
        .order_by("ends_at", "pk")[:100]
    )


def member_campaigns_get(*, member: Member, now: dt.datetime | None = None) -> list:
    """Running and upcoming campaigns, plus those the member took part in, with progress.

    Two queries.
    """
    now = now or timezone.now()
    joined = CampaignProgress.objects.filter(member=member).values("campaign_id")
    campaigns = list(
        Campaign.objects.filter(organization_id=member.organization_id)
        .filter(Q(active=True, ends_at__gt=now) | Q(pk__in=Subquery(joined)))
        .select_related("goal_program", "reward_program", "reward_type")
        .order_by("ends_at", "pk")[:100]
    )
    progress = {
        row.campaign_id: row
        for row in CampaignProgress.objects.filter(
            member=member, campaign_id__in=[c.pk for c in campaigns]
        )
    }
    result = []
    for campaign in campaigns:
        row = progress.get(campaign.pk)
        result.append(
            MemberCampaign(
                campaign=campaign,
                opted_in=row is not None and row.opted_in_at is not None,
                opted_in_at=row.opted_in_at if row else None,
                progress=row.progress if row else 0,
                completed_at=row.completed_at if row else None,
            )
        )
    return result


def campaign_goal_label(campaign: Campaign) -> str:
    if campaign.goal_type == GoalType.EVENT_COUNT:
        return f"{campaign.goal_target} x {campaign.goal_event_name}"
    return f"{campaign.goal_target} points in {campaign.goal_program.key}"


# --- tags ----------------------------------------------------------------------------------------


def member_tags_get(*, member: Member) -> list[str]:
    return list(
        MemberTag.objects.filter(member=member)
        .order_by("tag__name")
        .values_list("tag__name", flat=True)
    )


def customers_by_tag_page(*, organization_id, tag: str, cursor: str | None, limit: int) -> Page:
    """Members with the tag, most recently tagged first (index member_tag_listing_idx)."""
    before = cursor_decode(kind="tagged", cursor=cursor)
    rows = MemberTag.objects.filter(tag__organization_id=organization_id, tag__name=tag)
    if before is not None:
        rows = rows.filter(pk__lt=before)
    rows = list(rows.select_related("member").order_by("-id")[: limit + 1])
    page = page_from_rows(rows, limit=limit, kind="tagged")
    return Page(results=[row.member for row in page.results], next_cursor=page.next_cursor)


# --- logs ----------------------------------------------------------------------------------------


TRANSFER_LOG_FIELDS = (
    "id",
    "member_account_id",
    "credit_account_id",
    "amount",
    "kind",
    "source",
    "description",
    "reference",
    "member_balance_after",
    "created_at",
)


@dataclass(frozen=True)
class PointLogEntry:
    id: int
    program_key: str
    kind: str
    source: str
    points: int  # signed, as the member sees it
    balance_after: int
    description: str
    reference: str
    created_at: dt.datetime


def point_log_page(
    *, member: Member, program_key: str | None, cursor: str | None, limit: int
) -> Page:
    """The member's ledger transfers, newest first, one keyset page.

    Two queries: the member's accounts, then the page from transfer_member_history_idx
    (member_account, -id). With accounts in several programs the page is a UNION ALL of one
    index range per account (each already ordered), so no page sorts the member's history.
    Raises InvalidCursor, InvalidInput (unknown program).
    """
    before = cursor_decode(kind="transfers", cursor=cursor)
    accounts_qs = PointAccount.objects.filter(member=member)
    if program_key:
        accounts_qs = accounts_qs.filter(program__key=program_key)
    accounts = dict(accounts_qs.order_by("pk").values_list("pk", "program__key"))
    unknown_program = (
        program_key
        and not accounts
        and not PointProgram.objects.filter(
            organization_id=member.organization_id, key=program_key
        ).exists()
    )
    if unknown_program:
        raise InvalidInput("program: no such point program", field="program")
    if not accounts:
        return Page(results=[], next_cursor=None)

    def account_range(account_id):
        rows = Transfer.objects.filter(member_account_id=account_id)
        if before is not None:
            rows = rows.filter(pk__lt=before)
        return rows.order_by("-id").values(*TRANSFER_LOG_FIELDS)

    ids = list(accounts)
    if len(ids) == 1:
        rows = list(account_range(ids[0])[: limit + 1])
    elif connection.features.supports_slicing_ordering_in_compound:
        first, *others = (account_range(account_id)[: limit + 1] for account_id in ids)
        rows = list(first.union(*others, all=True).order_by("-id")[: limit + 1])
    else:  # SQLite (the embedded first run): one range scan over the member's accounts
        rows = Transfer.objects.filter(member_account_id__in=ids)
        if before is not None:
            rows = rows.filter(pk__lt=before)
        rows = list(rows.order_by("-id").values(*TRANSFER_LOG_FIELDS)[: limit + 1])
    page = page_from_rows(rows, limit=limit, kind="transfers", id_of=lambda row: row["id"])
    return Page(
        results=[
            PointLogEntry(
                id=row["id"],
                program_key=accounts[row["member_account_id"]],
                kind=row["kind"],
                source=row["source"],
                points=row["amount"]
                if row["credit_account_id"] == row["member_account_id"]
                else -row["amount"],
                balance_after=row["member_balance_after"],
                description=row["description"],
                reference=row["reference"],
                created_at=row["created_at"],
            )
            for row in page.results
        ],
        next_cursor=page.next_cursor,
    )


def activity_log_page(*, member: Member, cursor: str | None, limit: int) -> Page:
    """The member's activity, newest first, one keyset page (activity_member_history_idx)."""
    before = cursor_decode(kind="activity", cursor=cursor)
    rows = ActivityEntry.objects.filter(member=member)
    if before is not None:
        rows = rows.filter(pk__lt=before)
    rows = list(rows.order_by("-id")[: limit + 1])
    return page_from_rows(rows, limit=limit, kind="activity")
