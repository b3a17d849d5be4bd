"""GET .../orgs/{orgId}/point-programs/{programKey}/balances/{userId}, at /api/v1 and at the
seed's /latitude-points prefix: scope points:read, the client's own organisation only."""

import datetime as dt

import pytest
from django.utils import timezone

from integrations.partner.api import PointBalanceDetailApi
from points import services as point_services
from tests.partner.conftest import issue_token

pytestmark = pytest.mark.django_db

PREFIXES = ["/api/v1", "/latitude-points"]


def balance_url(prefix, org_id, user_id, program_key="default"):
    return f"{prefix}/orgs/{org_id}/point-programs/{program_key}/balances/{user_id}"


def get(client, token, url):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(url, **headers)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_balance_reply_has_every_figure(client, token, org, program, member, prefix):
    point_services.earn(program=program, member=member, amount=100)
    point_services.hold_create(
        program=program, member=member, amount=30, owner="vendor:x", transaction_id="t"
    )
    point_services.earn(
        program=program,
        member=member,
        amount=7,
        valid_from=timezone.now() + dt.timedelta(days=3),
    )

    response = get(client, token, balance_url(prefix, org.pk, member.external_id))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "userId": member.external_id,
        "programKey": "default",
        "balance": 100,
        "available": 70,
        "held": 30,
        "pending": 7,
        "tier": None,
    }


def test_the_reply_has_exactly_the_fields_the_api_documents(client, token, org, member):
    documented = PointBalanceDetailApi.OutputSerializer().fields

    reply = get(client, token, balance_url("/api/v1", org.pk, member.external_id)).json()

    assert list(reply) == list(documented)


def test_a_member_without_an_account_has_zero_balance(client, token, org, program, member):
    response = get(client, token, balance_url("/api/v1", org.pk, member.external_id))

    assert response.json()["balance"] == 0


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_token_without_points_read_is_401(client, org, program, member, make_partner, prefix):
    token = issue_token(client, make_partner(org, scopes=["points:earn"]))

    response = get(client, token, balance_url(prefix, org.pk, member.external_id))

    assert response.status_code == 401
    assert response.json()["code"] == "insufficient_scope"
    assert "points:read" in response.json()["message"]


def test_no_token_is_401(client, org, program, member):
    response = get(client, None, balance_url("/api/v1", org.pk, member.external_id))

    assert (response.status_code, response.json()["code"]) == (401, "missing_token")


@pytest.mark.parametrize("org_id", ["other-org", "not-a-uuid"])
def test_another_organisation_is_403_and_reveals_nothing(
    client, token, make_org, make_program, make_member, org_id
):
    other = make_org()
    other_program = make_program(other)
    stranger = make_member(other)
    point_services.earn(program=other_program, member=stranger, amount=55)
    target = other.pk if org_id == "other-org" else org_id

    response = get(client, token, balance_url("/api/v1", target, stranger.external_id))

    assert (response.status_code, response.json()["code"]) == (403, "organization_forbidden")
    assert b"55" not in response.content


def test_a_same_external_id_in_another_organisation_is_not_visible(
    client, token, org, program, make_org, make_program, make_member
):
    other = make_org()
    stranger = make_member(other, external_id="shared-id")
    point_services.earn(program=make_program(other), member=stranger, amount=55)

    response = get(client, token, balance_url("/api/v1", org.pk, "shared-id"))

    assert (response.status_code, response.json()["code"]) == (404, "user_not_found")


def test_unknown_user_and_unknown_program_are_404(client, token, org, program, member):
    unknown_user = get(client, token, balance_url("/api/v1", org.pk, "nobody"))
    unknown_program = get(client, token, balance_url("/api/v1", org.pk, member.external_id, "nope"))

    assert (unknown_user.status_code, unknown_user.json()["code"]) == (404, "user_not_found")
    assert (unknown_program.status_code, unknown_program.json()["code"]) == (
        404,
        "program_not_found",
    )


def test_query_count_of_a_balance_read_by_the_view(
    client, settings, token, org, program, member, django_assert_num_queries
):
    settings.LOYALTY_FAST_LANE = False  # the fast lane's own: tests/partner/test_balance_fast_lane
    point_services.earn(program=program, member=member, amount=10)
    url = balance_url("/api/v1", org.pk, member.external_id)
    # token (with its client and organisation); program, member and account in one.
    with django_assert_num_queries(2):
        assert get(client, token, url).status_code == 200


def test_the_reply_names_the_members_tier(client, token, org, program, member, make_member):
    # given a tier ladder: an entry tier for everyone and Gold at 100 lifetime points
    from loyalty.engagement.models import Tier

    Tier.objects.create(program=program, name="Member", threshold=0)
    Tier.objects.create(program=program, name="Gold", threshold=100)
    newcomer = make_member(org)

    # when the member earns past Gold's threshold
    point_services.earn(program=program, member=member, amount=150)

    # then the balance names the tier reached, and a member who never earned is at the entry tier
    assert (
        get(client, token, balance_url("/api/v1", org.pk, member.external_id)).json()["tier"]
        == "Gold"
    )
    assert (
        get(client, token, balance_url("/api/v1", org.pk, newcomer.external_id)).json()["tier"]
        == "Member"
    )
