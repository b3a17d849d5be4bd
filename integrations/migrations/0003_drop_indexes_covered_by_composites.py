"""Drop foreign keys' own indexes where a composite index leads with the column (fewer index
writes on the hot paths); the constraints stay as they are."""

import django.db.models.deletion
from django.db import migrations, models

from loyalty.migration_operations import drop_foreign_key_index


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0002_api_client"),
        ("loyalty", "0005_operator_roles"),
    ]

    operations = [
        drop_foreign_key_index(
            "integrations",
            "deliveryattempt",
            "message",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="attempt_log",
                to="integrations.outboxmessage",
            ),
        ),
        drop_foreign_key_index(
            "integrations",
            "outboxmessage",
            "organization",
            models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="outbox",
                to="loyalty.organization",
            ),
        ),
    ]
