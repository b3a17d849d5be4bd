"""Schedule the partner request sweeper in django-celery-beat, where operators can change it.

It re-dispatches accepted point requests whose broker message was lost (broker or workers down
when they were accepted) and gives up those that could not be processed for a day.
"""

from django.db import migrations

from loyalty.migration_operations import schedule_periodic_jobs

JOBS = [
    # (name, task, every seconds)
    ("Partner request sweeper", "partner.sweep_requests", 30),
]


class Migration(migrations.Migration):
    dependencies = [
        ("partner", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [schedule_periodic_jobs(JOBS)]
