"""Reward stores and offers: list, buy with points, redeem; the wallet shows what is affordable."""

import datetime as dt

import pytest
from django.utils import timezone

from loyalty.engagement.models import ActivityEntry
from points import services as point_services
from points.models import Transfer
from points.selectors import balance_get

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(org, program, make_reward_type, make_offer):
    """A store with a cheap and a dear offer, and a code-pool coffee."""
    from rewards import services as reward_services

    mug = make_reward_type(org, points_price=100, reward_type="mug", display_name="Mug")
    trip = make_reward_type(org, points_price=10_000, reward_type="trip", display_name="Trip")
    coffee = make_reward_type(
        org, points_price=50, reward_type="coffee", display_name="Coffee", fulfilment="code_pool"
    )
    reward_services.digital_codes_import(reward_type=coffee, lines=["C-1", "C-2", "C-3"])
    return {
        "mug": make_offer(program, mug, position=1),
        "trip": make_offer(program, trip, position=2),
        "coffee": make_offer(program, coffee, position=0),
    }


def test_stores_and_offers_are_listed_with_what_the_customer_can_afford(api, program, member, shop):
    point_services.earn(program=program, member=member, amount=120)

    stores = api.get("/api/v1/stores").json()
    offers = api.get(f"/api/v1/stores/main/offers?customerId={member.external_id}").json()

    assert stores == {
        "results": [{"key": "main", "name": "main", "description": "", "programKey": "default"}]
    }
    assert [(o["rewardType"], o["pointsPrice"], o["affordable"]) for o in offers["results"]] == [
        ("coffee", 50, True),
        ("mug", 100, True),
        ("trip", 10_000, False),
    ]


def test_the_wallet_lists_rewards_held_and_affordable_offers(api, program, member, shop):
    point_services.earn(program=program, member=member, amount=160)
    api.post(
        f"/api/v1/customers/{member.external_id}/purchases",
        {"offerId": str(shop["mug"].pk)},
        format="json",
    )

    wallet = api.get(f"/api/v1/customers/{member.external_id}/wallet").json()

    assert wallet["points"][0]["available"] == 60
    assert wallet["rewards"] == [{"rewardType": "mug", "displayName": "Mug", "amount": 1}]
    assert [o["rewardType"] for o in wallet["affordableOffers"]] == ["coffee"]


def test_buying_an_offer_burns_the_price_and_grants_the_reward_once_per_key(
    api, program, member, shop
):
    from rewards.models import RewardBalance, StorePurchase

    point_services.earn(program=program, member=member, amount=500)
    url = f"/api/v1/customers/{member.external_id}/purchases"
    body = {"offerId": str(shop["mug"].pk), "quantity": 2}

    first = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="buy-1")
    again = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="buy-1")

    assert first.status_code == 201, first.content
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert (first.json()["points"], first.json()["unitPrice"], first.json()["claim"]) == (
        200,
        100,
        None,
    )
    assert balance_get(program=program, member=member).balance == 300
    assert StorePurchase.objects.count() == 1
    assert RewardBalance.objects.get(member=member, reward_type__reward_type="mug").granted == 2
    assert ActivityEntry.objects.filter(member=member, kind="offer_purchased").count() == 1


def test_buying_and_redeeming_at_once_hands_out_the_code(api, program, member, shop):
    point_services.earn(program=program, member=member, amount=500)

    response = api.post(
        f"/api/v1/customers/{member.external_id}/purchases",
        {"offerId": str(shop["coffee"].pk), "redeem": True},
        format="json",
    )

    assert response.status_code == 201, response.content
    claim = response.json()["claim"]
    assert claim["status"] == "fulfilled"
    assert claim["items"][0]["codes"] in (["C-1"], ["C-2"], ["C-3"])


def test_redeeming_a_reward_held_claims_it_from_the_balance(api, program, member, shop):
    point_services.earn(program=program, member=member, amount=500)
    api.post(
        f"/api/v1/customers/{member.external_id}/purchases",
        {"offerId": str(shop["mug"].pk)},
        format="json",
    )

    first = api.post(
        f"/api/v1/customers/{member.external_id}/redemptions", {"rewardType": "mug"}, format="json"
    )
    second = api.post(
        f"/api/v1/customers/{member.external_id}/redemptions", {"rewardType": "mug"}, format="json"
    )

    assert first.status_code == 201, first.content
    assert first.json()["items"] == [{"rewardType": "mug", "amount": 1, "codes": []}]
    assert second.status_code == 409
    assert second.json()["code"] == "insufficient_balance"
    assert ActivityEntry.objects.filter(member=member, kind="reward_claimed").count() == 1


def test_an_offer_the_customer_cannot_afford_is_409_and_nothing_changes(api, program, member, shop):
    from rewards.models import RewardGrant

    point_services.earn(program=program, member=member, amount=500)
    transfers_before = Transfer.objects.count()

    response = api.post(
        f"/api/v1/customers/{member.external_id}/purchases",
        {"offerId": str(shop["trip"].pk)},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "insufficient_points"
    assert balance_get(program=program, member=member).balance == 500
    assert Transfer.objects.count() == transfers_before
    assert not RewardGrant.objects.exists()
    assert not ActivityEntry.objects.filter(kind="offer_purchased").exists()


def test_an_offer_off_sale_is_409(api, program, member, shop):
    point_services.earn(program=program, member=member, amount=500)
    shop["mug"].ends_at = timezone.now() - dt.timedelta(minutes=1)
    shop["mug"].starts_at = timezone.now() - dt.timedelta(days=1)
    shop["mug"].save()

    response = api.post(
        f"/api/v1/customers/{member.external_id}/purchases",
        {"offerId": str(shop["mug"].pk)},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "offer_unavailable"
    assert balance_get(program=program, member=member).balance == 500


def test_another_organisations_offer_is_404(
    api, make_org, make_program, member, make_reward_type, make_offer
):
    other = make_org()
    foreign = make_offer(make_program(other), make_reward_type(other, points_price=1))

    response = api.post(
        f"/api/v1/customers/{member.external_id}/purchases",
        {"offerId": str(foreign.pk)},
        format="json",
    )

    assert response.status_code == 404
    assert response.json()["details"]["field"] == "offerId"


def test_a_blocked_customer_cannot_buy_and_keeps_the_points(api, program, member, shop):
    from loyalty.models import Member

    point_services.earn(program=program, member=member, amount=500)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BLOCKED)

    response = api.post(
        f"/api/v1/customers/{member.external_id}/purchases",
        {"offerId": str(shop["mug"].pk)},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "customer_blocked"
    assert balance_get(program=program, member=member).balance == 500
