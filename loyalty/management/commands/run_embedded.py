"""`manage.py run_embedded [addr:port]`: the embedded first run.

Serves the platform with Django's server and runs the periodic jobs (lot activation and expiry,
stale holds, the outbox sweeper) in a background thread, because without a broker there is no
Celery beat. Production runs granian, Celery workers and one beat instead (README).
"""

import logging
import threading
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from integrations.follower.services import balance_jobs_sweep
from integrations.outbox import outbox_sweep
from integrations.partner.services import partner_requests_sweep
from points import services as point_services

logger = logging.getLogger(__name__)

JOB_INTERVAL_SECONDS = 15


def run_periodic_jobs_forever(stop: threading.Event) -> None:
    jobs = [
        point_services.activate_due_lots,
        point_services.expire_due_lots,
        point_services.expire_stale_holds,
        outbox_sweep,
        partner_requests_sweep,
        balance_jobs_sweep,
    ]
    while not stop.wait(JOB_INTERVAL_SECONDS):
        for job in jobs:
            try:
                close_old_connections()
                job()
            except Exception:
                logger.exception("periodic job %s failed", job.__name__)


class Command(BaseCommand):
    help = "Serve the platform with the periodic jobs running in-process (embedded default)."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, **options):
        stop = threading.Event()
        threading.Thread(
            target=run_periodic_jobs_forever, args=(stop,), daemon=True, name="periodic-jobs"
        ).start()
        try:
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            stop.set()
            time.sleep(0)
