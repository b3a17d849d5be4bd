"""Worker crashes: partner requests processed while Celery workers are SIGKILLed and restarted.

Workers are separate `celery -A loyalty worker` processes (production settings, the test
database, the suite's Redis broker). A killer thread SIGKILLs one every few seconds and starts a
replacement, while the partner side sends requests over HTTP. The sweepers run as beat would run
them. In the end every request is applied exactly once, every callback is delivered at least once
and verifies, and `verify_ledger` is clean. 200 requests in CI; 2,000 under `make soak`.

Also: the startup check that refuses delays at or beyond the broker's visibility timeout.
"""

from __future__ import annotations

import io
import random
import subprocess
import threading
from collections import defaultdict
from dataclasses import dataclass

import pytest
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from integrations.models import OutboxMessage, OutboxStatus
from integrations.outbox import outbox_deliver, outbox_sweep
from integrations.partner.credentials import partner_client_create
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import partner_requests_sweep
from loyalty.celery import app as celery_app
from loyalty.celery import check_delays_below_visibility_timeout
from points import services as point_services
from points.models import PointRule, RuleKind, Transfer
from points.selectors import balance_get
from tests.conftest import unique
from tests.http_support import ScriptedResponse, verify_webhook_as_received
from tests.reliability.support import (
    BIN,
    PROJECT_DIR,
    SlowRecordingServer,
    broker_at,
    celery_worker,
    clear_broker,
    platform_env,
    wait_until,
)
from tests.reliability.worlds import bearer, token_for

FUNDING = 1_000_000


@dataclass
class CrashFigures:
    requests: int = 0
    kills: int = 0
    kills_in_flight: int = 0
    restarts: int = 0
    lost: int = 0
    duplicated: int = 0
    swept_requests: int = 0
    swept_messages: int = 0
    callbacks_missing: int = 0
    callback_redeliveries: int = 0

    def line(self) -> str:
        return (
            f"requests {self.requests}, kills {self.kills} ({self.kills_in_flight} with work in "
            f"flight), restarts {self.restarts}, "
            f"lost {self.lost}, duplicated {self.duplicated}; callbacks missing "
            f"{self.callbacks_missing}, redelivered {self.callback_redeliveries}; swept "
            f"{self.swept_requests} requests and {self.swept_messages} messages"
        )


class Killer(threading.Thread):
    """SIGKILLs a random worker every few seconds and starts a replacement at once; counts the
    kills that landed while work was outstanding (requests accepted, callbacks not delivered)."""

    def __init__(self, fleet, start_worker, *, every=(1.5, 3.0)):
        super().__init__(daemon=True)
        self.fleet, self.start_worker, self.every = fleet, start_worker, every
        self.halt = threading.Event()
        self.kills = self.restarts = self.kills_in_flight = 0
        self.lock = threading.Lock()

    def run(self):
        try:
            while not self.halt.wait(random.uniform(*self.every)):
                with self.lock:
                    busy = work_outstanding()
                    index = random.randrange(len(self.fleet))
                    self.fleet[index].kill()
                    self.kills += 1
                    self.kills_in_flight += busy
                    self.fleet[index] = self.start_worker()
                    self.restarts += 1
        finally:
            connection.close()

    def stop(self):
        self.halt.set()
        self.join()


def work_outstanding() -> bool:
    return (
        PartnerRequest.objects.filter(status=PartnerRequestStatus.ACCEPTED).exists()
        or OutboxMessage.objects.filter(status=OutboxStatus.PENDING).exists()
    )


