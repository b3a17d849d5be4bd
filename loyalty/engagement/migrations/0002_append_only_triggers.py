"""On PostgreSQL, refuse UPDATE and DELETE of the activity log and of tier changes."""

from django.db import migrations

from loyalty.migration_operations import append_only_tables


class Migration(migrations.Migration):
    dependencies = [("engagement", "0001_initial")]

    operations = [append_only_tables("engagement_activityentry", "engagement_tierchange")]
