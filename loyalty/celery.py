"""The Celery application `loyalty` (`celery -A loyalty worker`, `celery -A loyalty beat`).

Configuration comes from Django settings (CELERY_*). Without REDIS_URL tasks run eagerly in
process (the embedded default); with it they go to real workers on the broker.
"""

import os

from celery import Celery, signals
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty.settings.base")

app = Celery("loyalty")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Celery's Django fixup closes the database connections before and after every task unless
# CELERY_DB_REUSE_MAX is set: each task would open a new PostgreSQL connection (a new server
# process, and every prepared statement prepared again). Tasks keep their connections as web
# requests do instead (DB_CONN_MAX_AGE, below); the fixup still closes them every 1000 tasks.
app.conf.CELERY_DB_REUSE_MAX = 1000


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_database_connections(sender=None, **kwargs) -> None:
    """Around each task, as Django around each request: close a connection that is broken or
    older than CONN_MAX_AGE (and check the next one's health first, DB_CONN_HEALTH_CHECKS).

    Not for eager tasks: they run inside the caller's request, maybe inside its transaction.
    """
    if sender is not None and not getattr(sender.request, "is_eager", False):
        close_old_connections()


def check_delays_below_visibility_timeout(settings) -> None:
    """Refuse a configuration whose countdowns could outlive the broker's visibility timeout.

    Redis redelivers an unacknowledged message after the visibility timeout; a countdown longer
    than that would be delivered twice while the first copy still waits.
    """
    visibility = settings.CELERY_BROKER_VISIBILITY_TIMEOUT
    delays = {
        "OUTBOX_COUNTDOWN_MAX_SECONDS": settings.OUTBOX_COUNTDOWN_MAX_SECONDS,
        "OUTBOX_LEASE_SECONDS": settings.OUTBOX_LEASE_SECONDS,
        "CELERY_TASK_TIME_LIMIT": settings.CELERY_TASK_TIME_LIMIT,
    }
    too_long = {name: value for name, value in delays.items() if value >= visibility}
    if too_long:
        raise ImproperlyConfigured(
            f"{', '.join(sorted(too_long))} must stay below CELERY_BROKER_VISIBILITY_TIMEOUT "
            f"({visibility} s)"
        )
    # A delivery still waiting on a slow receiver when its lease ends would be taken again by
    # the sweeper: the partner would get the callback twice.
    if settings.OUTBOX_DELIVERY_TIMEOUT_SECONDS >= settings.OUTBOX_LEASE_SECONDS:
        raise ImproperlyConfigured(
            "OUTBOX_DELIVERY_TIMEOUT_SECONDS must stay below OUTBOX_LEASE_SECONDS "
            f"({settings.OUTBOX_LEASE_SECONDS} s)"
        )
