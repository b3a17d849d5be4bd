"""Per-client rate limits: over the rate a client gets 429 with Retry-After; others do not."""

import pytest

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
