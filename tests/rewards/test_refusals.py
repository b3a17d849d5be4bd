"""Who may do what: services only their own operations (403), members only their own rewards,
administrators only their organisation's rows (404). Every refusal changes nothing."""

import pytest
from rest_framework.test import APIClient

from loyalty.models import Member
from rewards import services
from rewards.models import (
    Claim,
    ClaimStatusChange,
    Inventory,
    Operation,
    RewardBalance,
    RewardGrant,
    RewardType,
)
from tests.rewards.support import counters, grant, reward_balance

pytestmark = pytest.mark.django_db


def _snapshot():
    """Everything a refused request must leave as it was."""
    return {
        "members": Member.objects.count(),
        "grants": RewardGrant.objects.count(),
        "claims": Claim.objects.count(),
        "audit": ClaimStatusChange.objects.count(),
        "balances": sorted(RewardBalance.objects.values_list("pk", "granted", "claimed")),
        "inventories": sorted(
            Inventory.objects.values_list("pk", "amount_total", "amount_granted", "amount_claimed")
        ),
        "types": sorted(RewardType.objects.values_list("pk", "reward_type", "display_name")),
        "operations": sorted(Operation.objects.values_list("pk", "code", "amount")),
    }


@pytest.fixture
def catalogue(org, make_reward_type, make_inventory):
    reward_type = make_reward_type(org, reward_type="tshirt")
    inventory = make_inventory(reward_type, amount_total=10)
    groups_op = services.operation_create(
        reward_type=reward_type, code="10_posts", building_block="groups", amount=1
    )
    events_op = services.operation_create(
        reward_type=reward_type, code="attend_3", building_block="events", amount=1
    )
    return reward_type, inventory, groups_op, events_op


# --- services -----------------------------------------------------------------------------------


def test_a_service_calling_an_operation_of_another_building_block_gets_403(
    org, make_service, catalogue
):
    # Given the groups service and an operation of the events building block
    _service, key = make_service(org, "groups")
    before = _snapshot()

    # When groups calls events' operation, first naming events, then naming itself
    naming_events = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-1", "code": "attend_3", "building_block": "events"},
        format="json",
        HTTP_X_API_KEY=key,
    )
    naming_itself = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-1", "code": "attend_3", "building_block": "groups"},
        format="json",
        HTTP_X_API_KEY=key,
    )

    # Then both are refused, no member is created, nothing is granted
    assert naming_events.status_code == 403
    assert naming_events.json()["code"] == "building_block_mismatch"
    assert naming_events.json()["field"] == "building_block"
    assert naming_itself.status_code == 403
    assert naming_itself.json()["field"] == "code"
    assert _snapshot() == before


def test_a_service_of_another_organisation_cannot_use_this_organisations_operations(
    make_org, make_service, catalogue
):
    _service, key = make_service(make_org(), "groups")
    before = _snapshot()

    response = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-1", "code": "10_posts", "building_block": "groups"},
        format="json",
        HTTP_X_API_KEY=key,
    )

    assert response.status_code == 404
    assert response.json()["field"] == "code"
    assert _snapshot() == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_X_API_KEY": "rwk_nope_nope"}, {"HTTP_INTERNAL_API_KEY": "wrong"}],
    ids=["no-key", "unknown-key", "garbage-key"],
)
def test_int_reward_without_a_valid_key_is_401(headers, catalogue):
    before = _snapshot()

    response = APIClient().post(
        "/rewards/int/reward", {"user_id": "u-1", "code": "10_posts"}, format="json", **headers
    )

    assert response.status_code == 401
    assert response.json()["status"] == 401
    assert "WWW-Authenticate" in response
    assert _snapshot() == before


def test_a_reset_key_stops_the_old_one(org, make_service, catalogue):
    service, old_key = make_service(org, "groups")
    new_key = services.rewards_service_key_reset(service=service)

    old = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-1", "code": "10_posts"},
        format="json",
        HTTP_X_API_KEY=old_key,
    )
    new = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-1", "code": "10_posts"},
        format="json",
        HTTP_X_API_KEY=new_key,
    )

    assert old.status_code == 401
    assert new.status_code == 200


def test_the_api_key_is_stored_only_as_a_hash(org, make_service):
    service, key = make_service(org, "groups")
    service.refresh_from_db()

    assert key.startswith("rwk_")
    assert key not in (service.key_hash, service.key_prefix)
    assert service.key_hash == services.api_key_hash(key)


