"""Drainers: accepted requests are processed per slot, in order, by one task at a time per slot.

The publish of drain tasks is recorded here instead of sent; tests/partner/test_end_to_end.py
runs the same path with a real worker on Redis.
"""

import json

import pytest
from django.core.cache import cache

from integrations.models import OutboxMessage
from integrations.partner import services
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import (
    drain_key,
    partner_request_wake,
    partner_requests_drain,
    partner_requests_wake_all,
)
from integrations.partner.tasks import partner_requests_drain_task
from points import services as point_services
from points.models import Transfer
from tests.celery_support import real_broker
from tests.partner.conftest import CALLBACK_URL, submit_accepted

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_dns")]


@pytest.fixture
def slots(settings):
    settings.PARTNER_DRAIN_SLOTS = 2
    cache.delete_many([drain_key(slot) for slot in range(2)])
    yield 2
    cache.delete_many([drain_key(slot) for slot in range(2)])


@pytest.fixture
def published(monkeypatch):
    """Drain tasks published (slots), with a broker in use (tasks not run in-process)."""
    sent: list[int] = []
    monkeypatch.setattr(partner_requests_drain_task, "delay", sent.append)
    with real_broker():
        yield sent


@pytest.fixture
def accept(partner, earn_rule, member):
    counter = iter(range(1, 1000))

    def submit() -> PartnerRequest:
        return submit_accepted(
            partner,
            rule=earn_rule,
            member=member,
            amount=10,
            request_id=f"drain-{next(counter)}",
            callback_url=CALLBACK_URL,
        )

    return submit


def in_slot(accept, slot: int, slots: int) -> PartnerRequest:
    """Accept requests until one falls in `slot` (ids are the database's)."""
    while (request := accept()).pk % slots != slot:
        pass
    return request


def test_a_drain_processes_its_slots_requests_in_order_and_frees_the_slot(slots, accept):
    # given accepted requests in both slots, and slot 0 held by its drainer
    requests = [accept() for _ in range(6)]
    cache.add(drain_key(0), "1")

    # when slot 0 is drained
    result = partner_requests_drain(slot=0)

    # then its requests succeeded, in id order; slot 1's still wait; the slot is free
    mine = [r.pk for r in requests if r.pk % slots == 0]
    others = [r.pk for r in requests if r.pk % slots == 1]
    assert result.processed == len(mine) and not result.handed_over
    succeeded = PartnerRequest.objects.filter(status=PartnerRequestStatus.SUCCEEDED)
    assert sorted(succeeded.values_list("pk", flat=True)) == mine
    transfers = [r.transfer_id for r in succeeded.order_by("pk")]
    assert transfers == sorted(transfers)
    assert set(PartnerRequest.objects.filter(pk__in=others).values_list("status", flat=True)) == {
        PartnerRequestStatus.ACCEPTED
    }
    assert cache.get(drain_key(0)) is None


def test_a_drainer_with_nothing_to_do_lingers_and_takes_what_arrives_meanwhile(
    slots, accept, published, monkeypatch, settings
):
    # given a drainer of slot 0 with nothing to do, and a request that is accepted while it
    # waits (its wake finds the slot taken, so no new drain is published)
    settings.PARTNER_DRAIN_LINGER_SECONDS = 0.05
    cache.add(drain_key(0), "1")
    arrived: list[PartnerRequest] = []

    def wait(seconds):
        assert seconds <= 0.05
        if not arrived:
            arrived.append(in_slot(accept, 0, slots))
            partner_request_wake(arrived[0].pk)

    monkeypatch.setattr(services.time, "sleep", wait)

    # when it drains
    result = partner_requests_drain(slot=0)

    # then it processed the request that came, without a task of its own, and freed the slot
    assert result.processed == 1
    assert published == []
    arrived[0].refresh_from_db()
    assert arrived[0].status == PartnerRequestStatus.SUCCEEDED
    assert cache.get(drain_key(0)) is None


