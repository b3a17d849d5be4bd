"""Schedule the engagement jobs in django-celery-beat, where operators can change them."""

from django.db import migrations

JOBS = [
    # (name, task, every seconds)
    ("Recompute tiers (rolling 12 months, changed thresholds)", "engagement.tiers_recompute", 3600),
    ("Refresh points campaigns", "engagement.campaigns_refresh", 300),
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
        ("engagement", "0002_append_only_triggers"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
