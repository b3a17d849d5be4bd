"""Races on PostgreSQL with real commits: 16 threads released together by a barrier.

Proves that grants and claims never take more than an inventory holds (without the depletion
permission), that a member's balance is checked inside the transaction, that every counter
equals the sum of the rows it stands for, and that a code is handed out once.
"""

from collections import Counter

import pytest

from points import services as point_services
from points.selectors import balance_get, ledger_verify
from rewards import services
from rewards.models import (
    Claim,
    ClaimItem,
    ClaimStatus,
    ClaimStatusChange,
    DigitalCode,
    RewardGrant,
)
from rewards.selectors import rewards_verify
from tests.concurrency_support import run_together
from tests.rewards.support import counters, grant, reward_balance

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _claim_one(member, reward_type):
    return lambda: services.claim_create(
        member=member,
        items=[services.ClaimItemRequest(reward_type=reward_type, amount=1)],
        actor="test",
    )


def test_200_claims_of_one_against_an_inventory_of_100_give_exactly_100(
    org, member, make_reward_type, make_inventory
):
    # Given a balance of 1000 and an inventory of 100 that may not be claimed past its total
    reward_type = make_reward_type(org)
    inventory = make_inventory(
        reward_type, amount_total=100, grant_depleted=True, claim_depleted=False
    )
    for _ in range(10):
        grant(member, reward_type, 100)

    # When 200 claims of 1 race on 16 threads
    outcomes = run_together([_claim_one(member, reward_type) for _ in range(200)])

    # Then exactly 100 succeed and the rest are refused as depleted
    assert outcomes == Counter({"ok": 100, "InventoryDepleted": 100})
    assert counters(inventory) == (1000, 100)
    assert reward_balance(member, reward_type) == 900
    assert ClaimItem.objects.filter(inventory=inventory).count() == 100
    assert not ClaimItem.objects.filter(overdrawn__gt=0).exists()
    assert Claim.objects.filter(member=member).count() == 100
    report = rewards_verify(org=org)
    assert report.ok, report.mismatches


def test_200_grants_of_one_against_an_inventory_of_100_give_exactly_100(
    org, make_member, make_reward_type, make_inventory
):
    # Given an inventory of 100 without the permission to grant past it, and 10 members
    reward_type = make_reward_type(org)
    inventory = make_inventory(reward_type, amount_total=100, grant_depleted=False)
    members = [make_member(org) for _ in range(10)]

    # When 200 grants of 1 race on 16 threads
    outcomes = run_together(
        [lambda m=members[i % 10]: grant(m, reward_type, 1) for i in range(200)]
    )

    # Then exactly 100 succeed and the counters equal the grants
    assert outcomes == Counter({"ok": 100, "InventoryDepleted": 100})
    assert counters(inventory) == (100, 0)
    assert RewardGrant.objects.filter(inventory=inventory).count() == 100
    assert sum(reward_balance(m, reward_type) for m in members) == 100
    report = rewards_verify(org=org)
    assert report.ok, report.mismatches


def test_claims_never_spend_more_than_the_balance_under_concurrency(
    org, member, make_reward_type, make_inventory
):
    # Given a balance of 30 and plenty of stock
    reward_type = make_reward_type(org)
    make_inventory(reward_type, amount_total=1000)
    grant(member, reward_type, 30)

    # When 100 claims of 1 race
    outcomes = run_together([_claim_one(member, reward_type) for _ in range(100)])

    # Then the balance, checked inside each transaction, lets exactly 30 through
    assert outcomes == Counter({"ok": 30, "InsufficientRewardBalance": 70})
    assert reward_balance(member, reward_type) == 0
    assert rewards_verify(org=org).ok


