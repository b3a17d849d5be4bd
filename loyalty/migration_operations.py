"""Migration operations the apps share: append-only tables and periodic job schedules.

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
