"""Schedule the partner request sweeper in django-celery-beat, where operators can change it.

It re-dispatches accepted point requests whose broker message was lost (broker or workers down
when they were accepted) and gives up those that could not be processed for a day.
"""

from django.db import migrations

JOBS = [
    # (name, task, every seconds)
    ("Partner request sweeper", "partner.sweep_requests", 30),
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
        ("partner", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
