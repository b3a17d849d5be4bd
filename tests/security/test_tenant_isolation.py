"""Tenant isolation: for every endpoint that takes an id, a client of organisation A asking for
B's object gets 404 (or 403) and nothing changes; partner credentials get 403 on every admin
endpoint and every endpoint outside their scopes (401 on the seed 001 endpoints, as that seed's
table says).

"Nothing changes" is the whole database (tests/reliability/support.db_fingerprint), except where
a contract keeps the caller's own refused request (seed 001 stores a refusal for its requestId).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator

from integrations.clients import api_client_create
from tests.conftest import unique
from tests.reliability.support import db_fingerprint, fingerprint_changes
from tests.reliability.worlds import token_for
from tests.reliability.writers import basic
from tests.security.conftest import Caller

pytestmark = pytest.mark.django_db


@dataclass
class Case:
    """A's `principal` calls `method path` with `body`; the reply's status is in `statuses`."""

    name: str
    principal: str
    method: str
    path: str
    body: object = None
    statuses: tuple = (404,)
    empty_list: str | None = None  # for listings: the reply's list that must hold nothing of B's
    may_change: frozenset = field(default_factory=frozenset)


def cases(a, b, objects) -> list[Case]:
    balance = "point-programs/default/balances"
    customer = f"/api/v1/customers/{objects.member.external_id}"
    a_customer = f"/api/v1/customers/{a.members[0].external_id}"
    b_store = b.offer.store.key
    listing = []
    for kind, row in (
        ("types", objects.reward_type),
        ("inventories", objects.inventory),
        ("operations", objects.operation),
        ("claims", objects.claim),
    ):
        path = f"/rewards/admin/{kind}/{row.pk}"
        listing += [
            Case(f"admin GET {kind}", "admin", "GET", path),
            Case(f"admin PUT {kind}", "admin", "PUT", path, {"description": "taken over"}),
            Case(f"admin DELETE {kind}", "admin", "DELETE", path),
        ]
    return [
        # Seed 001: the partner Point API
        Case(
            "partner balance in B's organisation",
            "partner",
            "GET",
            f"/api/v1/orgs/{b.org.pk}/{balance}/{objects.member.external_id}",
            statuses=(403, 404),
        ),
        Case(
            "partner balance in B's organisation (seed path)",
            "partner",
            "GET",
            f"/latitude-points/orgs/{b.org.pk}/{balance}/{objects.member.external_id}",
            statuses=(403, 404),
        ),
        Case(
            "partner balance of B's member under A",
            "partner",
            "GET",
            f"/api/v1/orgs/{a.org.pk}/{balance}/{objects.member.external_id}",
        ),
        Case(
            "partner earn on B's rule",
            "partner",
            "POST",
            "/api/v1/points",
            {
                "userId": a.members[0].external_id,
                "ruleId": str(b.earn_rule.pk),
                "amount": 10,
                "requestId": unique("req"),
                "callbackUrl": a.callback_url,
            },
            statuses=(403,),
        ),
        Case(
            "partner earn for B's member",
            "partner",
            "POST",
            "/api/v1/points",
            {
                "userId": objects.member.external_id,
                "ruleId": str(a.earn_rule.pk),
                "amount": 10,
                "requestId": unique("req"),
                "callbackUrl": a.callback_url,
            },
            statuses=(400,),  # the seed's "user is invalid", kept as A's own refused request
            may_change=frozenset({"partner.partnerrequest"}),
        ),
        # Seed 000: the EAI API
        Case(
            "vendor commit for B's member",
            "vendor",
            "POST",
            "/eai/v1/points?commit",
            {
                "userid": objects.member.external_id,
                "pointstodeduct": 10,
                "transactionid": unique("tx"),
            },
            statuses=(400, 404),
        ),
        *[
            Case(
                f"vendor {action} of B's hold",
                "vendor",
                "POST",
                f"/eai/v1/points?{action}",
                {"userid": userid, "transactionid": objects.hold.transaction_id},
                statuses=(400, 404),
            )
            for action in ("confirm", "rollback")
            for userid in (objects.member.external_id, a.members[0].external_id)
        ],
        # Seed 002: the follower API
        Case(
            "master status of B's balance job",
            "master",
            "GET",
            f"/api/v2/point-accounts/balances/status/{objects.balance_job.pk}",
        ),
        # Seed 003: the rewards API
        *listing,
        Case(
            "admin claims listed by B's ids",
            "admin",
            "GET",
            f"/rewards/admin/claims?ids={objects.claim.pk}",
            statuses=(200,),
            empty_list="",
        ),
        Case(
            "admin claims listed by B's user",
            "admin",
            "GET",
            f"/rewards/admin/claims?user_id={objects.member.external_id}",
            statuses=(200,),
            empty_list="",
        ),
        Case(
            "admin claim for B's member",
            "admin",
            "POST",
            "/rewards/admin/claims",
            {
                "user_id": objects.member.external_id,
                "items": [{"reward_type": a.services[0][2].reward_type.reward_type, "amount": 1}],
            },
        ),
        Case(
            "admin claim of B's reward type",
            "admin",
            "POST",
            "/rewards/admin/claims",
            {
                "user_id": a.members[0].external_id,
                "items": [{"reward_type": objects.reward_type.reward_type, "amount": 1}],
            },
        ),
        Case(
            "admin claim from B's inventory",
            "admin",
            "POST",
            "/rewards/admin/claims",
            {
                "user_id": a.members[0].external_id,
                "items": [
                    {
                        "reward_type": a.services[0][2].reward_type.reward_type,
                        "amount": 1,
                        "inventory_id": str(objects.inventory.pk),
                    }
                ],
            },
        ),
        Case(
            "admin inventory of B's reward type",
            "admin",
            "POST",
            "/rewards/admin/inventories",
            {"reward_type": objects.reward_type.reward_type, "amount_total": 5},
        ),
        Case(
            "admin operation of B's reward type",
            "admin",
            "POST",
            "/rewards/admin/operations",
            {
                "reward_type": objects.reward_type.reward_type,
                "code": unique("op"),
                "building_block": "groups",
                "amount": 1,
            },
        ),
        Case(
            "service grant into B's organisation",
            "service",
            "POST",
            "/rewards/int/reward",
            {"org_id": str(b.org.pk), "user_id": "anyone", "code": a.services[0][2].code},
            statuses=(400, 403, 404),
        ),
        Case("member reads B's claim", "member", "GET", f"/rewards/user/claims/{objects.claim.pk}"),
        Case(
            "member claims B's reward type",
            "member",
            "POST",
            "/rewards/user/claims",
            {"items": [{"reward_type": objects.reward_type.reward_type, "amount": 1}]},
        ),
        Case(
            "member buys B's reward type",
            "member",
            "POST",
            "/rewards/user/purchases",
            {"reward_type": b.priced_type.reward_type},
        ),
        # Seed 004: the profiles API
        Case("profile of B's customer", "profiles", "GET", customer),
        Case(
            "profile of B's customer by platform id",
            "profiles",
            "GET",
            f"/api/v1/customers/{objects.member.pk}",
        ),
        Case("change B's customer", "profiles", "PATCH", customer, {"firstName": "Mallory"}),
        *[
            Case(f"{part} of B's customer", "profiles", "GET", f"{customer}/{part}")
            for part in ("wallet", "tags", "campaigns", "point-log", "activity-log")
        ],
        Case("tag B's customer", "profiles", "POST", f"{customer}/tags", {"tags": ["mine"]}),
        Case("untag B's customer", "profiles", "DELETE", f"{customer}/tags/{objects.tag}"),
        Case(
            "opt in to B's campaign",
            "profiles",
            "POST",
            f"{a_customer}/campaigns/{objects.campaign.pk}/opt-in",
        ),
        Case(
            "opt B's customer in",
            "profiles",
            "POST",
            f"{customer}/campaigns/{objects.campaign.pk}/opt-in",
        ),
        Case(
            "buy B's offer",
            "profiles",
            "POST",
            f"{a_customer}/purchases",
            {"offerId": str(b.offer.pk)},
        ),
        Case(
            "buy for B's customer",
            "profiles",
            "POST",
            f"{customer}/purchases",
            {"offerId": str(a.offer.pk)},
        ),
        Case(
            "redeem for B's customer",
            "profiles",
            "POST",
            f"{customer}/redemptions",
            {"rewardType": objects.reward_type.reward_type},
        ),
        Case("offers of B's store", "profiles", "GET", f"/api/v1/stores/{b_store}/offers"),
        Case(
            "offers for B's customer",
            "profiles",
            "GET",
            f"/api/v1/stores/{a.offer.store.key}/offers?customerId={objects.member.external_id}",
        ),
        Case(
            "customers with B's tag",
            "profiles",
            "GET",
            f"/api/v1/tags/{objects.tag}/customers",
            statuses=(200,),
            empty_list="results",
        ),
        Case(
            "event for B's customer",
            "profiles",
            "POST",
            "/api/v1/events",
            {"userId": objects.member.external_id, "name": "app_open"},
            statuses=(400, 404),
        ),
        # The portal
        Case(
            "redeem at B's vendor",
            "portal",
            "GET",
            f"/portal/vendors/{b.vendors[0].vendor.pk}/redeem/",
        ),
        Case(
            "buy B's reward in the store",
            "portal",
            "POST",
            f"/portal/store/{b.priced_type.pk}/buy/",
        ),
        Case(
            "claim B's reward", "portal", "POST", f"/portal/rewards/{objects.reward_type.pk}/claim/"
        ),
    ]


def principals(a) -> dict[str, Caller]:
    admin = api_client_create(organization=a.org, name=unique("admin"), scopes=["rewards:admin"])
    vendor = a.vendors[0]
    portal = Client()
    portal.force_login(a.members[0].user)
    return {
        "partner": Caller(Authorization=f"Bearer {a.partners[0][1]}"),
        "vendor": Caller(
            Authorization=basic(vendor.eai_username, vendor.eai_secret)["Authorization"]
        ),
        "master": Caller(Authorization=f"Bearer {a.masters[0][1]}"),
        "admin": Caller(
            Authorization=f"Bearer {token_for(admin.client.application, ['rewards:admin'])}"
        ),
        "service": Caller(X_Api_Key=a.services[0][1]),
        "member": Caller(Authorization=f"Bearer {a.member_tokens[0]}"),
        "profiles": Caller(Authorization=f"Bearer {a.profile_clients[0][1]}"),
        "portal": Caller(portal),
    }


def test_a_client_of_one_organisation_never_reaches_another_ones_objects(
    world_a, world_b, b_objects
):
    # Given A's principals of every kind, and B's objects of every kind
    callers = principals(world_a)
    refused = []
    matrix = cases(world_a, world_b, b_objects)
    assert len(matrix) >= 50
    for case in matrix:
        before = db_fingerprint()

        # When A asks for B's object
        response = callers[case.principal](
            case.method, case.path, case.body, Idempotency_Key=unique("k")
        )

        # Then it is not found (or forbidden), B's object is not listed, and nothing changed
        problems = []
        if response.status_code not in case.statuses:
            problems.append(f"status {response.status_code}: {response.content[:200]!r}")
        if case.empty_list is not None:
            data = response.json()
            listed = data[case.empty_list] if case.empty_list else data
            if listed:
                problems.append(f"listed {listed!r}")
        changed = set(fingerprint_changes(before, db_fingerprint())) - case.may_change
        if changed:
            problems.append(f"changed {sorted(changed)}")
        if problems:
            refused.append(f"{case.name} ({case.method} {case.path}): {'; '.join(problems)}")
    assert refused == []


def test_the_same_reads_by_the_owner_succeed(world_b, b_objects):
    # The control: each read above names a real object, so its 404 was isolation, not a typo.
    callers = principals(world_b)
    failed = []
    for case in cases(world_b, world_b, b_objects):
        if case.method != "GET" or case.statuses == (200,):
            continue
        response = callers[case.principal](case.method, case.path)
        if response.status_code not in (200, 302):
            failed.append(f"{case.name}: {response.status_code} {response.content[:120]!r}")
    assert failed == []


# --- partner credentials outside their scopes ---------------------------------------------------

SEED_001 = re.compile(r"^/(api/v1/points|api/v1/orgs/|latitude-points/)")


def schema_operations():
    """Every operation of the OpenAPI schema: (method, path template, its security
    requirements as [(scheme, scopes)], any one of which lets a caller in)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            requirements = [
                (scheme, frozenset(scopes))
                for requirement in operation.get("security", [])
                for scheme, scopes in requirement.items()
            ]
            yield method.upper(), path, requirements


