"""Races on PostgreSQL: the same requestId sent at once, one request processed twice at once, and
many requests against a rule's member limit and budget at once."""

import threading

import pytest
from django.db import connection

from integrations.models import OutboxMessage
from integrations.partner import services
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import PointRequestInput
from points import services as point_services
from points.models import PointRule, RuleKind, RuleUsage, Transfer
from points.selectors import balance_get, ledger_verify

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SCOPES = frozenset({"points:earn", "points:burn"})


@pytest.fixture
def dispatched(monkeypatch):
    """Record dispatches instead of processing at commit, so each test decides when to."""
    sent: list[int] = []
    monkeypatch.setattr(services, "partner_request_dispatch", sent.append)
    return sent


def run_together(count, work):
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(index):
        try:
            barrier.wait(timeout=10)
            results[index] = work(index)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def _input(member, rule, amount, request_id):
    return PointRequestInput(
        user_id=member.external_id,
        rule_id=str(rule.pk),
        amount=amount,
        request_id=request_id,
        callback_url="https://partner.example/cb",
    )


def test_the_same_request_id_sent_at_once_is_stored_and_dispatched_once(
    partner, earn_rule, member, dispatched
):
    data = _input(member, earn_rule, 10, "at-once")

    results = run_together(
        6,
        lambda _: services.partner_request_submit(client=partner.client, scopes=SCOPES, data=data),
    )

    assert PartnerRequest.objects.count() == 1
    assert {result.request.pk for result in results} == {PartnerRequest.objects.get().pk}
    assert sorted(result.replayed for result in results) == [False] + [True] * 5
    assert len(dispatched) == 1


def test_one_request_processed_twice_at_once_is_applied_once(
    partner, earn_rule, program, member, dispatched
):
    request = services.partner_request_submit(
        client=partner.client, scopes=SCOPES, data=_input(member, earn_rule, 30, "twice")
    ).request

    run_together(4, lambda _: services.partner_request_process(partner_request_id=request.pk))

    assert PartnerRequest.objects.get().status == PartnerRequestStatus.SUCCEEDED
    assert Transfer.objects.count() == 1
    assert OutboxMessage.objects.count() == 1
    assert balance_get(program=program, member=member).balance == 30


def test_concurrent_requests_never_cross_the_member_limit_or_the_budget(
    partner, program, member, make_member, dispatched
):
    rule = partner.client.rules.create(
        program=program,
        name="scarce",
        kind=RuleKind.EARN,
        member_limit=50,
        member_limit_period="lifetime",
        total_budget=70,
    )
    other = make_member(program.organization)
    # Eight requests of 10 for each of two members: each member may get 5, the budget allows 7.
    requests = [
        services.partner_request_submit(
            client=partner.client,
            scopes=SCOPES,
            data=_input(person, rule, 10, f"scarce-{person.pk}-{i}"),
        ).request
        for person in (member, other)
        for i in range(8)
    ]

    run_together(
        len(requests),
        lambda i: services.partner_request_process(partner_request_id=requests[i].pk),
    )

    rule.refresh_from_db()
    succeeded = PartnerRequest.objects.filter(status=PartnerRequestStatus.SUCCEEDED)
    assert rule.total_used == 70 == 10 * succeeded.count()
    for person in (member, other):
        usage = RuleUsage.objects.get(rule=rule, member=person).used
        assert usage == balance_get(program=program, member=person).balance <= 50
    assert PartnerRequest.objects.filter(status=PartnerRequestStatus.FAILED).count() == 16 - 7
    assert OutboxMessage.objects.count() == 16
    assert ledger_verify(program=program).ok


def test_concurrent_burns_accepted_together_never_overdraw(
    partner, burn_rule, program, member, dispatched
):
    point_services.earn(program=program, member=member, amount=50)
    # Each is accepted on its own (the balance covers one at a time): 5 x 20 against 50.
    requests = [
        services.partner_request_submit(
            client=partner.client, scopes=SCOPES, data=_input(member, burn_rule, 20, f"b-{i}")
        ).request
        for i in range(5)
    ]

    run_together(5, lambda i: services.partner_request_process(partner_request_id=requests[i].pk))

    assert PartnerRequest.objects.filter(status=PartnerRequestStatus.SUCCEEDED).count() == 2
    failed = PartnerRequest.objects.filter(status=PartnerRequestStatus.FAILED)
    assert {request.error_message for request in failed} == {"insufficient balance"}
    assert balance_get(program=program, member=member).balance == 10
    assert PointRule.objects.get(pk=burn_rule.pk).total_used == 0  # no budget on this rule
    assert ledger_verify(program=program).ok
