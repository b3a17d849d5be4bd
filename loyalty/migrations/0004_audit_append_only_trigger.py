"""On PostgreSQL, refuse UPDATE and DELETE of audit entries at the database itself."""

from django.db import migrations

from loyalty.migration_operations import append_only_tables


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0003_audit_and_imports")]

    operations = [append_only_tables("loyalty_auditentry")]
