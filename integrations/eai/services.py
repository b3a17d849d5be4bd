"""Every write of the vendor integration: vendors and their secrets, signing keys, vendor holds.

Secrets are generated here and returned once; only what verification needs is stored (the
SHA-256 of an EAI secret; the HS256 SSO secret itself, because signing needs it).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from jwt.algorithms import RSAAlgorithm

from integrations.eai import selectors
from integrations.eai.models import (
    HS256_MIN_SECRET_BYTES,
    RETIRED_KEY_GRACE_SECONDS,
    SigningKey,
    SsoAlgorithm,
    Vendor,
    eai_secret_digest,
)
from loyalty.models import Member
from points import services as point_services
from points.services import HoldResult

# A new key is published this long before it signs, so that vendors' cached key sets (the kit
# caches for 300 s; our JWKS says max-age=60) hold it before the first token names it.
DEFAULT_PUBLISH_AHEAD_SECONDS = 360


def _new_eai_secret() -> str:
    return secrets.token_urlsafe(32)


def _new_sso_secret() -> str:
    # 48 random bytes as 64 ASCII characters: well above the 32-byte minimum of HS256.
    return secrets.token_urlsafe(48)


def _new_username() -> str:
    return f"vendor-{secrets.token_hex(8)}"


# --- vendors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VendorSecrets:
    """Shown once to the operator; nothing here can be read back later except the username."""

    vendor: Vendor
    eai_username: str
    eai_secret: str | None
    sso_secret: str | None


def vendor_create(
    *,
    organization,
    program,
    name: str,
    sso_audience: str,
    sso_redirect_url: str = "",
    sso_method: str = "get",
    sso_algorithm: str = SsoAlgorithm.RS256,
    sso_token_lifetime_seconds: int = 60,
    ip_allowlist: str = "",
    active: bool = True,
    eai_username: str | None = None,
) -> VendorSecrets:
    """Create a vendor with fresh EAI credentials (and an HS256 secret when that is its algorithm).

    Raises django.core.exceptions.ValidationError for bad settings (program of another
    organisation, non-https SSO URL, bad CIDR, taken username or name).
    """
    vendor = Vendor(
        organization=organization,
        program=program,
        name=name,
        active=active,
        ip_allowlist=ip_allowlist,
        sso_redirect_url=sso_redirect_url,
        sso_method=sso_method,
        sso_algorithm=sso_algorithm,
        sso_token_lifetime_seconds=sso_token_lifetime_seconds,
        sso_audience=sso_audience,
    )
    return vendor_save(vendor=vendor, new_eai_credentials=True, eai_username=eai_username)


def vendor_save(
    *, vendor: Vendor, new_eai_credentials: bool = False, eai_username: str | None = None
) -> VendorSecrets:
    """Validate and save a new or changed vendor.

    Issues EAI credentials when asked (always for a new vendor) and an HS256 secret when the
    vendor signs with HS256 and has none yet. Returns the secrets made by this call, once.
    Raises ValidationError.
    """
    eai_secret = None
    if new_eai_credentials or vendor._state.adding:
        vendor.eai_username = eai_username or vendor.eai_username or _new_username()
        eai_secret = _new_eai_secret()
        vendor.eai_secret_sha256 = eai_secret_digest(eai_secret)
        vendor.eai_credentials_created_at = timezone.now()
    sso_secret = None
    if vendor.sso_algorithm == SsoAlgorithm.HS256 and len(vendor.sso_secret) < (
        HS256_MIN_SECRET_BYTES
    ):
        sso_secret = vendor.sso_secret = _new_sso_secret()
    vendor.full_clean()
    with transaction.atomic():
        vendor.save()
    return VendorSecrets(
        vendor=vendor,
        eai_username=vendor.eai_username,
        eai_secret=eai_secret,
        sso_secret=sso_secret,
    )


def vendor_credentials_reset(*, vendor: Vendor) -> VendorSecrets:
    """New EAI secret for the vendor (same username); the old secret stops working at once."""
    eai_secret = _new_eai_secret()
    now = timezone.now()
    Vendor.objects.filter(pk=vendor.pk).update(
        eai_secret_sha256=eai_secret_digest(eai_secret),
        eai_credentials_created_at=now,
        updated_at=now,
    )
    vendor.refresh_from_db()
    return VendorSecrets(
        vendor=vendor, eai_username=vendor.eai_username, eai_secret=eai_secret, sso_secret=None
    )


def vendor_sso_secret_reset(*, vendor: Vendor) -> VendorSecrets:
    """New HS256 secret; tokens signed with the old one stop verifying at the vendor.

    Raises ValueError when the vendor does not sign with HS256.
    """
    if vendor.sso_algorithm != SsoAlgorithm.HS256:
        raise ValueError("only an HS256 vendor has a shared SSO secret")
    sso_secret = _new_sso_secret()
    Vendor.objects.filter(pk=vendor.pk).update(sso_secret=sso_secret, updated_at=timezone.now())
    vendor.refresh_from_db()
    return VendorSecrets(
        vendor=vendor, eai_username=vendor.eai_username, eai_secret=None, sso_secret=sso_secret
    )


# --- the vendor's holds (seed 000 two-phase deduction) ----------------------------------------


def vendor_points_commit(
    *, vendor: Vendor, member: Member, points: int, transaction_id: str, description: str = ""
) -> HoldResult:
    """Phase 1: hold `points` of the member in the vendor's program under the vendor's id.

    The caller has authenticated the vendor and checked that the member belongs to the vendor's
    organisation. Raises the ledger's InsufficientPoints, HoldConflict, ProgramIsFollower,
    InvalidAmount; an identical repeat returns the existing hold with replayed=True.
    """
    return point_services.hold_create(
        program=vendor.program,
        member=member,
        amount=points,
        owner=vendor.hold_owner,
        transaction_id=transaction_id,
        description=description,
    )


def vendor_points_confirm(*, vendor: Vendor, member: Member, transaction_id: str) -> HoldResult:
    """Phase 2a: burn the held points. Raises HoldNotFound (unknown, or another member's),
    HoldAlreadyResolved, HoldExpired; a repeat after success returns replayed=True."""
    return point_services.hold_confirm(
        owner=vendor.hold_owner,
        transaction_id=transaction_id,
        member=member,
        actor=vendor.hold_owner,
    )


def vendor_points_rollback(*, vendor: Vendor, member: Member, transaction_id: str) -> HoldResult:
    """Phase 2b: release the held points. Raises like vendor_points_confirm."""
    return point_services.hold_rollback(
        owner=vendor.hold_owner,
        transaction_id=transaction_id,
        member=member,
        actor=vendor.hold_owner,
    )


# --- platform signing keys (RS256) -------------------------------------------------------------


def _rsa_key_bits() -> int:
    return max(2048, int(getattr(settings, "LOYALTY_SSO_RSA_KEY_BITS", 2048)))


def _publish_ahead() -> dt.timedelta:
    seconds = getattr(settings, "LOYALTY_SSO_KEY_PUBLISH_AHEAD_SECONDS", None)
    return dt.timedelta(seconds=DEFAULT_PUBLISH_AHEAD_SECONDS if seconds is None else seconds)


def _jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 thumbprint of an RSA JWK: a kid derived from the key, so it cannot collide."""
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _new_key(*, generation: int, activates_at: dt.datetime) -> SigningKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=_rsa_key_bits())
    jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    kid = _jwk_thumbprint(jwk)
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return SigningKey.objects.create(
        kid=kid,
        generation=generation,
        private_key_pem=pem,
        public_jwk=jwk,
        activates_at=activates_at,
    )


