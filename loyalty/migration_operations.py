"""Migration operations the apps share: append-only tables, periodic job schedules, and dropping
a foreign key's own index without re-checking the key.

Kept small and stable: migrations import them, so their behaviour must not change once used.
"""

from __future__ import annotations

from django.db import migrations

_CREATE = """
CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused on row %', TG_TABLE_NAME, TG_OP, OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER {table}_append_only
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {table}_append_only();
"""

_DROP = """
DROP TRIGGER IF EXISTS {table}_append_only ON {table};
DROP FUNCTION IF EXISTS {table}_append_only();
"""


def append_only_tables(*tables: str) -> migrations.RunPython:
    """On PostgreSQL, a trigger per table refuses UPDATE and DELETE (TRUNCATE stays possible)."""

    def create(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for table in tables:
                schema_editor.execute(_CREATE.format(table=table), params=None)

    def drop(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for table in tables:
                schema_editor.execute(_DROP.format(table=table), params=None)

    return migrations.RunPython(create, drop)


def schedule_periodic_jobs(jobs: list[tuple[str, str, int]]) -> migrations.RunPython:
    """Add (name, task, every seconds) jobs to django-celery-beat, where operators see them."""

    def schedule(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        for name, task, seconds in jobs:
            interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
            PeriodicTask.objects.update_or_create(
                name=name, defaults={"task": task, "interval": interval, "enabled": True}
            )

    def unschedule(apps, schema_editor):
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        PeriodicTask.objects.filter(name__in=[name for name, _, _ in jobs]).delete()

    return migrations.RunPython(schedule, unschedule)


def drop_foreign_key_index(
    app_label: str, model_name: str, field_name: str, field
) -> migrations.SeparateDatabaseAndState:
    """`field` (the foreign key, now db_index=False) loses the index Django gave it, and nothing
    else. Django's own AlterField drops and re-adds the key's constraint, and on PostgreSQL
    re-adding it checks every row of the table under a lock that stops writes: minutes on a
    production ledger. The constraint needs no index of its own here; a composite index that
    leads with the column serves both its checks and the queries."""

    def index_name(apps, schema_editor) -> tuple[str, str, str]:
        model = apps.get_model(app_label, model_name)
        table, column = model._meta.db_table, model._meta.get_field(field_name).column
        # The name Django gave the index when it created it with the field.
        name = schema_editor._create_index_name(table, [column], suffix="")
        return schema_editor.quote_name(name), schema_editor.quote_name(table), column

    def drop(apps, schema_editor):
        name, _table, _column = index_name(apps, schema_editor)
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}", params=None)

    def create(apps, schema_editor):
        name, table, column = index_name(apps, schema_editor)
        column = schema_editor.quote_name(column)
        schema_editor.execute(f"CREATE INDEX {name} ON {table} ({column})", params=None)

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField(model_name, field_name, field)],
        database_operations=[migrations.RunPython(drop, create)],
    )
