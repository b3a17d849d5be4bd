"""An account's lots in spending order, id included: a debit's first active lot is the index's
first entry. The old index stopped at valid_to, so for lots without an end (all of them in a
program without validity days) PostgreSQL read and sorted every active lot of the account on
each debit (tests/perf/test_lot_look.py). The new index is built before the old one goes."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("points", "0004_drop_indexes_covered_by_composites"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="pointlot",
            index=models.Index(
                fields=["account", "status", "valid_to", "id"], name="lot_spending_order_idx"
            ),
        ),
        migrations.RemoveIndex(
            model_name="pointlot",
            name="lot_account_status_idx",
        ),
    ]
