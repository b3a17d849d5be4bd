"""Test settings: base, with fast password hashing and callbacks allowed to reach local servers.

DATABASE_URL and REDIS_URL decide what the suite runs against: unset, it runs on SQLite with
tasks in-process (tests that need PostgreSQL or a real broker skip themselves and say why).
"""

import os

os.environ.setdefault("LOYALTY_ALLOW_INSECURE_CALLBACKS", "false")

from loyalty.settings.base import *  # noqa: F403
from loyalty.settings.base import DATABASES

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so threads and live_server share one database.
    DATABASES["default"]["TEST"]["NAME"] = str(VAR_DIR / "test.sqlite3")  # noqa: F405
OUTBOX_BACKOFF_BASE_SECONDS = 1
# Tasks run in-process unless a test starts a real worker (tests/celery_support.py), which
# switches the app to the Redis broker for its duration.
CELERY_TASK_ALWAYS_EAGER = True
if os.environ.get("REDIS_URL"):
    # The suite's own Redis database, so tests never consume another run's messages.
    _redis_base = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    _redis_db = int(os.environ.get("LOYALTY_TEST_REDIS_DB_BASE", "7")) + 1
    CELERY_BROKER_URL = f"{_redis_base}/{_redis_db}"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
