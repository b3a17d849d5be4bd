"""Broker and process loss, on a private redis-server started on its own port (the machine's
Redis is never stopped).

* With the broker down, partner requests are still accepted (the request table) and claims'
  fulfilment webhooks still committed (the outbox); once it is back, the sweepers hand them to a
  worker and everything is applied once and delivered.
* A web process SIGKILLed between its commit and its publish (the broker hangs mid-publish)
  loses nothing: the rows are committed, and the sweepers send what it never published.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from integrations.clients import api_client_create
from integrations.models import OutboxMessage, OutboxStatus
from integrations.outbox import outbox_sweep
from integrations.partner.credentials import partner_client_create
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import partner_requests_sweep
from loyalty.celery import app as celery_app
from points.models import PointRule, RuleKind, Transfer
from points.selectors import balance_get, ledger_verify
from rewards import services as reward_services
from rewards.models import Fulfilment
from tests.conftest import unique
from tests.reliability.support import (
    BlackHole,
    RedisServer,
    Supervised,
    WebServer,
    broker_at,
    celery_worker,
    wait_until,
)
from tests.reliability.worlds import bearer, token_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("insecure_callbacks", "quick_partner_sweep"),
]


@pytest.fixture
def quick_partner_sweep(settings):
    # The sweeper re-dispatches accepted requests older than this (a minute in production).
    settings.PARTNER_SWEEP_AFTER_SECONDS = 0


@pytest.fixture
def private_redis(log_dir):
    server = RedisServer(log_dir).start()
    yield server
    server.stop()


@dataclass
class Platform:
    """One organisation: a partner earning points, a rewards admin claiming a webhook reward."""

    program: object
    member: object
    rule: object
    partner: object
    partner_token: str
    admin_token: str
    webhook_type: object

    def point_body(self, request_id: str, callback_url: str) -> dict:
        return {
            "userId": self.member.external_id,
            "ruleId": str(self.rule.pk),
            "amount": 10,
            "requestId": request_id,
            "callbackUrl": callback_url,
        }

    def claim_body(self) -> dict:
        return {
            "user_id": self.member.external_id,
            "items": [{"reward_type": self.webhook_type.reward_type, "amount": 1}],
        }


@pytest.fixture
def platform(org, make_program, make_member, receiver):
    program = make_program(org)
    member = make_member(org)
    rule = PointRule.objects.create(program=program, name="earn", kind=RuleKind.EARN)
    partner = partner_client_create(
        organization=org, name=unique("partner"), scopes=["points:earn"], rules=[rule]
    )
    admin = api_client_create(organization=org, name=unique("admin"), scopes=["rewards:admin"])
    webhook_type = reward_services.reward_type_create(
        org=org,
        reward_type=unique("voucher"),
        display_name="Voucher",
        fulfilment=Fulfilment.WEBHOOK,
        webhook_url=f"{receiver.url}/fulfil",
    )
    reward_services.inventory_create(reward_type=webhook_type, amount_total=100)
    reward_services.reward_grant(
        member=member,
        reward_type=webhook_type,
        amount=10,
        source="operation",
        code="setup",
        building_block="tests",
    )
    return Platform(
        program=program,
        member=member,
        rule=rule,
        partner=partner,
        partner_token=token_for(partner.client.application, ["points:earn"]),
        admin_token=token_for(admin.client.application, ["rewards:admin"]),
        webhook_type=webhook_type,
    )


def sweep_until_everything_is_delivered(receiver, worker, *, callbacks: int, timeout: float = 60):
    """What beat does: run both sweepers until no request waits and every message is out (and
    what a process supervisor does: keep the worker running)."""

    def done():
        worker.ensure_running()
        partner_requests_sweep()
        outbox_sweep()
        waiting = PartnerRequest.objects.filter(status=PartnerRequestStatus.ACCEPTED).exists()
        pending = OutboxMessage.objects.exclude(status=OutboxStatus.DELIVERED).exists()
        return not waiting and not pending and len(receiver.requests) >= callbacks

    wait_until(done, timeout=timeout, interval=0.5, message="not everything was delivered")


def assert_applied_once_and_signed(platform, receiver, request_ids, *, claims: int):
    client = platform.partner.client
    for request_id in request_ids:
        assert (
            Transfer.objects.filter(idempotency_key=f"partner:{client.pk}:{request_id}").count()
            == 1
        ), request_id
    assert balance_get(program=platform.program, member=platform.member).balance == 10 * len(
        request_ids
    )
    assert ledger_verify(program=platform.program).ok
    called_back, fulfilments = set(), 0
    for delivery in receiver.requests:
        if delivery.path == "/callback":
            Webhook(client.webhook_secret).verify(delivery.body, delivery.headers)
            called_back.add(delivery.json()["requestId"])
        else:
            Webhook(platform.webhook_type.webhook_secret).verify(delivery.body, delivery.headers)
            assert delivery.json()["type"] == "rewards.claim.created"
            fulfilments += 1
    assert called_back == set(request_ids)
    assert fulfilments >= claims


def test_requests_are_accepted_while_the_broker_is_down_and_delivered_when_it_returns(
    platform, private_redis, receiver, live_server, log_dir
):
    names = iter(range(100))
    worker = Supervised(
        lambda: celery_worker(
            broker_url=private_redis.url(), log_dir=log_dir, name=f"broker-loss-{next(names)}"
        )
    )
    http = requests.Session()
    callback_url = f"{receiver.url}/callback"
    try:
        with broker_at(private_redis.url()):
            # Given a platform whose broker and worker work
            reply = http.post(
                f"{live_server.url}/api/v1/points",
                json=platform.point_body("before-outage", callback_url),
                headers=bearer(platform.partner_token),
                timeout=30,
            )
            assert reply.status_code == 202, reply.text
            receiver.wait_for(1, timeout=60)

            # When the broker goes away, partners and administrators go on calling
            private_redis.stop()
            during = [f"during-outage-{n}" for n in range(10)]
            for request_id in during:
                reply = http.post(
                    f"{live_server.url}/api/v1/points",
                    json=platform.point_body(request_id, callback_url),
                    headers=bearer(platform.partner_token),
                    timeout=30,
                )
                assert reply.status_code == 202, reply.text
            claim = http.post(
                f"{live_server.url}/rewards/admin/claims",
                json=platform.claim_body(),
                headers=bearer(platform.admin_token),
                timeout=30,
            )
            assert claim.status_code == 200, claim.text

            # Then it is all committed: the requests accepted, the claim's webhook in the outbox
            assert set(
                PartnerRequest.objects.filter(request_id__in=during).values_list(
                    "status", flat=True
                )
            ) == {PartnerRequestStatus.ACCEPTED}
            assert OutboxMessage.objects.filter(
                topic="rewards.claim.created", status=OutboxStatus.PENDING
            ).exists()

            # ... and once the broker is back (empty: it kept nothing), the sweepers deliver it
            private_redis.start()
            sweep_until_everything_is_delivered(receiver, worker, callbacks=len(during) + 2)
    finally:
        worker.stop()
    assert_applied_once_and_signed(platform, receiver, ["before-outage", *during], claims=1)


def test_a_web_process_killed_between_commit_and_publish_loses_nothing(
    platform, private_redis, receiver, log_dir
):
    # Given a web process whose broker hangs mid-publish (the worker on a working broker starts
    # once it is dead: a worker starting wakes the drain slots, and one doing so during the
    # accept would take the request's slot, so the web would answer without publishing)
    hung_broker = BlackHole()
    web = WebServer(broker_url=hung_broker.url(), log_dir=log_dir)
    worker = None
    replies: dict[str, object] = {}

    def call(name, path, body, token):
        try:
            replies[name] = requests.post(
                f"{web.url}{path}", json=body, headers=bearer(token), timeout=60
            )
        except requests.RequestException as exc:
            replies[name] = exc

    try:
        web.wait_ready()
        calls = [
            threading.Thread(
                target=call,
                args=(
                    "points",
                    "/api/v1/points",
                    platform.point_body("killed-web", f"{receiver.url}/callback"),
                    platform.partner_token,
                ),
            ),
            threading.Thread(
                target=call,
                args=(
                    "claim",
                    "/rewards/admin/claims",
                    platform.claim_body(),
                    platform.admin_token,
                ),
            ),
        ]
        for thread in calls:
            thread.start()

        # When both requests have committed and hang in the publish, the web process is killed
        wait_until(
            lambda: (
                PartnerRequest.objects.filter(request_id="killed-web").exists()
                and OutboxMessage.objects.filter(topic="rewards.claim.created").exists()
            ),
            timeout=30,
            message="the web process never committed",
        )
        assert replies == {}, "a reply came back before the publish"
        web.process.kill()
        for thread in calls:
            thread.join()
        assert all(isinstance(reply, requests.RequestException) for reply in replies.values())
        hung_broker.close()
        assert private_redis.queue_length(celery_app.conf.task_default_queue) == 0

        # Then a worker and the sweepers send what the dead process never published
        worker = Supervised(
            lambda: celery_worker(broker_url=private_redis.url(), log_dir=log_dir, name="after-web")
        )
        with broker_at(private_redis.url()):
            sweep_until_everything_is_delivered(receiver, worker, callbacks=2)
    finally:
        web.process.stop()
        hung_broker.close()
        if worker is not None:
            worker.stop()
    assert_applied_once_and_signed(platform, receiver, ["killed-web"], claims=1)
