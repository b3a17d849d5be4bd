"""On PostgreSQL, refuse UPDATE and DELETE of the activity log and of tier changes."""

from django.db import migrations

TABLES = ("engagement_activityentry", "engagement_tierchange")

CREATE_FUNCTION = """
CREATE OR REPLACE FUNCTION engagement_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused on row %', TG_TABLE_NAME, TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""

CREATE_TRIGGER = """
CREATE TRIGGER {table}_append_only
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION engagement_append_only();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(CREATE_FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(CREATE_TRIGGER.format(table=table), params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};", params=None
        )
    schema_editor.execute("DROP FUNCTION IF EXISTS engagement_append_only();", params=None)


class Migration(migrations.Migration):
    dependencies = [("engagement", "0001_initial")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
