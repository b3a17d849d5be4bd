"""App config: point-follower mode (seed 002)."""

from django.apps import AppConfig


class FollowerConfig(AppConfig):
    name = "integrations.follower"
    label = "follower"
    verbose_name = "Point follower"
