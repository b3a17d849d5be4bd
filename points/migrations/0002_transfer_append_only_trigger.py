"""On PostgreSQL, refuse UPDATE and DELETE of ledger transfers at the database itself."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION points_transfer_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'points_transfer is append-only: % refused on transfer %', TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER points_transfer_append_only
    BEFORE UPDATE OR DELETE ON points_transfer
    FOR EACH ROW EXECUTE FUNCTION points_transfer_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS points_transfer_append_only ON points_transfer;
DROP FUNCTION IF EXISTS points_transfer_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("points", "0001_initial")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
