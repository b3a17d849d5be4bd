"""On PostgreSQL, refuse UPDATE and DELETE of ledger transfers at the database itself."""

from django.db import migrations

from loyalty.migration_operations import append_only_tables


class Migration(migrations.Migration):
    dependencies = [("points", "0001_initial")]

    operations = [append_only_tables("points_transfer")]
