"""Helpers shared by the rewards tests."""

from __future__ import annotations

from rewards import services
from rewards.models import Inventory, RewardBalance


def reward_balance(member, reward_type) -> int:
    row = RewardBalance.objects.filter(member=member, reward_type=reward_type).first()
    return row.amount if row else 0


def grant(member, reward_type, amount):
    return services.reward_grant(
        member=member,
        reward_type=reward_type,
        amount=amount,
        source="operation",
        code="test",
        building_block="tests",
    ).grant


def counters(inventory) -> tuple[int, int]:
    row = Inventory.objects.get(pk=inventory.pk)
    return row.amount_granted, row.amount_claimed
