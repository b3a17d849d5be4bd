"""Per-client rate limits: over the rate a client gets 429 with Retry-After; others do not."""

import secrets

import pytest
from django.core.cache import cache

from integrations.partner.api import QUOTA_SHARES, _quota_left, _take_from_window
from tests.partner.conftest import issue_token, point_body, post_points

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_dns")]


def test_a_client_over_its_rate_gets_429_with_retry_after(
    client, settings, org, partner, make_partner, earn_rule, member
):
    settings.PARTNER_API_RATE = "2/m"
    token = issue_token(client, partner)
    other_token = issue_token(client, make_partner(org, rules=[earn_rule]))

    statuses = [
        post_points(client, token, point_body(user_id=member.external_id, rule=earn_rule))
        for _ in range(3)
    ]

    assert [r.status_code for r in statuses] == [202, 202, 429]
    throttled = statuses[-1]
    assert throttled.json()["code"] == "throttled"
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert throttled.json()["details"]["retryAfter"] == int(throttled["Retry-After"])
    # The limit is per client: another partner is not slowed down by this one.
    other = post_points(client, other_token, point_body(user_id=member.external_id, rule=earn_rule))
    assert other.status_code == 202


def test_the_balance_read_counts_against_the_same_limit(client, settings, org, partner, member):
    settings.PARTNER_API_RATE = "1/m"
    token = issue_token(client, partner)
    url = f"/api/v1/orgs/{org.pk}/point-programs/default/balances/{member.external_id}"

    first = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    second = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert (first.status_code, second.status_code) == (200, 429)
    assert "Retry-After" in second


def test_a_high_limit_is_taken_in_shares_and_never_exceeded():
    # given a limit high enough to be taken in shares of three requests
    key = f"test-share-{secrets.token_hex(4)}"
    limit = QUOTA_SHARES * 3

    # when one process takes the window five requests past its limit
    allowed = [_take_from_window(key, window=7, limit=limit, timeout=5) for _ in range(limit + 5)]

    # then exactly the limit passes, and the shared counter moved once per share
    assert allowed == [True] * limit + [False] * 5
    assert cache.get(f"{key}:7") == limit + 5 * 3


def test_shares_taken_by_other_processes_count_against_the_limit():
    # given a limit taken in shares of two, and every request served by a new process
    key = f"test-share-{secrets.token_hex(4)}"
    limit = QUOTA_SHARES * 2
    granted = 0
    for _ in range(limit * 2):
        _quota_left.clear()
        granted += _take_from_window(key, window=1, limit=limit, timeout=5)

    # then each process used one request of its share of two: never more than the limit
    assert granted == limit // 2
