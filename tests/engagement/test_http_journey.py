"""Over real HTTP (live_server + requests): a vendor app drives a customer's whole journey."""

import datetime as dt

import pytest
import requests
from django.utils import timezone

from integrations.clients import api_client_create
from loyalty.engagement import services
from loyalty.engagement.models import Campaign, CampaignCompletion, GoalType
from points.models import PointRule, RuleKind, Transfer

TIMEOUT = 10


@pytest.fixture
def setup(org, program, make_reward_type, make_offer):
    """What an operator configured: tiers, an event rule, a campaign, a store offer."""
    services.tier_create(program=program, name="Bronze", threshold=0)
    services.tier_create(program=program, name="Silver", threshold=100, earn_multiplier=2)
    PointRule.objects.create(
        program=program, name="Workout", kind=RuleKind.EARN, event_name="workout", event_points=30
    )
    now = timezone.now()
    campaign = Campaign.objects.create(
        organization=org,
        key="three-workouts",
        name="Three workouts",
        starts_at=now - dt.timedelta(days=1),
        ends_at=now + dt.timedelta(days=30),
        goal_type=GoalType.EVENT_COUNT,
        goal_event_name="workout",
        goal_target=3,
        reward_points=50,
        reward_program=program,
    )
    bottle = make_reward_type(
        org, points_price=100, reward_type="bottle", display_name="Water bottle"
    )
    offer = make_offer(program, bottle)
    created = api_client_create(
        organization=org, name="fitness app", scopes=["customers:read", "customers:write"]
    )
    return {"campaign": campaign, "offer": offer, "client": created}


def test_a_customer_journey_over_http(live_server, setup, program):
    base = live_server.url
    client = setup["client"]
    token = requests.post(
        f"{base}/o/token/",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
        timeout=TIMEOUT,
    ).json()["access_token"]
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"

    def profile():
        response = http.get(
            f"{base}/api/v1/customers/runner-42?include=wallet,tier,campaigns", timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        body = response.json()
        [campaign] = body["campaigns"]
        return (
            body["wallet"]["points"][0]["balance"],
            body["tiers"][0]["tier"]["name"] if body["tiers"][0]["tier"] else None,
            campaign["progress"],
            campaign["status"],
        )

    def workout(key):
        response = http.post(
            f"{base}/api/v1/events",
            json={"userId": "runner-42", "name": "workout", "properties": {"km": 5}},
            headers={"Idempotency-Key": key},
            timeout=TIMEOUT,
        )
        assert response.status_code == 201, response.text
        return response

    # a profile is created; the platform's id comes back
    created = http.post(
        f"{base}/api/v1/customers",
        json={"externalId": "runner-42", "firstName": "Rita", "email": "rita@example.com"},
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"]
    assert profile() == (0, "Bronze", 0, "active")

    # events earn points and move the campaign; the third completes it and its reward lifts
    # the customer into Silver
    workout("w-1")
    assert profile() == (30, "Bronze", 1, "active")
    workout("w-2")
    assert profile() == (60, "Bronze", 2, "active")
    third = workout("w-3")
    assert third.json()["campaigns"][0]["completedNow"] is True
    assert profile() == (140, "Silver", 3, "completed")

    # a replayed event gets the same answer and changes nothing
    replay = workout("w-3")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == third.json()
    assert profile() == (140, "Silver", 3, "completed")
    assert CampaignCompletion.objects.filter(campaign=setup["campaign"]).count() == 1

    # Silver doubles what an event earns; the completed campaign gives nothing again
    fourth = workout("w-4").json()
    assert fourth["points"][0]["points"] == 60
    assert profile() == (200, "Silver", 3, "completed")

    # the customer buys the offer and redeems it
    offers = http.get(
        f"{base}/api/v1/stores/main/offers?customerId=runner-42", timeout=TIMEOUT
    ).json()["results"]
    assert [(o["rewardType"], o["affordable"]) for o in offers] == [("bottle", True)]
    bought = http.post(
        f"{base}/api/v1/customers/runner-42/purchases",
        json={"offerId": offers[0]["id"]},
        headers={"Idempotency-Key": "buy-bottle"},
        timeout=TIMEOUT,
    )
    assert bought.status_code == 201, bought.text
    redeemed = http.post(
        f"{base}/api/v1/customers/runner-42/redemptions",
        json={"rewardType": "bottle"},
        timeout=TIMEOUT,
    )
    assert redeemed.status_code == 201, redeemed.text
    assert redeemed.json()["status"] == "pending"
    assert profile()[0] == 100

    # both logs tell the story, newest first
    point_log = http.get(f"{base}/api/v1/customers/runner-42/point-log", timeout=TIMEOUT).json()
    assert [entry["points"] for entry in point_log["results"]] == [-100, 60, 50, 30, 30, 30]
    assert point_log["nextCursor"] is None
    assert (
        len(point_log["results"])
        == Transfer.objects.filter(member_account__program=program)
        .exclude(member_account__member=None)
        .count()
    )
    activity = http.get(f"{base}/api/v1/customers/runner-42/activity-log", timeout=TIMEOUT).json()
    kinds = [entry["type"] for entry in activity["results"]]
    assert kinds[:2] == ["reward_claimed", "offer_purchased"]
    assert kinds.count("event") == 4
    assert {"tier_changed", "campaign_completed", "profile_created"} <= set(kinds)
