"""Drop foreign keys' own indexes where a composite index leads with the column (fewer index
writes on the hot paths); the constraints stay as they are."""

from django.db import migrations

from loyalty.migration_operations import DropForeignKeyIndex


class Migration(migrations.Migration):
    dependencies = [
        ("points", "0003_follower_constraint_message"),
    ]

    operations = [
        DropForeignKeyIndex("hold", "account"),
        DropForeignKeyIndex("pointlot", "account"),
        DropForeignKeyIndex("transfer", "member_account"),
        DropForeignKeyIndex("transfer", "program"),
    ]
