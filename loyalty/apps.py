"""App config of the core domain: organisations and members."""

from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Organisations and members"

    def ready(self) -> None:
        from django.conf import settings

        from loyalty.celery import check_delays_below_visibility_timeout

        check_delays_below_visibility_timeout(settings)
        # The console's own admin pages register after admin autodiscovery.
        import loyalty.console.admin  # noqa: F401
        import loyalty.console.importers  # noqa: F401
        import loyalty.console.panels  # noqa: F401
