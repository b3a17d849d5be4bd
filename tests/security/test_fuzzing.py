"""Schemathesis against the platform's own OpenAPI schema (/api/schema/), every operation, every
check (server errors, status code, content type, headers and response schema conformance,
negative data rejection, positive data acceptance, ignored auth, ...), with real credentials:
the demo data (`seed_demo`) and, per contract, the token, basic credentials or API key its
callers use. Generated values are mixed with the demo's real ids, so operations are fuzzed past
their 404s too.

The number of examples per operation is capped (FUZZ_MAX_EXAMPLES, default 10) and the run is
derandomized, so CI's run is short and repeatable; a longer hunt is
`FUZZ_MAX_EXAMPLES=200 pytest tests/security/test_fuzzing.py`.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from oauth2_provider.models import get_application_model

from loyalty.demo import demo_seed
from loyalty.models import Member
from tests.conftest import unique
from tests.reliability.worlds import token_for

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "10"))

# Schemathesis's default for well-formed requests: anything but a 400 or 422.
ACCEPTED_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
# Operations whose contract answers 400 to a well-formed request for reasons no schema can
# state (the schema says "a string", the contract "a user that exists"): for them a 400 is a
# legitimate answer to generated data. Everywhere else a 400 must mean the request broke the
# schema, so the schema has to state every rule the API enforces.
SEMANTIC_REFUSALS = {
    # seed 000: "invalid user", "insufficient points"
    "POST /eai/v1/points": "unknown user, insufficient points",
    # seed 001's table: rule not found / inactive, invalid user, insufficient balance
    "POST /api/v1/points": "unknown rule or user, insufficient balance, unsafe callbackUrl",
    # seed 002: "New point system not active"; contact ids that are e-mails or phone numbers
    "POST /api/v2/point-accounts/transactions": "definitionId of no follower program; PII ids",
    "POST /api/v2/point-accounts/balances": "contact ids that are e-mail addresses or phones",
    "POST /api/v1/events": "unknown userId, occurredAt in the future",
    "POST /api/v1/customers": "externalId that is an e-mail address or a phone number",
    "PATCH /api/v1/customers/{customer_id}": "externalId that is PII, invalid e-mail",
    "POST /rewards/int/reward": "org_id of another organisation, user id that is PII",
    # keyset pagination: a cursor is opaque, only one the list handed out is valid
    **{
        f"GET {path}": "a cursor the list did not hand out"
        for path in (
            "/api/v1/customers/{customer_id}/point-log",
            "/api/v1/customers/{customer_id}/activity-log",
            "/api/v1/tags/{tag}/customers",
        )
    },
    # Rokwire's admin objects: org_id is read-only (the caller's own or blank), so are the
    # counters; a webhook fulfilment needs a safe webhook_url; keys are slugs
    **{
        f"{method} /rewards/admin/{kind}{suffix}": "org_id, counters, webhook_url, key format"
        for kind in ("types", "inventories", "operations", "claims")
        for method, suffix in (("POST", ""), ("PUT", "/{id}"))
    },
}


def client_credentials_token(client_id: str, client_secret: str) -> str:
    response = Client().post(
        "/o/token/",
        {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


class Credentials:
    """What each contract's callers authenticate with, from the demo data."""

    def __init__(self, demo: dict):
        import base64

        partner, follower = demo["partner"], demo["follower"]
        vendor, service = demo["eai_vendor"], demo["rewards_service"]
        member = Member.objects.get(external_id=demo["members"][0]["user_id"])
        Application = get_application_model()
        member_app = Application.objects.create(
            name=unique("member-app"),
            client_type=Application.CLIENT_PUBLIC,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris="https://app.example.com/callback",
        )
        basic = base64.b64encode(f"{vendor['username']}:{vendor['password']}".encode()).decode()
        self.by_prefix = [
            ("/eai/", {"Authorization": f"Basic {basic}"}),
            ("/rewards/int/", {"X-Api-Key": service["api_key"]}),
            (
                "/rewards/user/",
                {"Authorization": f"Bearer {token_for(member_app, ['member'], user=member.user)}"},
            ),
            (
                "/api/v2/",
                {
                    "Authorization": "Bearer "
                    + client_credentials_token(follower["client_id"], follower["client_secret"])
                },
            ),
            (
                "/",
                {
                    "Authorization": "Bearer "
                    + client_credentials_token(partner["client_id"], partner["client_secret"])
                },
            ),
        ]

    def headers_for(self, path: str) -> dict[str, str]:
        if path.startswith("/.well-known/"):
            return {}
        return next(headers for prefix, headers in self.by_prefix if path.startswith(prefix))


@pytest.fixture(scope="module")
def credentials(django_db_setup, django_db_blocker):
    """The demo data, committed once for the module (each operation's test runs in a
    transaction rolled back after it), and removed again at the end."""
    with django_db_blocker.unblock():
        credentials = Credentials(demo_seed())
    # Schemathesis calls the WSGI application directly; like Django's test client, keep the
    # requests from closing the connection that holds each test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield credentials
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


def _load_schema():
    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
    config = schemathesis.Config.from_dict(
        {
            # Strings never hold NUL: DRF refuses it in every field (and PostgreSQL's text
            # cannot store it), so it is not a rule of any one operation to state.
            "generation": {"max-examples": MAX_EXAMPLES, "allow-x00": False},
            "phases": {"stateful": {"enabled": False}},
            "operations": [
                {
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*ACCEPTED_STATUSES, "400"]
                        }
                    },
                }
                for name in SEMANTIC_REFUSALS
            ],
        }
    )
    schema = schemathesis.openapi.from_dict(raw, config=config)
    schema.app = get_wsgi_application()
    return schema


schema = _load_schema()


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    settings.PARTNER_API_RATE = "100000/s"


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_survives_fuzzing_with_real_credentials(case, credentials):
    case.call_and_validate(headers=credentials.headers_for(case.path))
