"""Create the operator roles (loyalty/roles.py) as groups with their permissions."""

from django.db import migrations


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations ran; make them now, for every
    # installed app, so the roles can hold them (create_permissions skips existing rows).
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    from loyalty.roles import roles_sync

    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=schema_editor.connection.alias)
    roles_sync()


def drop_roles(apps, schema_editor):
    from loyalty.roles import ROLE_RULES

    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__in=list(ROLE_RULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0004_audit_append_only_trigger"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
