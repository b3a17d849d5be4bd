"""Database faults: the platform's connections cut with pg_terminate_backend() (the shared
PostgreSQL server itself is never restarted).

A request is caught in flight by a row lock the test holds (it has written part of its work and
waits for the lock), its server process is terminated, and then: the reply is a clean 503 with a
JSON body and Retry-After (loyalty.middleware.DatabaseUnavailableMiddleware), nothing it wrote
survived, and the same request succeeds right after, with no restart. Workers cut the same way
leave their request for the sweeper. A web process with persistent connections whose backends
were all terminated serves its next request normally.
"""

from __future__ import annotations

import threading

import pytest
import requests
from django.conf import settings
from django.db import OperationalError, connection, transaction

from integrations.models import OutboxMessage
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import (
    PointRequestInput,
    partner_request_process,
    partner_request_submit,
    partner_requests_sweep,
)
from loyalty.models import Member
from points import services as point_services
from points.models import PointAccount, PointProgram, Transfer
from points.selectors import ledger_verify
from rewards import services as reward_services
from rewards.models import RewardBalance
from tests.celery_support import purge_queue, real_broker
from tests.reliability.support import (
    WebServer,
    clear_broker,
    db_fingerprint,
    fingerprint_changes,
    platform_backend_pids,
    terminate_backends,
    wait_until,
)
from tests.reliability.worlds import LiveHttp, bearer
from tests.reliability.writers import basic, writer_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def lock_account(program, member):
    account = point_services.account_get_or_create(program=program, member=member)
    PointAccount.objects.select_for_update().get(pk=account.pk)


def hold_lock_for(name, world, key):
    """Take, in the current transaction, the row lock the writer's request will wait for after
    it has written part of its work."""
    member = world.members[0]
    if name == "partner-points":
        # The unique (client, requestId) index: the request has judged and inserts its row.
        created, _token = world.partners[0]
        partner_request_submit(
            client=created.client,
            scopes=frozenset({"points:earn"}),
            data=PointRequestInput(
                user_id=member.external_id,
                rule_id=str(world.earn_rule.pk),
                amount=50,
                request_id=key,
                callback_url=world.callback_url,
            ),
        )
    elif name == "follower-transactions":
        # The batch row is written and the contacts resolved; the accounts are locked next.
        contact = Member.objects.get(organization=world.org, external_id="master-contact-1")
        lock_account(world.follower_program, contact)
    elif name == "rewards-int-reward":
        balance = RewardBalance.objects.get(
            member=member, reward_type=world.services[0][2].reward_type
        )
        RewardBalance.objects.select_for_update().get(pk=balance.pk)
    else:
        # The ledger account: holds, burns, purchases and event points lock it first.
        lock_account(world.program, member)


CUT_IN_FLIGHT = [
    "eai-commit",
    "eai-confirm",
    "partner-points",
    "follower-transactions",
    "rewards-int-reward",
    "rewards-store-purchase",
    "engagement-event",
]


@pytest.mark.parametrize("name", CUT_IN_FLIGHT)
def test_a_request_cut_in_flight_fails_cleanly_and_the_next_one_succeeds(name, world, live_server):
    # Given a request that will wait, in the middle of its work, for a row lock we hold
    writer, http, key = writer_for(name, world), LiveHttp(live_server.url), f"cut-{name}"
    writer.prepare(http, key=key, principal=0)
    reward_services.reward_grant(
        member=world.members[0],
        reward_type=world.services[0][2].reward_type,
        amount=1,
        source="operation",
        code="setup",
        building_block="tests",
    )
    contact = Member.objects.create(organization=world.org, external_id="master-contact-1")
    point_services.account_get_or_create(program=world.follower_program, member=contact)
    before = db_fingerprint()
    replies = []
    with transaction.atomic():
        hold_lock_for(name, world, key)
        sender = threading.Thread(target=lambda: replies.append(writer.send(http, key=key)))
        sender.start()

        # When its database connection is terminated while it waits
        victims = wait_until(_waiting_on_a_lock, timeout=30, message="the request never waited")
        assert terminate_backends(victims) == 1
        sender.join(timeout=60)
        transaction.set_rollback(True)

    # Then it was answered 503 with a JSON body and Retry-After, and nothing of it stayed
    (reply,) = replies
    assert reply.status == 503, reply
    assert reply.body["code"] == "service_unavailable"
    assert reply.headers["Retry-After"] == "2"
    assert fingerprint_changes(before, db_fingerprint()) == []

    # ... and the platform serves the same request at once, without a restart
    retried = writer.send(http, key=key)
    assert 200 <= retried.status < 300, retried
    assert writer.effects(key=key) == 1
    for program in PointProgram.objects.all():
        assert ledger_verify(program=program).ok


