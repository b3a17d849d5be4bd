"""`manage.py sync_roles`: create or update the operator role groups (loyalty/roles.py)."""

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.core.management.base import BaseCommand

from loyalty.roles import roles_sync


class Command(BaseCommand):
    help = "Create or update the operator roles (viewer, inventory manager, points officer, ...)."

    def handle(self, *args, **options):
        for app_config in apps.get_app_configs():
            create_permissions(app_config, verbosity=0)
        for role, count in roles_sync().items():
            self.stdout.write(f"{role}: {count} permissions")