def _latest_generation() -> int:
    return SigningKey.objects.aggregate(top=Max("generation"))["top"] or 0


def signing_key_ensure(*, now: dt.datetime | None = None) -> SigningKey:
    """The key that signs now; the very first key is created on demand and signs at once.

    Race-safe: two first callers both try generation 1 and the unique constraint keeps one.
    """
    now = now or timezone.now()
    # Read the latest generation *before* looking for a signer: a concurrent maker that had not
    # committed when we found no signer had not committed for this read either, so both try
    # the same generation and the unique constraint keeps one.
    latest = _latest_generation()
    key = selectors.signing_key_current(now=now)
    if key is not None:
        return key
    try:
        with transaction.atomic():
            # No key signs (none yet, or all withdrawn): one must sign at once, nothing to wait
            # for. After a withdrawal, vendors fetch the new kid on their next unknown-kid miss.
            return _new_key(generation=latest + 1, activates_at=now)
    except IntegrityError:
        winner = selectors.signing_key_current(now=now)
        return winner or signing_key_ensure(now=now)


def signing_key_rotate(*, now: dt.datetime | None = None) -> SigningKey:
    """Publish a new key now; it signs from now + the publish-ahead time.

    Every older key stays published until RETIRED_KEY_GRACE_SECONDS after the new key takes over,
    so tokens signed before rotation keep verifying. With no key at all, the new one signs at
    once. Raises IntegrityError if a concurrent rotation won (try again).
    """
    now = now or timezone.now()
    # As in signing_key_ensure: the generation is read before the keys are, so a rotation that
    # commits in between makes ours fail on the unique generation instead of both winning.
    latest = _latest_generation()
    with transaction.atomic():
        current = list(
            SigningKey.objects.select_for_update()
            .exclude(publish_until__lte=now)
            .order_by("generation")
        )
        activates_at = now + _publish_ahead() if current else now
        new_key = _new_key(generation=latest + 1, activates_at=activates_at)
        publish_until = activates_at + dt.timedelta(seconds=RETIRED_KEY_GRACE_SECONDS)
        for key in current:
            if key.publish_until is None or key.publish_until > publish_until:
                SigningKey.objects.filter(pk=key.pk).update(publish_until=publish_until)
        return new_key


def signing_key_withdraw(*, key: SigningKey, now: dt.datetime | None = None) -> None:
    """Take a (compromised) key out of the JWKS and out of signing at once.

    Tokens it signed stop verifying; the next SSO signs with the newest remaining key, or with a
    fresh one made on demand.
    """
    now = now or timezone.now()
    SigningKey.objects.filter(pk=key.pk).update(publish_until=now)
