"""Demo engagement for seed_demo: lifetime tiers, an event-triggered earning rule, two campaigns,
a reward store with the demo's priced reward types, and a tag. Idempotent: rows are found by
their natural keys; members are put in their tiers at once.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from loyalty.demo import register_demo_part
from loyalty.engagement import services
from loyalty.engagement.models import (
    Campaign,
    EventOperation,
    GoalType,
    RewardStore,
    StoreOffer,
    Tier,
    TierBasis,
)
from loyalty.models import Member
from points.models import LimitPeriod, PointRule, RuleKind

DEMO_EVENT = "check_in"
DEMO_TIERS = [("Bronze", 0, "1"), ("Silver", 1000, "1.25"), ("Gold", 5000, "1.5")]
DEMO_STORE = "main"


def _tiers(program) -> list[str]:
    for name, threshold, multiplier in DEMO_TIERS:
        if not Tier.objects.filter(program=program, name=name).exists():
            services.tier_create(
                program=program,
                name=name,
                threshold=threshold,
                basis=TierBasis.LIFETIME,
                earn_multiplier=multiplier,
            )
    services.tiers_recompute(program_id=program.pk)
    return [name for name, _, _ in DEMO_TIERS]


def _campaigns(organization, program) -> list[str]:
    from rewards.models import RewardType

    now = timezone.now()
    Campaign.objects.get_or_create(
        organization=organization,
        key="check-in-streak",
        defaults={
            "name": "Check in three times",
            "description": "Check in three times and get 200 bonus points.",
            "starts_at": now - dt.timedelta(days=1),
            "ends_at": now + dt.timedelta(days=365),
            "goal_type": GoalType.EVENT_COUNT,
            "goal_event_name": DEMO_EVENT,
            "goal_target": 3,
            "reward_points": 200,
            "reward_program": program,
        },
    )
    keys = ["check-in-streak"]
    badge = RewardType.objects.filter(org=organization, reward_type="badge").first()
    if badge is not None:
        Campaign.objects.get_or_create(
            organization=organization,
            key="big-spender",
            defaults={
                "name": "Earn 1000 points",
                "description": "Opt in, earn 1000 points, and get the community badge.",
                "starts_at": now - dt.timedelta(days=1),
                "ends_at": now + dt.timedelta(days=365),
                "opt_in_required": True,
                "goal_type": GoalType.POINTS_EARNED,
                "goal_program": program,
                "goal_target": 1000,
                "reward_type": badge,
                "reward_quantity": 1,
            },
        )
        keys.append("big-spender")
    return keys


def _store(organization, program) -> str:
    from rewards.models import Operation, RewardType

    store, _ = RewardStore.objects.get_or_create(
        organization=organization,
        key=DEMO_STORE,
        defaults={"name": "Rewards", "program": program},
    )
    priced = RewardType.objects.filter(org=organization, points_price__isnull=False)
    for position, reward_type in enumerate(priced.order_by("points_price")):
        StoreOffer.objects.get_or_create(
            store=store, reward_type=reward_type, defaults={"position": position}
        )
    operation = Operation.objects.filter(org=organization).order_by("date_created").first()
    if operation is not None:
        EventOperation.objects.get_or_create(
            organization=organization, event_name="survey_completed", operation=operation
        )
    return store.key


@register_demo_part("engagement")
def engagement_demo_part(context: dict) -> dict:
    organization, program = context["organization"], context["program"]
    PointRule.objects.get_or_create(
        program=program,
        name="Demo: daily check-in",
        kind=RuleKind.EARN,
        defaults={
            "event_name": DEMO_EVENT,
            "event_points": 50,
            "member_limit": 500,
            "member_limit_period": LimitPeriod.DAY,
        },
    )
    tiers = _tiers(program)
    campaigns = _campaigns(organization, program)
    store = _store(organization, program)
    alice = Member.objects.filter(organization=organization, external_id="demo-alice").first()
    if alice is not None:
        services.member_tags_add(member=alice, names=["vip"], actor="system:demo")
    return {
        "event_name": DEMO_EVENT,
        "tiers": tiers,
        "campaigns": campaigns,
        "store": store,
        "customers_url": "/api/v1/customers",
    }
