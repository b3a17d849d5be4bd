"""Reads of rewards: catalogue and claims of an organisation, a member's balance and history,
quantity states, the store, API-key look-up, and the counter invariants behind `rewards_verify`.

Every query that starts from an id the caller sent is scoped to an organisation (and, for
members, to the member), so another tenant's id reads as "not found".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Exists, F, OuterRef, QuerySet, Sum
from django.db.models.functions import Coalesce

from loyalty.models import Member, Organization
from rewards.models import (
    RETURNED_STATUSES,
    Claim,
    ClaimItem,
    Inventory,
    Operation,
    RewardBalance,
    RewardGrant,
    RewardsService,
    RewardType,
    StorePurchase,
)
from rewards.services import API_KEY_PREFIX, api_key_matches


def reward_types_of(*, org: Organization) -> QuerySet[RewardType]:
    return RewardType.objects.filter(org=org).order_by("reward_type")


def reward_type_by_name(*, org: Organization, name: object) -> RewardType | None:
    if not isinstance(name, str) or not name:
        return None
    return RewardType.objects.filter(org=org, reward_type=name).first()


def inventories_of(
    *,
    org: Organization,
    ids: list[str] | None = None,
    reward_type: str | None = None,
    in_stock: bool | None = None,
    grant_depleted: bool | None = None,
    claim_depleted: bool | None = None,
) -> QuerySet[Inventory]:
    queryset = Inventory.objects.filter(org=org).select_related("reward_type")
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    if reward_type is not None:
        queryset = queryset.filter(reward_type__reward_type=reward_type)
    for name, value in (
        ("in_stock", in_stock),
        ("grant_depleted", grant_depleted),
        ("claim_depleted", claim_depleted),
    ):
        if value is not None:
            queryset = queryset.filter(**{name: value})
    return queryset.order_by("date_created", "id")


def operations_of(
    *, org: Organization, building_block: str | None = None, reward_type: str | None = None
) -> QuerySet[Operation]:
    queryset = Operation.objects.filter(org=org).select_related("reward_type")
    if building_block is not None:
        queryset = queryset.filter(building_block=building_block)
    if reward_type is not None:
        queryset = queryset.filter(reward_type__reward_type=reward_type)
    return queryset.order_by("building_block", "code")


def _claims() -> QuerySet[Claim]:
    return Claim.objects.select_related("member").prefetch_related(
        "items__reward_type", "items__digital_codes"
    )


def claims_of(
    *,
    org: Organization,
    ids: list[str] | None = None,
    user_id: str | None = None,
    status: str | None = None,
) -> QuerySet[Claim]:
    queryset = _claims().filter(org=org)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    if user_id is not None:
        queryset = queryset.filter(member__external_id=user_id)
    if status is not None:
        queryset = queryset.filter(status=status)
    return queryset.order_by("-date_created", "-id")


def claims_of_member(*, member: Member, status: str | None = None) -> QuerySet[Claim]:
    queryset = _claims().filter(member=member)
    if status is not None:
        queryset = queryset.filter(status=status)
    return queryset.order_by("-date_created", "-id")


def balances_of_member(*, member: Member) -> list[dict]:
    """`[{reward_type, amount}]`: every reward type the member was ever granted."""
    rows = (
        RewardBalance.objects.filter(member=member, granted__gt=0)
        .select_related("reward_type")
        .order_by("reward_type__reward_type")
    )
    return [{"reward_type": row.reward_type.reward_type, "amount": row.amount} for row in rows]


def balance_of(*, member: Member, reward_type: RewardType) -> int:
    row = RewardBalance.objects.filter(member=member, reward_type=reward_type).first()
    return row.amount if row is not None else 0


def history_of_member(
    *,
    member: Member,
    reward_type: str | None = None,
    code: str | None = None,
    building_block: str | None = None,
) -> QuerySet[RewardGrant]:
    queryset = RewardGrant.objects.filter(member=member).select_related("reward_type", "member")
    if reward_type is not None:
        queryset = queryset.filter(reward_type__reward_type=reward_type)
    if code is not None:
        queryset = queryset.filter(code=code)
    if building_block is not None:
        queryset = queryset.filter(building_block=building_block)
    return queryset.order_by("-date_created", "-id")


def quantity_state(*, reward_type: RewardType) -> dict:
    """Rokwire's RewardQuantityState: what in-stock inventories can still grant and supply.

    Quantities count up to each inventory's total; inventories that permit going past it
    (grant_depleted / claim_depleted) are not counted as infinite.
    """
    totals = {"grantable": 0, "claimable": 0}
    for row in Inventory.objects.filter(reward_type=reward_type, in_stock=True).values(
        "amount_total", "amount_granted", "amount_claimed"
    ):
        totals["grantable"] += max(0, row["amount_total"] - row["amount_granted"])
        totals["claimable"] += max(0, row["amount_total"] - row["amount_claimed"])
    return {
        "reward_type": reward_type.reward_type,
        "grantable_quantity": totals["grantable"],
        "claimable_quantity": totals["claimable"],
    }


def purchases_of_member(*, member: Member) -> QuerySet[StorePurchase]:
    return (
        StorePurchase.objects.filter(member=member)
        .select_related("member", "reward_type", "program")
        .order_by("-date_created", "-id")
    )


def store_items(*, org: Organization) -> QuerySet[RewardType]:
    """Active reward types with a points price, cheapest first."""
    return RewardType.objects.filter(org=org, active=True, points_price__isnull=False).order_by(
        "points_price", "reward_type"
    )


def low_stock_inventories(
    queryset: QuerySet[Inventory] | None = None, *, threshold_percent: int = 10
) -> QuerySet[Inventory]:
    """In-stock inventories with something, but at most threshold_percent of their total, left
    to grant."""
    queryset = Inventory.objects.all() if queryset is None else queryset
    return queryset.alias(
        left_scaled=(F("amount_total") - F("amount_granted")) * 100,
        low_mark=F("amount_total") * threshold_percent,
    ).filter(in_stock=True, amount_total__gt=F("amount_granted"), left_scaled__lte=F("low_mark"))


def depleted_inventories(queryset: QuerySet[Inventory] | None = None) -> QuerySet[Inventory]:
    queryset = Inventory.objects.all() if queryset is None else queryset
    return queryset.filter(amount_granted__gte=F("amount_total"))


def rewards_service_for_key(raw_key: str) -> RewardsService | None:
    """The active service whose API key this is, or None (constant-time hash comparison)."""
    if not isinstance(raw_key, str) or not raw_key.startswith(API_KEY_PREFIX):
        return None
    prefix, _, secret = raw_key[len(API_KEY_PREFIX) :].partition("_")
    if not prefix or not secret:
        return None
    service = (
        RewardsService.objects.filter(key_prefix=prefix, active=True).select_related("org").first()
    )
    if service is None or not api_key_matches(service=service, raw_key=raw_key):
        return None
    return service


# --- invariants ---------------------------------------------------------------------------------


@dataclass
class RewardsReport:
    inventories_checked: int = 0
    balances_checked: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _live_items() -> QuerySet[ClaimItem]:
    return ClaimItem.objects.exclude(claim__status__in=RETURNED_STATUSES)


def rewards_verify(*, org: Organization | None = None) -> RewardsReport:
    """Check that every counter equals the sums it stands for (models.py's invariants)."""
    report = RewardsReport()
    inventories = Inventory.objects.all() if org is None else Inventory.objects.filter(org=org)
    granted = {
        row["inventory"]: row["total"]
        for row in RewardGrant.objects.values("inventory")
        .annotate(total=Coalesce(Sum("amount"), 0))
        .order_by()
    }
    claimed = {
        row["inventory"]: row["total"]
        for row in _live_items()
        .values("inventory")
        .annotate(total=Coalesce(Sum("amount"), 0))
        .order_by()
    }
    for inventory in inventories.order_by("pk"):
        report.inventories_checked += 1
        for name, stored, computed in (
            ("amount_granted", inventory.amount_granted, granted.get(inventory.pk, 0)),
            ("amount_claimed", inventory.amount_claimed, claimed.get(inventory.pk, 0)),
        ):
            if stored != computed:
                report.mismatches.append(
                    f"inventory {inventory.pk}: {name} {stored}, sum of rows {computed}"
                )
    balances = RewardBalance.objects.all() if org is None else RewardBalance.objects.filter(org=org)
    member_granted = {
        (row["member"], row["reward_type"]): row["total"]
        for row in RewardGrant.objects.values("member", "reward_type")
        .annotate(total=Coalesce(Sum("amount"), 0))
        .order_by()
    }
    member_claimed = {
        (row["claim__member"], row["reward_type"]): row["total"]
        for row in _live_items()
        .values("claim__member", "reward_type")
        .annotate(total=Coalesce(Sum("amount"), 0))
        .order_by()
    }
    for balance in balances.order_by("pk"):
        report.balances_checked += 1
        key = (balance.member_id, balance.reward_type_id)
        for name, stored, computed in (
            ("granted", balance.granted, member_granted.get(key, 0)),
            ("claimed", balance.claimed, member_claimed.get(key, 0)),
        ):
            if stored != computed:
                report.mismatches.append(
                    f"balance of member {balance.member_id} in {balance.reward_type_id}: "
                    f"{name} {stored}, sum of rows {computed}"
                )
        if not 0 <= balance.claimed <= balance.granted:
            report.mismatches.append(f"balance {balance.pk} is negative")
    # Every grant and live claim item must have a balance row to be counted in.
    missing = RewardGrant.objects.filter(
        ~Exists(
            RewardBalance.objects.filter(
                member=OuterRef("member"), reward_type=OuterRef("reward_type")
            )
        )
    )
    if org is not None:
        missing = missing.filter(org=org)
    if missing.exists():
        report.mismatches.append(f"{missing.count()} grants have no balance row")
    return report
