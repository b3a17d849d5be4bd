"""On PostgreSQL, refuse UPDATE and DELETE of audit entries at the database itself."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION loyalty_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'loyalty_auditentry is append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER loyalty_audit_append_only
    BEFORE UPDATE OR DELETE ON loyalty_auditentry
    FOR EACH ROW EXECUTE FUNCTION loyalty_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS loyalty_audit_append_only ON loyalty_auditentry;
DROP FUNCTION IF EXISTS loyalty_audit_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0003_audit_and_imports")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
