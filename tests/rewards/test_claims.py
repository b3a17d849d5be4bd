"""Claims: allocation, the status state machine, returns on reject/cancel, fulfilment kinds."""

import json

import pytest
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from integrations.models import OutboxMessage
from rewards import services
from rewards.exceptions import (
    CodePoolExhausted,
    InvalidStatusTransition,
    InventoryDepleted,
)
from rewards.models import (
    Claim,
    ClaimItem,
    ClaimStatus,
    ClaimStatusChange,
    DigitalCode,
    RewardBalance,
)
from rewards.selectors import rewards_verify
from tests.http_support import RecordingServer
from tests.rewards.support import counters, grant, reward_balance

pytestmark = pytest.mark.django_db


def _claim(member, reward_type, amount, inventory=None, **kwargs):
    return services.claim_create(
        member=member,
        items=[
            services.ClaimItemRequest(reward_type=reward_type, amount=amount, inventory=inventory)
        ],
        actor="test",
        **kwargs,
    ).claim


@pytest.fixture
def tshirt(org, make_reward_type):
    return make_reward_type(org, reward_type="tshirt")


def test_rejecting_a_claim_returns_its_amount_to_the_balance_and_the_inventory(
    org, member, tshirt, make_inventory, admin_api
):
    # Given a member with 5 who claimed 3
    inventory = make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 5)
    claim = _claim(member, tshirt, 3)
    assert reward_balance(member, tshirt) == 2
    assert counters(inventory) == (5, 3)

    # When an administrator rejects it
    response = admin_api.put(
        f"/rewards/admin/claims/{claim.pk}",
        {"status": "rejected", "note": "out of that size"},
        format="json",
    )

    # Then the member has 5 again, the inventory gives the 3 back, and the move is audited
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert reward_balance(member, tshirt) == 5
    assert counters(inventory) == (5, 0)
    moves = list(
        ClaimStatusChange.objects.filter(claim=claim).values_list(
            "from_status", "to_status", "note"
        )
    )
    assert moves == [("", "pending", ""), ("pending", "rejected", "out of that size")]
    assert rewards_verify(org=org).ok


def test_cancelling_returns_the_amount_too_and_the_reward_can_be_claimed_again(
    org, member, tshirt, make_inventory
):
    make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 2)
    claim = _claim(member, tshirt, 2)

    services.claim_set_status(claim=claim, status=ClaimStatus.CANCELLED, actor="test")
    again = _claim(member, tshirt, 2)

    assert again.status == ClaimStatus.PENDING
    assert reward_balance(member, tshirt) == 0
    assert rewards_verify(org=org).ok


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ("fulfilled", "rejected"),
        ("fulfilled", "pending"),
        ("rejected", "fulfilled"),
        ("rejected", "cancelled"),
        ("cancelled", "pending"),
    ],
)
def test_a_settled_claim_does_not_move_again(org, member, tshirt, make_inventory, first, then):
    inventory = make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 4)
    claim = _claim(member, tshirt, 4)
    services.claim_set_status(claim=claim, status=first, actor="test")
    balance_before = reward_balance(member, tshirt)
    counters_before = counters(inventory)

    with pytest.raises(InvalidStatusTransition):
        services.claim_set_status(claim=claim, status=then, actor="test")

    assert Claim.objects.get(pk=claim.pk).status == first
    assert ClaimStatusChange.objects.filter(claim=claim).count() == 2
    assert reward_balance(member, tshirt) == balance_before
    assert counters(inventory) == counters_before


def test_the_admin_api_refuses_an_illegal_move_with_409(
    org, member, tshirt, make_inventory, admin_api
):
    make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 1)
    claim = _claim(member, tshirt, 1)
    services.claim_set_status(claim=claim, status=ClaimStatus.FULFILLED, actor="test")

    response = admin_api.put(
        f"/rewards/admin/claims/{claim.pk}",
        {"status": "rejected", "description": "should not stick"},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_status_transition"
    assert response.json()["details"] == {"from_status": "fulfilled", "to_status": "rejected"}
    claim.refresh_from_db()
    assert (claim.status, claim.description) == ("fulfilled", "")  # the description rolled back


def test_a_claims_items_and_user_are_read_only_and_claims_are_never_deleted(
    org, member, tshirt, make_inventory, admin_api
):
    inventory = make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 3)
    claim = _claim(member, tshirt, 2)
    url = f"/rewards/admin/claims/{claim.pk}"
    same = admin_api.get(url).json()

    round_trip = admin_api.put(url, {**same, "description": "gift wrap"}, format="json")
    more = admin_api.put(url, {"items": [{"reward_type": "tshirt", "amount": 3}]}, format="json")
    other_user = admin_api.put(url, {"user_id": "someone-else"}, format="json")
    deleted = admin_api.delete(url)

    assert round_trip.status_code == 200
    assert round_trip.json()["description"] == "gift wrap"
    assert (more.status_code, more.json()["field"]) == (400, "items")
    assert (other_user.status_code, other_user.json()["field"]) == (400, "user_id")
    assert deleted.status_code == 409
    assert Claim.objects.filter(pk=claim.pk).exists()
    assert counters(inventory) == (3, 2)


