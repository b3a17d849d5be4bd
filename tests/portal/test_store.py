"""Portal reward store and "my rewards": buying moves points and rewards together."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from points import services
from points.selectors import balance_get, ledger_verify
from rewards import services as reward_services
from rewards.models import Claim, RewardBalance, StorePurchase

pytestmark = pytest.mark.django_db


@pytest.fixture
def shopper(client, org, program, member):
    user = get_user_model().objects.create_user("shopper@example.com", "shopper@example.com", "pw")
    member.user = user
    member.save()
    services.earn(program=program, member=member, amount=600)
    client.force_login(user)
    return client


@pytest.fixture
def tshirt(org):
    reward_type = reward_services.reward_type_create(
        org=org,
        reward_type="tshirt",
        display_name="T-Shirt",
        description="A shirt",
        active=True,
        points_price=500,
    )
    reward_services.inventory_create(reward_type=reward_type, amount_total=10)
    return reward_type


@pytest.fixture
def trip(org):
    reward_type = reward_services.reward_type_create(
        org=org,
        reward_type="trip",
        display_name="Trip",
        description="Far away",
        active=True,
        points_price=100_000,
    )
    reward_services.inventory_create(reward_type=reward_type, amount_total=1)
    return reward_type


def _buy(client, reward_type):
    page = client.get(reverse("portal:store-buy", args=[reward_type.pk]))
    key = page.context["purchase_key"]
    return client.post(
        reverse("portal:store-buy", args=[reward_type.pk]), {"purchase_key": str(key)}, follow=True
    ), key


def test_store_lists_offers_with_price_and_stock(shopper, tshirt, trip):
    response = shopper.get(reverse("portal:store"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "T-Shirt" in html and "500 points" in html and "10 left" in html
    assert "Trip" in html


def test_buying_moves_points_and_reward_together(shopper, program, member, tshirt):
    response, _key = _buy(shopper, tshirt)

    assert response.status_code == 200
    assert b"You bought T-Shirt for 500 points." in response.content
    assert balance_get(program=program, member=member).available == 100
    assert RewardBalance.objects.get(member=member, reward_type=tshirt).amount == 1
    assert b'data-testid="reward-tshirt"' in shopper.get(reverse("portal:my-rewards")).content
    assert ledger_verify().ok


def test_a_double_submitted_purchase_buys_once(shopper, program, member, tshirt):
    _response, key = _buy(shopper, tshirt)
    shopper.post(reverse("portal:store-buy", args=[tshirt.pk]), {"purchase_key": str(key)})

    assert StorePurchase.objects.filter(member=member).count() == 1
    assert balance_get(program=program, member=member).available == 100


def test_too_expensive_shows_a_message_and_changes_nothing(shopper, program, member, trip):
    response, _key = _buy(shopper, trip)

    assert response.status_code == 200
    assert b"You do not have enough points for this reward." in response.content
    assert balance_get(program=program, member=member).available == 600
    assert not StorePurchase.objects.exists()


def test_claiming_a_bought_reward_from_my_rewards(shopper, member, tshirt):
    _buy(shopper, tshirt)
    page = shopper.get(reverse("portal:my-rewards"))
    key = page.context["balances"][0]["claim_key"]

    shopper.post(reverse("portal:claim-reward", args=[tshirt.pk]), {"claim_key": str(key)})
    shopper.post(reverse("portal:claim-reward", args=[tshirt.pk]), {"claim_key": str(key)})

    assert Claim.objects.filter(member=member).count() == 1
    assert RewardBalance.objects.get(member=member, reward_type=tshirt).amount == 0


def test_a_member_cannot_buy_another_organisations_reward(shopper, make_org):
    other = make_org()
    foreign = reward_services.reward_type_create(
        org=other, reward_type="x", display_name="X", description="", active=True, points_price=1
    )
    assert shopper.get(reverse("portal:store-buy", args=[foreign.pk])).status_code == 404
    assert shopper.post(reverse("portal:store-buy", args=[foreign.pk])).status_code == 404
