"""Drop foreign keys' own indexes where a composite index leads with the column (fewer index
writes on the hot paths); the constraints stay as they are."""

import django.db.models.deletion
from django.db import migrations, models

from loyalty.migration_operations import drop_foreign_key_index


class Migration(migrations.Migration):
    dependencies = [
        ("points", "0003_follower_constraint_message"),
    ]

    operations = [
        drop_foreign_key_index(
            "points",
            "hold",
            "account",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="holds",
                to="points.pointaccount",
            ),
        ),
        drop_foreign_key_index(
            "points",
            "pointlot",
            "account",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lots",
                to="points.pointaccount",
            ),
        ),
        drop_foreign_key_index(
            "points",
            "transfer",
            "member_account",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="member_transfers",
                to="points.pointaccount",
            ),
        ),
        drop_foreign_key_index(
            "points",
            "transfer",
            "program",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="transfers",
                to="points.pointprogram",
            ),
        ),
    ]
