"""Rewards vendors (seed 000) and the platform's RS256 keys for vendor SSO tokens.

A vendor is bound to one program of its organisation. It calls the EAI two-phase API with HTTP
Basic credentials (a random secret shown once, stored as its SHA-256: the secret has 256 bits of
entropy, so a fast hash is as strong as a slow one and costs microseconds per request) and
optionally only from an IP allowlist. Members are handed over to it by a signed JWT.

Its holds are the ledger's holds owned by `vendor:<vendor id>` (points.models.Hold), so the same
transaction id used by two vendors never collides.

Signing keys: each has a `kid` and a `generation` (unique, so two concurrent rotations cannot
both win). A new key is *published* at once and *signs* from `activates_at`, late enough for
vendors' cached key sets to have picked it up; a superseded key stays published until every token
it can have signed has expired (`publish_until`). Rotation therefore never breaks a token in
flight.
"""

import hashlib
import ipaddress
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Length
from django.db.models.lookups import GreaterThanOrEqual

from loyalty.models import Organization
from points.models import PointProgram

# A shorter HMAC secret is brute-forceable offline from one token; the vendor kit refuses it.
HS256_MIN_SECRET_BYTES = 32
MAX_TOKEN_LIFETIME_SECONDS = 600
# A superseded signing key stays published until every token it can have signed has expired,
# with room for the verifier's leeway and clock skew.
RETIRED_KEY_GRACE_SECONDS = MAX_TOKEN_LIFETIME_SECONDS + 120


def eai_secret_digest(secret: str) -> str:
    """What is stored of an EAI secret. The secret has 256 random bits: SHA-256 cannot be
    brute-forced back, and it costs microseconds, not a password hash's 100 ms, per request."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_ip_allowlist(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of an allowlist written one per line or comma-separated; ValueError if bad."""
    networks = []
    for entry in text.replace(",", "\n").split():
        # strict=False: 10.0.0.7/24 means the /24 around it, which is what an operator meant.
        networks.append(ipaddress.ip_network(entry.strip(), strict=False))
    return networks


def validate_ip_allowlist(value: str) -> None:
    try:
        parse_ip_allowlist(value)
    except ValueError as exc:
        raise ValidationError(f"Not an IP address or CIDR network: {exc}") from exc


def validate_sso_redirect_url(value: str) -> None:
    """https only (the token is in the URL or the form), unless the development switch is on."""
    parts = urlsplit(value)
    insecure_ok = getattr(settings, "LOYALTY_ALLOW_INSECURE_CALLBACKS", False)
    if parts.scheme != "https" and not (insecure_ok and parts.scheme == "http"):
        raise ValidationError("The vendor's SSO URL must use https.")
    if not parts.hostname:
        raise ValidationError("The vendor's SSO URL needs a host.")
    if parts.username or parts.password:
        raise ValidationError("The vendor's SSO URL must not carry credentials.")


class SsoMethod(models.TextChoices):
    GET = "get", "GET redirect with ?token= (302)"
    POST = "post", "Auto-submitted POST form with a token field"


class SsoAlgorithm(models.TextChoices):
    HS256 = "HS256", "HS256 with a per-vendor shared secret"
    RS256 = "RS256", "RS256 with the platform key (JWKS)"


class Vendor(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="vendors")
    program = models.ForeignKey(
        PointProgram,
        on_delete=models.PROTECT,
        related_name="vendors",
        help_text="The one program this vendor deducts points from.",
    )
    name = models.CharField(max_length=200)
    active = models.BooleanField(
        default=True, help_text="An inactive vendor's API calls get 403 and its SSO link is gone."
    )

    # --- EAI API credentials ---
    eai_username = models.CharField(max_length=100, unique=True, editable=False)
    eai_secret_sha256 = models.CharField(max_length=64, editable=False)
    eai_credentials_created_at = models.DateTimeField(null=True, editable=False)
    ip_allowlist = models.TextField(
        blank=True,
        validators=[validate_ip_allowlist],
        help_text="IP addresses or CIDR networks, one per line; empty: any address.",
    )

    # --- single sign-on ---
    sso_redirect_url = models.URLField(
        max_length=1000,
        blank=True,
        validators=[validate_sso_redirect_url],
        help_text="Where members are sent with their token; empty: no SSO.",
    )
    sso_method = models.CharField(max_length=8, choices=SsoMethod.choices, default=SsoMethod.GET)
    sso_algorithm = models.CharField(
        max_length=8, choices=SsoAlgorithm.choices, default=SsoAlgorithm.RS256
    )
    # HS256 only. Kept readable because signing needs it; generated, never typed in.
    sso_secret = models.CharField(max_length=200, blank=True, editable=False)
    sso_token_lifetime_seconds = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(10), MaxValueValidator(MAX_TOKEN_LIFETIME_SECONDS)],
        help_text="The token's exp is this many seconds after iat.",
    )
    sso_audience = models.CharField(
        max_length=200, help_text="The token's aud; the vendor verifies it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="vendor_name_per_org"),
            models.CheckConstraint(
                condition=Q(sso_token_lifetime_seconds__gte=10)
                & Q(sso_token_lifetime_seconds__lte=MAX_TOKEN_LIFETIME_SECONDS),
                name="vendor_sso_lifetime_bounded",
            ),
            # The last line behind the services, which generate the secret with the setting.
            models.CheckConstraint(
                condition=~Q(sso_algorithm=SsoAlgorithm.HS256)
                | Q(GreaterThanOrEqual(Length("sso_secret"), HS256_MIN_SECRET_BYTES)),
                name="vendor_hs256_secret_long_enough",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def hold_owner(self) -> str:
        """The owner string of this vendor's holds in the ledger."""
        return f"vendor:{self.pk}"

    @property
    def sso_enabled(self) -> bool:
        return bool(self.sso_redirect_url)

    def clean(self) -> None:
        if (
            self.program_id
            and self.organization_id
            and self.program.organization_id != self.organization_id
        ):
            raise ValidationError(
                {"program": "The program must belong to the vendor's organisation."}
            )


class SigningKey(models.Model):
    """An RSA key pair that signs RS256 SSO tokens; its public half is in the JWKS."""

    kid = models.CharField(max_length=64, unique=True, editable=False)
    generation = models.PositiveIntegerField(unique=True, editable=False)
    private_key_pem = models.TextField(editable=False)
    public_jwk = models.JSONField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activates_at = models.DateTimeField(
        editable=False, help_text="Signs from this moment (published from creation)."
    )
    publish_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Superseded or withdrawn: leaves the JWKS at this moment. Empty: current.",
    )

    class Meta:
        ordering = ["-generation"]

    def __str__(self) -> str:
        return f"{self.kid} (generation {self.generation})"
