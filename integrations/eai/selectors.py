"""Reads of the vendor integration: credential checks, vendors a member may visit, signing keys."""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from integrations.eai.models import (
    RETIRED_KEY_GRACE_SECONDS,
    SigningKey,
    Vendor,
    eai_secret_digest,
    parse_ip_allowlist,
)
from loyalty import sql
from loyalty.models import Member, Organization
from points.models import PointProgram

# Compared against when the username is unknown, so a miss costs the same as a wrong secret.
_NO_SECRET_DIGEST = "0" * 64


_VENDOR_COLUMNS = sql.Columns(Vendor)
_PROGRAM_COLUMNS = sql.Columns(PointProgram)
_ORGANIZATION_COLUMNS = sql.Columns(Organization)
_MEMBER_COLUMNS = sql.Columns(Member)
_VENDOR_FROM = (
    f'FROM "{Vendor._meta.db_table}" v '
    f'JOIN "{PointProgram._meta.db_table}" p ON p."id" = v."program_id" '
    f'JOIN "{Organization._meta.db_table}" o ON o."id" = v."organization_id" '
)
_VENDOR_SQL = (
    f"SELECT {_VENDOR_COLUMNS.select('v')}, {_PROGRAM_COLUMNS.select('p')}, "
    f"{_ORGANIZATION_COLUMNS.select('o')} "
    f'{_VENDOR_FROM}WHERE v."eai_username" = %s'
)
_VENDOR_AND_MEMBER_SQL = (
    f"SELECT {_VENDOR_COLUMNS.select('v')}, {_PROGRAM_COLUMNS.select('p')}, "
    f"{_ORGANIZATION_COLUMNS.select('o')}, {_MEMBER_COLUMNS.select('m')} "
    f"{_VENDOR_FROM}"
    f'LEFT JOIN "{Member._meta.db_table}" m '
    'ON m."organization_id" = v."organization_id" AND m."external_id" = %s '
    'WHERE v."eai_username" = %s'
)


def vendor_for_credentials(*, username: str, secret: str) -> Vendor | None:
    """The vendor whose EAI username and secret these are (active or not), else None.

    One prepared statement: the program and organisation come along, since every EAI call
    needs them.
    """
    row = sql.fetch_one(_VENDOR_SQL, [username])
    vendor = None
    if row is not None:
        vendor, vendor.program, vendor.organization = sql.instances(
            row, _VENDOR_COLUMNS, _PROGRAM_COLUMNS, _ORGANIZATION_COLUMNS
        )
    return vendor if _secret_matches(vendor, secret) else None


def vendor_and_member_for_credentials(
    *, username: str, secret: str, external_id: str
) -> tuple[Vendor | None, Member | None]:
    """vendor_for_credentials, and the member of its organisation with this external id (None
    if there is none), in the same statement: an EAI call names its member in the body, and
    this saves it a second round trip. Nothing is returned unless the secret matches."""
    row = sql.fetch_one(_VENDOR_AND_MEMBER_SQL, [external_id, username])
    vendor = member = None
    if row is not None:
        vendor, vendor.program, vendor.organization, member = sql.instances(
            row, _VENDOR_COLUMNS, _PROGRAM_COLUMNS, _ORGANIZATION_COLUMNS, _MEMBER_COLUMNS
        )
    if not _secret_matches(vendor, secret):
        return None, None
    return vendor, member


def _secret_matches(vendor: Vendor | None, secret: str) -> bool:
    expected = vendor.eai_secret_sha256 if vendor is not None else _NO_SECRET_DIGEST
    # Constant-time: a byte-by-byte comparison would leak how much of the digest matched.
    matches = hmac.compare_digest(eai_secret_digest(secret), expected or _NO_SECRET_DIGEST)
    return vendor is not None and matches


def client_ip(request) -> str:
    """The caller's address: the trusted proxy's header when one is configured, else the peer."""
    header = getattr(settings, "LOYALTY_TRUSTED_PROXY_HEADER", "") or ""
    if header:
        meta_key = (
            header
            if header.startswith("HTTP_") or header == "REMOTE_ADDR"
            else ("HTTP_" + header.upper().replace("-", "_"))
        )
        value = request.META.get(meta_key, "")
        # The proxy appends the address it saw; anything left of it came from the client and
        # can be forged, so only the last entry is trusted.
        candidate = value.split(",")[-1].strip()
        if candidate:
            return candidate
    return request.META.get("REMOTE_ADDR", "")


def vendor_ip_allowed(*, vendor: Vendor, address: str) -> bool:
    """True when the vendor has no allowlist or `address` is in one of its networks."""
    if not vendor.ip_allowlist.strip():
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    try:
        networks = parse_ip_allowlist(vendor.ip_allowlist)
    except ValueError:
        return False  # a broken allowlist lets nobody in rather than everybody
    return any(ip in network for network in networks)


_MEMBER_SQL = (
    f"SELECT {_MEMBER_COLUMNS.select('m')} "  # noqa: S608
    f'FROM "{Member._meta.db_table}" m WHERE m."organization_id" = %s AND m."external_id" = %s'
)


def member_for_vendor(*, vendor: Vendor, external_id: str) -> Member | None:
    """The member of the vendor's organisation with this external id (one prepared statement)."""
    organization_id = sql.param(Member, "organization", vendor.organization_id)
    row = sql.fetch_one(_MEMBER_SQL, [organization_id, external_id])
    return _MEMBER_COLUMNS.instance(row) if row is not None else None


def vendors_for_member(*, member: Member) -> QuerySet[Vendor]:
    """Active vendors of the member's organisation with SSO set up ("Redeem at <vendor>")."""
    return vendors_for_sso(organization=member.organization).order_by("name")


def vendors_for_sso(*, organization: Organization) -> QuerySet[Vendor]:
    return (
        Vendor.objects.filter(organization=organization, active=True)
        .exclude(sso_redirect_url="")
        .select_related("program")
    )


# --- signing keys -------------------------------------------------------------------------------


def signing_keys_not_superseded(*, now: dt.datetime) -> QuerySet[SigningKey]:
    """Keys that stay published for a whole token lifetime and more after `now`.

    A superseded key's publish_until is its successor's activation plus the grace, so this is
    exactly "not superseded yet"; a withdrawn key drops out at once.
    """
    grace = dt.timedelta(seconds=RETIRED_KEY_GRACE_SECONDS)
    return SigningKey.objects.exclude(publish_until__lte=now + grace)


def signing_key_current(*, now: dt.datetime) -> SigningKey | None:
    """The key that signs at `now`: the newest activated one that is not superseded.

    If none has activated by `now` but one is there (the very first key, made an instant after
    this request read its clock), that one signs rather than a second first key being made.
    """
    candidates = signing_keys_not_superseded(now=now)
    activated = candidates.filter(activates_at__lte=now).order_by("-generation").first()
    return activated or candidates.order_by("activates_at", "generation").first()


def published_jwks(*, now: dt.datetime | None = None) -> dict:
    """The JWKS: every key not withdrawn or past its publish_until, newest first."""
    now = now or timezone.now()
    keys = (
        SigningKey.objects.filter(Q(publish_until__isnull=True) | Q(publish_until__gt=now))
        .order_by("-generation")
        .values_list("public_jwk", flat=True)
    )
    return {"keys": list(keys)}
