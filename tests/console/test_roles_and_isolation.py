"""Operators: roles allow what they should and refuse the rest; organisations never mix."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from loyalty.console.scoping import ORGANIZATION_PATHS
from loyalty.demo import demo_seed
from loyalty.models import AuditEntry, Member, Organization
from loyalty.roles import INTEGRATIONS_ADMIN, INVENTORY_MANAGER, POINTS_OFFICER, VIEWER
from points import services
from points.models import Hold, HoldStatus, PointProgram, Transfer
from rewards.models import RewardType

pytestmark = pytest.mark.django_db


def make_operator(django_user_model, organization, *, group=None, all_permissions=False, name):
    user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    organization.operators.add(user)
    if group:
        user.groups.add(Group.objects.get(name=group))
    if all_permissions:
        user.user_permissions.set(Permission.objects.all())
    return user


@pytest.fixture
def demo(db):
    return demo_seed()


@pytest.fixture
def demo_org(demo):
    return Organization.objects.get(pk=demo["org_id"])


def test_an_operator_sees_only_their_organisations_rows_on_every_admin_page(
    client, django_user_model, demo_org, make_org
):
    other_org = make_org(name="Other")
    outsider = make_operator(django_user_model, other_org, all_permissions=True, name="outsider")
    insider = make_operator(django_user_model, demo_org, all_permissions=True, name="insider")
    checked_models = 0

    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        path = ORGANIZATION_PATHS.get(model)
        rows = model._default_manager.all()
        if path is not None:
            rows = rows.filter(**_in_org(path, demo_org))
        rows = list(rows[:3])

        client.force_login(outsider)
        response = client.get(changelist)
        if path is None:
            # Platform rows (users, OAuth internals, schedules): superusers only.
            assert response.status_code == 403, changelist
        else:
            assert response.status_code == 200, changelist
            visible = response.context["cl"].queryset
            assert not visible.filter(**_in_org(path, demo_org)).exists(), changelist
        for row in rows:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk])
            response = client.get(change)
            assert response.status_code in (302, 403, 404), change
            assert str(row.pk) not in response.headers.get("Location", "").split("/change")[0]

        if path is not None:
            client.force_login(insider)
            own = model._default_manager.filter(**_in_org(path, demo_org)).count()
            response = client.get(changelist)
            assert response.status_code == 200, changelist
            visible = response.context["cl"].queryset
            assert visible.filter(**_in_org(path, demo_org)).count() == own, changelist
            assert not visible.exclude(**_in_org(path, demo_org)).exists(), changelist
            checked_models += 1
    assert checked_models > 25


def _in_org(path: str, organization) -> dict:
    return {path: organization} if path else {"pk": organization.pk}


def test_roles_exist_with_permissions():
    for role in (VIEWER, INVENTORY_MANAGER, POINTS_OFFICER, INTEGRATIONS_ADMIN):
        assert Group.objects.get(name=role).permissions.exists(), role
    viewer = set(Group.objects.get(name=VIEWER).permissions.values_list("codename", flat=True))
    assert viewer and all(codename.startswith("view_") for codename in viewer)
    for group in Group.objects.all():
        codenames = set(group.permissions.values_list("codename", flat=True))
        assert not codenames & {"change_transfer", "delete_transfer", "change_auditentry"}


def _adjust(client, member, program, amount=10):
    return client.post(
        reverse("admin:loyalty_member_adjust_points", args=[member.pk]),
        {"program": program.pk, "amount": amount, "reason": "role test"},
    )


@pytest.fixture
def demo_member(demo_org):
    return Member.objects.filter(organization=demo_org).first()


@pytest.fixture
def demo_program(demo_org):
    return PointProgram.objects.get(organization=demo_org, key="default")


def test_viewer_reads_but_changes_nothing(
    client, django_user_model, demo_org, demo_member, demo_program
):
    client.force_login(make_operator(django_user_model, demo_org, group=VIEWER, name="viewer"))
    transfers = Transfer.objects.count()

    assert client.get(reverse("admin:loyalty_member_changelist")).status_code == 200
    assert client.get(reverse("admin:points_transfer_changelist")).status_code == 200
    assert _adjust(client, demo_member, demo_program).status_code == 403
    assert client.get(reverse("admin:rewards_rewardtype_add")).status_code == 403
    assert client.get(reverse("admin:integrations_apiclient_add")).status_code == 403
    assert Transfer.objects.count() == transfers


def test_points_officer_adjusts_and_rolls_back_holds_but_not_inventory(
    client, django_user_model, demo_org, demo_member, demo_program
):
    officer = make_operator(django_user_model, demo_org, group=POINTS_OFFICER, name="officer")
    client.force_login(officer)
    hold = services.hold_create(
        program=demo_program, member=demo_member, amount=5, owner="vendor:x", transaction_id="r1"
    ).hold

    assert _adjust(client, demo_member, demo_program).status_code == 302
    response = client.post(
        reverse("admin:points_hold_changelist"),
        {"action": "roll_back", "_selected_action": [str(hold.pk)]},
    )
    assert response.status_code == 302
    assert Hold.objects.get(pk=hold.pk).status == HoldStatus.ROLLED_BACK
    assert client.get(reverse("admin:rewards_rewardtype_add")).status_code == 403
    assert client.get(reverse("admin:integrations_apiclient_add")).status_code == 403


def test_inventory_manager_manages_rewards_but_not_points(
    client, django_user_model, demo_org, demo_member, demo_program
):
    manager = make_operator(django_user_model, demo_org, group=INVENTORY_MANAGER, name="stock")
    client.force_login(manager)
    reward_type = RewardType.objects.filter(org=demo_org).first()

    assert client.get(reverse("admin:rewards_rewardtype_add")).status_code == 200
    change = reverse("admin:rewards_rewardtype_change", args=[reward_type.pk])
    assert client.get(change).status_code == 200
    assert _adjust(client, demo_member, demo_program).status_code == 403
    assert client.get(reverse("admin:integrations_apiclient_add")).status_code == 403


def test_integrations_admin_manages_clients_but_not_points(
    client, django_user_model, demo_org, demo_member, demo_program
):
    admin_user = make_operator(
        django_user_model, demo_org, group=INTEGRATIONS_ADMIN, name="integrations"
    )
    client.force_login(admin_user)

    assert client.get(reverse("admin:integrations_apiclient_add")).status_code == 200
    assert client.get(reverse("admin:eai_vendor_add")).status_code == 200
    assert _adjust(client, demo_member, demo_program).status_code == 403
    assert client.get(reverse("admin:rewards_rewardtype_add")).status_code == 403


def test_an_adjustment_is_in_the_audit_trail_with_operator_and_values(
    client, django_user_model, demo_org, demo_member, demo_program
):
    officer = make_operator(django_user_model, demo_org, group=POINTS_OFFICER, name="auditee")
    client.force_login(officer)

    _adjust(client, demo_member, demo_program, amount=42)

    entry = AuditEntry.objects.get(action="adjusted")
    assert entry.actor == officer and entry.actor_name == "auditee"
    assert entry.organization == demo_org
    assert entry.object_id == str(demo_member.pk)
    assert entry.changes["points"] == [None, 42]
    assert entry.changes["reason"] == [None, "role test"]
    assert entry.changes["program"] == [None, "default"]
    response = client.get(reverse("admin:loyalty_auditentry_changelist"))
    assert response.status_code == 200 and b"auditee" in response.content


def test_a_saved_change_records_old_and_new_values(client, django_user_model, demo_org):
    manager = make_operator(django_user_model, demo_org, group=INVENTORY_MANAGER, name="editor")
    client.force_login(manager)
    reward_type = RewardType.objects.filter(org=demo_org, reward_type="tshirt").get()
    url = reverse("admin:rewards_rewardtype_change", args=[reward_type.pk])
    form = client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update({"display_name": "Shirt", "org": demo_org.pk, "active": "on"})

    response = client.post(url, data)

    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(action="changed", object_id=str(reward_type.pk))
    assert entry.changes["display_name"] == ["T-Shirt", "Shirt"]
