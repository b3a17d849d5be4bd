"""Fixtures for seed 000: vendors with fresh credentials, funded members, and a ledger snapshot
that refusal tests compare before and after."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pytest

from integrations import vendor_kit
from integrations.eai import services
from integrations.eai.models import SsoAlgorithm, SsoMethod
from points import services as point_services
from points.models import Hold, PointAccount, Transfer

EAI_URL = "/eai/v1/points"


@pytest.fixture
def make_vendor(db):
    def make(organization, program, **fields) -> services.VendorSecrets:
        defaults = {
            "name": fields.pop("name", f"Vendor {organization.slug}"),
            "sso_audience": fields.pop("sso_audience", f"aud-{organization.slug}"),
            "sso_redirect_url": fields.pop(
                "sso_redirect_url", "https://rewards.example.test/redeem"
            ),
            "sso_method": fields.pop("sso_method", SsoMethod.GET),
            "sso_algorithm": fields.pop("sso_algorithm", SsoAlgorithm.RS256),
        }
        return services.vendor_create(
            organization=organization, program=program, **defaults, **fields
        )

    return make


@pytest.fixture
def vendor_secrets(org, program, make_vendor) -> services.VendorSecrets:
    return make_vendor(org, program)


@pytest.fixture
def vendor(vendor_secrets):
    return vendor_secrets.vendor


@pytest.fixture
def funded_member(program, member):
    point_services.earn(program=program, member=member, amount=1000, description="Purchase")
    return member


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


@dataclass
class EaiCaller:
    """Posts to the EAI API through Django's test client as a vendor."""

    client: object
    username: str
    password: str

    def post(self, query: str, body, *, auth: str | None = "default", raw: bool = False, **extra):
        headers = {}
        if auth == "default":
            headers["HTTP_AUTHORIZATION"] = basic_auth(self.username, self.password)
        elif auth is not None:
            headers["HTTP_AUTHORIZATION"] = auth
        data = body if raw else json.dumps(body)
        return self.client.post(
            f"{EAI_URL}{query}",
            data=data,
            content_type=extra.pop("content_type", "application/json"),
            **headers,
            **extra,
        )

    def commit(self, userid, points, transactionid, description="redemption for a mug", **extra):
        body = {
            "userid": userid,
            "pointstodeduct": points,
            "transactionid": transactionid,
            "description": description,
        }
        return self.post("?commit", body, **extra)

    def confirm(self, userid, transactionid, **extra):
        return self.post("?confirm", {"userid": userid, "transactionid": transactionid}, **extra)

    def rollback(self, userid, transactionid, **extra):
        return self.post("?rollback", {"userid": userid, "transactionid": transactionid}, **extra)


@pytest.fixture
def eai(client, vendor_secrets) -> EaiCaller:
    return EaiCaller(client, vendor_secrets.eai_username, vendor_secrets.eai_secret)


def ledger_snapshot() -> tuple:
    """Everything a refused call must leave as it was: accounts, holds, transfers."""
    accounts = tuple(
        PointAccount.objects.order_by("pk").values_list("pk", "balance", "held", "pending")
    )
    holds = tuple(
        Hold.objects.order_by("pk").values_list("pk", "status", "amount", "transaction_id")
    )
    transfers = tuple(Transfer.objects.order_by("pk").values_list("pk", "amount", "kind"))
    return accounts, holds, transfers


@pytest.fixture(autouse=True)
def fresh_jwks_cache():
    """Each test is a fresh vendor process: the kit's per-URL JWKS cache must not carry keys of a
    previous test's database over (live_server keeps its URL for the whole session)."""
    vendor_kit._jwks_clients.clear()
    yield
    vendor_kit._jwks_clients.clear()
