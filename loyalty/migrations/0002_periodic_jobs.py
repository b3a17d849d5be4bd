"""Schedule the platform's periodic jobs in django-celery-beat, where operators can change them."""

from django.db import migrations

from loyalty.migration_operations import schedule_periodic_jobs

JOBS = [
    # (name, task, every seconds)
    ("Activate due point lots", "points.activate_due_lots", 60),
    ("Expire due point lots", "points.expire_due_lots", 300),
    ("Expire stale holds", "points.expire_stale_holds", 30),
    ("Outbox sweeper", "integrations.outbox_sweep", 15),
]


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [schedule_periodic_jobs(JOBS)]
