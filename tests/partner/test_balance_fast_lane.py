"""The partner balance read in the fast lane (integrations/partner/fast_lane.py): a plain read
is answered there exactly as PointBalanceDetailApi answers it, and everything else reaches the
view, whose answer it then is (the lane never refuses anything itself)."""

from __future__ import annotations

import pytest

from integrations.clients import ApiClientAuthentication
from integrations.partner.api import (
    PartnerClientThrottle,
    PartnerScopes,
    PartnerTokenRequired,
    PointBalanceDetailApi,
)
from points import services as point_services
from tests.fast_lane_support import FastLaneClient, answer, answered_by_lane
from tests.partner.conftest import issue_token

pytestmark = pytest.mark.django_db


def balance_url(org_id, user_id, prefix="/api/v1", program_key="default"):
    return f"{prefix}/orgs/{org_id}/point-programs/{program_key}/balances/{user_id}"


def get(client, url, token=None, **extra):
    if token:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get(url, **extra)


def through_django(client, settings, call):
    """`call`'s answer with the lane off: Django's."""
    settings.LOYALTY_FAST_LANE = False
    try:
        response = call()
    finally:
        settings.LOYALTY_FAST_LANE = True
    assert not answered_by_lane(response)
    return response


@pytest.mark.parametrize("prefix", ["/api/v1", "/latitude-points"])
@pytest.mark.parametrize("secure", [False, True])
def test_a_plain_read_is_answered_by_the_lane_as_the_view_answers_it(
    client, settings, token, org, program, member, prefix, secure
):
    settings.SECURE_HSTS_SECONDS = 3600  # on https replies only, as Django's middleware does
    client = FastLaneClient()  # its middleware reads the setting
    point_services.earn(program=program, member=member, amount=120)
    url = balance_url(org.pk, member.external_id, prefix)

    lane = get(client, url, token, secure=secure)
    django = through_django(client, settings, lambda: get(client, url, token, secure=secure))

    assert answered_by_lane(lane)
    assert answer(lane) == answer(django)
    assert lane.json()["balance"] == 120
    assert ("strict-transport-security" in answer(lane)[1]) is secure


@pytest.mark.parametrize("forwarded_proto", ["https", "http"])
def test_behind_production_s_https_proxy_the_lane_answers_as_django_does(
    settings, token, org, program, member, forwarded_proto
):
    # loyalty/settings/production.py: https only, HSTS, the proxy says which scheme it took.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    client = FastLaneClient()
    url = balance_url(org.pk, member.external_id)

    def read():
        return get(client, url, token, HTTP_X_FORWARDED_PROTO=forwarded_proto)

    lane = read()
    django = through_django(client, settings, read)

    assert answered_by_lane(lane) is (forwarded_proto == "https")
    assert answer(lane) == answer(django)
    assert lane.status_code == (200 if forwarded_proto == "https" else 301)


def test_the_lane_reads_in_one_statement(
    client, token, org, program, member, django_assert_num_queries
):
    point_services.earn(program=program, member=member, amount=10)
    url = balance_url(org.pk, member.external_id)
    # the token with its client and organisation, and the program, member, account and tier
    with django_assert_num_queries(1):
        response = get(client, url, token)
    assert answered_by_lane(response)


REQUESTS = {
    "no token": lambda c, org, member, token, other: get(c, balance_url(org.pk, member)),
    "unknown token": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member), "not-a-token"
    ),
    "Basic credentials": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member), HTTP_AUTHORIZATION="Basic eDp5"
    ),
    "another organisation": lambda c, org, member, token, other: get(
        c, balance_url(other.pk, member), token
    ),
    "not an organisation id": lambda c, org, member, token, other: get(
        c, balance_url("nope", member), token
    ),
    "unknown program": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member, program_key="nope"), token
    ),
    "unknown member": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, "nobody"), token
    ),
    "a query string": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member) + "?format=json", token
    ),
    "another Accept": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member), token, HTTP_ACCEPT="text/html"
    ),
    "HEAD": lambda c, org, member, token, other: c.head(
        balance_url(org.pk, member), HTTP_AUTHORIZATION=f"Bearer {token}"
    ),
    "a trailing slash": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member) + "/", token
    ),
    "a host not allowed": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member), token, HTTP_HOST="evil.example"
    ),
    "a body too large": lambda c, org, member, token, other: get(
        c, balance_url(org.pk, member), token, CONTENT_LENGTH=str(10**9)
    ),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_anything_else_is_the_views_answer(
    client, settings, token, org, program, member, make_org, name
):
    settings.ALLOWED_HOSTS = ["testserver"]
    other = make_org()
    call = REQUESTS[name]

    response = call(client, org, member.external_id, token, other)
    django = through_django(
        client, settings, lambda: call(client, org, member.external_id, token, other)
    )

    assert not answered_by_lane(response)
    assert answer(response) == answer(django)
    assert response.status_code != 200 or name in ("a query string", "HEAD")


def test_a_token_without_points_read_is_the_views_401(client, org, program, member, make_partner):
    token = issue_token(client, make_partner(org, scopes=["points:earn"]))

    response = get(client, balance_url(org.pk, member.external_id), token)

    assert not answered_by_lane(response)
    assert response.status_code == 401


def test_an_inactive_client_is_the_views_401(client, partner, token, org, program, member):
    partner.client.active = False
    partner.client.save(update_fields=["active"])

    response = get(client, balance_url(org.pk, member.external_id), token)

    assert not answered_by_lane(response)
    assert response.status_code == 401


def test_a_throttled_read_is_the_views_429_counted_against_the_window_once_more_at_most(
    client, settings, token, org, program, member
):
    settings.PARTNER_API_RATE = "2/m"
    url = balance_url(org.pk, member.external_id)

    answers = [get(client, url, token) for _ in range(3)]

    assert [answered_by_lane(response) for response in answers] == [True, True, False]
    assert answers[2].status_code == 429
    assert answers[2]["Retry-After"]


def test_with_the_lane_off_django_answers_every_read(client, settings, token, org, member):
    settings.LOYALTY_FAST_LANE = False

    response = get(client, balance_url(org.pk, member.external_id), token)

    assert response.status_code in (200, 404)
    assert not answered_by_lane(response)


def test_the_lane_makes_every_check_the_view_makes():
    # The lane repeats the view's checks: one added to the view must be added to the lane.
    assert PointBalanceDetailApi.authentication_classes == [ApiClientAuthentication]
    assert PointBalanceDetailApi.permission_classes == [PartnerTokenRequired, PartnerScopes]
    assert PointBalanceDetailApi.throttle_classes == [PartnerClientThrottle]
