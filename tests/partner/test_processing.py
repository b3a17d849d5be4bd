"""Processing an accepted request: the rule's cap, member limit and budget, the ledger, and the
callback (the seed's body exactly, signed with Standard Webhooks).

The service is called directly here (tests/partner/test_end_to_end.py runs it in a real worker);
callbacks are delivered by the outbox to a real local HTTP server.
"""

import datetime as dt
import json

import pytest
from django.test import TestCase
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from integrations.models import OutboxMessage, OutboxStatus
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import (
    partner_request_process,
    partner_requests_sweep,
    period_start,
)
from points import services as point_services
from points.models import LimitPeriod, PointRule, RuleKind, RuleUsage, Transfer
from points.selectors import balance_get, ledger_verify
from tests.http_support import RecordingServer
from tests.partner.conftest import submit_accepted

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("insecure_callbacks")]


@pytest.fixture(scope="module")
def receiver():
    # One partner server for the module: each test reads the request it caused.
    server = RecordingServer().start()
    yield server
    server.stop()


@pytest.fixture
def accept(partner, receiver):
    counter = iter(range(1, 10_000))

    def submit(rule, member, amount, request_id=None) -> PartnerRequest:
        return submit_accepted(
            partner,
            rule=rule,
            member=member,
            amount=amount,
            request_id=request_id or f"req-{next(counter)}",
            callback_url=f"{receiver.url}/callback",
        )

    return submit


def process_and_deliver(request, receiver):
    known = list(OutboxMessage.objects.values_list("pk", flat=True))
    # The worker makes the callback's first attempt itself, right after its commit.
    with TestCase.captureOnCommitCallbacks(execute=True):
        processed = partner_request_process(partner_request_id=request.pk)
    message = OutboxMessage.objects.exclude(pk__in=known).get(topic="partner.callback")
    assert message.status == OutboxStatus.DELIVERED, message.last_error
    return processed, receiver.requests[-1]


def test_a_successful_earn_calls_back_the_seed_body_signed(
    accept, receiver, partner, earn_rule, program, member
):
    request = accept(earn_rule, member, 120, request_id="earn-1")

    processed, callback = process_and_deliver(request, receiver)

    transfer = Transfer.objects.get(member_account__member=member)
    assert (transfer.amount, transfer.source, transfer.reference, transfer.actor) == (
        120,
        "Partner",
        "earn-1",
        f"client:{partner.client.pk}",
    )
    body = callback.json()
    assert list(body) == [
        "action",
        "clientId",
        "userId",
        "requestId",
        "ruleId",
        "point",
        "transactionId",
        "timestamp",
        "status",
    ]
    assert body == {
        "action": "point_earn",
        "clientId": partner.client_id,
        "userId": member.external_id,
        "requestId": "earn-1",
        "ruleId": str(earn_rule.pk),
        "point": 120,
        "transactionId": str(transfer.pk),
        "timestamp": body["timestamp"],
        "status": "success",
    }
    stamp = dt.datetime.fromisoformat(body["timestamp"])
    assert body["timestamp"].endswith("Z") and stamp.utcoffset() == dt.timedelta(0)
    Webhook(partner.client.webhook_secret).verify(callback.body, callback.headers)
    assert (processed.status, processed.point, processed.transfer) == (
        PartnerRequestStatus.SUCCEEDED,
        120,
        transfer,
    )
    assert balance_get(program=program, member=member).balance == 120


def test_a_signature_made_with_another_secret_does_not_verify(accept, receiver, earn_rule, member):
    from standardwebhooks.webhooks import WebhookVerificationError

    from integrations.webhook_signing import new_webhook_secret

    _, callback = process_and_deliver(accept(earn_rule, member, 5), receiver)

    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(callback.body, callback.headers)


