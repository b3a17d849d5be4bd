"""The demo's partner (seed 001): a client with every partner scope, an earn and a burn rule on
the demo program, and an RSA key registered (signatures optional). Each run resets the client
secret, the webhook secret and the key pair, and reports them (DESIGN.md's `partner` part).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.models import ApiClient
from integrations.partner.credentials import (
    PARTNER_SCOPES,
    partner_client_create,
    partner_client_credentials_reset,
    partner_client_signing_key_set,
)
from loyalty.demo import register_demo_part
from points.models import PointRule, RuleKind

DEMO_CLIENT_NAME = "Demo partner"
DEMO_KEY_ID = "demo-partner-key"


def _rule(program, name: str, kind: str, **defaults) -> PointRule:
    rule, _ = PointRule.objects.get_or_create(
        program=program, name=name, kind=kind, defaults=defaults
    )
    return rule


def _new_key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem


@register_demo_part("partner")
def partner_demo_part(context: dict) -> dict:
    organization, program = context["organization"], context["program"]
    earn_rule = _rule(
        program,
        "Demo partner: earn",
        RuleKind.EARN,
        max_points_per_request=1000,
        member_limit=5000,
    )
    burn_rule = _rule(program, "Demo partner: burn", RuleKind.BURN, max_points_per_request=5000)
    client = ApiClient.objects.filter(organization=organization, name=DEMO_CLIENT_NAME).first()
    if client is None:
        client = partner_client_create(
            organization=organization,
            name=DEMO_CLIENT_NAME,
            scopes=list(PARTNER_SCOPES),
            rules=[earn_rule, burn_rule],
        ).client
    else:
        client.rules.add(earn_rule, burn_rule)
    credentials = partner_client_credentials_reset(client=client, rotate_webhook_secret=True)
    private_pem, public_pem = _new_key_pair()
    partner_client_signing_key_set(
        client=client, key_id=DEMO_KEY_ID, public_key_pem=public_pem, require_signature=False
    )
    return {
        "client_id": client.client_id,
        "client_secret": credentials.client_secret,
        "token_url": "/o/token/",
        "earn_rule_id": str(earn_rule.pk),
        "burn_rule_id": str(burn_rule.pk),
        "scopes": list(PARTNER_SCOPES),
        "webhook_secret": credentials.webhook_secret,
        "signing_key_id": DEMO_KEY_ID,
        "signing_private_key_pem": private_pem,
    }
