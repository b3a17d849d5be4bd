"""Tiers: lifetime tiers move in the earning transaction, rolling ones in the periodic job."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty.engagement import services
from loyalty.engagement.exceptions import TierBasisMismatch, TiersNotOffered
from loyalty.engagement.models import ActivityEntry, MemberTier, Tier, TierBasis, TierChange
from loyalty.engagement.selectors import earn_multiplier_for, member_tiers_get
from points import services as point_services
from points.models import PointAccount, ProgramMode
from tests.conftest import rerun_data_migration

pytestmark = pytest.mark.django_db


@pytest.fixture
def ladder(program):
    return [
        services.tier_create(program=program, name="Bronze", threshold=0),
        services.tier_create(program=program, name="Silver", threshold=100, earn_multiplier="1.5"),
        services.tier_create(program=program, name="Gold", threshold=1000, earn_multiplier=2),
    ]


def tier_of(member, program):
    row = MemberTier.objects.filter(member=member, program=program).select_related("tier").first()
    return row.tier.name if row and row.tier else None


def test_earning_past_a_threshold_moves_the_member_up_and_records_the_change(
    program, member, ladder
):
    point_services.earn(program=program, member=member, amount=50)
    assert tier_of(member, program) == "Bronze"

    point_services.earn(program=program, member=member, amount=60)

    assert tier_of(member, program) == "Silver"
    changes = list(TierChange.objects.filter(member=member).order_by("id"))
    assert [(c.from_name, c.to_name, c.qualifying_points) for c in changes] == [
        ("", "Bronze", 50),
        ("Bronze", "Silver", 110),
    ]
    entry = ActivityEntry.objects.filter(member=member, kind="tier_changed").first()
    assert entry.data == {
        "programKey": program.key,
        "from": "Bronze",
        "to": "Silver",
        "qualifyingPoints": 110,
    }


def test_the_tier_change_is_part_of_the_earning_transaction(program, member, ladder):
    # given an earn that crosses a threshold inside a transaction that then fails
    with pytest.raises(RuntimeError), transaction.atomic():
        point_services.earn(program=program, member=member, amount=150)
        assert tier_of(member, program) == "Silver"
        raise RuntimeError("the caller's transaction fails after the earn")

    # then neither the points nor the tier change survived
    assert tier_of(member, program) is None
    assert not TierChange.objects.exists()
    assert not PointAccount.objects.filter(member=member, balance__gt=0).exists()


@pytest.mark.parametrize("with_tiers", [True, False])
def test_the_ledger_hook_costs_one_query_when_the_tier_does_not_change(
    program, member, with_tiers, request
):
    if with_tiers:
        request.getfixturevalue("ladder")
    point_services.earn(program=program, member=member, amount=10)
    account = PointAccount.objects.get(member=member, program=program)

    with CaptureQueriesContext(connection) as queries:
        services.tier_recompute_for_account(account=account)

    assert len(queries) == 1
    assert "engagement_tier" in queries[0]["sql"]


def test_a_pending_lot_moves_the_tier_when_it_is_activated(program, member, ladder):
    later = timezone.now() + dt.timedelta(days=2)
    point_services.earn(program=program, member=member, amount=500, valid_from=later)
    assert tier_of(member, program) is None

    point_services.activate_due_lots(now=later + dt.timedelta(seconds=1))

    assert tier_of(member, program) == "Silver"


def test_a_follower_transactions_program_moves_tiers_with_the_masters_credits(
    org, make_follower_program, member
):
    program = make_follower_program(org, mode=ProgramMode.FOLLOWER_TRANSACTIONS)
    services.tier_create(program=program, name="Member", threshold=10)

    point_services.master_transaction_apply(
        program=program, member=member, amount=25, source="Purchase", description="", actor="x"
    )

    assert tier_of(member, program) == "Member"


def test_a_balance_only_follower_program_refuses_tiers(org, make_follower_program):
    program = make_follower_program(org, mode=ProgramMode.FOLLOWER_BALANCE)

    with pytest.raises(TiersNotOffered):
        services.tier_create(program=program, name="Gold", threshold=100)

    assert not Tier.objects.exists()


def test_the_admin_refuses_a_tier_on_a_balance_only_follower_program(
    org, make_follower_program, admin_client
):
    program = make_follower_program(org, mode=ProgramMode.FOLLOWER_BALANCE)

    response = admin_client.post(
        "/admin/engagement/tier/add/",
        {
            "program": program.pk,
            "name": "Gold",
            "threshold": 100,
            "basis": "lifetime",
            "earn_multiplier": "1",
            "description": "",
        },
    )

    assert response.status_code == 200
    assert b"balance-only follower program has no tiers" in response.content
    assert not Tier.objects.exists()


def test_the_admin_adds_a_tier_and_members_catch_up(
    program, member, admin_client, django_capture_on_commit_callbacks
):
    point_services.earn(program=program, member=member, amount=300)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/engagement/tier/add/",
            {
                "program": program.pk,
                "name": "Silver",
                "threshold": 200,
                "basis": "lifetime",
                "earn_multiplier": "1.25",
                "description": "",
            },
        )

    assert response.status_code == 302, response.content
    assert tier_of(member, program) == "Silver"


def test_all_tiers_of_a_program_share_one_basis(program):
    services.tier_create(program=program, name="Bronze", threshold=0)

    with pytest.raises(TierBasisMismatch):
        services.tier_create(
            program=program, name="Silver", threshold=100, basis=TierBasis.ROLLING_12_MONTHS
        )

    assert list(Tier.objects.values_list("name", flat=True)) == ["Bronze"]


def test_raising_a_threshold_moves_members_down_at_the_recompute(
    program, member, ladder, django_capture_on_commit_callbacks
):
    point_services.earn(program=program, member=member, amount=150)
    silver = ladder[1]
    silver.threshold = 200

    with django_capture_on_commit_callbacks(execute=True):
        services.tier_save(tier=silver)

    assert tier_of(member, program) == "Bronze"
    assert TierChange.objects.filter(member=member).first().reason == "recompute"


def test_rolling_tiers_follow_the_last_twelve_months_in_the_periodic_job(program, member):
    services.tier_create(
        program=program, name="Active", threshold=100, basis=TierBasis.ROLLING_12_MONTHS
    )
    point_services.earn(program=program, member=member, amount=150)
    # the hot path leaves rolling tiers to the job
    assert tier_of(member, program) is None

    assert services.tiers_recompute() == 1
    assert tier_of(member, program) == "Active"
    assert services.tiers_recompute() == 0  # nothing left to move

    # a year and a bit later the points have left the window
    assert services.tiers_recompute(now=timezone.now() + dt.timedelta(days=400)) == 1
    assert tier_of(member, program) is None


def test_earn_multiplier_is_the_members_tier_or_the_entry_tiers(
    program, member, make_member, ladder
):
    newcomer = make_member(program.organization)
    point_services.earn(program=program, member=member, amount=150)

    assert earn_multiplier_for(program=program, member=member) == Decimal("1.5")
    assert earn_multiplier_for(program=program, member=newcomer) == Decimal("1")


def test_tier_status_shows_the_next_tier_and_the_points_to_it(program, member, ladder):
    point_services.earn(program=program, member=member, amount=400)

    [status] = member_tiers_get(member=member)

    assert status.tier.name == "Silver"
    assert status.next_tier.name == "Gold"
    assert status.points_to_next_tier == 600
    assert status.progress_percent == 33


def test_the_engagement_jobs_are_scheduled_in_celery_beat():
    rerun_data_migration("loyalty.engagement.migrations.0003_periodic_jobs")
    from django_celery_beat.models import PeriodicTask

    scheduled = dict(
        PeriodicTask.objects.filter(task__startswith="engagement.").values_list(
            "task", "interval__every"
        )
    )

    assert scheduled == {"engagement.tiers_recompute": 3600, "engagement.campaigns_refresh": 300}