@pytest.mark.parametrize(
    "user_id", ["student@example.com", "+46 70 123 45 67", "", "has space"], ids=repr
)
def test_int_reward_refuses_a_user_id_that_is_personal_data_or_malformed(
    org, make_service, catalogue, user_id
):
    _service, key = make_service(org, "groups")
    before = _snapshot()

    response = APIClient().post(
        "/rewards/int/reward",
        {"user_id": user_id, "code": "10_posts"},
        format="json",
        HTTP_X_API_KEY=key,
    )

    assert response.status_code == 400
    assert response.json()["field"] == "user_id"
    assert _snapshot() == before


def test_a_grant_on_a_depleted_inventory_is_409_and_changes_nothing(
    org, make_service, catalogue, make_member
):
    reward_type, *_ = catalogue
    member = make_member(org, external_id="u-full")
    grant(member, reward_type, 10)
    _service, key = make_service(org, "groups")
    before = _snapshot()

    response = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-full", "code": "10_posts"},
        format="json",
        HTTP_X_API_KEY=key,
    )

    assert response.status_code == 409
    assert response.json()["code"] == "inventory_depleted"
    assert _snapshot() == before


def test_an_inactive_reward_type_is_not_granted(org, make_service, catalogue):
    reward_type, *_ = catalogue
    services.reward_type_update(reward_type=reward_type, active=False)
    _service, key = make_service(org, "groups")
    before = _snapshot()

    response = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-2", "code": "10_posts"},
        format="json",
        HTTP_X_API_KEY=key,
    )

    assert response.status_code == 409
    assert response.json()["code"] == "reward_type_inactive"
    # The member may have been created: that is the lookup, not the grant. It was rolled back.
    assert _snapshot() == before


# --- members ------------------------------------------------------------------------------------


def test_a_member_cannot_read_another_members_claim(
    org, make_member, member_api, catalogue, make_org, make_reward_type, make_inventory
):
    reward_type, *_ = catalogue
    alice, bob = make_member(org), make_member(org)
    grant(bob, reward_type, 2)
    bobs_claim = services.claim_create(
        member=bob,
        items=[services.ClaimItemRequest(reward_type=reward_type, amount=1)],
        actor="test",
    ).claim
    other_org = make_org()
    stranger = make_member(other_org)
    foreign_type = make_reward_type(other_org, reward_type="tshirt")
    make_inventory(foreign_type)
    grant(stranger, foreign_type, 1)
    strangers_claim = services.claim_create(
        member=stranger,
        items=[services.ClaimItemRequest(reward_type=foreign_type, amount=1)],
        actor="test",
    ).claim
    client = member_api(alice)

    assert client.get(f"/rewards/user/claims/{bobs_claim.pk}").status_code == 404
    assert client.get(f"/rewards/user/claims/{strangers_claim.pk}").status_code == 404
    assert client.get("/rewards/user/claims").json() == []
    assert client.get("/rewards/user/history").json() == []
    assert client.get("/rewards/user/balance").json() == []


def test_a_member_cannot_claim_another_organisations_reward_or_inventory(
    org, member, member_api, catalogue, make_org, make_reward_type, make_inventory
):
    # Given a member with 3 t-shirts, and another organisation with its own reward and stock
    reward_type, *_ = catalogue
    grant(member, reward_type, 3)
    other_org = make_org()
    foreign_type = make_reward_type(other_org, reward_type="hoodie")
    foreign_inventory = make_inventory(foreign_type)
    client = member_api(member)
    before = _snapshot()

    # When the member claims the foreign reward type, and its own type from the foreign stock
    foreign_reward = client.post(
        "/rewards/user/claims",
        {"items": [{"reward_type": "hoodie", "amount": 1}]},
        format="json",
    )
    foreign_stock = client.post(
        "/rewards/user/claims",
        {
            "items": [
                {"reward_type": "tshirt", "amount": 1, "inventory_id": str(foreign_inventory.pk)}
            ]
        },
        format="json",
    )

    # Then both are 404, naming the field, and nothing changed
    assert foreign_reward.status_code == 404
    assert foreign_reward.json()["field"] == "items[0].reward_type"
    assert foreign_stock.status_code == 404
    assert foreign_stock.json()["field"] == "items[0].inventory_id"
    assert _snapshot() == before
    assert counters(foreign_inventory) == (0, 0)