def test_with_claim_depleted_all_200_claims_succeed_and_the_overdraw_is_recorded(
    org, member, make_reward_type, make_inventory
):
    # Given a balance of 1000 and an inventory of 100 that may be claimed past its total
    reward_type = make_reward_type(org)
    inventory = make_inventory(
        reward_type, amount_total=100, grant_depleted=True, claim_depleted=True
    )
    for _ in range(10):
        grant(member, reward_type, 100)

    # When 200 claims of 1 race on 16 threads
    outcomes = run_together([_claim_one(member, reward_type) for _ in range(200)])

    # Then all succeed; the 100 past the total are recorded as overdrawn, item by item
    assert outcomes == Counter({"ok": 200})
    assert counters(inventory) == (1000, 200)
    items = ClaimItem.objects.filter(inventory=inventory)
    assert items.count() == 200
    assert items.filter(overdrawn=1).count() == 100
    assert items.filter(overdrawn=0).count() == 100
    assert reward_balance(member, reward_type) == 800
    report = rewards_verify(org=org)
    assert report.ok, report.mismatches


def test_a_code_pool_hands_out_each_code_once_under_concurrency(
    org, make_member, make_reward_type, make_inventory
):
    # Given 10 codes, plenty of stock, and 40 members who each hold one voucher
    reward_type = make_reward_type(org, fulfilment="code_pool")
    make_inventory(reward_type, amount_total=1000)
    services.digital_codes_import(
        reward_type=reward_type, lines=[f"CODE-{n:03d}" for n in range(10)]
    )
    members = [make_member(org) for _ in range(40)]
    for member in members:
        grant(member, reward_type, 1)

    # When all 40 claim at once
    outcomes = run_together([_claim_one(m, reward_type) for m in members])

    # Then 10 claims get a code each, all different, and are fulfilled; the rest changed nothing
    assert outcomes == Counter({"ok": 10, "CodePoolExhausted": 30})
    issued = DigitalCode.objects.filter(reward_type=reward_type, claim_item__isnull=False)
    assert issued.count() == 10
    assert issued.values("claim_item").distinct().count() == 10
    assert set(Claim.objects.values_list("status", flat=True)) == {ClaimStatus.FULFILLED}
    assert sum(reward_balance(m, reward_type) for m in members) == 30
    assert rewards_verify(org=org).ok


def test_racing_reject_and_fulfil_of_one_claim_apply_exactly_one(
    org, member, make_reward_type, make_inventory
):
    # Given a pending claim of 5
    reward_type = make_reward_type(org)
    inventory = make_inventory(reward_type, amount_total=100)
    grant(member, reward_type, 5)
    claim = services.claim_create(
        member=member,
        items=[services.ClaimItemRequest(reward_type=reward_type, amount=5)],
        actor="test",
    ).claim

    # When operators reject and fulfil it at the same time, many times over
    moves = [ClaimStatus.REJECTED, ClaimStatus.FULFILLED] * 16
    outcomes = run_together(
        [lambda s=s: services.claim_set_status(claim=claim, status=s, actor="test") for s in moves]
    )

    # Then one move won, its repeats changed nothing, and the other move was refused
    final = Claim.objects.get(pk=claim.pk).status
    assert outcomes == Counter({"ok": 16, "InvalidStatusTransition": 16})
    assert ClaimStatusChange.objects.filter(claim=claim).count() == 2  # created + one move
    expected_balance = 5 if final == ClaimStatus.REJECTED else 0
    assert reward_balance(member, reward_type) == expected_balance
    assert counters(inventory) == (5, 5 - expected_balance)
    assert rewards_verify(org=org).ok


def test_concurrent_store_purchases_spend_points_and_grant_rewards_together(
    org, program, member, make_reward_type, make_inventory
):
    # Given 500 points and a reward of 100 points each
    point_services.earn(program=program, member=member, amount=500)
    reward_type = make_reward_type(org, points_price=100)
    make_inventory(reward_type, amount_total=1000)

    # When 20 purchases race
    outcomes = run_together(
        [
            lambda: services.store_purchase(
                member=member,
                reward_type=reward_type,
                quantity=1,
                program=program,
                idempotency_key=None,
            )
            for _ in range(20)
        ]
    )

    # Then exactly 5 succeed: points and rewards moved together
    assert outcomes == Counter({"ok": 5, "InsufficientPointsForPurchase": 15})
    assert balance_get(program=program, member=member).balance == 0
    assert reward_balance(member, reward_type) == 5
    assert ledger_verify(program=program).ok
    assert rewards_verify(org=org).ok
