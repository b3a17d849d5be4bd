"""seed_demo's rewards part: idempotent, a fresh working key each run, a store to shop in.

The part is driven directly with the context seed_demo gives it (organisation and program), so
these tests do not depend on the other demo parts.
"""

import pytest
from rest_framework.test import APIClient

from loyalty.demo import DEMO_MEMBERS, DEMO_PARTS, _load_demo_parts
from rewards.models import DigitalCode, Inventory, Operation, RewardsService, RewardType

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_part(org, program):
    _load_demo_parts()

    def run():
        return DEMO_PARTS["rewards_service"]({"organization": org, "program": program})

    return run


def _grant(part, user_id="demo-alice"):
    return APIClient().post(
        "/rewards/int/reward",
        {
            "user_id": user_id,
            "code": part["operation_code"],
            "building_block": part["building_block"],
        },
        format="json",
        HTTP_X_API_KEY=part["api_key"],
    )


def _rows():
    return (
        RewardType.objects.count(),
        Inventory.objects.count(),
        Operation.objects.count(),
        RewardsService.objects.count(),
        DigitalCode.objects.count(),
    )


def test_the_rewards_part_is_idempotent_and_resets_the_key(run_part):
    part = run_part()
    rows = _rows()
    again = run_part()

    assert set(part) == {"building_block", "api_key", "operation_code", "reward_type"}
    assert part["api_key"] != again["api_key"]
    assert _grant(part).status_code == 401  # the first run's key was reset
    response = _grant(again)
    assert response.status_code == 200, response.content
    assert response.json()[0]["reward_type"] == again["reward_type"]
    assert _rows() == rows


def test_the_demo_store_has_a_reward_no_demo_member_can_afford_and_a_code_pool(org, run_part):
    run_part()
    richest = max(points for *_rest, points in DEMO_MEMBERS)
    priced = RewardType.objects.filter(org=org, points_price__isnull=False)

    assert priced.filter(points_price__gt=richest).exists()
    assert priced.filter(points_price__lte=richest).exists()
    coffee = RewardType.objects.get(org=org, fulfilment="code_pool")
    assert coffee.digital_codes.filter(claim_item__isnull=True).count() > 0
