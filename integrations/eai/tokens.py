"""The SSO token a member is handed to a rewards vendor with (seed 000).

Claims: the seed's `firstname`, `lastname`, `points` (available in the vendor's program),
`email`, `userid` (the member's external id), `iat`, `exp`, plus `jti`, `iss` and `aud` so the
vendor can pin issuer and audience and refuse replays. HS256 signs with the vendor's own secret;
RS256 with the platform key that signs now, named by `kid` in the header and published in the
JWKS (integrations/eai/sso.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from functools import lru_cache

import jwt
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.utils import timezone

from integrations.eai import services
from integrations.eai.models import SsoAlgorithm, Vendor
from loyalty.models import Member
from points.selectors import balance_get


@lru_cache(maxsize=8)
def _private_key(kid: str, pem: str):
    # Parsing a PEM costs more than signing; a kid's key never changes, so parse it once.
    return serialization.load_pem_private_key(pem.encode("ascii"), password=None)


def sso_claims(*, vendor: Vendor, member: Member, now: dt.datetime) -> dict:
    issued_at = int(now.timestamp())
    return {
        "firstname": member.first_name,
        "lastname": member.last_name,
        "points": balance_get(program=vendor.program, member=member).available,
        "email": member.email,
        "userid": member.external_id,
        "iat": issued_at,
        "exp": issued_at + vendor.sso_token_lifetime_seconds,
        "jti": uuid.uuid4().hex,
        "iss": settings.LOYALTY_ISSUER,
        "aud": vendor.sso_audience,
    }


def sso_token_issue(*, vendor: Vendor, member: Member, now: dt.datetime | None = None) -> str:
    """A signed JWT for the member's visit to the vendor.

    The caller has checked that the member belongs to the vendor's organisation and that the
    vendor is active with SSO set up. RS256 makes the first platform key on demand.
    """
    now = now or timezone.now()
    claims = sso_claims(vendor=vendor, member=member, now=now)
    if vendor.sso_algorithm == SsoAlgorithm.HS256:
        return jwt.encode(claims, vendor.sso_secret, algorithm="HS256", headers={"typ": "JWT"})
    key = services.signing_key_ensure(now=now)
    return jwt.encode(
        claims,
        _private_key(key.kid, key.private_key_pem),
        algorithm="RS256",
        headers={"kid": key.kid, "typ": "JWT"},
    )