def test_a_wake_publishes_one_drain_per_slot_until_its_drainer_frees_it(slots, accept, published):
    # given requests in slot 0 (twice) and slot 1
    first, second = in_slot(accept, 0, slots), in_slot(accept, 0, slots)
    third = in_slot(accept, 1, slots)

    # when each one's accept wakes its slot
    for request in (first, second, third):
        partner_request_wake(request.pk)

    # then one drain per slot was published: the second found slot 0 taken
    assert published == [0, 1]

    # and once slot 0's drainer has processed its requests and freed the slot, a new request
    # on it publishes again
    partner_requests_drain(slot=0)
    partner_request_wake(in_slot(accept, 0, slots).pk)
    assert published == [0, 1, 0]


def test_a_request_whose_wake_found_the_slot_taken_is_seen_by_the_drainer(slots, accept, published):
    # given a drainer of slot 0 at work, and a request accepted meanwhile whose wake finds the
    # slot taken (no new drain is published)
    cache.add(drain_key(0), "1")
    late = in_slot(accept, 0, slots)
    partner_request_wake(late.pk)
    assert published == []

    # when the drainer looks for work
    partner_requests_drain(slot=0)

    # then it processed the request
    late.refresh_from_db()
    assert late.status == PartnerRequestStatus.SUCCEEDED


def test_a_request_whose_processing_raises_is_left_for_the_sweeper(slots, accept, monkeypatch):
    # given three requests in slot 0, the first of which cannot be processed
    broken, *fine = [in_slot(accept, 0, slots) for _ in range(3)]
    ledger_fields = services._ledger_fields

    def failing(request):
        if request.pk == broken.pk:
            raise RuntimeError("a bug in processing")
        return ledger_fields(request)

    monkeypatch.setattr(services, "_ledger_fields", failing)

    # when the slot is drained: the batch of three fails, and they are processed one by one
    result = partner_requests_drain(slot=0)

    # then the others were processed, the broken one waits (accepted), and the slot is free
    assert (result.processed, result.skipped) == (2, 1)
    statuses = dict(PartnerRequest.objects.values_list("pk", "status"))
    assert statuses[broken.pk] == PartnerRequestStatus.ACCEPTED
    assert {statuses[r.pk] for r in fine} == {PartnerRequestStatus.SUCCEEDED}
    assert cache.get(drain_key(0)) is None


def test_a_plain_earn_refused_in_a_batch_fails_alone_and_the_others_succeed(
    slots, accept, program, member, make_member, org, caplog
):
    # given three plain earns in slot 0 (no limit, no budget: a batch gives them no savepoint),
    # the middle one's ledger key already taken by another member's earn
    first, refused, last = [in_slot(accept, 0, slots) for _ in range(3)]
    point_services.earn(
        program=program,
        member=make_member(org),
        amount=1,
        idempotency_key=f"partner:{refused.client_id}:{refused.request_id}",
    )

    # when the slot is drained
    result = partner_requests_drain(slot=0)

    # then the refusal spoilt the batch's transaction, and one by one the middle request
    # failed with its own outcome and callback while the others succeeded
    assert (result.processed, result.skipped) == (3, 0)
    outcomes = dict(PartnerRequest.objects.values_list("pk", "failure_code"))
    assert outcomes[refused.pk] == "idempotency_conflict"
    statuses = dict(PartnerRequest.objects.values_list("pk", "status"))
    assert [statuses[r.pk] for r in (first, refused, last)] == [
        PartnerRequestStatus.SUCCEEDED,
        PartnerRequestStatus.FAILED,
        PartnerRequestStatus.SUCCEEDED,
    ]
    callbacks = [json.loads(bytes(m.body)) for m in OutboxMessage.objects.all()]
    assert {c["requestId"]: c["status"] for c in callbacks} == {
        first.request_id: "success",
        refused.request_id: "failed",
        last.request_id: "success",
    }
    assert Transfer.objects.filter(member_account__member=member).count() == 2
    assert "processing it one by one" in caplog.text


def test_a_drain_out_of_time_hands_over_to_a_fresh_task_and_keeps_its_slot(
    slots, accept, published, monkeypatch
):
    # given two requests in slot 0
    in_slot(accept, 0, slots), in_slot(accept, 0, slots)
    cache.add(drain_key(0), "1")

    # when a drain, processing one request per transaction, has no time left after the first
    monkeypatch.setattr(services, "DRAIN_TRANSACTION_SIZE", 1)
    result = partner_requests_drain(slot=0, seconds=0)

    # then it processed one, published its successor, and still holds the slot
    assert (result.processed, result.handed_over) == (1, True)
    assert published == [0]
    assert cache.get(drain_key(0)) == "1"
    assert Transfer.objects.count() == 1