def run_requests_through_worker_crashes(
    *, count, live_server, receiver, log_dir, org, make_program, make_member, deadline
) -> CrashFigures:
    # Given a program, ten funded members and a partner allowed an earn and a burn rule
    program = make_program(org)
    members = [make_member(org) for _ in range(10)]
    for member in members:
        point_services.earn(program=program, member=member, amount=FUNDING)
    earn = PointRule.objects.create(program=program, name="earn", kind=RuleKind.EARN)
    burn = PointRule.objects.create(program=program, name="burn", kind=RuleKind.BURN)
    partner = partner_client_create(
        organization=org,
        name=unique("partner"),
        scopes=["points:earn", "points:burn"],
        rules=[earn, burn],
    )
    token = token_for(partner.client.application, ["points:earn", "points:burn"])
    plan = []
    for number in range(count):
        kind = burn if number % 5 == 4 else earn
        plan.append((f"crash-{number}", members[number % len(members)], kind, 1 + number % 97))

    broker_url = settings.CELERY_BROKER_URL
    clear_broker(broker_url)
    names = iter(range(10_000))

    def start_worker():
        return celery_worker(broker_url=broker_url, log_dir=log_dir, name=f"w{next(names)}")

    fleet = [start_worker(), start_worker()]
    killer = Killer(fleet, start_worker)
    figures = CrashFigures(requests=count)
    try:
        with broker_at(broker_url):
            killer.start()
            # When the partner sends its requests while workers keep dying
            session = requests.Session()
            session.headers.update(bearer(token))
            for request_id, member, rule, amount in plan:
                reply = session.post(
                    f"{live_server.url}/api/v1/points",
                    json={
                        "userId": member.external_id,
                        "ruleId": str(rule.pk),
                        "amount": amount,
                        "requestId": request_id,
                        "callbackUrl": f"{receiver.url}/callback",
                    },
                    timeout=30,
                )
                assert reply.status_code == 202, reply.text

            # ... and the sweepers run as beat runs them, until everything is done
            def done():
                result = partner_requests_sweep()
                figures.swept_requests += result.dispatched
                figures.swept_messages += outbox_sweep()
                waiting = PartnerRequest.objects.filter(
                    status=PartnerRequestStatus.ACCEPTED
                ).exists()
                undelivered = OutboxMessage.objects.exclude(status=OutboxStatus.DELIVERED).exists()
                called_back = {request.json()["requestId"] for request in receiver.requests}
                return not waiting and not undelivered and len(called_back) >= count

            wait_until(done, timeout=deadline, interval=2.0, message="requests still open")
    finally:
        if killer.is_alive():
            killer.stop()
        for worker in fleet:
            worker.stop()
        clear_broker(broker_url)
    figures.kills, figures.restarts = killer.kills, killer.restarts
    figures.kills_in_flight = killer.kills_in_flight

    # Then every request was applied exactly once
    applied = defaultdict(int)
    for key in Transfer.objects.filter(
        idempotency_key__startswith=f"partner:{partner.client.pk}:"
    ).values_list("idempotency_key", flat=True):
        applied[key.rsplit(":", 1)[1]] += 1
    figures.lost = sum(1 for request_id, *_ in plan if applied[request_id] == 0)
    figures.duplicated = sum(1 for request_id, *_ in plan if applied[request_id] > 1)
    statuses = set(
        PartnerRequest.objects.filter(client=partner.client).values_list("status", flat=True)
    )
    assert statuses == {PartnerRequestStatus.SUCCEEDED}
    for member in members:
        moved = sum(
            amount if rule is earn else -amount
            for _, owner, rule, amount in plan
            if owner.pk == member.pk
        )
        assert balance_get(program=program, member=member).balance == FUNDING + moved

    # ... every callback arrived at least once, verifies, and keeps its webhook-id on redelivery
    deliveries = defaultdict(list)
    for callback in receiver.requests:
        body = verify_webhook_as_received(partner.client.webhook_secret, callback)
        assert body["status"] == "success", body
        deliveries[body["requestId"]].append(callback.headers["webhook-id"])
    figures.callbacks_missing = sum(1 for request_id, *_ in plan if not deliveries[request_id])
    figures.callback_redeliveries = sum(len(ids) - 1 for ids in deliveries.values())
    assert all(len(set(ids)) == 1 for ids in deliveries.values())

    # ... and the ledger verifies
    out = io.StringIO()
    call_command("verify_ledger", stdout=out)
    assert "ledger OK" in out.getvalue()
    return figures


@pytest.fixture
def slow_receiver():
    server = SlowRecordingServer(delay=0.05).start()
    yield server
    server.stop()


@pytest.fixture
def fast_sweeps(settings):
    # Beat runs the sweepers every 15 s and waits a minute before re-dispatching a request;
    # the test runs them every 2 s and re-dispatches after 3 s, to finish in CI's time.
    settings.PARTNER_SWEEP_AFTER_SECONDS = 3


crash_test = pytest.mark.usefixtures("insecure_callbacks", "fast_sweeps")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@crash_test
def test_every_partner_request_is_applied_once_while_workers_are_killed(
    live_server, slow_receiver, log_dir, org, make_program, make_member
):
    figures = run_requests_through_worker_crashes(
        count=200,
        live_server=live_server,
        receiver=slow_receiver,
        log_dir=log_dir,
        org=org,
        make_program=make_program,
        make_member=make_member,
        deadline=180,
    )
    print(f"\nworker crashes: {figures.line()}")
    assert figures.kills_in_flight >= 3, figures
    assert figures.restarts == figures.kills
    assert (figures.lost, figures.duplicated, figures.callbacks_missing) == (0, 0, 0), figures


