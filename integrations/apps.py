"""App config of integrations: the outbox and everything that crosses the boundary."""

from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations and deliveries"
