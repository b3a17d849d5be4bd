"""App config of the core domain: organisations and members."""

from importlib import import_module

from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Organisations and members"

    def ready(self) -> None:
        from django.conf import settings

        from loyalty.celery import check_delays_below_visibility_timeout

        check_delays_below_visibility_timeout(settings)
        # The console's own admin pages, dashboard panels and CSV importers register after
        # admin autodiscovery.
        for module in ("admin", "importers", "panels"):
            import_module(f"loyalty.console.{module}")
