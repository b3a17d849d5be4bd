"""Drop foreign keys' own indexes where a composite index leads with the column (fewer index
writes on the hot paths); the constraints stay as they are."""

from django.db import migrations

from loyalty.migration_operations import DropForeignKeyIndex


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0002_api_client"),
        ("loyalty", "0005_operator_roles"),
    ]

    operations = [
        DropForeignKeyIndex("deliveryattempt", "message"),
        DropForeignKeyIndex("outboxmessage", "organization"),
    ]