def _fill(path: str, a) -> str:
    values = {
        "orgId": str(a.org.pk),
        "programKey": "default",
        "userId": a.members[0].external_id,
        "customer_id": a.members[0].external_id,
    }
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match.group(1), str(uuid.uuid4())), path)


@pytest.mark.parametrize(
    ("held", "label"),
    [
        (["points:earn", "points:burn", "points:read"], "point scopes"),
        (["customers:read"], "a profiles scope only"),
    ],
)
def test_partner_credentials_are_refused_everywhere_outside_their_scopes(world_a, held, label):
    # Given a partner's client-credentials token holding `held` only
    client = api_client_create(organization=world_a.org, name=unique("partner"), scopes=held)
    caller = Caller(Authorization=f"Bearer {token_for(client.client.application, held)}")
    checked, wrong = 0, []
    for method, template, requirements in schema_operations():
        by_client = [scopes for scheme, scopes in requirements if scheme == "clientCredentials"]
        if not by_client or any(scopes <= set(held) for scopes in by_client):
            continue  # other credentials entirely (below), or within the token's scopes
        expected = 401 if SEED_001.match(template) else 403
        before = db_fingerprint()

        # When it calls an operation needing a scope it lacks
        response = caller(method, _fill(template, world_a), {} if method != "GET" else None)

        # Then 403 (401 on seed 001's endpoints, as its table says), and nothing changed
        checked += 1
        if response.status_code != expected or fingerprint_changes(before, db_fingerprint()):
            wrong.append(f"{method} {template}: {response.status_code}")
    assert checked >= 10, label
    assert wrong == []


def test_partner_credentials_open_nothing_that_uses_other_credentials(world_a):
    # Given a partner token with every partner scope
    scopes = [
        "points:earn",
        "points:burn",
        "points:read",
        "customers:read",
        "customers:write",
        "rewards:admin",
    ]
    client = api_client_create(organization=world_a.org, name=unique("partner"), scopes=scopes)
    caller = Caller(Authorization=f"Bearer {token_for(client.client.application, scopes)}")
    wrong = []
    for method, template, requirements in schema_operations():
        schemes = {scheme for scheme, _scopes in requirements}
        if not schemes or "clientCredentials" in schemes:
            continue
        before = db_fingerprint()

        # When it calls the vendors', building blocks' and members' endpoints
        response = caller(method, _fill(template, world_a), {} if method != "GET" else None)

        # Then it is not let in, and nothing changed
        if response.status_code not in (401, 403) or fingerprint_changes(before, db_fingerprint()):
            wrong.append(f"{method} {template}: {response.status_code}")
    # ... nor into the operator console
    console = caller("GET", "/admin/loyalty/member/")
    if console.status_code != 302 or "/login/" not in console["Location"]:
        wrong.append(f"GET /admin/loyalty/member/: {console.status_code}")
    assert wrong == []
