"""Every admin changelist, add and change page renders for a superuser; the adjust flow works."""

import pytest
from django.contrib import admin
from django.urls import reverse

from loyalty.demo import demo_seed
from points.models import Transfer

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


def test_every_admin_page_renders_for_a_superuser(superuser_client, superuser, rf):
    demo_seed()  # one row of as many models as possible, so change pages have objects
    request = rf.get("/admin/")
    request.user = superuser
    checked = 0
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = superuser_client.get(changelist)
        assert response.status_code == 200, changelist
        checked += 1
        if model_admin.has_add_permission(request):
            add = reverse(f"admin:{meta.app_label}_{meta.model_name}_add")
            assert superuser_client.get(add).status_code == 200, add
            checked += 1
        obj = model_admin.get_queryset(request).first()
        if obj is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            assert superuser_client.get(change).status_code == 200, change
            checked += 1
    assert checked > 20


def test_operator_adjusts_points_through_the_admin(superuser_client, program, member):
    url = reverse("admin:loyalty_member_adjust_points", args=[member.pk])

    assert superuser_client.get(url).status_code == 200
    response = superuser_client.post(
        url, {"program": program.pk, "amount": 42, "reason": "goodwill"}
    )

    assert response.status_code == 302
    transfer = Transfer.objects.get(member_account__member=member)
    assert (transfer.amount, transfer.description, transfer.source) == (42, "goodwill", "Manual")
    assert transfer.actor.startswith("user:")


def test_admin_adjustment_beyond_available_shows_the_refusal(superuser_client, program, member):
    url = reverse("admin:loyalty_member_adjust_points", args=[member.pk])

    response = superuser_client.post(
        url, {"program": program.pk, "amount": -5, "reason": "too much"}
    )

    assert response.status_code == 200
    assert b"insufficient points" in response.content
    assert not Transfer.objects.exists()


def test_hold_roll_back_action(superuser_client, program, member):
    from points import services
    from points.models import Hold, HoldStatus

    services.earn(program=program, member=member, amount=10)
    hold = services.hold_create(
        program=program, member=member, amount=4, owner="vendor:x", transaction_id="t"
    ).hold

    response = superuser_client.post(
        reverse("admin:points_hold_changelist"),
        {"action": "roll_back", "_selected_action": [str(hold.pk)]},
    )

    assert response.status_code == 302
    assert Hold.objects.get(pk=hold.pk).status == HoldStatus.ROLLED_BACK
