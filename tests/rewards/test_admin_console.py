"""The operator console: inventory levels and low-stock filter, code import, claim actions,
inventory edits that keep counters, and a service's API key shown once."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from rewards import services
from rewards.models import ClaimStatus, DigitalCode, Inventory, RewardsService
from rewards.selectors import rewards_verify
from tests.rewards.support import counters, grant, reward_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("op", "op@example.com", "pw")
    client.force_login(user)
    return client


def test_inventories_show_their_levels_and_the_low_stock_filter_finds_the_low_ones(
    org, member, operator, make_reward_type, make_inventory
):
    reward_type = make_reward_type(org, reward_type="tshirt")
    low = make_inventory(reward_type, amount_total=100, description="almost gone")
    plenty = make_inventory(reward_type, amount_total=100, description="plenty left")
    grant(member, reward_type, 95)  # from the oldest: `low`
    url = reverse("admin:rewards_inventory_changelist")

    everything = operator.get(url).content.decode()
    low_only = operator.get(url, {"stock": "low"}).content.decode()

    assert "95 / 0 of 100" in everything
    assert "width:95%" in everything
    assert "almost gone" in low_only and "plenty left" not in low_only
    assert counters(plenty) == (0, 0)
    assert counters(low) == (95, 0)


def test_editing_an_inventory_in_the_console_never_writes_its_counters(
    org, member, operator, make_reward_type, make_inventory
):
    # Given an inventory whose change form was opened before a grant
    reward_type = make_reward_type(org)
    inventory = make_inventory(reward_type, amount_total=10)
    url = reverse("admin:rewards_inventory_change", args=[inventory.pk])
    assert operator.get(url).status_code == 200
    grant(member, reward_type, 4)

    # When the operator saves the form
    response = operator.post(
        url,
        {"in_stock": "on", "amount_total": 12, "description": "restocked"},
    )

    # Then the settings changed and the grant made meanwhile still counts
    assert response.status_code == 302
    saved = Inventory.objects.get(pk=inventory.pk)
    assert (saved.amount_total, saved.description) == (12, "restocked")
    assert counters(inventory) == (4, 0)
    assert rewards_verify(org=org).ok


def test_adding_an_inventory_in_the_console_starts_its_counters_at_zero(
    org, operator, make_reward_type
):
    reward_type = make_reward_type(org)

    response = operator.post(
        reverse("admin:rewards_inventory_add"),
        {"reward_type": reward_type.pk, "in_stock": "on", "amount_total": 7, "description": "new"},
    )

    assert response.status_code == 302
    inventory = Inventory.objects.get()
    assert (inventory.org, inventory.amount_total, counters(inventory)) == (org, 7, (0, 0))


def test_codes_are_imported_from_csv_and_bad_lines_are_reported(org, operator, make_reward_type):
    coffee = make_reward_type(org, reward_type="coffee", fulfilment="code_pool")
    services.digital_codes_import(reward_type=coffee, lines=["ALREADY-1"])
    csv = "code\nNEW-1\nNEW-2\n\nALREADY-1\nNEW-1\nhas space\n" + "X" * 201 + "\n"
    url = reverse("admin:rewards_digitalcode_import")

    response = operator.post(
        url,
        {
            "reward_type": coffee.pk,
            "file": SimpleUploadedFile("codes.csv", csv.encode(), content_type="text/csv"),
        },
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "2 codes added, 2 duplicates skipped, 2 lines rejected." in page
    rejected = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td></tr>", page)
    assert [line for line, _reason in rejected] == ["7", "8"]
    assert sorted(DigitalCode.objects.values_list("code", flat=True)) == [
        "ALREADY-1",
        "NEW-1",
        "NEW-2",
    ]


def test_claims_are_fulfilled_and_rejected_by_admin_actions_through_the_state_machine(
    org, make_member, operator, make_reward_type, make_inventory
):
    reward_type = make_reward_type(org)
    inventory = make_inventory(reward_type, amount_total=10)
    alice, bob = make_member(org), make_member(org)
    claims = {}
    for person in (alice, bob):
        grant(person, reward_type, 2)
        claims[person.pk] = services.claim_create(
            member=person,
            items=[services.ClaimItemRequest(reward_type=reward_type, amount=2)],
            actor="test",
        ).claim
    url = reverse("admin:rewards_claim_changelist")

    operator.post(url, {"action": "fulfil_claims", "_selected_action": [str(claims[alice.pk].pk)]})
    operator.post(url, {"action": "reject_claims", "_selected_action": [str(claims[bob.pk].pk)]})
    again = operator.post(
        url,
        {"action": "reject_claims", "_selected_action": [str(claims[alice.pk].pk)]},
        follow=True,
    )

    claims[alice.pk].refresh_from_db()
    claims[bob.pk].refresh_from_db()
    assert claims[alice.pk].status == ClaimStatus.FULFILLED
    assert claims[bob.pk].status == ClaimStatus.REJECTED
    assert "cannot become rejected" in again.content.decode()
    assert reward_balance(alice, reward_type) == 0
    assert reward_balance(bob, reward_type) == 2
    assert counters(inventory) == (4, 2)
    actors = set(claims[alice.pk].status_changes.values_list("actor", flat=True))
    assert any(actor.startswith("user:") for actor in actors)


def test_a_services_api_key_is_created_in_the_console_and_shown_once(
    org, operator, make_reward_type, make_inventory
):
    # Given a service added in the console (no key yet)
    reward_type = make_reward_type(org, reward_type="tshirt")
    make_inventory(reward_type)
    services.operation_create(
        reward_type=reward_type, code="10_posts", building_block="groups", amount=1
    )
    operator.post(
        reverse("admin:rewards_rewardsservice_add"),
        {"org": org.pk, "name": "Groups", "building_block": "groups", "active": "on"},
    )
    service = RewardsService.objects.get()
    assert service.key_hash == ""

    # When the operator presses "Create API key"
    page = operator.post(reverse("admin:rewards_rewardsservice_api_key", args=[service.pk]))
    key = re.search(r'value="(rwk_[^"]+)"', page.content.decode()).group(1)

    # Then the key works, is not stored, and is not shown again
    granted = APIClient().post(
        "/rewards/int/reward",
        {"user_id": "u-1", "code": "10_posts"},
        format="json",
        HTTP_X_API_KEY=key,
    )
    assert granted.status_code == 200
    assert "no-store" in page["Cache-Control"]
    service.refresh_from_db()
    assert key not in service.key_hash
    change_page = operator.get(reverse("admin:rewards_rewardsservice_change", args=[service.pk]))
    assert key not in change_page.content.decode()
    assert "Create a new API key" in change_page.content.decode()


def test_reward_types_and_operations_are_managed_in_the_console(org, operator):
    operator.post(
        reverse("admin:rewards_rewardtype_add"),
        {
            "org": org.pk,
            "reward_type": "tshirt",
            "display_name": "T-Shirt",
            "active": "on",
            "fulfilment": "manual",
            "points_price": 500,
        },
    )
    reward_type = org.reward_types.get()
    response = operator.post(
        reverse("admin:rewards_operation_add"),
        {
            "org": org.pk,
            "reward_type": reward_type.pk,
            "code": "10_posts",
            "building_block": "groups",
            "amount": 1,
        },
    )

    assert response.status_code == 302
    assert reward_type.webhook_secret.startswith("whsec_")
    assert reward_type.operations.get().code == "10_posts"
