"""Hot paths stay light: pinned query counts beyond each contract's own pins, list pages that do
not grow with their rows, and the shortcuts that replace generic machinery (issue 10)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken

from integrations.models import OutboxMessage, OutboxStatus
from integrations.outbox import outbox_deliver, outbox_enqueue
from integrations.partner.api import _count_in_window
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import partner_request_process
from loyalty.engagement.models import MemberTier
from loyalty.engagement.services import tier_create
from points import services as point_services
from points.models import RuleUsage
from tests.conftest import is_postgres
from tests.partner.conftest import point_body, post_points

pytestmark = pytest.mark.django_db


def test_processing_an_accepted_earn_is_pinned(
    client, token, earn_rule, program, member, public_dns, django_assert_num_queries
):
    # given an accepted earn of a member who has earned before (account and tier exist)
    point_services.earn(program=program, member=member, amount=1)
    assert post_points(client, token, point_body(user_id=member.external_id, rule=earn_rule))
    request = PartnerRequest.objects.get()

    # when a worker processes it: lock the request (with client, rule, member); in the ledger's
    # savepoint: lock the account (with the issued account's id, and whether the program has
    # lifetime tiers: it has none, so no tier query), look for the idempotency key on lots and
    # transfers at once, update the account, insert the transfer and the lot; mark the request;
    # write the callback to the outbox; 2 savepoint statements of the task's transaction.
    with django_assert_num_queries(12):
        partner_request_process(partner_request_id=request.pk)

    # then it succeeded
    request.refresh_from_db()
    assert request.status == PartnerRequestStatus.SUCCEEDED


def test_a_rule_with_a_member_limit_counts_the_usage_in_one_statement(
    client, token, earn_rule, program, member, public_dns, django_assert_num_queries
):
    # given an accepted earn under a rule with a per-member limit, by a member who has earned
    # under it before (the period's usage row exists) and one who has not
    earn_rule.member_limit = 1000
    earn_rule.save()
    point_services.earn(program=program, member=member, amount=1)
    for request_id in ("limit-1", "limit-2"):
        body = point_body(user_id=member.external_id, rule=earn_rule, request_id=request_id)
        assert post_points(client, token, body)
    first, second = PartnerRequest.objects.order_by("pk")

    # when a worker processes them: the 12 statements of any earn (whose one savepoint covers
    # the usage too), and the usage counted by one upsert, whether it creates the period's row
    # or adds to it
    for request in (first, second):
        with django_assert_num_queries(12 + 1):
            partner_request_process(partner_request_id=request.pk)

    # then both succeeded and the usage holds both
    assert [r.status for r in PartnerRequest.objects.order_by("pk")] == [
        PartnerRequestStatus.SUCCEEDED
    ] * 2
    assert RuleUsage.objects.get(rule=earn_rule, member=member).used == 2 * first.amount


@pytest.mark.parametrize(("lifetime_tiers", "queries"), [(False, 6), (True, 7)])
def test_an_earn_looks_up_the_tier_only_in_a_program_with_lifetime_tiers(
    program, member, lifetime_tiers, queries, django_assert_num_queries
):
    # given a member who has earned before (account, and tier when the program has tiers)
    if lifetime_tiers:
        tier_create(program=program, name="Member", threshold=0)
    point_services.earn(program=program, member=member, amount=1)

    # when they earn again: in the ledger's savepoint, lock the account (with the issued
    # account's id and whether the program has lifetime tiers), update it, with tiers one query
    # that finds the tier unchanged, insert the transfer and the lot
    with django_assert_num_queries(queries):
        point_services.earn(program=program, member=member, amount=1)

    # then the member stays in their tier
    assert MemberTier.objects.filter(member=member).count() == int(lifetime_tiers)


def test_a_worker_delivers_the_callback_itself_right_after_commit(
    client, token, earn_rule, member, settings, receiver, django_capture_on_commit_callbacks
):
    # given an accepted earn whose callback goes to a local receiver
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True
    body = point_body(user_id=member.external_id, rule=earn_rule, callback_url=receiver.url)
    post_points(client, token, body)
    request = PartnerRequest.objects.get()

    # when the worker's transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        partner_request_process(partner_request_id=request.pk)

    # then the callback has been delivered by that same call, with no task in between
    assert [r.json()["requestId"] for r in receiver.requests] == [body["requestId"]]
    message = OutboxMessage.objects.get()
    assert (message.status, message.attempts) == (OutboxStatus.DELIVERED, 1)
    assert list(message.attempt_log.values_list("number", "status_code")) == [(1, 200)]


# Recording a delivered attempt: one statement on PostgreSQL; elsewhere the attempt's insert and
# the message's update in a transaction (2 savepoint statements inside the test's transaction).
RECORD_DELIVERED_QUERIES = 1 if is_postgres() else 4


def test_the_workers_own_first_attempt_is_pinned(
    client,
    token,
    earn_rule,
    member,
    settings,
    receiver,
    django_capture_on_commit_callbacks,
    django_assert_num_queries,
):
    # given an earn processed by a worker, whose callback the worker will send after commit
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True
    body = point_body(user_id=member.external_id, rule=earn_rule, callback_url=receiver.url)
    post_points(client, token, body)
    with django_capture_on_commit_callbacks() as after_commit:
        partner_request_process(partner_request_id=PartnerRequest.objects.get().pk)

    # when it does: the message was written leased to it, so it only records the attempt
    with django_assert_num_queries(RECORD_DELIVERED_QUERIES):
        for callback in after_commit:
            callback()

    # then it was delivered
    assert OutboxMessage.objects.get().status == OutboxStatus.DELIVERED
    assert [r.json()["requestId"] for r in receiver.requests] == [body["requestId"]]


def test_a_message_leased_to_its_worker_waits_for_that_worker(
    client, token, earn_rule, member, settings, receiver
):
    # given a processed earn whose worker has not made its first attempt yet
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True
    body = point_body(user_id=member.external_id, rule=earn_rule, callback_url=receiver.url)
    post_points(client, token, body)
    partner_request_process(partner_request_id=PartnerRequest.objects.get().pk)
    message = OutboxMessage.objects.get()

    # when another worker (a sweep) tries it, and again once the lease has run out
    early = outbox_deliver(message_id=str(message.pk))
    late = outbox_deliver(
        message_id=str(message.pk),
        now=timezone.now() + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS + 1),
    )

    # then it waits while the lease holds, and is sent (its second attempt) once it has run out
    assert (early.sent, early.status) == (False, OutboxStatus.PENDING)
    assert (late.sent, late.status) == (True, OutboxStatus.DELIVERED)
    assert list(message.attempt_log.values_list("number", flat=True)) == [2]


def test_delivering_a_callback_is_pinned(
    client, token, earn_rule, member, settings, receiver, django_assert_num_queries
):
    # given a callback waiting in the outbox for a local receiver (its worker never tried it)
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True
    body = point_body(user_id=member.external_id, rule=earn_rule, callback_url=receiver.url)
    post_points(client, token, body)
    partner_request_process(partner_request_id=PartnerRequest.objects.get().pk)
    message = OutboxMessage.objects.get()
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())

    # when a worker makes the attempt: take the lease (which returns the message), then record
    # the delivered attempt
    with django_assert_num_queries(1 + RECORD_DELIVERED_QUERIES):
        outcome = outbox_deliver(message_id=str(message.pk))

    # then it was delivered
    assert outcome.status == OutboxStatus.DELIVERED
    assert [r.json()["requestId"] for r in receiver.requests] == [body["requestId"]]


def test_callbacks_to_one_receiver_reuse_one_connection(client, token, earn_rule, member, settings):
    # given a receiver that keeps connections open (HTTP/1.1), and three accepted earns
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True
    receiver = KeepAliveReceiver()
    try:
        for _ in range(3):
            body = point_body(user_id=member.external_id, rule=earn_rule, callback_url=receiver.url)
            post_points(client, token, body)
        # when each is processed and its callback delivered
        for request in PartnerRequest.objects.order_by("pk"):
            partner_request_process(partner_request_id=request.pk)
        OutboxMessage.objects.update(next_attempt_at=timezone.now())
        for message in OutboxMessage.objects.all():
            assert outbox_deliver(message_id=str(message.pk)).status == OutboxStatus.DELIVERED
    finally:
        receiver.stop()

    # then the three callbacks came over one connection
    assert len(receiver.bodies) == 3
    assert len(receiver.connections) == 1


class KeepAliveReceiver:
    """A local HTTP/1.1 receiver that records its connections."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.connections: list[tuple] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                receiver.connections.append(self.client_address)

            def do_POST(self):
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _earned_members(org, make_member, program, count):
    for _ in range(count):
        member = make_member(org)
        point_services.earn(program=program, member=member, amount=10)
        point_services.hold_create(
            program=program, member=member, amount=1, owner="vendor:x", transaction_id=member.pk
        )
        outbox_enqueue(topic="t", url="https://example.invalid/", payload={}, organization=org)


