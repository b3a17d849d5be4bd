"""Events: earning rules, operations and campaigns bound to the name; idempotent per client."""

import datetime as dt
import json
import threading

import pytest
from django.db import connection
from django.utils import timezone

from integrations.follower.models import MasterAdjustment
from integrations.follower_crypto import decrypt_payload
from integrations.models import OutboxMessage
from loyalty.engagement import services
from loyalty.engagement.models import ActivityEntry, Event, EventOperation
from loyalty.models import Member
from points.models import PointAccount, ProgramMode, Transfer
from points.selectors import balance_get
from tests.engagement.support import event_body, send_event

pytestmark = pytest.mark.django_db


def test_an_event_earns_the_points_of_the_rules_bound_to_its_name(
    api, program, member, make_event_rule
):
    rule = make_event_rule(program, event_name="app_open", points=25)
    make_event_rule(program, event_name="other_event", points=999)

    response = send_event(
        api, event_body(member.external_id, properties={"screen": "home"}), key="evt-1"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    transfer = Transfer.objects.get(member_account__member=member)
    assert body["points"] == [
        {
            "programKey": program.key,
            "ruleId": str(rule.pk),
            "points": 25,
            "multiplier": "1",
            "status": "earned",
            "reason": None,
            "transferId": transfer.pk,
        }
    ]
    assert (transfer.amount, transfer.source, transfer.reference) == (25, "Event", body["id"])
    assert balance_get(program=program, member=member).balance == 25
    event = Event.objects.get()
    assert (event.name, event.properties, event.member) == ("app_open", {"screen": "home"}, member)
    assert ActivityEntry.objects.get(member=member, kind="event").data["points"] == 25


def test_a_replayed_event_gets_the_same_reply_and_changes_nothing(
    api, program, member, make_event_rule
):
    make_event_rule(program, points=10)
    body = event_body(member.external_id, occurredAt="2026-01-02T03:04:05Z")
    first = send_event(api, body, key="same-key")

    again = send_event(api, body, key="same-key")

    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Event.objects.count() == 1
    assert Transfer.objects.filter(member_account__member=member).count() == 1
    assert ActivityEntry.objects.filter(kind="event").count() == 1
    assert balance_get(program=program, member=member).balance == 10


def test_the_same_key_with_another_event_is_409_and_nothing_changes(
    api, program, member, make_event_rule
):
    make_event_rule(program, points=10)
    send_event(api, event_body(member.external_id), key="k")

    response = send_event(api, event_body(member.external_id, name="app_close"), key="k")

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert Event.objects.count() == 1
    assert balance_get(program=program, member=member).balance == 10


def test_idempotency_keys_are_scoped_to_the_client(make_api, org, program, member, make_event_rule):
    make_event_rule(program, points=10)
    first, second = make_api(org), make_api(org)

    send_event(first, event_body(member.external_id), key="k")
    response = send_event(second, event_body(member.external_id), key="k")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert balance_get(program=program, member=member).balance == 20


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ({"userId": "nobody", "name": "app_open"}, {"HTTP_IDEMPOTENCY_KEY": "a"}, "userId"),
        ({"name": "app_open"}, {"HTTP_IDEMPOTENCY_KEY": "b"}, "userId"),
        ({"userId": "{member}", "name": "app_open"}, {}, "Idempotency-Key"),
        (
            {"userId": "{member}", "name": "app_open", "occurredAt": "2999-01-01T00:00:00Z"},
            {"HTTP_IDEMPOTENCY_KEY": "c"},
            "occurredAt",
        ),
        (
            {"userId": "{member}", "name": "app_open", "properties": [1, 2]},
            {"HTTP_IDEMPOTENCY_KEY": "d"},
            "properties",
        ),
    ],
)
def test_a_refused_event_stores_nothing_and_names_the_field(
    api, program, member, make_event_rule, body, headers, field
):
    make_event_rule(program, points=10)
    body = {k: (member.external_id if v == "{member}" else v) for k, v in body.items()}

    response = api.post("/api/v1/events", body, format="json", **headers)

    assert response.status_code == 400, response.content
    error = response.json()
    assert field in json.dumps(error["details"])
    assert field in error["message"]
    assert not Event.objects.exists()
    assert not Transfer.objects.filter(member_account__member=member).exists()


