"""Adjustments in a follower program go to the master's webhook, encrypted; the ledger waits."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from integrations.follower.models import MasterAdjustment
from integrations.follower.routing import points_adjust
from integrations.follower.services import adjustment_send_to_master
from integrations.follower_crypto import decrypt_payload
from integrations.models import OutboxMessage, OutboxStatus
from points import services as point_services
from points.exceptions import ProgramNotFollower
from points.models import ProgramMode, Transfer
from points.selectors import balance_get
from tests.follower.conftest import BALANCES
from tests.http_support import RecordingServer

pytestmark = pytest.mark.django_db

MANUAL_FIELDS = [
    "ContactId",
    "Amount",
    "Description",
    "Source",
    "PointDefinitionId",
    "UserId",
    "UserName",
]
AUTOMATION_FIELDS = [
    "ContactId",
    "Amount",
    "Description",
    "Source",
    "PointDefinitionId",
    "Reason",
    "ProcessId",
    "WorkflowId",
    "WorkflowName",
]


@pytest.fixture
def master_server():
    server = RecordingServer().start()
    yield server
    server.stop()


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(
        "jimmy", "jimmy@example.com", "pw", first_name="Jimmy", last_name="User"
    )


def test_an_operators_adjustment_reaches_the_master_encrypted_and_waits_for_the_next_sync(
    client,
    org,
    member,
    operator,
    make_follower_program,
    master_api,
    master_server,
    insecure_callbacks,
    django_capture_on_commit_callbacks,
):
    # given a balance-only follower program whose master holds 100 points for the member
    program = make_follower_program(
        org,
        mode=ProgramMode.FOLLOWER_BALANCE,
        master_webhook_url=f"{master_server.url}/webhook",
    )
    point_services.set_balance(
        program=program, member=member, amount=100, as_of=timezone.now(), actor="test"
    )
    transfers = Transfer.objects.count()

    # when an operator adjusts the member's points by +40 in the operator console
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:loyalty_member_adjust_points", args=[member.pk]),
            {"program": program.pk, "amount": 40, "reason": "Give points from Engage"},
        )

    # then the master's webhook receives the seed's envelope ...
    assert response.status_code == 302
    received = master_server.wait_for(1)[0]
    assert (received.method, received.path) == ("POST", "/webhook")
    envelope = received.json()
    assert list(envelope) == ["eventType", "id", "payload", "tenant"]
    assert envelope["eventType"] == "loyalty.addPoints"
    assert envelope["tenant"] == org.slug
    # ... whose payload the master decrypts with the shipped helper to the seed's fields
    adjustment = decrypt_payload(envelope["payload"], program.master_webhook_key)
    assert list(adjustment) == MANUAL_FIELDS
    assert adjustment == {
        "ContactId": member.external_id,
        "Amount": 40,
        "Description": "Give points from Engage",
        "Source": "Manual",
        "PointDefinitionId": program.definition_id,
        "UserId": str(operator.pk),
        "UserName": "Jimmy User",
    }
    assert MasterAdjustment.objects.get(pk=envelope["id"]).message.status == OutboxStatus.DELIVERED
    # ... and the local balance has not moved
    assert balance_get(program=program, member=member).balance == 100
    assert Transfer.objects.count() == transfers

    # when the master's next sync arrives with the adjusted balance
    with django_capture_on_commit_callbacks(execute=True):
        master_api.post(
            BALANCES,
            [
                {
                    "contactId": member.external_id,
                    "amount": 140,
                    "definitionId": program.definition_id,
                    "timeStamp": timezone.now().isoformat(),
                }
            ],
        )

    # then the balance follows
    assert balance_get(program=program, member=member).balance == 140


def test_an_automations_adjustment_carries_the_automations_fields(
    org, member, transactions_program, django_capture_on_commit_callbacks
):
    outcome = points_adjust(
        program=transactions_program,
        member=member,
        amount=-15,
        reason="Points awarded",
        automation={
            "Reason": "Voyado",
            "ProcessId": "d6342090-7410-4c00-aa4b-dbd394dac7e6",
            "WorkflowId": "44931e65-e188-46c4-92bd-50e4818fece2",
            "WorkflowName": "",
        },
    )

    assert outcome.sent_to_master
    message = OutboxMessage.objects.get(topic="follower.adjustment")
    assert message.url == transactions_program.master_webhook_url
    envelope = json.loads(bytes(message.body))
    assert envelope["id"] == str(outcome.adjustment.pk)
    adjustment = decrypt_payload(envelope["payload"], transactions_program.master_webhook_key)
    assert list(adjustment) == AUTOMATION_FIELDS
    assert adjustment == {
        "ContactId": member.external_id,
        "Amount": -15,
        "Description": "Points awarded",
        "Source": "Automation",
        "PointDefinitionId": transactions_program.definition_id,
        "Reason": "Voyado",
        "ProcessId": "d6342090-7410-4c00-aa4b-dbd394dac7e6",
        "WorkflowId": "44931e65-e188-46c4-92bd-50e4818fece2",
        "WorkflowName": "",
    }
    assert not Transfer.objects.filter(program=transactions_program).exists()


def test_in_a_master_program_the_adjustment_is_a_ledger_entry_and_nothing_goes_out(
    program, member, operator
):
    outcome = points_adjust(
        program=program, member=member, amount=25, reason="goodwill", actor_user=operator
    )

    assert not outcome.sent_to_master
    assert (outcome.transfer.amount, outcome.transfer.source) == (25, "Manual")
    assert outcome.transfer.actor == f"user:{operator.pk}"
    assert balance_get(program=program, member=member).balance == 25
    assert not OutboxMessage.objects.exists()


def test_sending_a_master_programs_adjustment_to_a_master_is_refused(program, member, operator):
    with pytest.raises(ProgramNotFollower):
        adjustment_send_to_master(
            program=program,
            member=member,
            amount=5,
            description="x",
            source="Manual",
            operator=operator,
        )

    assert not OutboxMessage.objects.exists()
    assert not MasterAdjustment.objects.exists()


def test_the_admin_tells_the_operator_the_adjustment_went_to_the_master(
    client, org, member, operator, transactions_program
):
    client.force_login(operator)

    response = client.post(
        reverse("admin:loyalty_member_adjust_points", args=[member.pk]),
        {"program": transactions_program.pk, "amount": 5, "reason": "sorry"},
        follow=True,
    )

    assert response.status_code == 200
    assert "Sent to the point master" in response.content.decode()
    assert MasterAdjustment.objects.filter(member=member, amount=5).exists()


def test_an_operator_cannot_adjust_another_organisations_member(
    client, django_user_model, org, make_org, make_member, make_follower_program
):
    # given an operator of our organisation, and a member of another one in a follower program
    other_org = make_org()
    other_program = make_follower_program(other_org)
    stranger = make_member(other_org)
    operator = django_user_model.objects.create_user("op", "op@example.com", "pw", is_staff=True)
    operator.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_member", "change_member", "add_transfer"])
    )
    org.operators.add(operator)
    client.force_login(operator)

    # when the operator tries to open and adjust that member
    page = client.get(reverse("admin:loyalty_member_change", args=[stranger.pk]))
    adjust = client.post(
        reverse("admin:loyalty_member_adjust_points", args=[stranger.pk]),
        {"program": other_program.pk, "amount": 5, "reason": "mine now"},
    )

    # then neither is found, and nothing goes to the master
    assert page.status_code == 302  # the admin's "does not exist" redirect
    assert adjust.status_code == 404
    assert not OutboxMessage.objects.exists()
