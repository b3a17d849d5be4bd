"""Migration operations the apps share: append-only tables, periodic job schedules, and dropping
a foreign key's own index without re-checking the key.

Kept small and stable: migrations import them, so their behaviour must not change once used.
"""

from __future__ import annotations

from django.db import migrations
from django.db.migrations.operations.fields import FieldOperation

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


class DropForeignKeyIndex(FieldOperation):
    """The foreign key `name` of `model_name` loses the index Django gave it, and nothing else;
    the field becomes db_index=False. Django's own AlterField drops and re-adds the key's
    constraint, and on PostgreSQL re-adding it checks every row of the table under a lock that
    stops writes: minutes on a production ledger. The constraint needs no index of its own
    where a composite index leads with the column: that one serves its checks and the queries.
    """

    def __init__(self, model_name: str, name: str):
        super().__init__(model_name, name)

    def deconstruct(self):
        return self.__class__.__name__, [self.model_name, self.name], {}

    def state_forwards(self, app_label, state):
        field = state.models[app_label, self.model_name_lower].fields[self.name].clone()
        field.db_index = False
        state.alter_field(app_label, self.model_name_lower, self.name, field, True)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        name, _table, _column = self._index(app_label, schema_editor, from_state)
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}", params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        name, table, column = self._index(app_label, schema_editor, to_state)
        schema_editor.execute(f"CREATE INDEX {name} ON {table} ({column})", params=None)

    def _index(self, app_label, schema_editor, state) -> tuple[str, str, str]:
        """The index's name (the one Django gave it with the field), table and column, quoted."""
        model = state.apps.get_model(app_label, self.model_name)
        table, column = model._meta.db_table, model._meta.get_field(self.name).column
        name = schema_editor._create_index_name(table, [column], suffix="")
        quote = schema_editor.quote_name
        return quote(name), quote(table), quote(column)

    def describe(self):
        return f"Drop the index of foreign key {self.name} on {self.model_name}"

    @property
    def migration_name_fragment(self):
        return f"drop_{self.model_name_lower}_{self.name_lower}_index"
