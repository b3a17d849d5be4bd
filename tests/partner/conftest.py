"""Fixtures of the partner Point API tests: clients, rules, tokens and a partner's server."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.partner.credentials import partner_client_create
from integrations.partner.models import PartnerRequestStatus
from integrations.partner.services import PointRequestInput, partner_request_submit
from points.models import PointRule, RuleKind

PUBLIC_HOST = "partner.example"
PUBLIC_ADDRESS = "93.184.216.34"  # a public address: the URL check accepts it
CALLBACK_URL = f"https://{PUBLIC_HOST}/callback"
POINT_SCOPES = ["points:earn", "points:burn", "points:read"]


@pytest.fixture(autouse=True)
def generous_rate_limit(settings):
    # Tests make requests faster than any partner would; the throttle has its own tests.
    settings.PARTNER_API_RATE = "100000/s"


@pytest.fixture
def public_dns(monkeypatch):
    """partner.example resolves to a public address (tests never reach the internet)."""
    real_getaddrinfo = socket.getaddrinfo
    names: dict[str, str] = {PUBLIC_HOST: PUBLIC_ADDRESS}

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port or 443))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.fixture
def make_rule(db):
    def make(program, kind=RuleKind.EARN, **fields) -> PointRule:
        return PointRule.objects.create(
            program=program, name=fields.pop("name", f"{kind} rule"), kind=kind, **fields
        )

    return make


@pytest.fixture
def earn_rule(program, make_rule):
    return make_rule(program, RuleKind.EARN)


@pytest.fixture
def burn_rule(program, make_rule):
    return make_rule(program, RuleKind.BURN)


@pytest.fixture
def make_partner(db):
    def make(organization, *, scopes=POINT_SCOPES, rules=(), **fields):
        return partner_client_create(
            organization=organization,
            name=fields.pop("name", f"partner-{uuid.uuid4().hex[:8]}"),
            scopes=list(scopes),
            rules=list(rules),
            **fields,
        )

    return make


@pytest.fixture
def partner(org, make_partner, earn_rule, burn_rule):
    return make_partner(org, rules=[earn_rule, burn_rule])


def issue_token(http, created, path="/o/token/", scope: str | None = None) -> str:
    """A real client-credentials token from the token endpoint (Django client or requests)."""
    data = {
        "grant_type": "client_credentials",
        "client_id": created.client_id,
        "client_secret": created.client_secret,
    }
    if scope:
        data["scope"] = scope
    response = http.post(path, data)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.fixture
def token(client, partner):
    return issue_token(client, partner)


@pytest.fixture
def rsa_key_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def point_body(*, user_id, rule, amount=100, request_id=None, callback_url=CALLBACK_URL) -> dict:
    return {
        "userId": user_id,
        "ruleId": str(rule.pk) if isinstance(rule, PointRule) else rule,
        "amount": amount,
        "requestId": request_id or f"req-{uuid.uuid4().hex[:12]}",
        "callbackUrl": callback_url,
    }


def post_points(client, token, body, **headers):
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/v1/points", data=payload, content_type="application/json", **extra)


def snapshot(program=None, member=None) -> dict:
    """What a refused request must not change: requests, ledger, lots, usage, outbox, balance."""
    from integrations.models import OutboxMessage
    from integrations.partner.models import PartnerRequest
    from points.models import PointLot, PointRule, RuleUsage, Transfer
    from points.selectors import balance_get

    state = {
        "partner_requests": PartnerRequest.objects.count(),
        "transfers": Transfer.objects.count(),
        "lots": PointLot.objects.count(),
        "rule_usage": list(RuleUsage.objects.order_by("pk").values_list("pk", "used")),
        "rules_used": list(PointRule.objects.order_by("pk").values_list("pk", "total_used")),
        "outbox": OutboxMessage.objects.count(),
    }
    if program is not None and member is not None:
        state["balance"] = balance_get(program=program, member=member)
    return state


def submit_accepted(partner, *, rule, member, amount, request_id, callback_url):
    """Submit a point request through the service, as the API does once its checks pass, and
    return it accepted."""
    result = partner_request_submit(
        client=partner.client,
        scopes=frozenset(POINT_SCOPES),
        data=PointRequestInput(
            user_id=member.external_id,
            rule_id=str(rule.pk),
            amount=amount,
            request_id=request_id,
            callback_url=callback_url,
        ),
    )
    assert result.request.status == PartnerRequestStatus.ACCEPTED, result.request.reply_body
    return result.request