def test_a_successful_burn_reports_point_burn(accept, receiver, burn_rule, program, member):
    point_services.earn(program=program, member=member, amount=100)

    _, callback = process_and_deliver(accept(burn_rule, member, 30), receiver)

    body = callback.json()
    burn = Transfer.objects.get(member_account__member=member, kind="burn")
    assert (body["action"], body["point"], body["transactionId"], body["status"]) == (
        "point_burn",
        30,
        str(burn.pk),
        "success",
    )
    assert balance_get(program=program, member=member).balance == 70


def test_a_capped_rule_applies_and_reports_the_capped_amount(
    accept, receiver, partner, program, member
):
    rule = partner.client.rules.create(
        program=program, name="capped", kind=RuleKind.EARN, max_points_per_request=50
    )

    _, callback = process_and_deliver(accept(rule, member, 80), receiver)

    assert callback.json()["point"] == 50
    assert balance_get(program=program, member=member).balance == 50


def _failed_body(callback, message):
    body = callback.json()
    assert list(body) == [
        "action",
        "clientId",
        "userId",
        "requestId",
        "ruleId",
        "timestamp",
        "status",
        "errorMessage",
    ]
    assert (body["status"], body["errorMessage"]) == ("failed", message)
    return body


@pytest.mark.parametrize(
    ("kind", "message"),
    [(RuleKind.EARN, "Reaching Earning Limit"), (RuleKind.BURN, "Reaching Redemption Limit")],
)
def test_the_member_limit_per_period_fails_the_request_that_would_cross_it(
    accept, receiver, partner, program, member, make_member, kind, message
):
    point_services.earn(program=program, member=member, amount=1000)
    rule = partner.client.rules.create(
        program=program, name="limited", kind=kind, member_limit=100, member_limit_period="day"
    )
    first = accept(rule, member, 70)
    second = accept(rule, member, 31)
    process_and_deliver(first, receiver)
    balance_between = balance_get(program=program, member=member)

    processed, callback = process_and_deliver(second, receiver)

    _failed_body(callback, message)
    assert (processed.status, processed.failure_code, processed.transfer) == (
        PartnerRequestStatus.FAILED,
        "member_limit_reached",
        None,
    )
    assert balance_get(program=program, member=member) == balance_between
    assert RuleUsage.objects.get(rule=rule, member=member).used == 70
    # The limit is per member: another member still has the whole allowance.
    other = make_member(program.organization)
    point_services.earn(program=program, member=other, amount=1000)
    _, callback = process_and_deliver(accept(rule, other, 100), receiver)
    assert callback.json()["status"] == "success"


def test_the_limit_counts_in_the_period_the_request_was_accepted(
    accept, receiver, partner, program, member
):
    rule = partner.client.rules.create(
        program=program, name="daily", kind=RuleKind.EARN, member_limit=10
    )
    yesterday = accept(rule, member, 10)
    PartnerRequest.objects.filter(pk=yesterday.pk).update(
        created_at=timezone.now() - dt.timedelta(days=1)
    )
    today = accept(rule, member, 10)

    process_and_deliver(yesterday, receiver)
    _, callback = process_and_deliver(today, receiver)

    assert callback.json()["status"] == "success"
    assert RuleUsage.objects.filter(rule=rule, member=member).count() == 2


def test_the_total_budget_is_never_exceeded(
    accept, receiver, partner, program, member, make_member
):
    rule = partner.client.rules.create(
        program=program, name="budget", kind=RuleKind.EARN, total_budget=100
    )
    other = make_member(program.organization)
    first = accept(rule, member, 60)
    second = accept(rule, other, 50)
    process_and_deliver(first, receiver)

    processed, callback = process_and_deliver(second, receiver)

    _failed_body(callback, "Reaching Earning Limit")
    assert processed.failure_code == "budget_exhausted"
    assert PointRule.objects.get(pk=rule.pk).total_used == 60
    assert balance_get(program=program, member=other).balance == 0


