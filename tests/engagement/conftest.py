"""Factories for the engagement tests: profiles API clients, tiers, rules, rewards, campaigns."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from integrations.clients import api_client_create
from integrations.follower_crypto import new_follower_key
from loyalty.engagement.models import Campaign, GoalType, RewardStore, StoreOffer
from points.models import PointRule, ProgramMode, RuleKind
from tests.conftest import unique

BOTH_SCOPES = ("customers:read", "customers:write")


def in_an_hour():
    return timezone.now() + dt.timedelta(hours=1)


@pytest.fixture
def make_api(db):
    """An API client of the organisation with a bearer token holding `scopes`."""

    def make(org, scopes=BOTH_SCOPES):
        created = api_client_create(organization=org, name=unique("app"), scopes=list(scopes))
        token = AccessToken.objects.create(
            application=created.client.application,
            token=unique("tok"),
            scope=" ".join(scopes),
            expires=in_an_hour(),
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
        client.api_client = created.client
        return client

    return make


@pytest.fixture
def api(org, make_api):
    return make_api(org)


@pytest.fixture
def make_follower_program(make_program):
    def make(organization, mode=ProgramMode.FOLLOWER_TRANSACTIONS, **fields):
        return make_program(
            organization,
            key=fields.pop("key", f"follower-{mode}"),
            mode=mode,
            master_webhook_url="https://master.example.invalid/hook",
            master_webhook_key=new_follower_key(),
            **fields,
        )

    return make


@pytest.fixture
def make_event_rule(db):
    def make(program, event_name="app_open", points=10, **fields):
        return PointRule.objects.create(
            program=program,
            name=fields.pop("name", unique("rule")),
            kind=RuleKind.EARN,
            event_name=event_name,
            event_points=points,
            **fields,
        )

    return make


@pytest.fixture
def make_campaign(db):
    def make(org, **fields):
        now = timezone.now()
        values = {
            "organization": org,
            "key": unique("campaign"),
            "name": "A campaign",
            "starts_at": now - dt.timedelta(days=1),
            "ends_at": now + dt.timedelta(days=30),
            "goal_type": GoalType.EVENT_COUNT,
            "goal_event_name": "app_open",
            "goal_target": 3,
        }
        values.update(fields)
        return Campaign.objects.create(**values)

    return make


@pytest.fixture
def make_reward_type(db):
    def make(org, points_price=None, amount_total=100, **fields):
        from rewards import services as reward_services

        reward_type = reward_services.reward_type_create(
            org=org,
            reward_type=fields.pop("reward_type", unique("rt")),
            display_name=fields.pop("display_name", "A reward"),
            points_price=points_price,
            **fields,
        )
        reward_services.inventory_create(reward_type=reward_type, amount_total=amount_total)
        return reward_type

    return make


@pytest.fixture
def make_offer(db):
    def make(program, reward_type, store_key="main", **fields):
        store, _ = RewardStore.objects.get_or_create(
            organization=program.organization,
            key=store_key,
            defaults={"name": store_key, "program": program},
        )
        return StoreOffer.objects.create(store=store, reward_type=reward_type, **fields)

    return make
