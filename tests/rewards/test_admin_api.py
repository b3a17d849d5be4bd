"""The admin half of the Rokwire contract: shapes, read-only counters, 409 on referenced rows."""

import json

import pytest
from rest_framework.test import APIClient

from rewards import services
from rewards.models import Inventory, Operation, RewardType
from tests.rewards.support import counters, grant

pytestmark = pytest.mark.django_db


def test_reward_type_crud_in_rokwires_shapes(org, admin_api):
    created = admin_api.post(
        "/rewards/admin/types",
        {
            "org_id": str(org.pk),
            "reward_type": "tshirt",
            "display_name": "T-Shirt",
            "active": True,
            "description": "Logo tee",
            "points_price": 500,
            "date_created": "2022-06-01T12:21:06Z",
        },
        format="json",
    )
    assert created.status_code == 200, created.content
    body = created.json()
    assert set(body) >= {
        "id",
        "org_id",
        "reward_type",
        "display_name",
        "active",
        "description",
        "date_created",
        "date_updated",
    }
    url = f"/rewards/admin/types/{body['id']}"

    updated = admin_api.put(url, {"display_name": "Tee", "active": False}, format="json")
    listed = admin_api.get("/rewards/admin/types").json()
    fetched = admin_api.get(url).json()
    deleted = admin_api.delete(url)

    assert updated.json()["display_name"] == "Tee"
    assert [t["id"] for t in listed] == [body["id"]]
    assert (fetched["display_name"], fetched["active"], fetched["points_price"]) == (
        "Tee",
        False,
        500,
    )
    assert (deleted.status_code, deleted.content, deleted["Content-Type"]) == (
        200,
        b"Success",
        "text/plain",
    )
    assert not RewardType.objects.exists()


def test_a_duplicate_reward_type_is_409(org, admin_api, make_reward_type):
    make_reward_type(org, reward_type="tshirt")

    response = admin_api.post(
        "/rewards/admin/types", {"reward_type": "tshirt", "display_name": "Again"}, format="json"
    )

    assert (response.status_code, response.json()["field"]) == (409, "reward_type")
    assert RewardType.objects.count() == 1


def test_org_id_of_another_organisation_is_refused(org, admin_api, make_org):
    response = admin_api.post(
        "/rewards/admin/types",
        {"org_id": str(make_org().pk), "reward_type": "x", "display_name": "X"},
        format="json",
    )

    assert (response.status_code, response.json()["field"]) == (400, "org_id")
    assert not RewardType.objects.exists()


def test_inventory_counters_are_read_only(org, member, admin_api, make_reward_type):
    reward_type = make_reward_type(org, reward_type="tshirt")
    created = admin_api.post(
        "/rewards/admin/inventories",
        {"reward_type": "tshirt", "amount_total": 10, "amount_granted": 0, "amount_claimed": 0},
        format="json",
    )
    assert created.status_code == 200, created.content
    inventory = Inventory.objects.get(pk=created.json()["id"])
    grant(member, reward_type, 4)
    url = f"/rewards/admin/inventories/{inventory.pk}"
    current = admin_api.get(url).json()

    set_counter = admin_api.put(url, {"amount_granted": 0}, format="json")
    round_trip = admin_api.put(url, {**current, "amount_total": 20}, format="json")
    stale_round_trip = admin_api.put(
        url, {**current, "amount_granted": current["amount_granted"] - 1}, format="json"
    )
    created_with_counter = admin_api.post(
        "/rewards/admin/inventories",
        {"reward_type": "tshirt", "amount_total": 10, "amount_granted": 5},
        format="json",
    )

    assert (set_counter.status_code, set_counter.json()["field"]) == (400, "amount_granted")
    assert round_trip.status_code == 200
    assert (round_trip.json()["amount_total"], round_trip.json()["amount_granted"]) == (20, 4)
    assert stale_round_trip.status_code == 400
    assert created_with_counter.status_code == 400
    assert counters(inventory) == (4, 0)
    assert Inventory.objects.count() == 1


def test_an_inventory_update_keeps_grants_made_since_it_was_read(
    org, member, make_reward_type, make_inventory
):
    # Given an inventory read by an operator, then granted from
    reward_type = make_reward_type(org)
    inventory = make_inventory(reward_type, amount_total=10)
    stale = Inventory.objects.get(pk=inventory.pk)
    grant(member, reward_type, 3)

    # When the operator saves a change from the stale copy
    services.inventory_update(inventory=stale, description="restocked", amount_total=20)

    # Then the grant made in between is still counted
    assert counters(inventory) == (3, 0)
    assert Inventory.objects.get(pk=inventory.pk).amount_total == 20


def test_lowering_the_total_below_what_was_granted_needs_the_permission(
    org, member, make_reward_type, make_inventory, admin_api
):
    reward_type = make_reward_type(org)
    inventory = make_inventory(reward_type, amount_total=10)
    grant(member, reward_type, 6)
    url = f"/rewards/admin/inventories/{inventory.pk}"

    refused = admin_api.put(url, {"amount_total": 5}, format="json")
    allowed = admin_api.put(url, {"amount_total": 5, "grant_depleted": True}, format="json")

    assert (refused.status_code, refused.json()["field"]) == (409, "amount_total")
    assert allowed.status_code == 200
    assert allowed.json()["depleted"] is True
    assert allowed.json()["grant_overdraw"] == 1


