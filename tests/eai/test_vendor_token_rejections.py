"""Must-show 5: forged, expired, misaddressed and tampered SSO tokens are refused by the vendor
kit, checked against a real token of the platform and its live JWKS."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.utils import timezone

from integrations.eai.tokens import sso_token_issue
from integrations.vendor_kit import (
    VendorTokenError,
    verify_vendor_token,
    verify_vendor_token_with_jwks,
)

pytestmark = pytest.mark.django_db(transaction=True)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def split(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


@pytest.fixture
def platform(live_server, vendor, member):
    """A genuine token of the platform, its JWKS URL and the public key as PEM."""
    token = sso_token_issue(vendor=vendor, member=member)
    jwks_url = f"{live_server.url}/.well-known/jwks.json"
    jwks = requests.get(jwks_url, timeout=10).json()
    public_key = jwt.PyJWK(jwks["keys"][0]).key
    public_pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "token": token,
        "jwks_url": jwks_url,
        "public_pem": public_pem,
        "vendor": vendor,
        "member": member,
    }


def verify_both_ways(platform, token: str, audience: str | None = None) -> list[dict]:
    """Verify as a vendor would, with the JWKS and with the pinned public key."""
    audience = audience or platform["vendor"].sso_audience
    return [
        verify_vendor_token_with_jwks(
            token,
            jwks_url=platform["jwks_url"],
            audience=audience,
            issuer=settings.LOYALTY_ISSUER,
        ),
        verify_vendor_token(
            token,
            key=platform["public_pem"],
            audience=audience,
            issuer=settings.LOYALTY_ISSUER,
            algorithms=["RS256"],
        ),
    ]


def alg_none(platform) -> str:
    header, payload, _ = split(platform["token"])
    return f"{b64url_json({**header, 'alg': 'none'})}.{b64url_json(payload)}."


def hs256_with_the_public_key(platform) -> str:
    # The classic algorithm-confusion forgery: HMAC keyed with the (public) RSA key's PEM.
    header, payload, _ = split(platform["token"])
    signing_input = f"{b64url_json({**header, 'alg': 'HS256'})}.{b64url_json(payload)}"
    mac = hmac.new(platform["public_pem"], signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def expired(platform) -> str:
    vendor = platform["vendor"]
    two_minutes_ago = timezone.now() - dt.timedelta(seconds=120)
    return sso_token_issue(vendor=vendor, member=platform["member"], now=two_minutes_ago)


def tampered(platform) -> str:
    header_part, _, signature = platform["token"].split(".")
    _, payload, _ = split(platform["token"])
    return f"{header_part}.{b64url_json({**payload, 'points': 999_999})}.{signature}"


def test_the_genuine_token_verifies_both_ways(platform):
    claims = verify_both_ways(platform, platform["token"])

    assert claims[0] == claims[1]
    assert claims[0]["aud"] == platform["vendor"].sso_audience


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (alg_none, "not allowed"),
        (hs256_with_the_public_key, "not allowed"),
        (expired, "expired"),
        (tampered, "signature does not verify"),
    ],
    ids=["alg-none", "hs256-with-rs256-public-key", "expired", "tampered-payload"],
)
def test_a_forged_or_stale_token_is_rejected(platform, forge, reason):
    token = forge(platform)

    with pytest.raises(VendorTokenError, match=reason):
        verify_vendor_token_with_jwks(
            token,
            jwks_url=platform["jwks_url"],
            audience=platform["vendor"].sso_audience,
            issuer=settings.LOYALTY_ISSUER,
        )
    with pytest.raises(VendorTokenError, match=reason):
        verify_vendor_token(
            token,
            key=platform["public_pem"],
            audience=platform["vendor"].sso_audience,
            issuer=settings.LOYALTY_ISSUER,
            algorithms=["RS256"],
        )


def test_a_token_for_another_audience_is_rejected(platform):
    with pytest.raises(VendorTokenError, match="audience"):
        verify_vendor_token_with_jwks(
            platform["token"],
            jwks_url=platform["jwks_url"],
            audience="some-other-vendor",
            issuer=settings.LOYALTY_ISSUER,
        )
    with pytest.raises(VendorTokenError, match="audience"):
        verify_vendor_token(
            platform["token"],
            key=platform["public_pem"],
            audience="some-other-vendor",
            algorithms=["RS256"],
        )


def test_an_hs256_verifier_refuses_the_public_key_as_its_secret(platform):
    # A vendor misconfigured to accept HS256 with the platform's PEM is still not fooled:
    # PyJWT refuses an asymmetric key as an HMAC secret.
    with pytest.raises(VendorTokenError):
        verify_vendor_token(
            hs256_with_the_public_key(platform),
            key=platform["public_pem"],
            audience=platform["vendor"].sso_audience,
            algorithms=["HS256"],
        )