def test_an_administrator_records_a_claim_fulfilled_offline(
    org, member, tshirt, make_inventory, admin_api
):
    make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 2)

    response = admin_api.post(
        "/rewards/admin/claims",
        {
            "user_id": member.external_id,
            "items": [{"reward_type": "tshirt", "amount": 2}],
            "status": "fulfilled",
            "description": "handed out at the desk",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "fulfilled"
    claim = Claim.objects.get(pk=response.json()["id"])
    assert list(claim.status_changes.values_list("to_status", flat=True)) == [
        "pending",
        "fulfilled",
    ]
    assert reward_balance(member, tshirt) == 0


def test_claims_allocate_oldest_in_stock_first_and_split_across_inventories(
    org, member, tshirt, make_inventory
):
    # Given an old inventory with 2 left, an out-of-stock one, and a newer one
    old = make_inventory(tshirt, amount_total=2, description="old")
    away = make_inventory(tshirt, amount_total=50, in_stock=False, description="away")
    new = make_inventory(tshirt, amount_total=50, description="new")
    grant(member, tshirt, 5)

    # When the member claims 5 without naming an inventory
    claim = _claim(member, tshirt, 5)

    # Then 2 come from the old one, 3 from the new one, none from the one out of stock
    items = sorted(ClaimItem.objects.filter(claim=claim).values_list("inventory_id", "amount"))
    assert items == sorted([(old.pk, 2), (new.pk, 3)])
    assert counters(away) == (0, 0)
    assert rewards_verify(org=org).ok


def test_a_claim_naming_an_inventory_takes_from_it_or_is_refused(
    org, member, tshirt, make_inventory
):
    first = make_inventory(tshirt, amount_total=1)
    second = make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 4)  # the first cannot cover 4: drawn from the second

    claim = _claim(member, tshirt, 2, inventory=second)
    with pytest.raises(InventoryDepleted) as refused:
        _claim(member, tshirt, 2, inventory=first)

    assert list(claim.items.values_list("inventory_id", "amount")) == [(second.pk, 2)]
    assert refused.value.field == "items[0].inventory_id"
    assert counters(first) == (0, 0)
    assert counters(second) == (4, 2)
    assert reward_balance(member, tshirt) == 2


def test_the_balance_counts_grants_minus_live_claims(org, member, tshirt, make_inventory):
    make_inventory(tshirt, amount_total=100)
    grant(member, tshirt, 10)
    kept = _claim(member, tshirt, 3)
    rejected = _claim(member, tshirt, 4)
    services.claim_set_status(claim=kept, status=ClaimStatus.FULFILLED, actor="t")
    services.claim_set_status(claim=rejected, status=ClaimStatus.REJECTED, actor="t")

    assert reward_balance(member, tshirt) == 10 - 3


def test_the_database_refuses_a_negative_balance_even_around_the_services(member, tshirt):
    grant_row = RewardBalance.objects.create(
        org=member.organization, member=member, reward_type=tshirt, granted=1
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        RewardBalance.objects.filter(pk=grant_row.pk).update(claimed=2)


def test_rewards_verify_finds_a_counter_that_does_not_match_its_rows(
    org, member, tshirt, make_inventory
):
    inventory = make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 2)
    assert rewards_verify(org=org).ok

    type(inventory).objects.filter(pk=inventory.pk).update(amount_granted=3)

    report = rewards_verify(org=org)
    assert not report.ok
    assert "amount_granted 3, sum of rows 2" in report.mismatches[0]


# --- fulfilment kinds ---------------------------------------------------------------------------


def test_a_code_pool_claim_takes_codes_and_is_fulfilled_at_once(
    org, member, make_reward_type, make_inventory, member_api
):
    coffee = make_reward_type(org, reward_type="coffee", fulfilment="code_pool")
    make_inventory(coffee, amount_total=100)
    services.digital_codes_import(reward_type=coffee, lines=["code", "AAA-1", "BBB-2", "CCC-3"])
    grant(member, coffee, 2)

    response = member_api(member).post(
        "/rewards/user/claims",
        {"items": [{"reward_type": "coffee", "amount": 2}]},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "fulfilled"
    assert sorted(body["items"][0]["codes"]) == ["AAA-1", "BBB-2"]
    assert DigitalCode.objects.filter(reward_type=coffee, claim_item__isnull=True).count() == 1


def test_a_code_pool_claim_without_enough_codes_changes_nothing(
    org, member, make_reward_type, make_inventory
):
    coffee = make_reward_type(org, reward_type="coffee", fulfilment="code_pool")
    inventory = make_inventory(coffee, amount_total=100)
    services.digital_codes_import(reward_type=coffee, lines=["ONLY-ONE"])
    grant(member, coffee, 2)

    with pytest.raises(CodePoolExhausted):
        _claim(member, coffee, 2)

    assert Claim.objects.count() == 0
    assert reward_balance(member, coffee) == 2
    assert counters(inventory) == (2, 0)
    assert DigitalCode.objects.get(code="ONLY-ONE").claim_item is None


def test_a_webhook_claim_is_sent_signed_through_the_outbox(
    org, member, make_reward_type, make_inventory, settings, django_capture_on_commit_callbacks
):
    # Given a reward type fulfilled by an external system
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True
    server = RecordingServer().start()
    try:
        gift = make_reward_type(
            org, reward_type="giftcard", fulfilment="webhook", webhook_url=f"{server.url}/fulfil"
        )
        make_inventory(gift, amount_total=10)
        grant(member, gift, 1)

        # When the member claims it (the outbox sends after commit)
        with django_capture_on_commit_callbacks(execute=True):
            claim = _claim(member, gift, 1)
        received = server.wait_for(1)
    finally:
        server.stop()

    # Then the claim waits for the fulfiller, which got a Standard Webhooks-signed message
    assert claim.status == ClaimStatus.PENDING
    message = OutboxMessage.objects.get(topic="rewards.claim.created")
    assert message.organization == org
    request = received[0]
    payload = Webhook(gift.webhook_secret).verify(request.body, request.headers)
    assert payload == json.loads(request.body)
    assert payload["type"] == "rewards.claim.created"
    assert payload["claim"]["id"] == str(claim.pk)
    assert payload["claim"]["items"][0]["reward_type"] == "giftcard"


def test_a_webhook_reward_type_needs_a_safe_url(org, admin_api):
    missing = admin_api.post(
        "/rewards/admin/types",
        {"reward_type": "gift", "display_name": "Gift", "fulfilment": "webhook"},
        format="json",
    )
    internal = admin_api.post(
        "/rewards/admin/types",
        {
            "reward_type": "gift",
            "display_name": "Gift",
            "fulfilment": "webhook",
            "webhook_url": "http://127.0.0.1:9/fulfil",
        },
        format="json",
    )

    assert (missing.status_code, missing.json()["field"]) == (400, "webhook_url")
    assert (internal.status_code, internal.json()["field"]) == (400, "webhook_url")


def test_a_member_claim_is_idempotent_on_the_idempotency_key(
    org, member, tshirt, make_inventory, member_api
):
    make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 5)
    client = member_api(member)
    body = {"items": [{"reward_type": "tshirt", "amount": 2}]}

    first = client.post("/rewards/user/claims", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    repeat = client.post("/rewards/user/claims", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    other = client.post(
        "/rewards/user/claims",
        {"items": [{"reward_type": "tshirt", "amount": 3}]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )

    assert first.status_code == repeat.status_code == 200
    assert first.json()["id"] == repeat.json()["id"]
    assert other.status_code == 409
    assert reward_balance(member, tshirt) == 3


def test_user_claims_list_filters_and_pages(org, member, tshirt, make_inventory, member_api):
    make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 5)
    claims = [_claim(member, tshirt, 1) for _ in range(3)]
    services.claim_set_status(claim=claims[0], status=ClaimStatus.FULFILLED, actor="t")
    client = member_api(member)

    pending = client.get("/rewards/user/claims?status=pending").json()
    page = client.get("/rewards/user/claims?limit=2&offset=1").json()
    bad = client.get("/rewards/user/claims?limit=1000")
    bad_status = client.get("/rewards/user/claims?status=lost")

    assert {c["id"] for c in pending} == {str(claims[1].pk), str(claims[2].pk)}
    assert len(page) == 2
    assert (bad.status_code, bad.json()["field"]) == (400, "limit")
    assert (bad_status.status_code, bad_status.json()["field"]) == (400, "status")


def test_a_member_with_an_oauth_token_claims_like_with_a_session(
    org, member, tshirt, make_inventory, member_token
):
    make_inventory(tshirt, amount_total=10)
    grant(member, tshirt, 1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {member_token(member)}")

    response = client.post(
        "/rewards/user/claims", {"items": [{"reward_type": "tshirt", "amount": 1}]}, format="json"
    )

    assert response.status_code == 200
    assert ClaimStatusChange.objects.get().actor == f"member:{member.pk}"
