"""Real processes and real faults for the reliability suite.

Celery workers and a web server run as separate processes (`celery -A loyalty worker`,
`granian ... loyalty.wsgi:application`) against the test database, so a test can SIGKILL them; a
private `redis-server` on a port of its own plays the broker, so a test can stop it without
touching the machine's Redis. Every process is started in a session of its own and ended by its
own process-group id, never by name.

Also: `broker_at(url)` points the test process's Celery app (the web side of `live_server`) at
another broker for a while, `db_fingerprint()` is every domain row of the database in one value
(what "nothing changed" compares), and `wait_until` polls without asserting on time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import redis
import requests
from django.apps import apps
from django.conf import settings
from django.db import connection

from loyalty.celery import app as celery_app
from tests.http_support import RecordingServer

BIN = Path(sys.executable).parent
PROJECT_DIR = Path(__file__).resolve().parents[2]

# Tables that change without any business effect (a portal sign-in writes a session).
FINGERPRINT_SKIPPED = {"sessions.session", "admin.logentry"}


# --- waiting ------------------------------------------------------------------------------------


def wait_until(predicate, *, timeout: float = 30.0, interval: float = 0.05, message: str = ""):
    """Poll `predicate` until it returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlowRecordingServer(RecordingServer):
    """A partner whose server takes `delay` seconds to answer, as real ones do: deliveries are
    in flight long enough for a crash to land in the middle of one."""

    def __init__(self, *args, delay: float = 0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay
        # A worker killed mid-delivery breaks the connection; that is the point, not an error.
        self._server.handle_error = lambda request, client_address: None

    def _next_response(self):
        time.sleep(self.delay)
        return super()._next_response()


# --- the database -----------------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database the tests run on (the test database's real name)."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{db['NAME']}"


def db_fingerprint() -> dict[str, str]:
    """Every row of every domain table, hashed per table: equal fingerprints, nothing changed."""
    tables = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in FINGERPRINT_SKIPPED or not model._meta.managed or model._meta.proxy:
            continue
        fields = [field.attname for field in model._meta.concrete_fields]
        digest = hashlib.sha256()
        for row in model._base_manager.order_by("pk").values_list(*fields):
            values = [bytes(value) if isinstance(value, memoryview) else value for value in row]
            digest.update(repr(values).encode())
        tables[label] = digest.hexdigest()
    return tables


def fingerprint_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(label for label in before if before[label] != after.get(label))


def platform_backend_pids() -> list[int]:
    """Server processes of every connection to the test database except this thread's own."""
    with connection.cursor() as cursor:
        # Inside a transaction the statistics views are a snapshot: take a fresh one.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return [row[0] for row in cursor.fetchall()]


def terminate_backends(pids) -> int:
    """pg_terminate_backend() each pid (never the shared server itself), waiting up to 5 s for
    each to be gone: without the wait it returns once signalled, and a request made right after
    may still find the connection's socket quiet (and fail its first query, a 503) instead of
    closed, which is what the tests mean to set up."""
    terminated = 0
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            terminated += bool(cursor.fetchone()[0])
    return terminated


# --- processes ----------------------------------------------------------------------------------


def platform_env(*, broker_url: str, **extra: str) -> dict[str, str]:
    """Environment of a platform process (web or worker) on the test database and `broker_url`.

    Production settings module `loyalty.settings.base`; callbacks to 127.0.0.1 allowed (the
    partner is a local RecordingServer); short leases so a killed worker's message is swept
    again within seconds (OUTBOX_LEASE_SECONDS stays above the delivery timeout).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYTEST_", "CELERY_", "OUTBOX_", "PARTNER_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "loyalty.settings.base",
            "DATABASE_URL": database_url(),
            "REDIS_URL": broker_url,
            "CACHE_URL": settings.CACHES["default"].get("LOCATION") or broker_url,
            "LOYALTY_ALLOW_INSECURE_CALLBACKS": "true",
            "LOYALTY_VAR_DIR": str(Path(tempfile.gettempdir()) / f"loyalty-proc-{os.getpid()}"),
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "OUTBOX_LEASE_SECONDS": "5",
            "OUTBOX_DELIVERY_TIMEOUT_SECONDS": "3",
            "OUTBOX_BACKOFF_BASE_SECONDS": "1",
            "PARTNER_API_RATE": "100000/s",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Process:
    """A child process in a session of its own, ended by its process-group id."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log_path: Path):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        # setpriv --pdeathsig: the child is killed with the test run, even one that is killed
        # itself and never reaches its clean-up (the child is in a session of its own).
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self.popen = subprocess.Popen(
            prefix + argv,
            env=env,
            cwd=PROJECT_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process and every child it forked (prefork pool, web server workers)."""
        self.signal_group(signal.SIGKILL)
        self.wait()

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        self.kill()

    def wait(self) -> int | None:
        try:
            code = self.popen.wait(timeout=30)
        finally:
            # Children of a killed group may linger for a moment; make sure none survives.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self._log.close()
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Supervised:
    """A process kept running as systemd's Restart=always or Kubernetes keeps a worker: started
    again whenever it has exited (a Celery worker may exit on its own when its broker vanishes:
    kombu 5.7 raises an "Unrecoverable error" if the connection goes while it acknowledges)."""

    def __init__(self, start):
        self._start = start
        self.process = start()
        self.restarts = 0

    def ensure_running(self) -> None:
        if not self.process.alive():
            self.process.wait()
            self.process = self._start()
            self.restarts += 1

    def stop(self) -> None:
        self.process.stop()


def celery_worker(
    *, broker_url: str, log_dir: Path, name: str, concurrency: int = 2, **env: str
) -> Process:
    """`celery -A loyalty worker` on the test database and `broker_url`, as production runs it."""
    argv = [
        str(BIN / "celery"),
        "-A",
        "loyalty",
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=WARNING",
        "-Q",
        celery_app.conf.task_default_queue,
        "-n",
        f"{name}@%h",
    ]
    return Process(
        argv, env=platform_env(broker_url=broker_url, **env), log_path=log_dir / f"{name}.log"
    )


class WebServer:
    """The production web server (README): granian serving `loyalty.wsgi:application` on a
    port of its own, one worker with `threads` threads."""

    def __init__(self, *, broker_url: str, log_dir: Path, threads: int = 4, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            str(BIN / "granian"),
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--blocking-threads",
            str(threads),
            "loyalty.wsgi:application",
        ]
        self.process = Process(
            argv, env=platform_env(broker_url=broker_url, **env), log_path=log_dir / "web.log"
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        def up():
            if not self.process.alive():
                raise AssertionError(f"web server exited:\n{self.process.log()}")
            try:
                return requests.get(f"{self.url}/api/schema/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout=timeout, interval=0.2, message="web server did not come up")


class RedisServer:
    """A private redis-server on a port of its own, in a directory of its own, kept in memory."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"redis-{self.port}-", dir=log_dir))
        self.log_dir = log_dir
        self.process: Process | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise RuntimeError("redis-server is not installed")
        argv = [
            redis_server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.process = Process(argv, env=dict(os.environ), log_path=self.log_dir / "redis.log")
        wait_until(self.answers, timeout=15, message="private redis-server did not start")
        return self

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """The broker goes away: the process is killed, what it held in memory is lost."""
        if self.process is not None:
            self.process.kill()
            self.process = None

    def queue_length(self, queue: str, db: int = 0) -> int:
        return redis.Redis(port=self.port, db=db, socket_timeout=2).llen(queue)


class BlackHole:
    """A TCP port that accepts connections and never answers: a broker hung mid-publish."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        self.sock.close()


# --- the test process's broker ----------------------------------------------------------------


def _reset_producer_pools() -> None:
    # kombu keeps one pool per broker URL (kombu.pools); dropping the app's references makes the
    # next publish take the pool of the URL now configured. Pools are not closed: the original
    # one is taken up again afterwards.
    celery_app._pool = None
    with contextlib.suppress(AttributeError, KeyError):
        celery_app.__dict__["amqp"]._producer_pool = None


@contextlib.contextmanager
def broker_at(url: str):
    """Publish the test process's tasks (live_server's on-commit dispatches) to `url`."""
    previous = (celery_app.conf.broker_url, celery_app.conf.task_always_eager)
    celery_app.conf.broker_url = url
    celery_app.conf.task_always_eager = False
    _reset_producer_pools()
    try:
        yield celery_app
    finally:
        celery_app.conf.broker_url, celery_app.conf.task_always_eager = previous
        _reset_producer_pools()


def clear_broker(url: str) -> None:
    """Empty the queue and the unacknowledged set that SIGKILLed workers leave behind, so no
    stale message reaches a later run (they would come back after the visibility timeout)."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    queue = celery_app.conf.task_default_queue
    client.delete(queue, "unacked", "unacked_index", "unacked_mutex")