def test_an_event_of_a_blocked_customer_is_409(api, program, member, make_event_rule):
    make_event_rule(program, points=10)
    Member.objects.filter(pk=member.pk).update(status=Member.Status.BLOCKED)

    response = send_event(api, event_body(member.external_id))

    assert response.status_code == 409
    assert not Event.objects.exists()


def test_the_tier_multiplier_applies_to_event_earns_rounded_down_and_capped(
    api, program, member, make_event_rule
):
    from points import services as point_services

    services.tier_create(program=program, name="Silver", threshold=100, earn_multiplier="1.55")
    point_services.earn(program=program, member=member, amount=100)
    make_event_rule(program, event_name="app_open", points=10)
    make_event_rule(program, event_name="app_open", points=1000, max_points_per_request=1200)

    body = send_event(api, event_body(member.external_id)).json()

    assert sorted((item["points"], item["multiplier"]) for item in body["points"]) == [
        (15, "1.55"),
        (1200, "1.55"),
    ]


def test_rule_limits_and_periods_are_respected(api, program, member, make_event_rule):
    now = timezone.now()
    limited = make_event_rule(program, points=30, member_limit=50, name="limited")
    make_event_rule(program, points=5, active=False, name="inactive")
    make_event_rule(program, points=5, starts_at=now + dt.timedelta(days=1), name="future")
    make_event_rule(program, points=5, total_budget=0, name="no budget")

    first = send_event(api, event_body(member.external_id)).json()
    second = send_event(api, event_body(member.external_id)).json()

    def outcome(reply, rule_name):
        return [(i["status"], i["reason"]) for i in reply["points"] if i["ruleId"] == rule_name]

    assert outcome(first, str(limited.pk)) == [("earned", None)]
    assert outcome(second, str(limited.pk)) == [("skipped", "member_limit_reached")]
    assert {i["reason"] for i in first["points"] if i["status"] == "skipped"} == {
        "budget_exhausted"
    }
    assert len(first["points"]) == 2  # inactive and future rules do not apply at all
    assert balance_get(program=program, member=member).balance == 30


def test_in_a_follower_program_the_points_go_to_the_master_as_an_automation_adjustment(
    api, org, make_follower_program, member, make_event_rule
):
    program = make_follower_program(org, mode=ProgramMode.FOLLOWER_TRANSACTIONS)
    rule = make_event_rule(program, points=40, name="Survey bonus")

    reply = send_event(api, event_body(member.external_id)).json()

    assert reply["points"][0]["status"] == "sent_to_master"
    assert reply["points"][0]["points"] == 40
    assert not Transfer.objects.filter(member_account__member=member).exists()
    adjustment = MasterAdjustment.objects.get()
    message = OutboxMessage.objects.get(topic="follower.adjustment")
    payload = decrypt_payload(
        json.loads(bytes(message.body))["payload"], program.master_webhook_key
    )
    assert payload["Source"] == "Automation"
    assert payload["Amount"] == 40
    assert payload["ContactId"] == member.external_id
    assert payload["ProcessId"] == reply["id"]
    assert payload["WorkflowId"] == str(rule.pk)
    assert adjustment is not None


def test_an_event_grants_the_reward_of_a_bound_operation(
    api, org, program, member, make_reward_type
):
    from rewards import services as reward_services
    from rewards.models import RewardBalance

    reward_type = make_reward_type(org, reward_type="sticker", display_name="Sticker")
    operation = reward_services.operation_create(
        reward_type=reward_type, code="survey", building_block="surveys", amount=2
    )
    EventOperation.objects.create(organization=org, event_name="survey_done", operation=operation)

    reply = send_event(api, event_body(member.external_id, name="survey_done")).json()

    assert reply["rewards"][0]["status"] == "granted"
    assert reply["rewards"][0]["amount"] == 2
    balance = RewardBalance.objects.get(member=member, reward_type=reward_type)
    assert balance.granted - balance.claimed == 2
    assert ActivityEntry.objects.filter(member=member, kind="reward_granted").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_of_one_event_earn_once(make_api, org, program, member, make_event_rule):
    make_event_rule(program, points=10)
    api = make_api(org)
    barrier = threading.Barrier(4)
    replies = []

    def send():
        try:
            barrier.wait()
            response = send_event(api, event_body(member.external_id), key="racing-key")
            replies.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [status for status, _ in replies] == [201] * 4
    assert len({json.dumps(body, sort_keys=True) for _, body in replies}) == 1
    assert Event.objects.count() == 1
    assert PointAccount.objects.get(member=member, program=program).balance == 10