def test_a_burn_whose_balance_went_before_processing_fails_with_insufficient_balance(
    accept, receiver, partner, program, member
):
    rule = partner.client.rules.create(
        program=program,
        name="limited burn",
        kind=RuleKind.BURN,
        member_limit=500,
        total_budget=500,
    )
    point_services.earn(program=program, member=member, amount=100)
    request = accept(rule, member, 80)
    point_services.burn(program=program, member=member, amount=50)  # spent elsewhere meanwhile

    processed, callback = process_and_deliver(request, receiver)

    _failed_body(callback, "insufficient balance")
    assert processed.failure_code == "insufficient_balance"
    assert balance_get(program=program, member=member).balance == 50
    # The savepoint undid what the failed request had counted against the rule.
    assert PointRule.objects.get(pk=rule.pk).total_used == 0
    assert not RuleUsage.objects.filter(rule=rule, member=member, used__gt=0).exists()
    assert ledger_verify(program=program).ok


def test_a_rule_deactivated_after_acceptance_fails_the_waiting_request(
    accept, receiver, earn_rule, program, member
):
    request = accept(earn_rule, member, 10)
    PointRule.objects.filter(pk=earn_rule.pk).update(active=False)

    processed, callback = process_and_deliver(request, receiver)

    _failed_body(callback, "rule inactive")
    assert processed.failure_code == "rule_inactive"
    assert not Transfer.objects.exists()


def test_processing_twice_applies_once_and_calls_back_once(accept, earn_rule, program, member):
    request = accept(earn_rule, member, 25)

    first = partner_request_process(partner_request_id=request.pk)
    second = partner_request_process(partner_request_id=request.pk)

    assert first.status == second.status == PartnerRequestStatus.SUCCEEDED
    assert Transfer.objects.count() == 1
    assert OutboxMessage.objects.count() == 1
    assert balance_get(program=program, member=member).balance == 25


def test_the_sweeper_redispatches_requests_left_accepted(
    accept, receiver, earn_rule, program, member, settings
):
    settings.PARTNER_SWEEP_AFTER_SECONDS = 60
    stuck = accept(earn_rule, member, 10)
    fresh = accept(earn_rule, member, 20)
    PartnerRequest.objects.filter(pk=stuck.pk).update(
        dispatched_at=timezone.now() - dt.timedelta(seconds=61)
    )

    result = partner_requests_sweep()

    # Tasks run in-process in this mode, so the dispatch processed it.
    assert (result.dispatched, result.given_up) == (1, 0)
    assert PartnerRequest.objects.get(pk=stuck.pk).status == PartnerRequestStatus.SUCCEEDED
    assert PartnerRequest.objects.get(pk=fresh.pk).status == PartnerRequestStatus.ACCEPTED
    assert balance_get(program=program, member=member).balance == 10


def test_the_sweeper_gives_up_a_request_that_could_not_be_processed_for_a_day(
    accept, receiver, earn_rule, member
):
    request = accept(earn_rule, member, 10)
    PartnerRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - dt.timedelta(days=1, seconds=1)
    )

    result = partner_requests_sweep()

    assert result.given_up == 1
    assert PartnerRequest.objects.get(pk=request.pk).failure_code == "not_processed"
    message = OutboxMessage.objects.get()
    assert json.loads(bytes(message.body))["errorMessage"] == "unexpected error"
    assert not Transfer.objects.exists()


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        (LimitPeriod.DAY, "2024-04-12T00:00:00+00:00"),
        (LimitPeriod.WEEK, "2024-04-08T00:00:00+00:00"),
        (LimitPeriod.MONTH, "2024-04-01T00:00:00+00:00"),
        (LimitPeriod.YEAR, "2024-01-01T00:00:00+00:00"),
        (LimitPeriod.LIFETIME, "1970-01-01T00:00:00+00:00"),
    ],
)
def test_limit_periods_start_at_the_calendar_boundary_in_utc(period, expected):
    moment = dt.datetime(2024, 4, 12, 7, 41, 26, tzinfo=dt.UTC)  # a Friday

    assert period_start(period=period, at=moment).isoformat() == expected
