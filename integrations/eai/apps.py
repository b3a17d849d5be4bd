"""App config: rewards vendors, the EAI two-phase API and vendor SSO (seed 000)."""

from django.apps import AppConfig


class EaiConfig(AppConfig):
    name = "integrations.eai"
    label = "eai"
    verbose_name = "Rewards vendors (EAI and SSO)"
