"""Drop foreign keys' own indexes where a composite index leads with the column (fewer index
writes on the hot paths); the constraints stay as they are."""

from django.db import migrations

from loyalty.migration_operations import DropForeignKeyIndex


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0003_drop_indexes_covered_by_composites"),
        ("loyalty", "0005_operator_roles"),
        ("partner", "0002_sweeper_job"),
    ]

    operations = [
        DropForeignKeyIndex("partnerrequest", "client"),
        DropForeignKeyIndex("partnerrequest", "organization"),
    ]
