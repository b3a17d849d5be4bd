"""App config of customer engagement (seed 004)."""

from django.apps import AppConfig


class EngagementConfig(AppConfig):
    name = "loyalty.engagement"
    label = "engagement"
    verbose_name = "Customer engagement"
