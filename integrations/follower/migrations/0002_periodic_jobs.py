"""Schedule the balance job sweeper in django-celery-beat (operators can change it there).

It re-publishes balance jobs whose broker message was lost and jobs whose worker died.
"""

from django.db import migrations

from loyalty.migration_operations import schedule_periodic_jobs

JOBS = [
    # (name, task, every seconds)
    ("Follower balance job sweeper", "follower.balance_jobs_sweep", 60),
]


class Migration(migrations.Migration):
    dependencies = [
        ("follower", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [schedule_periodic_jobs(JOBS)]
