"""seed_demo's partner part: a working client with every partner scope, fresh credentials on
every run, earn and burn rules it may use, and a registered signing key that signs requests."""

import json

import pytest
from django.core.management import call_command

from integrations.http_signatures import sign_request
from integrations.models import ApiClient
from integrations.partner.demo import partner_demo_part
from points import services as point_services
from points.models import PointRule, RuleKind
from tests.partner.conftest import post_points

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_dns")]

PARTNER_KEYS = {
    "client_id",
    "client_secret",
    "token_url",
    "earn_rule_id",
    "burn_rule_id",
    "scopes",
    "webhook_secret",
    "signing_key_id",
    "signing_private_key_pem",
}


def _token(client, part, secret=None):
    return client.post(
        part["token_url"],
        {
            "grant_type": "client_credentials",
            "client_id": part["client_id"],
            "client_secret": secret or part["client_secret"],
        },
    )


def test_the_demo_partner_part_drives_the_api(client, org, program, member):
    part = partner_demo_part({"organization": org, "program": program})

    assert set(part) == PARTNER_KEYS
    assert part["scopes"] == [
        "points:earn",
        "points:burn",
        "points:read",
        "customers:read",
        "customers:write",
        "rewards:admin",
    ]
    assert part["webhook_secret"].startswith("whsec_")
    token_reply = _token(client, part)
    assert token_reply.status_code == 200
    assert set(token_reply.json()["scope"].split()) == set(part["scopes"])
    assert PointRule.objects.get(pk=part["earn_rule_id"]).kind == RuleKind.EARN
    assert PointRule.objects.get(pk=part["burn_rule_id"]).kind == RuleKind.BURN

    # A signed burn of a member's points with the demo's own key is accepted.
    point_services.earn(program=program, member=member, amount=50)
    raw = json.dumps(
        {
            "userId": member.external_id,
            "ruleId": part["burn_rule_id"],
            "amount": 10,
            "requestId": "demo-burn-1",
            "callbackUrl": "https://partner.example/callback",
        }
    ).encode()
    headers = sign_request(
        method="POST",
        path_with_query="/api/v1/points",
        body=raw,
        key_id=part["signing_key_id"],
        private_key_pem=part["signing_private_key_pem"],
    )
    response = post_points(client, token_reply.json()["access_token"], raw, **headers)
    assert response.status_code == 202, response.content


def test_the_partner_part_is_idempotent_and_resets_the_credentials(client, org, program):
    context = {"organization": org, "program": program}
    first = partner_demo_part(context)
    second = partner_demo_part(context)

    assert ApiClient.objects.filter(name="Demo partner").count() == 1
    assert PointRule.objects.filter(name__startswith="Demo partner").count() == 2
    assert (second["client_id"], second["earn_rule_id"], second["burn_rule_id"]) == (
        first["client_id"],
        first["earn_rule_id"],
        first["burn_rule_id"],
    )
    for key in ("client_secret", "webhook_secret", "signing_private_key_pem"):
        assert first[key] != second[key]
    assert _token(client, first).status_code == 401
    assert _token(client, second).status_code == 200
    assert ApiClient.objects.get(name="Demo partner").webhook_secret == second["webhook_secret"]


def test_seed_demo_json_prints_the_partner_part(capsys):
    # The whole command, with every app's part: the partner part is registered and filled.
    call_command("seed_demo", "--json")

    printed = json.loads(capsys.readouterr().out)
    assert set(printed["partner"]) == PARTNER_KEYS
