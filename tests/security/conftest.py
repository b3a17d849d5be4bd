"""Fixtures of the security suite: two organisations, A and B, each wired to every contract
(tests/reliability/worlds.py), and B's objects of every kind that an API takes an id of.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pytest
from django.test import Client, TestCase
from django.utils import timezone

from integrations.follower import services as follower_services
from loyalty.engagement.models import Campaign, GoalType
from loyalty.engagement.services.tags import member_tags_add
from points import services as point_services
from rewards import services as reward_services
from tests.conftest import unique
from tests.reliability.worlds import build_world


@pytest.fixture(autouse=True)
def generous_rate_limit(settings):
    settings.PARTNER_API_RATE = "100000/s"


def _world(make_org, make_program, make_member, receiver, django_user_model):
    return build_world(
        org=make_org(),
        make_program=make_program,
        make_member=make_member,
        callback_url=f"{receiver.url}/callback",
        django_user_model=django_user_model,
    )


@pytest.fixture
def world_a(
    db, make_org, make_program, make_member, receiver, insecure_callbacks, django_user_model
):
    return _world(make_org, make_program, make_member, receiver, django_user_model)


@pytest.fixture
def world_b(
    db, make_org, make_program, make_member, receiver, insecure_callbacks, django_user_model
):
    return _world(make_org, make_program, make_member, receiver, django_user_model)


@dataclass
class Objects:
    """Objects of one organisation that other tenants must not reach."""

    member: object
    claim: object
    hold: object
    balance_job: object
    campaign: object
    tag: str
    reward_type: object
    inventory: object
    operation: object


@pytest.fixture
def b_objects(world_b) -> Objects:
    member = world_b.members[0]
    reward_type = world_b.services[0][2].reward_type
    reward_services.reward_grant(
        member=member,
        reward_type=reward_type,
        amount=5,
        source="operation",
        code="setup",
        building_block="tests",
    )
    with TestCase.captureOnCommitCallbacks(execute=False):
        claim = reward_services.claim_create(
            member=member,
            items=[reward_services.ClaimItemRequest(reward_type=reward_type, amount=1)],
            actor="test",
        ).claim
        job = follower_services.balance_job_create(
            client=world_b.masters[0][0].client,
            items=[
                follower_services.BalanceItem(
                    contact_id="b-contact",
                    amount=10,
                    definition_id=world_b.follower_program.definition_id,
                    time_stamp=timezone.now(),
                )
            ],
        )
    vendor = world_b.vendors[0].vendor
    hold = point_services.hold_create(
        program=world_b.program,
        member=member,
        amount=10,
        owner=vendor.hold_owner,
        transaction_id="b-order-1",
    ).hold
    now = timezone.now()
    campaign = Campaign.objects.create(
        organization=world_b.org,
        key=unique("campaign"),
        name="B's campaign",
        starts_at=now - dt.timedelta(days=1),
        ends_at=now + dt.timedelta(days=30),
        goal_type=GoalType.EVENT_COUNT,
        goal_event_name="app_open",
        goal_target=3,
        opt_in_required=True,
        reward_points=100,
        reward_program=world_b.program,
    )
    tag = unique("vip")
    member_tags_add(member=member, names=[tag])
    return Objects(
        member=member,
        claim=claim,
        hold=hold,
        balance_job=job,
        campaign=campaign,
        tag=tag,
        reward_type=reward_type,
        inventory=reward_type.inventories.order_by("pk").first(),
        operation=world_b.services[0][2],
    )


class Caller:
    """Any HTTP call through Django's test client, headers by their HTTP names."""

    def __init__(self, client: Client | None = None, **headers: str):
        self.client = client or Client()
        self.headers = headers

    def __call__(self, method: str, path: str, body=None, **headers: str):
        extra = {
            f"HTTP_{name.upper().replace('-', '_')}": value
            for name, value in {**self.headers, **headers}.items()
        }
        kwargs = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        with TestCase.captureOnCommitCallbacks(execute=True):
            return getattr(self.client, method.lower())(path, **kwargs, **extra)
