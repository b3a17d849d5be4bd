"""App config: the partner Point API (seed 001)."""

from django.apps import AppConfig


class PartnerConfig(AppConfig):
    name = "integrations.partner"
    label = "partner"
    verbose_name = "Partner Point API"