def test_a_claim_beyond_the_balance_is_409_and_changes_nothing(org, member, member_api, catalogue):
    reward_type, *_ = catalogue
    grant(member, reward_type, 2)
    before = _snapshot()

    response = member_api(member).post(
        "/rewards/user/claims",
        {"items": [{"reward_type": "tshirt", "amount": 3}]},
        format="json",
    )

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "insufficient_balance"
    assert body["details"] == {"reward_type": "tshirt", "balance": 2, "requested": 3}
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": [{"reward_type": "tshirt", "amount": 0}]}, "items[0].amount"),
        ({"items": [{"reward_type": "tshirt", "amount": "lots"}]}, "items[0].amount"),
        (
            {"items": [{"reward_type": "tshirt", "amount": 1, "inventory_id": "x"}]},
            "items[0].inventory_id",
        ),
    ],
    ids=["missing", "empty", "zero", "text", "bad-inventory-id"],
)
def test_bad_claim_input_is_400_naming_the_field(member, member_api, catalogue, payload, field):
    before = _snapshot()

    response = member_api(member).post("/rewards/user/claims", payload, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["message"].startswith(f"{field}: ")
    assert _snapshot() == before


def test_without_signing_in_the_member_api_is_401(catalogue):
    response = APIClient().get("/rewards/user/balance")

    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_a_token_without_the_member_scope_is_refused(member, member_token, catalogue):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token(member, scope='read')}")

    assert client.get("/rewards/user/balance").status_code == 403


def test_a_partners_client_credentials_token_is_not_a_member(org, admin_token, catalogue):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {admin_token(org)}")

    assert client.get("/rewards/user/balance").status_code in (401, 403)


def test_a_session_write_needs_the_csrf_token(org, member, make_login, catalogue):
    reward_type, *_ = catalogue
    grant(member, reward_type, 1)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_login(member))
    payload = {"items": [{"reward_type": "tshirt", "amount": 1}]}

    without = client.post("/rewards/user/claims", payload, format="json")
    client.get("/rewards/user/balance")  # reads need no token
    client.get("/admin/login/")  # any page that sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    with_token = client.post("/rewards/user/claims", payload, format="json", HTTP_X_CSRFTOKEN=token)

    assert without.status_code == 403
    assert "CSRF" in without.json()["message"]
    assert with_token.status_code == 200
    assert reward_balance(member, reward_type) == 0


# --- administrators ---------------------------------------------------------------------------


def test_admin_api_needs_a_token_with_the_rewards_admin_scope(org, admin_token, catalogue):
    no_token = APIClient().get("/rewards/admin/types")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {admin_token(org, scopes=('points:read',))}")
    wrong_scope = client.get("/rewards/admin/types")

    assert no_token.status_code == 401
    assert wrong_scope.status_code == 403
    assert "rewards:admin" in wrong_scope.json()["message"]


def test_an_administrator_sees_only_its_organisations_rows(
    make_org, admin_token, catalogue, make_member
):
    # Given org A's catalogue and a claim in it, and an administrator of org B
    reward_type, inventory, groups_op, _events = catalogue
    member = make_member(reward_type.org)
    grant(member, reward_type, 1)
    claim = services.claim_create(
        member=member,
        items=[services.ClaimItemRequest(reward_type=reward_type, amount=1)],
        actor="test",
    ).claim
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {admin_token(make_org())}")
    before = _snapshot()

    # When B lists, reads, updates and deletes A's rows
    paths = [
        f"/rewards/admin/types/{reward_type.pk}",
        f"/rewards/admin/inventories/{inventory.pk}",
        f"/rewards/admin/operations/{groups_op.pk}",
        f"/rewards/admin/claims/{claim.pk}",
    ]
    answers = []
    for path in paths:
        answers.append(client.get(path).status_code)
        answers.append(client.put(path, {"description": "mine"}, format="json").status_code)
        answers.append(client.delete(path).status_code)

    # Then every answer is 404, the lists are empty, and nothing changed
    assert answers == [404] * 12
    for listing in ("types", "inventories", "operations", "claims"):
        assert client.get(f"/rewards/admin/{listing}").json() == []
    assert client.get(f"/rewards/admin/claims?ids={claim.pk}").json() == []
    assert _snapshot() == before
