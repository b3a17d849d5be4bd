"""Limits: bodies over the maximum size are 413, page sizes are capped, arrays over their limit
are 400, rate limits answer 429 with Retry-After, and amounts beyond a sane maximum or that are
not whole numbers are 400; nothing changes on any refusal.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from integrations.clients import api_client_create
from integrations.follower.services import MAX_ITEMS_PER_REQUEST
from points import services as point_services
from points.services import MAX_POINTS_PER_OPERATION
from rewards.services import MAX_AMOUNT, MAX_CLAIM_ITEMS
from tests.reliability.support import db_fingerprint, fingerprint_changes, free_port
from tests.reliability.worlds import token_for
from tests.reliability.writers import basic
from tests.security.conftest import Caller
from tests.security.test_tenant_isolation import schema_operations

pytestmark = pytest.mark.django_db

NOT_WHOLE_NUMBERS = [1.5, "100", True, None, [1], {"value": 1}]


def unchanged(call):
    """Make the call; return its response after checking the database did not change."""
    before = db_fingerprint()
    response = call()
    assert fingerprint_changes(before, db_fingerprint()) == [], response.content
    return response


# --- body size ---------------------------------------------------------------------------------


def test_every_write_with_a_body_over_the_maximum_is_413_and_changes_nothing(settings, world_a):
    # Given a small maximum, and a partner's token
    settings.LOYALTY_MAX_BODY_BYTES = 4096
    caller = Caller(Authorization=f"Bearer {world_a.partners[0][1]}")
    oversized = {"padding": "x" * 4096}
    writes = [
        (method, path.replace("{", "").replace("}", ""))
        for method, path, _requirements in schema_operations()
        if method in {"POST", "PUT", "PATCH"}
    ]
    assert len(writes) >= 15

    # When each write of the API (and the portal's sign-in form) gets an oversized body
    statuses = {
        f"{method} {path}": unchanged(lambda m=method, p=path: caller(m, p, oversized))
        for method, path in [*writes, ("POST", "/portal/login/")]
    }

    # Then each is refused with 413 before anything reads it
    assert {name: r.status_code for name, r in statuses.items() if r.status_code != 413} == {}
    assert {r.json()["code"] for r in statuses.values()} == {"payload_too_large"}


def test_the_shipped_maximum_refuses_two_megabytes_and_admits_a_full_follower_batch(world_a):
    # Given the shipped maximum (2 MiB), and a master with a batch of the seed's 1000 items
    _created, token = world_a.masters[0]
    caller = Caller(Authorization=f"Bearer {token}")
    batch = [
        {
            "contactId": f"contact-{index}",
            "amount": 5,
            "definitionId": world_a.follower_program.definition_id,
            "timeStamp": "2024-06-01T08:40:51.658Z",
            "source": "Purchase",
            "description": "Gilded gauntlets of the sun, with a long description " * 3,
        }
        for index in range(MAX_ITEMS_PER_REQUEST)
    ]

    # When the body is one byte over the maximum
    over = unchanged(lambda: caller("POST", "/api/v1/points", {"padding": "x" * (2 * 1024 * 1024)}))

    # Then 413; and the largest legitimate body is well inside the limit
    assert over.status_code == 413
    assert caller("POST", "/api/v2/point-accounts/transactions", batch).status_code == 202


def test_a_content_length_that_is_not_a_number_is_400():
    response = Client().post(
        "/api/v1/points", data=b"{}", content_type="application/json", CONTENT_LENGTH="many"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_content_length"


# --- page sizes --------------------------------------------------------------------------------


def test_page_sizes_are_capped(world_a):
    # Given 120 transfers on a member's account and a reward history of 120 grants
    member = world_a.members[0]
    for _ in range(120):
        point_services.earn(program=world_a.program, member=member, amount=1)
    admin_client = api_client_create(
        organization=world_a.org, name="admin", scopes=["rewards:admin"]
    )
    admin = Caller(
        Authorization=f"Bearer {token_for(admin_client.client.application, ['rewards:admin'])}"
    )
    profiles = Caller(Authorization=f"Bearer {world_a.profile_clients[0][1]}")
    user = Caller(Authorization=f"Bearer {world_a.member_tokens[0]}")

    # When clients ask for more than a page may hold
    log = profiles("GET", f"/api/v1/customers/{member.external_id}/point-log?limit=100000")
    refused = {
        path: user_or_admin("GET", path).status_code
        for user_or_admin, path in [
            (admin, "/rewards/admin/types?limit=1001"),
            (admin, "/rewards/admin/claims?limit=100000"),
            (user, "/rewards/user/history?limit=101"),
            (user, "/rewards/user/claims?limit=1000"),
            (user, "/rewards/user/purchases?limit=0"),
            (admin, "/rewards/admin/types?limit=-1"),
            (admin, "/rewards/admin/types?limit=ten"),
            # past the database's 64-bit OFFSET (was a 500, found by the fuzzer)
            (admin, "/rewards/admin/operations?offset=2787747917069957464064"),
        ]
    }

    # Then the logs answer at most 100 rows and a cursor for the rest; the rewards API says 400
    assert log.status_code == 200
    assert len(log.json()["results"]) == 100
    assert log.json()["nextCursor"]
    assert set(refused.values()) == {400}, refused
    assert admin("GET", "/rewards/admin/types?limit=1000").status_code == 200


# --- arrays ------------------------------------------------------------------------------------


def test_arrays_over_their_limit_are_400_and_change_nothing(world_a):
    # Given each array a client may send, one item over its limit
    master = Caller(Authorization=f"Bearer {world_a.masters[0][1]}")
    member = Caller(Authorization=f"Bearer {world_a.member_tokens[0]}")
    profiles = Caller(Authorization=f"Bearer {world_a.profile_clients[0][1]}")
    definition = world_a.follower_program.definition_id
    stamp = "2024-06-01T08:40:51.658Z"
    reward_type = world_a.services[0][2].reward_type.reward_type
    too_many = MAX_ITEMS_PER_REQUEST + 1
    calls = {
        "follower transactions": lambda: master(
            "POST",
            "/api/v2/point-accounts/transactions",
            [{"contactId": "c", "amount": 1, "definitionId": definition, "timeStamp": stamp}]
            * too_many,
        ),
        "follower balances": lambda: master(
            "POST",
            "/api/v2/point-accounts/balances",
            [{"contactId": "c", "amount": 1, "definitionId": definition, "timeStamp": stamp}]
            * too_many,
        ),
        "claim items": lambda: member(
            "POST",
            "/rewards/user/claims",
            {"items": [{"reward_type": reward_type, "amount": 1}] * (MAX_CLAIM_ITEMS + 1)},
        ),
        "customer tags": lambda: profiles(
            "POST",
            f"/api/v1/customers/{world_a.members[0].external_id}/tags",
            {"tags": [f"tag-{n}" for n in range(51)]},
        ),
    }

    # When each is sent
    statuses = {name: unchanged(call).status_code for name, call in calls.items()}

    # Then each is refused with 400
    assert statuses == dict.fromkeys(calls, 400)


# --- rate limits -------------------------------------------------------------------------------


def test_a_partner_over_its_rate_gets_429_with_retry_after_and_nothing_is_stored(settings, world_a):
    # Given a rate of 3 requests a minute per client
    settings.PARTNER_API_RATE = "3/m"
    caller = Caller(Authorization=f"Bearer {world_a.partners[0][1]}")
    other = Caller(Authorization=f"Bearer {world_a.partners[1][1]}")

    def earn(who, request_id):
        return who(
            "POST",
            "/api/v1/points",
            {
                "userId": world_a.members[0].external_id,
                "ruleId": str(world_a.earn_rule.pk),
                "amount": 5,
                "requestId": request_id,
                "callbackUrl": world_a.callback_url,
            },
        )

    # When a client sends a fourth within the minute
    accepted = [earn(caller, f"rate-{n}").status_code for n in range(3)]
    throttled = unchanged(lambda: earn(caller, "rate-4"))

    # Then it gets 429 with Retry-After, and another client is not slowed down
    assert accepted == [202, 202, 202]
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert throttled.json()["code"] == "throttled"
    assert earn(other, "rate-other").status_code == 202


def test_partner_requests_are_accepted_while_the_rate_limit_cache_is_down(settings, world_a):
    # Given a cache (Redis) that cannot be reached
    settings.CACHES = {
        "default": {
            "BACKEND": "loyalty.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    caller = Caller(Authorization=f"Bearer {world_a.partners[0][1]}")

    # When a partner sends a request
    response = caller(
        "POST",
        "/api/v1/points",
        {
            "userId": world_a.members[0].external_id,
            "ruleId": str(world_a.earn_rule.pk),
            "amount": 5,
            "requestId": "cache-down",
            "callbackUrl": world_a.callback_url,
        },
    )

    # Then it is accepted: an outage of the limiter must not stop the ledger
    assert response.status_code == 202, response.content


# --- amounts -----------------------------------------------------------------------------------


def _amount_calls(world):
    """(name, the largest amount allowed, a call sending `value` as the amount)."""
    partner = Caller(Authorization=f"Bearer {world.partners[0][1]}")
    vendor = world.vendors[0]
    eai = Caller(Authorization=basic(vendor.eai_username, vendor.eai_secret)["Authorization"])
    master = Caller(Authorization=f"Bearer {world.masters[0][1]}")
    member = Caller(Authorization=f"Bearer {world.member_tokens[0]}")
    profiles = Caller(Authorization=f"Bearer {world.profile_clients[0][1]}")
    user_id = world.members[0].external_id
    definition = world.follower_program.definition_id
    stamp = dt.datetime(2024, 6, 1, tzinfo=dt.UTC).isoformat()
    return [
        (
            "partner amount",
            MAX_POINTS_PER_OPERATION,
            lambda v: partner(
                "POST",
                "/api/v1/points",
                {
                    "userId": user_id,
                    "ruleId": str(world.earn_rule.pk),
                    "amount": v,
                    "requestId": f"amount-{v!r}",
                    "callbackUrl": world.callback_url,
                },
            ),
        ),
        (
            "EAI pointstodeduct",
            MAX_POINTS_PER_OPERATION,
            lambda v: eai(
                "POST",
                "/eai/v1/points?commit",
                {"userid": user_id, "pointstodeduct": v, "transactionid": f"tx-{v!r}"},
            ),
        ),
        (
            "follower transaction amount",
            MAX_POINTS_PER_OPERATION,
            lambda v: master(
                "POST",
                "/api/v2/point-accounts/transactions",
                [{"contactId": "c-1", "amount": v, "definitionId": definition, "timeStamp": stamp}],
            ),
        ),
        (
            "follower balance amount",
            MAX_POINTS_PER_OPERATION,
            lambda v: master(
                "POST",
                "/api/v2/point-accounts/balances",
                [{"contactId": "c-1", "amount": v, "definitionId": definition, "timeStamp": stamp}],
            ),
        ),
        (
            "store purchase quantity",
            MAX_AMOUNT,
            lambda v: member(
                "POST",
                "/rewards/user/purchases",
                {"reward_type": world.priced_type.reward_type, "quantity": v},
            ),
        ),
        (
            "claim amount",
            MAX_AMOUNT,
            lambda v: member(
                "POST",
                "/rewards/user/claims",
                {"items": [{"reward_type": world.priced_type.reward_type, "amount": v}]},
            ),
        ),
        (
            "offer purchase quantity",
            1000,
            lambda v: profiles(
                "POST",
                f"/api/v1/customers/{user_id}/purchases",
                {"offerId": str(world.offer.pk), "quantity": v},
            ),
        ),
    ]


def test_amounts_beyond_the_maximum_or_not_whole_numbers_are_400_and_change_nothing(world_a):
    wrong = []
    for name, maximum, call in _amount_calls(world_a):
        for value in [maximum + 1, 2**63, -(maximum + 1), *NOT_WHOLE_NUMBERS]:
            before = db_fingerprint()
            response = call(value)
            changed = fingerprint_changes(before, db_fingerprint())
            if response.status_code != 400 or changed:
                wrong.append(f"{name} = {value!r}: {response.status_code}, changed {changed}")
    assert wrong == []
