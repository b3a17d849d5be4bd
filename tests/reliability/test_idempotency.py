"""Idempotency everywhere a partner writes: EAI commit/confirm/rollback, the partner Point API,
follower transactions, rewards grants, store purchases and claims, profile events and offer
purchases.

For each: the same key and body sent 50 times has one effect and gets identical replies; the
same key with another meaningful field is refused and changes nothing; 20 requests with one key
at once (PostgreSQL, real HTTP) have one effect; keys are scoped to the client that sent them.
"""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from points import services as point_services
from points.models import Hold, PointProgram, Transfer
from points.selectors import balance_get, ledger_verify
from tests.conftest import unique
from tests.reliability.support import db_fingerprint, fingerprint_changes
from tests.reliability.worlds import DjangoHttp, LiveHttp
from tests.reliability.writers import WRITERS, PartnerPoints, basic, writer_for

pytestmark = pytest.mark.django_db

NAMES = sorted(WRITERS)


def assert_ledger_clean():
    for program in PointProgram.objects.all():
        assert ledger_verify(program=program).ok, program


@pytest.mark.parametrize("name", NAMES)
def test_fifty_identical_sends_have_one_effect_and_identical_replies(name, world, client):
    # Given a writer and a key never used
    writer, http, key = writer_for(name, world), DjangoHttp(client), unique("key")
    writer.prepare(http, key=key, principal=0)
    before = db_fingerprint()

    # When the same request is sent 50 times
    first = writer.send(http, key=key)
    after_first = db_fingerprint()
    repeats = [writer.send(http, key=key) for _ in range(49)]

    # Then the first had its effect, once, and every repeat got the same reply and changed nothing
    assert 200 <= first.status < 300, first
    assert fingerprint_changes(before, after_first), "the first request changed nothing"
    assert [reply for reply in repeats if reply != first] == []
    assert fingerprint_changes(after_first, db_fingerprint()) == []
    assert writer.effects(key=key) == 1
    assert_ledger_clean()


@pytest.mark.parametrize("name", NAMES)
def test_the_same_key_with_another_request_is_refused_and_changes_nothing(name, world, client):
    # Given a key already used
    writer, http, key = writer_for(name, world), DjangoHttp(client), unique("key")
    writer.prepare(http, key=key, principal=0)
    first = writer.send(http, key=key)
    assert 200 <= first.status < 300, first
    before = db_fingerprint()

    # When it comes back with another meaningful field
    refused = writer.send(http, key=key, variant=1)

    # Then it is refused, nothing changed, and the original request still gets its reply
    assert refused.status == writer.refusal_status, refused
    assert fingerprint_changes(before, db_fingerprint()) == []
    assert writer.send(http, key=key) == first
    assert writer.effects(key=key) == 1


@pytest.mark.parametrize("name", NAMES)
def test_keys_are_scoped_to_the_client_that_sent_them(name, world, client):
    # Given two clients (vendors, services, members) of one organisation and one key
    writer, http, key = writer_for(name, world), DjangoHttp(client), unique("key")
    for principal in (0, 1):
        writer.prepare(http, key=key, principal=principal)

    # When both use the key
    replies = [writer.send(http, key=key, principal=principal) for principal in (0, 1)]

    # Then each has its own effect: neither is a repeat or a conflict of the other
    assert [reply.status // 100 for reply in replies] == [2, 2], replies
    assert "Idempotent-Replayed" not in replies[1].headers
    assert [writer.effects(key=key, principal=principal) for principal in (0, 1)] == [1, 1]
    assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", NAMES)
def test_twenty_requests_at_once_with_one_key_have_one_effect(name, world, live_server):
    # Given a writer and a fresh key, and 20 threads released together
    writer, key = writer_for(name, world), unique("key")
    writer.prepare(LiveHttp(live_server.url), key=key, principal=0)
    barrier = threading.Barrier(20)
    replies, lock = [], threading.Lock()

    def send():
        try:
            barrier.wait()
            reply = writer.send(LiveHttp(live_server.url), key=key)
            with lock:
                replies.append(reply)
        finally:
            connection.close()

    # When they all send the same request over HTTP
    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one effect, and every one of them got the same successful reply
    assert len(replies) == 20
    # (JSON objects compare by their members: PostgreSQL's jsonb does not keep key order.)
    assert len({(reply.status, json.dumps(reply.body, sort_keys=True)) for reply in replies}) == 1
    assert 200 <= replies[0].status < 300, replies[0]
    assert writer.effects(key=key) == 1
    assert_ledger_clean()


def test_a_refused_partner_request_keeps_its_first_answer_after_a_top_up(
    world, client, make_member
):
    # Given a member without points, and a burn refused for insufficient balance
    poor = make_member(world.org)
    world.members[0] = poor
    _created, token = world.partners[0]
    http = DjangoHttp(client)
    body = {
        "userId": poor.external_id,
        "ruleId": str(world.burn_rule.pk),
        "amount": 300,
        "requestId": "burn-after-top-up",
        "callbackUrl": world.callback_url,
    }
    headers = {"Authorization": f"Bearer {token}"}
    refused = http.post("/api/v1/points", body, headers)
    assert refused.status == 400, refused
    assert refused.body["code"] == "insufficient_balance"

    # When the member is topped up and the partner retries the same requestId
    point_services.earn(program=world.program, member=poor, amount=1000)
    retried = http.post("/api/v1/points", body, headers)

    # Then the retry gets the first answer and burns nothing; a new requestId succeeds
    assert retried == refused
    assert retried.headers.get("Idempotent-Replayed") == "true"
    assert balance_get(program=world.program, member=poor).available == 1000
    fresh = http.post("/api/v1/points", {**body, "requestId": "burn-after-top-up-2"}, headers)
    assert (fresh.status, fresh.body) == (
        202,
        {"requestId": "burn-after-top-up-2", "status": "accepted"},
    )
    assert balance_get(program=world.program, member=poor).available == 700
    assert Transfer.objects.filter(reference="burn-after-top-up").count() == 0
    assert PartnerPoints("partner-points", world).effects(key="burn-after-top-up-2") == 1


def test_a_refused_eai_commit_leaves_its_transaction_id_free(world, client, make_member):
    # Given a member with 100 points and a commit of 500 refused
    member = make_member(world.org)
    point_services.earn(program=world.program, member=member, amount=100)
    vendor = world.vendors[0]
    http = DjangoHttp(client)
    body = {"userid": member.external_id, "pointstodeduct": 500, "transactionid": "order-77"}
    headers = basic(vendor.eai_username, vendor.eai_secret)
    refused = http.post("/eai/v1/points?commit", body, headers)
    assert refused.status == 400, refused
    assert refused.body["code"] == "insufficient_points"
    assert not Hold.objects.filter(transaction_id="order-77").exists()

    # When the member earns enough and the vendor commits the same transaction id again
    point_services.earn(program=world.program, member=member, amount=400)
    committed = http.post("/eai/v1/points?commit", body, headers)

    # Then the id was free: the commit holds the points
    assert committed.status == 200, committed
    assert committed.body["message"] == "points committed for transaction"
    assert Hold.objects.get(transaction_id="order-77").amount == 500
    assert balance_get(program=world.program, member=member).available == 0
