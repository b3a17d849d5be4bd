"""Hot paths stay light: pinned query counts beyond each contract's own pins, list pages that do
not grow with their rows, and the shortcuts that replace generic machinery (issue 10)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import AccessToken

from integrations.outbox import outbox_enqueue
from integrations.partner.api import _count_in_window
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from integrations.partner.services import partner_request_process
from points import services as point_services
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
    # savepoint: lock the account (with the issued account's id), look for the idempotency key
    # on lots and transfers at once, update the account, lifetime tier, insert the transfer and
    # the lot; mark the request; write the callback to the outbox; 2 savepoint statements of
    # the task's transaction.
    with django_assert_num_queries(13):
        partner_request_process(partner_request_id=request.pk)

    # then it succeeded
    request.refresh_from_db()
    assert request.status == PartnerRequestStatus.SUCCEEDED


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
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
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