def test_inventory_filters(org, admin_api, make_reward_type, make_inventory):
    reward_type = make_reward_type(org, reward_type="tshirt")
    a = make_inventory(reward_type, in_stock=True)
    b = make_inventory(reward_type, in_stock=False, claim_depleted=True)

    in_stock = admin_api.get("/rewards/admin/inventories?in_stock=true").json()
    claim_depleted = admin_api.get("/rewards/admin/inventories?claim_depleted=true").json()
    by_ids = admin_api.get(f"/rewards/admin/inventories?ids={a.pk},{b.pk}&limit=1").json()
    bad = admin_api.get("/rewards/admin/inventories?in_stock=maybe")

    assert [i["id"] for i in in_stock] == [str(a.pk)]
    assert [i["id"] for i in claim_depleted] == [str(b.pk)]
    assert [i["id"] for i in by_ids] == [str(a.pk)]
    assert (bad.status_code, bad.json()["field"]) == (400, "in_stock")


def test_deleting_referenced_rows_is_409_and_unreferenced_rows_go(
    org, member, admin_api, make_reward_type, make_inventory
):
    # Given a type with a used inventory and operation, and an unused inventory and operation
    reward_type = make_reward_type(org, reward_type="tshirt")
    used_inventory = make_inventory(reward_type)
    used_op = services.operation_create(
        reward_type=reward_type, code="used", building_block="groups", amount=1
    )
    _service, key = services.rewards_service_create(org=org, name="g", building_block="groups")
    APIClient().post(
        "/rewards/int/reward", {"user_id": "u1", "code": "used"}, format="json", HTTP_X_API_KEY=key
    )
    spare_op = services.operation_create(
        reward_type=reward_type, code="spare", building_block="groups", amount=1
    )
    spare_inventory = make_inventory(reward_type)

    answers = {
        "type": admin_api.delete(f"/rewards/admin/types/{reward_type.pk}").status_code,
        "used inventory": admin_api.delete(
            f"/rewards/admin/inventories/{used_inventory.pk}"
        ).status_code,
        "used operation": admin_api.delete(f"/rewards/admin/operations/{used_op.pk}").status_code,
        "spare operation": admin_api.delete(f"/rewards/admin/operations/{spare_op.pk}").status_code,
        "spare inventory": admin_api.delete(
            f"/rewards/admin/inventories/{spare_inventory.pk}"
        ).status_code,
    }

    assert answers == {
        "type": 409,
        "used inventory": 409,
        "used operation": 409,
        "spare operation": 200,
        "spare inventory": 200,
    }
    assert RewardType.objects.filter(pk=reward_type.pk).exists()
    assert list(Operation.objects.values_list("code", flat=True)) == ["used"]
    assert list(Inventory.objects.values_list("pk", flat=True)) == [used_inventory.pk]


def test_operation_crud_and_duplicate_code(org, admin_api, make_reward_type):
    make_reward_type(org, reward_type="tshirt")
    make_reward_type(org, reward_type="hoodie")
    payload = {"reward_type": "tshirt", "code": "10_posts", "building_block": "groups", "amount": 1}

    created = admin_api.post("/rewards/admin/operations", payload, format="json")
    duplicate = admin_api.post("/rewards/admin/operations", payload, format="json")
    other_block = admin_api.post(
        "/rewards/admin/operations", {**payload, "building_block": "events"}, format="json"
    )
    moved = admin_api.put(
        f"/rewards/admin/operations/{created.json()['id']}",
        {"reward_type": "hoodie", "amount": 2},
        format="json",
    )
    unknown_type = admin_api.post(
        "/rewards/admin/operations", {**payload, "reward_type": "nope"}, format="json"
    )

    assert created.status_code == 200
    assert duplicate.status_code == 409
    assert other_block.status_code == 200
    assert (moved.json()["reward_type"], moved.json()["amount"]) == ("hoodie", 2)
    assert (unknown_type.status_code, unknown_type.json()["field"]) == (404, "reward_type")


def test_int_reward_is_idempotent_on_the_idempotency_key(org, make_reward_type, make_inventory):
    reward_type = make_reward_type(org, reward_type="tshirt")
    inventory = make_inventory(reward_type)
    services.operation_create(
        reward_type=reward_type, code="10_posts", building_block="groups", amount=1
    )
    _service, key = services.rewards_service_create(org=org, name="g", building_block="groups")
    client = APIClient()

    def call(user_id):
        return client.post(
            "/rewards/int/reward",
            {"user_id": user_id, "code": "10_posts"},
            format="json",
            HTTP_X_API_KEY=key,
            HTTP_IDEMPOTENCY_KEY="post-123",
        )

    first, repeat, other_user = call("u1"), call("u1"), call("u2")

    assert first.status_code == repeat.status_code == 200
    assert other_user.status_code == 409
    assert counters(inventory) == (1, 0)


def test_every_rewards_endpoint_is_in_the_openapi_schema(client):
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/json").content)
    paths = schema["paths"]

    expected = {
        "/rewards/admin/types": {"get", "post"},
        "/rewards/admin/types/{id}": {"get", "put", "delete"},
        "/rewards/admin/inventories": {"get", "post"},
        "/rewards/admin/inventories/{id}": {"get", "put", "delete"},
        "/rewards/admin/operations": {"get", "post"},
        "/rewards/admin/operations/{id}": {"get", "put", "delete"},
        "/rewards/admin/claims": {"get", "post"},
        "/rewards/admin/claims/{id}": {"get", "put", "delete"},
        "/rewards/int/reward": {"post"},
        "/rewards/user/balance": {"get"},
        "/rewards/user/history": {"get"},
        "/rewards/user/claims": {"get", "post"},
        "/rewards/user/claims/{id}": {"get"},
        "/rewards/user/store": {"get"},
        "/rewards/user/purchases": {"get", "post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) >= methods, path
    grant_op = paths["/rewards/int/reward"]["post"]
    assert grant_op["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    schemes = schema["components"]["securitySchemes"]
    assert schemes["rewardsServiceApiKey"]["name"] == "X-Api-Key"
