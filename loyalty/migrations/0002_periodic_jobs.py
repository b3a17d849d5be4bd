"""Schedule the platform's periodic jobs in django-celery-beat, where operators can change them."""

from django.db import migrations

JOBS = [
    # (name, task, every seconds)
    ("Activate due point lots", "points.activate_due_lots", 60),
    ("Expire due point lots", "points.expire_due_lots", 300),
    ("Expire stale holds", "points.expire_stale_holds", 30),
    ("Outbox sweeper", "integrations.outbox_sweep", 15),
]


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in JOBS:
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": interval, "enabled": True}
        )


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in JOBS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