def test_with_the_cache_down_each_request_is_dispatched_alone(
    slots, accept, published, monkeypatch
):
    # given a cache (Redis) that does not answer
    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "add", down)
    dispatched: list[int] = []
    monkeypatch.setattr(services, "partner_request_dispatch", dispatched.append)
    request = accept()

    # when its accept wakes the slot
    partner_request_wake(request.pk)

    # then the request went to the broker on its own, as the sweeper sends it
    assert (published, dispatched) == ([], [request.pk])


def test_a_starting_worker_frees_the_slots_and_wakes_those_with_requests(slots, accept, published):
    # given both slots held by drainers that died, and a request waiting in slot 1 only
    cache.add(drain_key(0), "1")
    cache.add(drain_key(1), "1")
    waiting = in_slot(accept, 1, slots)
    PartnerRequest.objects.exclude(pk=waiting.pk).update(status=PartnerRequestStatus.FAILED)

    # when a worker starts
    woken = partner_requests_wake_all()

    # then slot 1 has a new drainer and slot 0 is free
    assert (woken, published) == (1, [1])
    assert cache.get(drain_key(0)) is None


def test_a_batch_processes_its_requests_in_one_transaction_with_their_callbacks(
    slots, accept, partner, make_member, org, program, earn_rule, django_assert_num_queries
):
    # given accepted earns of two members who have earned before (accounts and tiers exist)
    other = make_member(org)
    first = accept()
    second = submit_accepted(
        partner,
        rule=earn_rule,
        member=other,
        amount=5,
        request_id="other-1",
        callback_url=CALLBACK_URL,
    )
    third = accept()
    for request in (first, second, third):
        services.partner_request_process(partner_request_id=request.pk)
    waiting = [accept(), in_slot(accept, 1, slots)]
    waiting.append(
        submit_accepted(
            partner,
            rule=earn_rule,
            member=other,
            amount=5,
            request_id="other-2",
            callback_url=CALLBACK_URL,
        )
    )
    ids = [request.pk for request in waiting]

    # when a drainer processes them as one batch: one locked read; the plain earns in the
    # ledger together (the accounts read and locked, the keys looked up, the issued account,
    # the transfers, the lots, the balances, the program's tiers); the outcomes and the
    # callbacks as two batches; 2 savepoint statements of the transaction
    with django_assert_num_queries(1 + 8 + 2 + 2):
        processed = services.partner_requests_process_batch(partner_request_ids=ids)

    # then each succeeded with its own transfer and callback, as one by one
    assert processed == 3
    done = PartnerRequest.objects.filter(pk__in=ids)
    assert {r.status for r in done} == {PartnerRequestStatus.SUCCEEDED}
    assert len({r.transfer_id for r in done}) == 3
    callbacks = OutboxMessage.objects.filter(topic="partner.callback").order_by("created_at")
    assert callbacks.count() == 6
    assert {json.loads(bytes(m.body))["requestId"] for m in callbacks} >= {
        r.request_id for r in waiting
    }

    # and a request processed meanwhile is left as it is by a second batch
    assert services.partner_requests_process_batch(partner_request_ids=ids) == 0


def test_a_look_finds_the_slots_requests_across_pages_in_order(accept, monkeypatch):
    # given accepted requests of three slots, some processed, and pages of a few rows
    requests = [accept() for _ in range(14)]
    PartnerRequest.objects.filter(pk__in=[r.pk for r in requests[3:5]]).update(
        status=PartnerRequestStatus.FAILED
    )
    monkeypatch.setattr(services, "_WAITING_PAGE_MAX", 2)
    waiting = [r.pk for r in requests[:3] + requests[5:]]

    for slot in range(3):
        mine = [pk for pk in waiting if pk % 3 == slot]
        # then each slot gets its own accepted requests, first ones first, up to the limit
        found = services._waiting_in_slot(slots=3, slot=slot, skipped=[], limit=50)
        assert found == mine
        assert services._waiting_in_slot(slots=3, slot=slot, skipped=[], limit=2) == mine[:2]
        # ... and none it was told to skip
        skipped = mine[:1]
        assert services._waiting_in_slot(slots=3, slot=slot, skipped=skipped, limit=50) == mine[1:]
