"""The index of accepted requests by id instead of by dispatch time: the drainers look them up in
id order, with an index scan that marks processed requests' entries dead as it passes
(integrations/partner/services.py, _WAITING_SQL)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0003_drop_indexes_covered_by_composites"),
        ("loyalty", "0005_operator_roles"),
        ("partner", "0003_drop_indexes_covered_by_composites"),
        ("points", "0004_drop_indexes_covered_by_composites"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="partnerrequest",
            name="partner_request_waiting_idx",
        ),
        migrations.AddIndex(
            model_name="partnerrequest",
            index=models.Index(
                condition=models.Q(("status", "accepted")),
                fields=["id"],
                name="partner_request_accepted_idx",
            ),
        ),
    ]
