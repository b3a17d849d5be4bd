"""The reward store: points burned and the reward granted in one transaction, or neither."""

import pytest

from points import services as point_services
from points.models import Transfer
from points.selectors import balance_get, ledger_verify
from rewards import services
from rewards.exceptions import (
    IdempotencyConflict,
    InsufficientPointsForPurchase,
    InventoryDepleted,
    NotForSale,
)
from rewards.models import Claim, RewardGrant, StorePurchase
from rewards.selectors import rewards_verify
from tests.rewards.support import counters, reward_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def mug(org, make_reward_type, make_inventory):
    reward_type = make_reward_type(org, reward_type="mug", display_name="Mug", points_price=300)
    make_inventory(reward_type, amount_total=10)
    return reward_type


def _state(program, member, reward_type):
    return {
        "points": balance_get(program=program, member=member),
        "transfers": Transfer.objects.filter(program=program).count(),
        "rewards": reward_balance(member, reward_type),
        "grants": RewardGrant.objects.count(),
        "purchases": StorePurchase.objects.count(),
        "claims": Claim.objects.count(),
    }


def test_buying_with_too_few_points_fails_and_changes_nothing(program, member, mug, member_api):
    # Given 500 points and a mug of 300
    point_services.earn(program=program, member=member, amount=500)
    before = _state(program, member, mug)

    # When the member buys two
    response = member_api(member).post(
        "/rewards/user/purchases", {"reward_type": "mug", "quantity": 2}, format="json"
    )

    # Then the purchase is refused and neither points nor rewards moved
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "insufficient_points"
    assert body["details"] == {"required": 600, "available": 500}
    assert _state(program, member, mug) == before
    assert ledger_verify(program=program).ok


def test_buying_with_enough_points_moves_points_and_rewards_together(
    org, program, member, mug, member_api
):
    # Given 1000 points
    point_services.earn(program=program, member=member, amount=1000)

    # When the member buys three mugs
    response = member_api(member).post(
        "/rewards/user/purchases",
        {"reward_type": "mug", "quantity": 3, "program": "default"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-1",
    )

    # Then 900 points are burned and 3 mugs granted, recorded as one purchase
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["quantity"], body["unit_price"], body["points"]) == (3, 300, 900)
    assert body["claim"] is None
    assert balance_get(program=program, member=member).balance == 100
    assert reward_balance(member, mug) == 3
    purchase = StorePurchase.objects.get()
    assert purchase.transfer.amount == 900
    assert purchase.transfer.source == "Reward store"
    assert purchase.grant.amount == 3
    assert purchase.grant.code == services.STORE_CODE
    assert ledger_verify(program=program).ok
    assert rewards_verify(org=org).ok


def test_a_repeated_purchase_with_the_same_key_buys_once(program, member, mug):
    point_services.earn(program=program, member=member, amount=1000)

    def buy(quantity):
        return services.store_purchase(
            member=member,
            reward_type=mug,
            quantity=quantity,
            program=program,
            idempotency_key="order-7",
        )

    first = buy(1)
    repeat = buy(1)
    with pytest.raises(IdempotencyConflict):
        buy(2)

    assert repeat.replayed and repeat.purchase.pk == first.purchase.pk
    assert balance_get(program=program, member=member).balance == 700
    assert reward_balance(member, mug) == 1


def test_an_http_repeat_returns_the_first_purchase(program, member, mug, member_api):
    point_services.earn(program=program, member=member, amount=1000)
    client = member_api(member)
    payload = {"reward_type": "mug", "quantity": 1}

    first = client.post("/rewards/user/purchases", payload, format="json", HTTP_IDEMPOTENCY_KEY="a")
    again = client.post("/rewards/user/purchases", payload, format="json", HTTP_IDEMPOTENCY_KEY="a")
    listed = client.get("/rewards/user/purchases").json()

    assert first.json()["id"] == again.json()["id"]
    assert [p["id"] for p in listed] == [first.json()["id"]]
    assert balance_get(program=program, member=member).balance == 700


def test_a_purchase_when_the_stock_is_gone_keeps_the_points(org, program, member, mug):
    # Given enough points but only 10 mugs, all granted already
    point_services.earn(program=program, member=member, amount=10_000)
    services.store_purchase(
        member=member, reward_type=mug, quantity=10, program=program, idempotency_key=None
    )
    before = _state(program, member, mug)

    # When the member buys one more
    with pytest.raises(InventoryDepleted):
        services.store_purchase(
            member=member, reward_type=mug, quantity=1, program=program, idempotency_key="late"
        )

    # Then the burn was rolled back with the failed grant
    assert _state(program, member, mug) == before
    assert not Transfer.objects.filter(idempotency_key__contains="late").exists()
    assert ledger_verify(program=program).ok


def test_a_purchase_can_claim_at_once(org, program, member, mug, member_api):
    point_services.earn(program=program, member=member, amount=300)

    response = member_api(member).post(
        "/rewards/user/purchases", {"reward_type": "mug", "claim_now": True}, format="json"
    )

    assert response.status_code == 200, response.content
    claim = response.json()["claim"]
    assert claim["status"] == "pending"
    assert claim["items"][0]["amount"] == 1
    assert reward_balance(member, mug) == 0
    assert balance_get(program=program, member=member).balance == 0
    assert rewards_verify(org=org).ok


def test_a_reward_without_a_price_is_not_for_sale(org, program, member, make_reward_type):
    badge = make_reward_type(org, reward_type="badge")
    point_services.earn(program=program, member=member, amount=1000)

    with pytest.raises(NotForSale):
        services.store_purchase(
            member=member, reward_type=badge, quantity=1, program=program, idempotency_key=None
        )

    assert balance_get(program=program, member=member).balance == 1000


def test_points_price_too_high_for_every_member_is_refused(program, member, make_reward_type, org):
    trip = make_reward_type(org, reward_type="trip", points_price=100_000)
    point_services.earn(program=program, member=member, amount=2500)

    with pytest.raises(InsufficientPointsForPurchase):
        services.store_purchase(
            member=member, reward_type=trip, quantity=1, program=program, idempotency_key=None
        )

    assert balance_get(program=program, member=member).balance == 2500
    assert reward_balance(member, trip) == 0


def test_the_store_lists_reward_types_for_sale(org, member, mug, make_reward_type, member_api):
    make_reward_type(org, reward_type="badge")
    make_reward_type(org, reward_type="old", points_price=5, active=False)

    listed = member_api(member).get("/rewards/user/store").json()

    assert [(i["reward_type"], i["points_price"]) for i in listed] == [("mug", 300)]


def test_unknown_program_or_reward_is_404(program, member, mug, member_api):
    client = member_api(member)

    no_program = client.post(
        "/rewards/user/purchases", {"reward_type": "mug", "program": "nope"}, format="json"
    )
    no_reward = client.post("/rewards/user/purchases", {"reward_type": "nope"}, format="json")

    assert (no_program.status_code, no_program.json()["field"]) == (404, "program")
    assert (no_reward.status_code, no_reward.json()["field"]) == (404, "reward_type")


def test_mug_counters_follow_purchases(program, member, mug):
    point_services.earn(program=program, member=member, amount=600)
    services.store_purchase(
        member=member, reward_type=mug, quantity=2, program=program, idempotency_key=None
    )

    inventory = mug.inventories.get()
    assert counters(inventory) == (2, 0)
