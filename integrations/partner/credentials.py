"""Partner clients' credentials: create a client with its rules, reset its secrets, set its key.

Used by the operator console (integrations/admin.py) and the demo. Secrets are returned once:
the OAuth client secret is stored hashed; the webhook secret is kept (it signs every callback)
but shown only when it is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import transaction

from integrations.clients import CreatedClient, api_client_create, api_client_reset_secret
from integrations.http_signatures import MIN_RSA_KEY_BITS
from integrations.models import ApiClient
from integrations.webhook_signing import new_webhook_secret
from loyalty.models import Organization
from points.models import PointRule

PARTNER_SCOPES = (
    "points:earn",
    "points:burn",
    "points:read",
    "customers:read",
    "customers:write",
    "rewards:admin",
)


def public_key_problem(pem: str) -> str | None:
    """Why `pem` cannot verify seed 001 request signatures, or None when it can."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return "not a PEM public key (-----BEGIN PUBLIC KEY-----)"
    if not isinstance(key, rsa.RSAPublicKey):
        return "RSA-SHA256 signatures need an RSA key"
    if key.key_size < MIN_RSA_KEY_BITS:
        return f"the RSA key must have at least {MIN_RSA_KEY_BITS} bits"
    return None


def _check_rules(organization: Organization, rules: Iterable[PointRule]) -> list[PointRule]:
    rules = list(rules)
    foreign = [rule for rule in rules if rule.program.organization_id != organization.pk]
    if foreign:
        raise ValueError(f"rule {foreign[0]} belongs to another organisation")
    return rules


def partner_client_create(
    *,
    organization: Organization,
    name: str,
    scopes: list[str],
    rules: Iterable[PointRule] = (),
    signing_key_id: str = "",
    signing_public_key_pem: str = "",
    require_signature: bool = False,
) -> CreatedClient:
    """Create an API client allowed the given rules (of its own organisation only).

    Returns the client with its secret, shown once. Raises ValueError for a rule of another
    organisation or an unusable public key (the form shows the same checks first).
    """
    rules = _check_rules(organization, rules)
    if signing_public_key_pem and (problem := public_key_problem(signing_public_key_pem)):
        raise ValueError(problem)
    with transaction.atomic():
        created = api_client_create(
            organization=organization,
            name=name,
            scopes=scopes,
            signing_key_id=signing_key_id,
            signing_public_key_pem=signing_public_key_pem.strip(),
            require_signature=require_signature,
        )
        created.client.rules.set(rules)
    return created


@dataclass(frozen=True)
class ResetCredentials:
    client_secret: str
    webhook_secret: str | None  # None when it was kept


def partner_client_credentials_reset(
    *, client: ApiClient, rotate_webhook_secret: bool, client_secret: str | None = None
) -> ResetCredentials:
    """Give the client a new secret (and optionally a new webhook secret); return them once.

    Tokens issued before stay valid until they expire. Callbacks already queued keep the webhook
    secret they were written with.
    """
    with transaction.atomic():
        raw_secret = api_client_reset_secret(client=client, client_secret=client_secret)
        webhook_secret = None
        if rotate_webhook_secret:
            webhook_secret = new_webhook_secret()
            ApiClient.objects.filter(pk=client.pk).update(webhook_secret=webhook_secret)
            client.webhook_secret = webhook_secret
    return ResetCredentials(client_secret=raw_secret, webhook_secret=webhook_secret)


def partner_client_signing_key_set(
    *, client: ApiClient, key_id: str, public_key_pem: str, require_signature: bool
) -> ApiClient:
    """Register the RSA public key (and its keyId) that verifies the client's signed requests."""
    if problem := public_key_problem(public_key_pem):
        raise ValueError(problem)
    if not key_id or '"' in key_id:
        raise ValueError("the key id must be non-empty and contain no quotes")
    client.signing_key_id = key_id
    client.signing_public_key_pem = public_key_pem.strip()
    client.require_signature = require_signature
    client.save(update_fields=["signing_key_id", "signing_public_key_pem", "require_signature"])
    return client