@pytest.mark.soak
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@crash_test
def test_soak_2000_partner_requests_through_worker_crashes(
    live_server, slow_receiver, log_dir, org, make_program, make_member
):
    figures = run_requests_through_worker_crashes(
        count=2000,
        live_server=live_server,
        receiver=slow_receiver,
        log_dir=log_dir,
        org=org,
        make_program=make_program,
        make_member=make_member,
        deadline=900,
    )
    print(f"\nsoak, worker crashes: {figures.line()}")
    assert figures.kills_in_flight >= 20, figures
    assert figures.restarts == figures.kills
    assert (figures.lost, figures.duplicated, figures.callbacks_missing) == (0, 0, 0), figures


# --- the startup check -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["OUTBOX_COUNTDOWN_MAX_SECONDS", "OUTBOX_LEASE_SECONDS", "CELERY_TASK_TIME_LIMIT"]
)
def test_a_delay_at_or_beyond_the_visibility_timeout_is_refused(settings, name):
    # Given the shipped settings, which pass the check
    check_delays_below_visibility_timeout(settings)

    # When one delay reaches the broker's visibility timeout
    setattr(settings, name, settings.CELERY_BROKER_VISIBILITY_TIMEOUT)

    # Then the configuration is refused, naming the delay
    with pytest.raises(ImproperlyConfigured, match=name):
        check_delays_below_visibility_timeout(settings)


def test_a_delivery_timeout_at_or_beyond_the_outbox_lease_is_refused(settings):
    # Given a delivery allowed to wait as long as the lease that keeps others off the message
    settings.OUTBOX_DELIVERY_TIMEOUT_SECONDS = settings.OUTBOX_LEASE_SECONDS

    # Then the configuration is refused, naming both
    with pytest.raises(ImproperlyConfigured, match="OUTBOX_DELIVERY_TIMEOUT_SECONDS"):
        check_delays_below_visibility_timeout(settings)


def test_a_worker_refuses_to_start_with_a_countdown_beyond_the_visibility_timeout(tmp_path):
    # Given a worker configured with countdowns of two hours on a one-hour visibility timeout
    env = platform_env(
        broker_url="redis://127.0.0.1:1/0",  # never reached: the check comes first
        DATABASE_URL=f"sqlite:///{tmp_path / 'never.sqlite3'}",
        CELERY_BROKER_VISIBILITY_TIMEOUT="3600",
        OUTBOX_COUNTDOWN_MAX_SECONDS="7200",
    )

    # When it starts
    finished = subprocess.run(
        [str(BIN / "celery"), "-A", "loyalty", "worker", "--loglevel=WARNING"],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it exits at once with the reason
    assert finished.returncode != 0
    assert "OUTBOX_COUNTDOWN_MAX_SECONDS must stay below CELERY_BROKER_VISIBILITY_TIMEOUT" in (
        finished.stdout + finished.stderr
    )


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("insecure_callbacks")
@pytest.mark.parametrize(
    ("retry_after", "queued"),
    [("2", 1), ("7200", 0)],
    ids=["short-retry-is-a-countdown", "long-retry-waits-for-the-sweeper"],
)
def test_no_retry_is_put_on_the_broker_beyond_the_countdown_limit(retry_after, queued, receiver):
    # Given a message whose receiver is busy and asks us to come back after Retry-After
    from integrations.outbox import outbox_enqueue

    receiver.responses.append(ScriptedResponse(503, b"busy", {"Retry-After": retry_after}))
    queue = celery_app.conf.task_default_queue
    with broker_at(settings.CELERY_BROKER_URL) as app:
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)
        message = outbox_enqueue(topic="test", url=f"{receiver.url}/hook", payload={"n": 1})
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)  # the on-commit send of the first attempt

        # When the attempt fails
        outbox_deliver(message_id=str(message.pk))

        # Then a short retry is a countdown on the broker, a long one only a due date for the
        # sweeper: nothing waits on the broker longer than OUTBOX_COUNTDOWN_MAX_SECONDS
        with app.connection_for_write() as conn:
            waiting = conn.default_channel.client.llen(queue)
            conn.default_channel.client.delete(queue)
    assert waiting == queued
    message.refresh_from_db()
    assert message.status == OutboxStatus.PENDING
    assert (message.next_attempt_at - message.attempt_log.get().started_at).total_seconds() >= (
        min(int(retry_after), settings.OUTBOX_BACKOFF_MAX_SECONDS) - 1
    )
