"""Schedule the engagement jobs in django-celery-beat, where operators can change them."""

from django.db import migrations

from loyalty.migration_operations import schedule_periodic_jobs

JOBS = [
    # (name, task, every seconds)
    ("Recompute tiers (rolling 12 months, changed thresholds)", "engagement.tiers_recompute", 3600),
    ("Refresh points campaigns", "engagement.campaigns_refresh", 300),
]


class Migration(migrations.Migration):
    dependencies = [
        ("engagement", "0002_append_only_triggers"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [schedule_periodic_jobs(JOBS)]