def _waiting_on_a_lock() -> list[int]:
    with connection.cursor() as cursor:
        # Inside a transaction the statistics views are a snapshot: take a fresh one.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return [row[0] for row in cursor.fetchall()]


def test_a_page_cut_in_flight_is_a_503_page_not_a_crash(world, live_server, client):
    # Given a signed-in member whose portal page must read a table we lock
    member = world.members[0]
    session = requests.Session()
    client.force_login(member.user)
    session.cookies.set(
        settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value
    )
    replies = []
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {PointAccount._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        reader = threading.Thread(
            target=lambda: replies.append(session.get(f"{live_server.url}/portal/", timeout=60))
        )
        reader.start()

        # When the page's connection is terminated while it waits
        victims = wait_until(_waiting_on_a_lock, timeout=30, message="the page never waited")
        terminate_backends(victims)
        reader.join(timeout=60)

    # Then the member sees "try again" (503, Retry-After), and the next load works
    (reply,) = replies
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "2"
    assert "try again" in reply.text.lower()
    assert session.get(f"{live_server.url}/portal/", timeout=30).status_code == 200


def test_a_worker_cut_in_flight_leaves_its_request_to_the_sweeper(world, settings):
    # Given an accepted partner request, not processed yet
    created, _token = world.partners[0]
    member = world.members[0]
    with real_broker():  # published to the broker, not processed in process
        accepted = partner_request_submit(
            client=created.client,
            scopes=frozenset({"points:earn"}),
            data=PointRequestInput(
                user_id=member.external_id,
                rule_id=str(world.earn_rule.pk),
                amount=70,
                request_id="worker-cut",
                callback_url=world.callback_url,
            ),
        ).request
        purge_queue()
    settings.PARTNER_SWEEP_AFTER_SECONDS = 0
    outcome = []

    def work():
        try:
            partner_request_process(partner_request_id=accepted.pk)
            outcome.append("done")
        except OperationalError:
            outcome.append("connection lost")
        finally:
            connection.close()

    # When the worker's connection is terminated while it waits for the member's account
    with transaction.atomic():
        lock_account(world.program, member)
        worker = threading.Thread(target=work)
        worker.start()
        victims = wait_until(_waiting_on_a_lock, timeout=30, message="the worker never waited")
        terminate_backends(victims)
        worker.join(timeout=60)

    # Then the task failed with a retryable error, leaving the request accepted, and the sweeper
    # applies it exactly once
    assert outcome == ["connection lost"]
    assert PartnerRequest.objects.get(pk=accepted.pk).status == PartnerRequestStatus.ACCEPTED
    partner_requests_sweep()
    request = PartnerRequest.objects.get(pk=accepted.pk)
    assert request.status == PartnerRequestStatus.SUCCEEDED
    assert (
        Transfer.objects.filter(idempotency_key=f"partner:{created.client.pk}:worker-cut").count()
        == 1
    )
    assert OutboxMessage.objects.filter(topic="partner.callback").count() == 1
    assert ledger_verify(program=world.program).ok


@pytest.mark.redis
def test_a_web_process_serves_again_after_all_its_connections_are_terminated(world, log_dir):
    # Given a production-configured web process keeping its database connections open
    broker = settings.CELERY_BROKER_URL
    # One thread, so the connection terminated is the one the next request would use.
    web = WebServer(broker_url=broker, log_dir=log_dir, threads=1)
    vendor, member = world.vendors[0], world.members[0]
    headers = basic(vendor.eai_username, vendor.eai_secret)
    _created, token = world.partners[0]
    balance_url = (
        f"{web.url}/api/v1/orgs/{world.org.pk}/point-programs/default/balances/{member.external_id}"
    )
    try:
        web.wait_ready()
        pid = web.process.pid
        assert requests.get(balance_url, headers=bearer(token), timeout=30).status_code == 200
        assert platform_backend_pids(), "the web process keeps no connection open"

        # When every connection of the platform to the database is terminated
        assert terminate_backends(platform_backend_pids()) >= 1

        # Then its next requests, reads and writes, are served as usual
        reply = requests.get(balance_url, headers=bearer(token), timeout=30)
        assert reply.status_code == 200, reply.text
        commit = requests.post(
            f"{web.url}/eai/v1/points?commit",
            json={"userid": member.external_id, "pointstodeduct": 10, "transactionid": "after"},
            headers=headers,
            timeout=30,
        )
        assert commit.status_code == 200, commit.text
        assert web.process.alive()
        assert web.process.pid == pid
    finally:
        web.process.stop()
        clear_broker(broker)
