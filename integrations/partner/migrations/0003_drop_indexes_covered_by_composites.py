"""Drop foreign keys' own indexes where a composite index leads with the column (fewer index
writes on the hot paths); the constraints stay as they are."""

import django.db.models.deletion
from django.db import migrations, models

from loyalty.migration_operations import drop_foreign_key_index


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0003_drop_indexes_covered_by_composites"),
        ("loyalty", "0005_operator_roles"),
        ("partner", "0002_sweeper_job"),
    ]

    operations = [
        drop_foreign_key_index(
            "partner",
            "partnerrequest",
            "client",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="point_requests",
                to="integrations.apiclient",
            ),
        ),
        drop_foreign_key_index(
            "partner",
            "partnerrequest",
            "organization",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="partner_requests",
                to="loyalty.organization",
            ),
        ),
    ]
