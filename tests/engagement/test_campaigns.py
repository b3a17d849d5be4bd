"""Campaigns: progress per member, opt-in, completion rewarded exactly once."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from loyalty.engagement import services
from loyalty.engagement.models import (
    ActivityEntry,
    CampaignCompletion,
    CampaignProgress,
    GoalType,
)
from points import services as point_services
from points.models import ProgramMode, Transfer
from points.selectors import balance_get
from tests.engagement.support import event_body, send_event

pytestmark = pytest.mark.django_db


def campaign_of(reply, campaign):
    return next(c for c in reply["campaigns"] if c["campaignId"] == str(campaign.pk))


def test_an_event_count_campaign_completes_once_and_rewards_once(
    api, org, program, member, make_campaign
):
    campaign = make_campaign(
        org, goal_target=2, reward_points=100, reward_program=program, name="Two opens"
    )

    first = send_event(api, event_body(member.external_id), key="e1").json()
    second = send_event(api, event_body(member.external_id), key="e2").json()
    replayed = send_event(api, event_body(member.external_id), key="e2").json()
    third = send_event(api, event_body(member.external_id), key="e3").json()

    assert campaign_of(first, campaign) == {
        "campaignId": str(campaign.pk),
        "key": campaign.key,
        "progress": 1,
        "target": 2,
        "completed": False,
        "completedNow": False,
    }
    assert campaign_of(second, campaign)["completedNow"] is True
    assert replayed == second
    assert campaign_of(third, campaign)["completed"] is True
    assert campaign_of(third, campaign)["completedNow"] is False
    assert CampaignCompletion.objects.filter(campaign=campaign, member=member).count() == 1
    reward = Transfer.objects.get(member_account__member=member, source="Campaign")
    assert reward.amount == 100
    assert balance_get(program=program, member=member).balance == 100
    assert ActivityEntry.objects.filter(member=member, kind="campaign_completed").count() == 1


def test_an_opt_in_campaign_counts_only_after_the_opt_in(api, org, program, member, make_campaign):
    campaign = make_campaign(
        org, opt_in_required=True, reward_points=5, reward_program=program, goal_target=5
    )

    before = send_event(api, event_body(member.external_id)).json()
    opt_in = api.post(f"/api/v1/customers/{member.external_id}/campaigns/{campaign.key}/opt-in")
    again = api.post(f"/api/v1/customers/{member.external_id}/campaigns/{campaign.pk}/opt-in")
    after = send_event(api, event_body(member.external_id)).json()

    assert before["campaigns"] == []
    assert opt_in.status_code == again.status_code == 200
    assert opt_in.json()["optedIn"] is True
    assert again.json()["optedInAt"] == opt_in.json()["optedInAt"]
    assert campaign_of(after, campaign)["progress"] == 1
    assert ActivityEntry.objects.filter(member=member, kind="campaign_opted_in").count() == 1


def test_a_customers_campaigns_list_shows_progress(api, org, program, member, make_campaign):
    campaign = make_campaign(org, reward_points=5, reward_program=program, goal_target=3)
    send_event(api, event_body(member.external_id))

    response = api.get(f"/api/v1/customers/{member.external_id}/campaigns")

    assert response.status_code == 200
    [item] = response.json()["results"]
    assert (item["key"], item["progress"], item["status"], item["optedIn"]) == (
        campaign.key,
        1,
        "active",
        False,
    )
    assert item["goal"] == {
        "type": "event_count",
        "eventName": "app_open",
        "programKey": None,
        "target": 3,
    }
    assert item["reward"]["type"] == "points"


def test_opting_in_to_an_ended_campaign_is_409_and_changes_nothing(
    api, org, program, member, make_campaign
):
    now = timezone.now()
    campaign = make_campaign(
        org,
        starts_at=now - dt.timedelta(days=10),
        ends_at=now - dt.timedelta(days=1),
        opt_in_required=True,
        reward_points=5,
        reward_program=program,
    )

    response = api.post(f"/api/v1/customers/{member.external_id}/campaigns/{campaign.pk}/opt-in")

    assert response.status_code == 409
    assert response.json()["code"] == "campaign_closed"
    assert not CampaignProgress.objects.exists()


def test_another_organisations_campaign_is_404(api, make_org, make_program, member, make_campaign):
    other = make_org()
    foreign = make_campaign(other, reward_points=1, reward_program=make_program(other))

    response = api.post(f"/api/v1/customers/{member.external_id}/campaigns/{foreign.pk}/opt-in")

    assert response.status_code == 404
    assert not CampaignProgress.objects.exists()


def test_a_points_campaign_completes_from_points_earned_any_way_and_grants_a_reward(
    org, program, member, make_campaign, make_reward_type
):
    from rewards.models import RewardBalance

    badge = make_reward_type(org, reward_type="badge", display_name="Badge")
    campaign = make_campaign(
        org,
        goal_type=GoalType.POINTS_EARNED,
        goal_event_name="",
        goal_program=program,
        goal_target=500,
        reward_type=badge,
        reward_quantity=1,
    )
    # points earned outside events (a purchase through the partner API, say)
    point_services.earn(program=program, member=member, amount=300, source="Purchase")
    services.campaigns_refresh()
    assert CampaignProgress.objects.get(campaign=campaign, member=member).progress == 300

    point_services.earn(program=program, member=member, amount=300, source="Purchase")
    services.campaigns_refresh()
    services.campaigns_refresh()

    completion = CampaignCompletion.objects.get(campaign=campaign, member=member)
    assert completion.reward_grant is not None and completion.rewarded_at is not None
    assert RewardBalance.objects.get(member=member, reward_type=badge).granted == 1


def test_a_refused_reward_keeps_the_completion_and_is_given_once_on_retry(
    api, org, program, member, make_campaign, make_reward_type
):
    from rewards import services as reward_services
    from rewards.models import RewardBalance

    scarce = make_reward_type(org, reward_type="scarce", amount_total=0)
    campaign = make_campaign(org, goal_target=1, reward_type=scarce, reward_quantity=1)

    reply = send_event(api, event_body(member.external_id)).json()

    assert campaign_of(reply, campaign)["completedNow"] is True
    completion = CampaignCompletion.objects.get()
    assert completion.rewarded_at is None
    assert "inventory" in completion.reward_error

    reward_services.inventory_create(reward_type=scarce, amount_total=5)
    services.campaign_reward_retry(completion=completion, actor="user:1")
    services.campaign_reward_retry(completion=completion, actor="user:1")

    completion.refresh_from_db()
    assert completion.rewarded_at is not None and completion.reward_error == ""
    assert RewardBalance.objects.get(member=member, reward_type=scarce).granted == 1


def test_a_points_reward_of_a_follower_program_goes_to_the_master(
    api, org, make_follower_program, member, make_campaign
):
    from integrations.follower.models import MasterAdjustment

    program = make_follower_program(org, mode=ProgramMode.FOLLOWER_TRANSACTIONS)
    make_campaign(org, goal_target=1, reward_points=300, reward_program=program)

    send_event(api, event_body(member.external_id))

    completion = CampaignCompletion.objects.get()
    assert completion.reward_sent_to_master is True
    adjustment = MasterAdjustment.objects.get()
    assert adjustment.amount == 300


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_events_completing_a_campaign_reward_it_once(
    make_api, org, program, member, make_campaign
):
    campaign = make_campaign(org, goal_target=1, reward_points=100, reward_program=program)
    api = make_api(org)
    barrier = threading.Barrier(4)
    statuses = []

    def send(number):
        try:
            barrier.wait()
            statuses.append(send_event(api, event_body(member.external_id), key=f"k{number}"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in statuses] == [201] * 4
    assert sum(campaign_of(r.json(), campaign)["completedNow"] for r in statuses) == 1
    assert CampaignCompletion.objects.filter(campaign=campaign).count() == 1
    assert balance_get(program=program, member=member).balance == 100
