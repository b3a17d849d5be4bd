"""Reward stores and offers: buy an offer with points, redeem (claim) rewards from the balance.

The money-like work is the rewards app's: `rewards.services.store_purchase` burns the points and
grants the reward in one transaction (claiming it at once when asked), and
`rewards.services.claim_create` redeems a reward from the member's balance. This module checks
that the offer is on sale, and records both in the member's activity log in the same transaction.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from loyalty.engagement.exceptions import CustomerBlocked, NotFound, OfferUnavailable
from loyalty.engagement.models import ActivityKind, StoreOffer
from loyalty.engagement.services.activity import activity_record
from loyalty.models import Member


def offer_on_sale(offer: StoreOffer, *, now: dt.datetime) -> bool:
    reward_type = offer.reward_type
    return (
        offer.active
        and offer.store.active
        and reward_type.active
        and reward_type.points_price is not None
        and (offer.starts_at is None or offer.starts_at <= now)
        and (offer.ends_at is None or offer.ends_at > now)
    )


def offer_purchase(
    *,
    offer: StoreOffer,
    member: Member,
    quantity: int,
    redeem: bool,
    idempotency_key: str | None,
    actor: str,
    now: dt.datetime | None = None,
):
    """Buy `quantity` of the offer's reward with points of the store's program.

    With `redeem`, the reward is claimed at once (a code-pool reward's codes are in the claim).
    Returns rewards.services.PurchaseResult. A repeat with the same idempotency key returns the
    first purchase, even if the offer has ended since. Raises CustomerBlocked, OfferUnavailable,
    and the rewards app's refusals (InsufficientPointsForPurchase, InventoryDepleted,
    IdempotencyConflict, ...); nothing changes then.
    """
    from rewards.models import StorePurchase
    from rewards.services import store_purchase

    now = now or timezone.now()
    _check_active(member)
    repeat = (
        idempotency_key is not None
        and StorePurchase.objects.filter(member=member, idempotency_key=idempotency_key).exists()
    )
    if not repeat and not offer_on_sale(offer, now=now):
        raise OfferUnavailable(field="offerId")
    with transaction.atomic():
        result = store_purchase(
            member=member,
            reward_type=offer.reward_type,
            quantity=quantity,
            program=offer.store.program,
            idempotency_key=idempotency_key,
            claim_now=redeem,
            actor=actor,
        )
        if not result.replayed:
            purchase = result.purchase
            activity_record(
                member=member,
                kind=ActivityKind.OFFER_PURCHASED,
                summary=f"Bought {quantity} x {offer.reward_type.display_name} "
                f"for {purchase.points} points",
                data={
                    "purchaseId": str(purchase.pk),
                    "offerId": str(offer.pk),
                    "storeKey": offer.store.key,
                    "rewardType": offer.reward_type.reward_type,
                    "quantity": quantity,
                    "points": purchase.points,
                },
                actor=actor,
            )
    return result


def reward_redeem(
    *,
    member: Member,
    reward_type_key: str,
    quantity: int,
    idempotency_key: str | None,
    actor: str,
):
    """Redeem (claim) `quantity` of a reward the member holds. Returns rewards' ClaimResult.

    Raises NotFound (field rewardType) for a reward type the organisation does not have, and
    the rewards app's refusals (InsufficientRewardBalance, InventoryDepleted, ...).
    """
    from rewards.models import RewardType
    from rewards.services import ClaimItemRequest, claim_create

    _check_active(member)
    reward_type = RewardType.objects.filter(
        org_id=member.organization_id, reward_type=reward_type_key
    ).first()
    if reward_type is None:
        raise NotFound("rewardType: no such reward type", field="rewardType")
    # claim_create records the claim in the member's activity log.
    return claim_create(
        member=member,
        items=[ClaimItemRequest(reward_type=reward_type, amount=quantity)],
        actor=actor,
        description="Redeemed through the profiles API",
        idempotency_key=idempotency_key,
    )


def _check_active(member: Member) -> None:
    if member.status != Member.Status.ACTIVE:
        raise CustomerBlocked(field="customerId")
