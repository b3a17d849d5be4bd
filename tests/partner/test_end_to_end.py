"""The partner Point API end to end: real HTTP (live_server + requests), a real Celery worker on
Redis, and a real local HTTP server playing the partner that receives the callbacks.

Covers issue 4's "Must show" items 1 and 2: token -> earn -> 202 -> signed success callback whose
transactionId is the ledger transfer; burn beyond the balance -> 400; a burn whose balance is
spent before processing -> failed callback; a capped rule; a partner answering 500 twice; and a
request accepted while no worker runs (or whose broker message is lost) still called back.
"""

import datetime as dt
import time

import pytest
import requests
from django.core.cache import cache
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from integrations.models import DeliveryAttempt, OutboxMessage, OutboxStatus
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import drain_key, drain_slots, partner_requests_sweep
from points import services as point_services
from points.models import RuleKind, Transfer
from points.selectors import balance_get, ledger_verify
from tests.celery_support import purge_queue, real_broker, running_worker
from tests.http_support import ScriptedResponse
from tests.partner.conftest import point_body

pytestmark = [
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("insecure_callbacks"),
]


class PartnerSide:
    """What a partner's integration does: get a token, call the API over HTTP."""

    def __init__(self, base_url, created):
        self.base_url = base_url
        response = requests.post(
            f"{base_url}/o/token/",
            data={
                "grant_type": "client_credentials",
                "client_id": created.client_id,
                "client_secret": created.client_secret,
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]

    def points(self, body) -> requests.Response:
        return requests.post(
            f"{self.base_url}/api/v1/points",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )


@pytest.fixture
def partner_side(live_server, partner):
    return PartnerSide(live_server.url, partner)


@pytest.fixture
def broker():
    with real_broker():
        purge_queue()
        free_drain_slots()
        yield
        purge_queue()
        free_drain_slots()


def free_drain_slots():
    # A slot taken by an earlier test's drain (its message purged) would wait for its key to
    # run out before the next request on it wakes a drainer.
    cache.delete_many([drain_key(slot) for slot in range(drain_slots())])


def _callback_url(receiver, name="callback"):
    return f"{receiver.url}/{name}"


def _wait_for_outbox(status, count=1, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if OutboxMessage.objects.filter(status=status).count() >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} outbox messages reached {status}")


def test_earn_over_http_is_called_back_with_the_transfer_id_signed(
    broker, partner_side, partner, receiver, program, member, earn_rule
):
    capped = partner.client.rules.create(
        program=program, name="capped", kind=RuleKind.EARN, max_points_per_request=40
    )
    with running_worker():
        plain = partner_side.points(
            point_body(
                user_id=member.external_id,
                rule=earn_rule,
                amount=120,
                request_id="e2e-earn",
                callback_url=_callback_url(receiver, "plain"),
            )
        )
        assert (plain.status_code, plain.json()) == (
            202,
            {"requestId": "e2e-earn", "status": "accepted"},
        )
        capped_reply = partner_side.points(
            point_body(
                user_id=member.external_id,
                rule=capped,
                amount=100,
                request_id="e2e-capped",
                callback_url=_callback_url(receiver, "capped"),
            )
        )
        assert capped_reply.status_code == 202
        callbacks = {request.path: request for request in receiver.wait_for(2)}

    plain_callback, capped_callback = callbacks["/plain"], callbacks["/capped"]
    for callback in (plain_callback, capped_callback):
        Webhook(partner.client.webhook_secret).verify(callback.body, callback.headers)
    earned = plain_callback.json()
    transfer = Transfer.objects.get(reference="e2e-earn")
    assert (earned["status"], earned["point"], earned["transactionId"]) == (
        "success",
        120,
        str(transfer.pk),
    )
    assert earned["clientId"] == partner.client_id
    capped_body = capped_callback.json()
    assert (capped_body["status"], capped_body["point"]) == ("success", 40)
    assert capped_body["point"] < 100
    assert capped_body["transactionId"] == str(Transfer.objects.get(reference="e2e-capped").pk)
    assert balance_get(program=program, member=member).balance == 160
    assert ledger_verify(program=program).ok


def test_burns_beyond_the_balance_are_refused_and_a_balance_spent_meanwhile_fails_the_burn(
    broker, partner_side, partner, receiver, program, member, burn_rule
):
    point_services.earn(program=program, member=member, amount=100)

    # At acceptance: beyond the balance is the seed's 400, and nothing is burned.
    too_much = partner_side.points(
        point_body(
            user_id=member.external_id,
            rule=burn_rule,
            amount=101,
            callback_url=_callback_url(receiver),
        )
    )
    assert (too_much.status_code, too_much.json()["code"]) == (400, "insufficient_balance")
    assert balance_get(program=program, member=member).balance == 100

    # Accepted while the balance sufficed (no worker yet), then spent before processing.
    accepted = partner_side.points(
        point_body(
            user_id=member.external_id,
            rule=burn_rule,
            amount=80,
            request_id="e2e-burn",
            callback_url=_callback_url(receiver),
        )
    )
    assert accepted.status_code == 202
    point_services.burn(program=program, member=member, amount=60, source="Store")

    with running_worker():
        (callback,) = receiver.wait_for(1)

    body = callback.json()
    assert (body["action"], body["status"], body["errorMessage"]) == (
        "point_burn",
        "failed",
        "insufficient balance",
    )
    assert "transactionId" not in body and "point" not in body
    Webhook(partner.client.webhook_secret).verify(callback.body, callback.headers)
    assert balance_get(program=program, member=member).balance == 40
    assert not Transfer.objects.filter(reference="e2e-burn").exists()


def test_a_partner_failing_twice_gets_the_callback_on_the_third_attempt(
    broker, partner_side, partner, receiver, member, earn_rule
):
    receiver.responses = [ScriptedResponse(500), ScriptedResponse(500)]

    with running_worker():
        assert (
            partner_side.points(
                point_body(
                    user_id=member.external_id,
                    rule=earn_rule,
                    callback_url=_callback_url(receiver),
                )
            ).status_code
            == 202
        )
        attempts = receiver.wait_for(3, timeout=30)
        _wait_for_outbox(OutboxStatus.DELIVERED)

    message = OutboxMessage.objects.get(topic="partner.callback")
    assert message.attempts == 3
    assert list(
        DeliveryAttempt.objects.filter(message=message).values_list("number", "status_code")
    ) == [(1, 500), (2, 500), (3, 200)]
    # Every attempt is signed afresh and verifies; the id stays so the partner can de-duplicate.
    for attempt in attempts:
        Webhook(partner.client.webhook_secret).verify(attempt.body, attempt.headers)
    assert len({attempt.headers["webhook-id"] for attempt in attempts}) == 1
    assert len({attempt.body for attempt in attempts}) == 1


def test_a_request_accepted_with_no_worker_running_is_called_back_once_one_starts(
    broker, partner_side, partner, receiver, program, member, earn_rule
):
    reply = partner_side.points(
        point_body(
            user_id=member.external_id,
            rule=earn_rule,
            amount=15,
            request_id="while-down",
            callback_url=_callback_url(receiver),
        )
    )
    assert reply.status_code == 202
    assert PartnerRequest.objects.get().status == PartnerRequestStatus.ACCEPTED
    assert receiver.requests == []

    with running_worker():
        (callback,) = receiver.wait_for(1)

    assert callback.json()["status"] == "success"
    assert PartnerRequest.objects.get().status == PartnerRequestStatus.SUCCEEDED
    assert balance_get(program=program, member=member).balance == 15


def test_a_request_whose_broker_message_was_lost_is_processed_by_the_sweeper(
    broker, partner_side, partner, receiver, program, member, earn_rule
):
    reply = partner_side.points(
        point_body(
            user_id=member.external_id,
            rule=earn_rule,
            amount=25,
            callback_url=_callback_url(receiver),
        )
    )
    assert reply.status_code == 202
    purge_queue()  # the broker lost the message (a Redis flush, a failed publish)

    with running_worker():
        swept = partner_requests_sweep(now=timezone.now() + dt.timedelta(minutes=5))
        (callback,) = receiver.wait_for(1)

    assert swept.dispatched == 1
    assert callback.json()["status"] == "success"
    assert Transfer.objects.filter(member_account__member=member).count() == 1
