"""Demo rewards for seed_demo: reward types (some for sale, one beyond any demo member's points,
one with a code pool), inventories, an operation, and a rewards service whose key is reset on
every run. Idempotent: rows are found by their natural keys.
"""

from __future__ import annotations

from loyalty.demo import register_demo_part
from rewards import services
from rewards.models import Inventory, Operation, RewardsService, RewardType

DEMO_BUILDING_BLOCK = "groups"
DEMO_OPERATION_CODE = "10_posts"
DEMO_REWARD_TYPE = "tshirt"
DEMO_CODES = [f"DEMO-COFFEE-{number:04d}" for number in range(1, 51)]

# reward_type, display name, description, points price, fulfilment, inventory total
DEMO_TYPES = [
    ("tshirt", "T-Shirt", "T-shirt with the Demo Retail logo", 500, "manual", 100),
    ("coffee", "Free coffee", "A coffee voucher code for the café", 100, "code_pool", 50),
    ("badge", "Community badge", "Earned by taking part; not for sale", None, "manual", 1000),
    ("weekend-trip", "Weekend trip", "A weekend for two (a big goal)", 100_000, "manual", 2),
]


def _reward_type(org, name, display_name, description, price, fulfilment) -> RewardType:
    existing = RewardType.objects.filter(org=org, reward_type=name).first()
    if existing is not None:
        return existing
    return services.reward_type_create(
        org=org,
        reward_type=name,
        display_name=display_name,
        description=description,
        points_price=price,
        fulfilment=fulfilment,
    )


@register_demo_part("rewards_service")
def demo_rewards(context: dict) -> dict:
    org = context["organization"]
    types = {}
    for name, display_name, description, price, fulfilment, total in DEMO_TYPES:
        reward_type = _reward_type(org, name, display_name, description, price, fulfilment)
        types[name] = reward_type
        if not Inventory.objects.filter(reward_type=reward_type, description="Demo stock").exists():
            services.inventory_create(
                reward_type=reward_type, amount_total=total, description="Demo stock"
            )
    services.digital_codes_import(reward_type=types["coffee"], lines=DEMO_CODES)
    if not Operation.objects.filter(
        org=org, building_block=DEMO_BUILDING_BLOCK, code=DEMO_OPERATION_CODE
    ).exists():
        services.operation_create(
            reward_type=types[DEMO_REWARD_TYPE],
            code=DEMO_OPERATION_CODE,
            building_block=DEMO_BUILDING_BLOCK,
            amount=1,
            description="Make 10 posts in a group",
        )
    service = RewardsService.objects.filter(org=org, building_block=DEMO_BUILDING_BLOCK).first()
    if service is None:
        service, api_key = services.rewards_service_create(
            org=org, name="Groups building block", building_block=DEMO_BUILDING_BLOCK
        )
    else:
        api_key = services.rewards_service_key_reset(service=service)
    return {
        "building_block": DEMO_BUILDING_BLOCK,
        "api_key": api_key,
        "operation_code": DEMO_OPERATION_CODE,
        "reward_type": DEMO_REWARD_TYPE,
    }
