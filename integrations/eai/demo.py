"""seed_demo's `eai_vendor` part: a rewards vendor on the demo program, signing SSO with RS256.

Idempotent: the vendor is found by name and its settings put back; its EAI secret is new on
every run (the reply shows it), and a platform signing key exists afterwards.
"""

from __future__ import annotations

from integrations.eai import services
from integrations.eai.models import SsoAlgorithm, SsoMethod, Vendor
from loyalty.demo import register_demo_part

DEMO_VENDOR_NAME = "Demo rewards vendor"
DEMO_VENDOR_USERNAME = "demo-vendor"
DEMO_VENDOR_AUDIENCE = "demo-rewards-vendor"
DEMO_VENDOR_SSO_URL = "https://rewards-vendor.example.com/redeem"


@register_demo_part("eai_vendor")
def eai_vendor_demo(context: dict) -> dict:
    organization, program = context["organization"], context["program"]
    settings_fields = {
        "program": program,
        "active": True,
        "ip_allowlist": "",
        "sso_redirect_url": DEMO_VENDOR_SSO_URL,
        "sso_method": SsoMethod.GET,
        "sso_algorithm": SsoAlgorithm.RS256,
        "sso_token_lifetime_seconds": 60,
        "sso_audience": DEMO_VENDOR_AUDIENCE,
    }
    vendor = Vendor.objects.filter(organization=organization, name=DEMO_VENDOR_NAME).first()
    if vendor is None:
        created = services.vendor_create(
            organization=organization,
            name=DEMO_VENDOR_NAME,
            eai_username=DEMO_VENDOR_USERNAME,
            **settings_fields,
        )
    else:
        for field, value in settings_fields.items():
            setattr(vendor, field, value)
        created = services.vendor_save(vendor=vendor, new_eai_credentials=True)
    services.signing_key_ensure()
    return {
        "username": created.eai_username,
        "password": created.eai_secret,
        "vendor_id": str(created.vendor.pk),
        "sso_algorithm": created.vendor.sso_algorithm,
        "sso_audience": created.vendor.sso_audience,
    }
