"""Seed 003's lifecycle over real HTTP (live_server + requests), as Rokwire's clients drive it.

An administrator (OAuth client credentials, scope rewards:admin) creates a reward type, an
inventory and an operation; the building block grants with its API key; the member reads the
balance and history with an OAuth token, claims, and the inventory counters match.
"""

import pytest
import requests

from integrations.clients import api_client_create
from loyalty.engagement.models import ActivityEntry
from loyalty.models import Member
from rewards import services
from rewards.selectors import rewards_verify

pytestmark = pytest.mark.django_db(transaction=True)


def _admin_session(live_server, org) -> requests.Session:
    client = api_client_create(organization=org, name="rewards admin", scopes=["rewards:admin"])
    token = requests.post(
        f"{live_server.url}/o/token/",
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session


def test_the_seed_lifecycle_over_http(live_server, org, member_token):
    base = f"{live_server.url}/rewards"
    admin = _admin_session(live_server, org)
    _service, api_key = services.rewards_service_create(
        org=org, name="Groups", building_block="groups"
    )

    # Given a reward type, an inventory and an operation made through the admin API
    reward_type = admin.post(
        f"{base}/admin/types",
        json={
            "reward_type": "tshirt",
            "display_name": "T-Shirt",
            "active": True,
            "description": "T-shirts with the University logo",
        },
        timeout=10,
    )
    assert reward_type.status_code == 200, reward_type.text
    assert reward_type.json()["reward_type"] == "tshirt"
    assert reward_type.json()["org_id"] == str(org.pk)
    inventory = admin.post(
        f"{base}/admin/inventories",
        json={
            "reward_type": "tshirt",
            "in_stock": True,
            "amount_total": 10,
            "grant_depleted": False,
            "claim_depleted": False,
            "description": "Initial stock",
        },
        timeout=10,
    )
    assert inventory.status_code == 200, inventory.text
    inventory_id = inventory.json()["id"]
    operation = admin.post(
        f"{base}/admin/operations",
        json={
            "reward_type": "tshirt",
            "code": "10_posts",
            "building_block": "groups",
            "amount": 2,
            "description": "Make 10 posts in a group",
        },
        timeout=10,
    )
    assert operation.status_code == 200, operation.text

    # When the building block grants twice (both of its key headers)
    first = requests.post(
        f"{base}/int/reward",
        headers={"X-Api-Key": api_key},
        json={"user_id": "student-42", "code": "10_posts", "building_block": "groups"},
        timeout=10,
    )
    second = requests.post(
        f"{base}/int/reward",
        headers={"INTERNAL-API-KEY": api_key},
        json={
            "user_id": "student-42",
            "code": "10_posts",
            "building_block": "groups",
            "description": "posted again",
        },
        timeout=10,
    )

    # Then each answers the reward type's quantity state
    assert first.status_code == 200, first.text
    assert first.json() == [
        {"reward_type": "tshirt", "grantable_quantity": 8, "claimable_quantity": 10}
    ]
    assert second.json() == [
        {"reward_type": "tshirt", "grantable_quantity": 6, "claimable_quantity": 10}
    ]

    # And the member (created by the grant) sees balance and history with an OAuth token
    member = Member.objects.get(organization=org, external_id="student-42")
    me = requests.Session()
    me.headers["Authorization"] = f"Bearer {member_token(member)}"
    assert me.get(f"{base}/user/balance", timeout=10).json() == [
        {"reward_type": "tshirt", "amount": 4}
    ]
    history = me.get(f"{base}/user/history", timeout=10).json()
    assert [(h["code"], h["building_block"], h["amount"]) for h in history] == [
        ("10_posts", "groups", 2),
        ("10_posts", "groups", 2),
    ]
    assert {h["description"] for h in history} == {"Make 10 posts in a group", "posted again"}
    assert all(h["user_id"] == "student-42" and h["reward_type"] == "tshirt" for h in history)

    # When the member claims 3
    claim = me.post(
        f"{base}/user/claims", json={"items": [{"reward_type": "tshirt", "amount": 3}]}, timeout=10
    )

    # Then the claim is pending, allocated from the inventory, and the balance is 1
    assert claim.status_code == 200, claim.text
    body = claim.json()
    assert body["status"] == "pending"
    assert body["user_id"] == "student-42"
    assert [(i["reward_type"], i["inventory_id"], i["amount"]) for i in body["items"]] == [
        ("tshirt", inventory_id, 3)
    ]
    assert me.get(f"{base}/user/balance", timeout=10).json() == [
        {"reward_type": "tshirt", "amount": 1}
    ]
    assert [c["id"] for c in me.get(f"{base}/user/claims", timeout=10).json()] == [body["id"]]

    # And the inventory counters match the grants and the claim
    counters = admin.get(f"{base}/admin/inventories/{inventory_id}", timeout=10).json()
    assert (counters["amount_granted"], counters["amount_claimed"]) == (4, 3)
    assert counters["depleted"] is False

    # When an administrator fulfils the claim
    fulfilled = admin.put(
        f"{base}/admin/claims/{body['id']}", json={"status": "fulfilled"}, timeout=10
    )

    # Then it is fulfilled and every counter still equals the sums of its rows
    assert fulfilled.status_code == 200, fulfilled.text
    assert fulfilled.json()["status"] == "fulfilled"
    assert me.get(f"{base}/user/claims?status=fulfilled", timeout=10).json()[0]["id"] == body["id"]
    assert rewards_verify(org=org).ok

    # And the member's activity log shows both grants and the claim, newest first
    log = ActivityEntry.objects.filter(member=member).order_by("-id")
    assert [(entry.kind, entry.data.get("amount")) for entry in log] == [
        ("reward_claimed", None),
        ("reward_granted", 2),
        ("reward_granted", 2),
    ]
    assert log[0].data["items"] == [{"rewardType": "tshirt", "amount": 3}]
    assert log[1].actor == "service:Groups"