@pytest.mark.parametrize(
    "page",
    [
        "points_transfer",
        "points_pointaccount",
        "points_pointlot",
        "points_hold",
        # integrations_outboxmessage: one query per row for its organisation until
        # OutboxMessageAdmin gets list_select_related = ["organization"] (integrations/admin.py)
    ],
)
def test_operator_list_pages_do_not_query_per_row(
    admin_client, org, make_member, program, page, django_assert_max_num_queries
):
    # given a page with 2 rows of each kind, and its query count
    _earned_members(org, make_member, program, 2)
    url = reverse(f"admin:{page}_changelist")
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200

    # when 10 more rows of each kind exist, then the page costs no more queries
    _earned_members(org, make_member, program, 10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert admin_client.get(url).status_code == 200


def test_the_rate_counter_counts_every_request_of_the_window():
    key = f"perf-test-{secrets.token_hex(4)}"
    assert [_count_in_window(key, timeout=5) for _ in range(3)] == [1, 2, 3]
    assert cache.get(key) == 3


@pytest.mark.redis
def test_the_rate_counter_on_redis_is_one_round_trip_with_an_expiry(settings):
    # given Django's cache on Redis
    settings.CACHES = {
        "default": {
            "BACKEND": "loyalty.cache.RedisCache",
            "LOCATION": settings.CELERY_BROKER_URL,
        }
    }
    from django.core.cache import caches

    backend = caches["default"]
    key = f"perf-test-{secrets.token_hex(4)}"
    try:
        # when a window's counter is taken three times
        counts = [_count_in_window(key, timeout=5) for _ in range(3)]

        # then it counts, Django's cache reads it, and the key expires with its window
        assert counts == [1, 2, 3]
        assert backend.get(key) == 3
        full_key = backend.make_and_validate_key(key)
        assert 0 < backend._cache.get_client(full_key).ttl(full_key) <= 5
    finally:
        backend.delete(key)


def test_a_token_bound_to_another_resource_is_still_refused(client, partner, org, member):
    # given a valid token restricted (RFC 8707) to another resource server
    raw = secrets.token_urlsafe(30)
    AccessToken.objects.create(
        application=partner.client.application,
        token=raw,
        token_checksum=hashlib.sha256(raw.encode()).hexdigest(),
        expires=timezone.now() + dt.timedelta(hours=1),
        scope="points:read",
        resource=["https://elsewhere.example/api"],
    )
    url = f"/api/v1/orgs/{org.pk}/point-programs/default/balances/{member.external_id}"

    # when it is used here, then the full django-oauth-toolkit check refuses it
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401


def test_an_expired_token_is_refused(client, partner, org, member):
    raw = secrets.token_urlsafe(30)
    AccessToken.objects.create(
        application=partner.client.application,
        token=raw,
        token_checksum=hashlib.sha256(raw.encode()).hexdigest(),
        expires=timezone.now() - dt.timedelta(seconds=1),
        scope="points:read",
    )
    url = f"/api/v1/orgs/{org.pk}/point-programs/default/balances/{member.external_id}"
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


@pytest.mark.redis
def test_the_redis_cache_builds_one_client_per_pool_and_works_across_threads(settings):
    # given the platform's cache backend on Redis
    settings.CACHES = {
        "default": {"BACKEND": "loyalty.cache.RedisCache", "LOCATION": settings.CELERY_BROKER_URL}
    }
    from django.core.cache import caches

    backend = caches["default"]
    key = f"perf-test-{secrets.token_hex(4)}"
    try:
        # when it is used for several operations, from several threads at once
        backend.set(key, 0, timeout=10)

        def add_ones():
            for _ in range(50):
                backend.incr(key)

        threads = [threading.Thread(target=add_ones) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        # then every operation counted, and all used one client (Django builds one per call)
        assert backend.get(key) == 200
        assert backend._cache.get_client(write=True) is backend._cache.get_client(write=True)
    finally:
        backend.delete(key)
