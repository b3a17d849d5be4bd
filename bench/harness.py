"""The benchmark harness: the platform as production runs it, against PostgreSQL's own limit.

One run on this machine:
1. creates a fresh database, migrates it, loads the demo data and a benchmark data set
   (10,000 members; the ledger grown from 10,000 to 1,000,000 transfers by a fast SQL loader);
2. starts gunicorn (WSGI workers suited to 2 cores) and Celery workers on Redis, and a local
   sink that receives partner callbacks;
3. drives each workload with `wrk` (Lua scripts in bench/lua) at 16 connections for the
   measured duration after a warm-up, and runs `pgbench` (TPC-B-like and `-S` select-only)
   with the same client count on the same server as the reference;
4. prints a table and writes bench/results/<date>.json and .md.

Every figure is reported with its reference ratio, so results compare across noisy machines.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import requests

from bench import loader

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LUA = ROOT / "bench" / "lua"
PG = "postgres://postgres@127.0.0.1:5432"
MEMBER_PREFIX = "bench-"
DEEP_MEMBER = "bench-deep"

TARGETS = {
    "eai_pairs_ratio": 0.20,
    "eai_p99_ms": 30.0,
    "partner_accept_ratio": 0.30,
    "partner_callback_p99_ms": 1000.0,
    "follower_rows_ratio": 0.5,
    "balance_reads_ratio": 0.10,
    "cost_growth_ratio": 1.5,
}


@dataclass
class Config:
    duration: int = 20
    warmup: int = 5
    clients: int = 16
    members: int = 10_000
    small_transfers: int = 10_000
    large_transfers: int = 1_000_000
    # Production's web server (README): granian, 2 workers with 2 threads each on 2 cores.
    # gunicorn (sync workers, 4 on 2 cores) is the alternative measured beside it.
    web_server: str = "granian"
    web_workers: int = 2
    web_threads: int = 2
    celery_concurrency: int = 4
    port: int = 8765
    database: str = "loyalty_bench"
    redis_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    )
    # A queue of this run's own: another process on the same Redis database (a test run's
    # worker) must neither take the benchmark's tasks nor have its own purged by us.
    queue: str = field(default_factory=lambda: f"bench-{os.getpid()}")
    profile: bool = True  # py-spy samples of the platform during each workload, if installed


@dataclass
class WrkResult:
    requests: int
    ok: int  # 2xx responses: only these count as throughput
    duration_s: float
    errors: int
    non2xx: int
    p50_ms: float
    p99_ms: float
    statuses: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Successful (2xx) responses per second."""
        return self.ok / self.duration_s if self.duration_s else 0.0


@dataclass
class Results:
    started_at: str
    machine: dict
    config: dict
    reference: dict = field(default_factory=dict)
    workloads: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)


# --- processes ---------------------------------------------------------------------------------


def _env(config: Config) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "loyalty.settings.base",
        "DATABASE_URL": f"{PG}/{config.database}",
        "REDIS_URL": config.redis_url,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOYALTY_ALLOW_INSECURE_CALLBACKS": "true",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
        # Throttling would measure the limiter, not the platform.
        "PARTNER_API_RATE": "1000000/s",
        "CELERY_TASK_DEFAULT_QUEUE": config.queue,
        # As README advises: about as many drain slots as the workers' total concurrency.
        "PARTNER_DRAIN_SLOTS": str(config.celery_concurrency),
    }


def _run(cmd: list[str], config: Config, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(config), cwd=ROOT, check=True, **kwargs)


def _manage(config: Config, *args: str, capture: bool = False) -> str:
    result = _run([sys.executable, "manage.py", *args], config, capture_output=capture, text=True)
    return result.stdout if capture else ""


def _start(cmd: list[str], config: Config, log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - closed when the process is stopped
    return subprocess.Popen(
        cmd,
        env=_env(config),
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


# --- callback sink ------------------------------------------------------------------------------


class CallbackSink:
    """Receives partner callbacks; records arrival time per requestId."""

    def __init__(self):
        self.arrivals: dict[str, float] = {}
        self.statuses: dict[str, str] = {}
        self.duplicates = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                now = time.time()
                with sink._lock:
                    request_id = body.get("requestId", "")
                    if request_id in sink.arrivals:
                        sink.duplicates += 1
                    else:
                        sink.arrivals[request_id] = now
                        sink.statuses[request_id] = body.get("status", "")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def stop(self):
        self.server.shutdown()


# --- wrk and pgbench ---------------------------------------------------------------------------


def wrk(
    config: Config,
    script: str,
    path: str,
    env: dict[str, str],
    *,
    duration: int,
    connections: int | None = None,
    timeout_s: int = 10,
) -> WrkResult:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        out_path = out.name
    cmd = [
        "wrk",
        "-t",
        "2",
        "-c",
        str(connections or config.clients),
        "-d",
        f"{duration}s",
        "--timeout",
        f"{timeout_s}s",
        "-s",
        str(LUA / script),
        f"http://127.0.0.1:{config.port}{path}",
    ]
    subprocess.run(
        cmd,
        env={**os.environ, **env, "BENCH_OUT": out_path, "BENCH_LUA_DIR": str(LUA)},
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(Path(out_path).read_text())
    os.unlink(out_path)
    return WrkResult(
        requests=data["requests"],
        ok=data["ok"],
        duration_s=data["duration_us"] / 1e6,
        errors=data["errors"],
        non2xx=data["non2xx"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        statuses=data.get("statuses", {}),
        extra=data.get("extra", {}),
    )


class Pgbench:
    """PostgreSQL's own limit on this server: pgbench at the benchmark's client count.

    Each reference is measured right before the workload it is compared with, so a machine
    that gets busier or quieter during the run moves both sides of the ratio together.
    """

    def __init__(self, config: Config):
        self.config = config
        self.db = f"{config.database}_pgbench"

    def _cli(self, *args: str) -> list[str]:
        return [*args, "-h", "127.0.0.1", "-U", "postgres"]

    def init(self) -> None:
        self.drop()
        subprocess.run([*self._cli("createdb"), self.db], check=True)
        subprocess.run(
            [*self._cli("pgbench"), "-i", "-q", "-s", "10", self.db],
            check=True,
            capture_output=True,
        )

    def run(self, *, select_only: bool) -> float:
        """TPC-B-like (or -S select-only) transactions per second over the workload duration."""
        out = subprocess.run(
            [
                *self._cli("pgbench"),
                "-c",
                str(self.config.clients),
                "-j",
                "2",
                "-T",
                str(self.config.duration),
                "-n",
                *(["-S"] if select_only else []),
                self.db,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return next(
            float(line.split("=")[1].split()[0])
            for line in out.splitlines()
            if line.startswith("tps")
        )

    def drop(self) -> None:
        subprocess.run(
            [*self._cli("dropdb"), "--if-exists", self.db], check=True, capture_output=True
        )


# --- profiles (py-spy, when installed) ----------------------------------------------------------


class CpuMeter:
    """CPU time each part of the machine spent during a workload, read from /proc (Linux): the
    web server and the workers (each with its child processes), PostgreSQL's processes and the
    callback sink (this process). Divided by the workload's requests it says where the
    machine's two cores went; wrk's own share is not counted (it has exited when it is read)."""

    def __init__(self, web: subprocess.Popen, worker: subprocess.Popen):
        self.roots = {"web": web.pid, "workers": worker.pid}
        self.ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.started: dict[str, int] | None = None

    @staticmethod
    def _processes() -> dict[int, tuple[int, str, int, int]]:
        """pid -> (parent pid, command, own user + system ticks, those of its children that
        exited and were waited for), for every process we may read. Counting the second keeps
        a process that exits during a workload (a PostgreSQL backend whose client closed) in
        the figures: its time moves to its parent's."""
        table = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            command = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            table[int(entry.name)] = (
                int(fields[1]),
                command,
                int(fields[11]) + int(fields[12]),
                int(fields[13]) + int(fields[14]),
            )
        return table

    def _read(self) -> dict[str, int]:
        table = self._processes()
        children: dict[int, list[int]] = {}
        for pid, (parent, *_) in table.items():
            children.setdefault(parent, []).append(pid)

        def total(pid: int) -> int:
            _, _, own, exited = table.get(pid, (0, "", 0, 0))
            return own + exited

        def tree(pid: int) -> int:
            return total(pid) + sum(tree(c) for c in children.get(pid, []))

        ticks = {name: tree(pid) for name, pid in self.roots.items()}
        ticks["postgres"] = sum(total(pid) for pid, row in table.items() if row[1] == "postgres")
        # This process's own time: the callback sink's threads (the harness itself mostly
        # waits); not its children's, which are wrk and pgbench.
        ticks["sink"] = table.get(os.getpid(), (0, "", 0, 0))[2]
        return ticks

    def start(self) -> None:
        self.started = self._read() if Path("/proc/self/stat").exists() else None

    def per_request_ms(self, requests: int) -> dict | None:
        if self.started is None or not requests:
            return None
        now = self._read()
        return {
            name: round(1000 * (now[name] - self.started[name]) / self.ticks_per_s / requests, 2)
            for name in now
        }


class Profiler:
    """Samples the platform's processes during a workload with py-spy, if it is installed.

    The summary says where the time goes: the share of samples by package of the innermost
    frame, and the project functions (this repository, bench/ excluded) with the largest
    inclusive share.
    """

    def __init__(self, enabled: bool, workdir: Path):
        beside_python = Path(sys.executable).parent / "py-spy"
        self.py_spy = shutil.which("py-spy") or (
            str(beside_python) if beside_python.exists() else None
        )
        self.enabled = enabled and self.py_spy is not None
        self.workdir = workdir
        self.running: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, processes: list[subprocess.Popen], seconds: int) -> None:
        if not self.enabled:
            return
        for process in processes:
            out = self.workdir / f"profile-{name}-{process.pid}.txt"
            spy = subprocess.Popen(
                [
                    self.py_spy,
                    "record",
                    "--subprocesses",
                    "--nonblocking",
                    "--full-filenames",
                    "-r",
                    "50",
                    "-d",
                    str(seconds),
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                    "-p",
                    str(process.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.running.append((spy, out))

    def summary(self) -> dict | None:
        if not self.enabled:
            return None
        stacks: dict[str, int] = {}
        for spy, out in self.running:
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
            if out.exists():
                for line in out.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if count.isdigit():
                        stacks[stack] = stacks.get(stack, 0) + int(count)
        self.running = []
        return _profile_summary(stacks)


def _frame_package(frame: str) -> str:
    path = frame.rpartition(" (")[2]
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0].split(".")[0]
    if path.startswith(str(ROOT)):
        return "project"
    return "python stdlib"


def _project_function(frame: str) -> str | None:
    """'function (app/module.py)' for a frame of this repository's code (not bench/), else None."""
    function, _, location = frame.rpartition(" (")
    path = location.rpartition(":")[0]
    if not path.startswith(str(ROOT)) or "site-packages" in path or "/bench/" in path:
        return None
    return f"{function} ({Path(path).relative_to(ROOT)})"


def _profile_summary(stacks: dict[str, int]) -> dict:
    total = sum(stacks.values())
    if not total:
        return {"samples": 0}
    by_package: dict[str, int] = {}
    project: dict[str, int] = {}
    for stack, count in stacks.items():
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames:
            continue
        leaf = _frame_package(frames[-1])
        by_package[leaf] = by_package.get(leaf, 0) + count
        seen = set()
        for frame in frames:
            name = _project_function(frame)
            if name and name not in seen:
                seen.add(name)
                project[name] = project.get(name, 0) + count

    def top(counts: dict[str, int], n: int) -> list[list]:
        ordered = sorted(counts.items(), key=lambda item: -item[1])[:n]
        return [[name, round(100 * count / total, 1)] for name, count in ordered]

    return {
        "samples": total,
        "innermost_frame_by_package_pct": top(by_package, 10),
        "project_functions_inclusive_pct": top(project, 15),
    }


# --- the run -----------------------------------------------------------------------------------


def _token(base: str, client_id: str, secret: str) -> str:
    response = requests.post(
        f"{base}/o/token/",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _prepare_database(config: Config) -> dict:
    subprocess.run(
        ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", config.database],
        check=True,
    )
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", config.database], check=True)
    _manage(config, "migrate", "--noinput", "-v", "0")
    demo = json.loads(_manage(config, "seed_demo", "--json", capture=True))
    # A rule without caps or limits, so the benchmark measures the platform, not the rule.
    rule_id = _manage(
        config,
        "shell",
        "-c",
        "from points.models import PointRule, PointProgram;"
        "from integrations.models import ApiClient;"
        f"p = PointProgram.objects.get(organization_id='{demo['org_id']}', key='default');"
        "r, _ = PointRule.objects.get_or_create(program=p, name='bench earn', kind='earn');"
        f"ApiClient.objects.get(application__client_id='{demo['partner']['client_id']}')"
        ".rules.add(r);"
        "print('RULE', r.pk)",
        capture=True,
    )
    # `shell` may print notices of its own (auto-imports): take the line we printed.
    rule_id = next(line.split()[1] for line in rule_id.splitlines() if line.startswith("RULE "))
    demo["bench_rule_id"] = rule_id
    with psycopg.connect(f"{PG}/{config.database}") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM points_pointprogram WHERE organization_id = %s AND key = 'default'",
            [demo["org_id"]],
        )
        demo["program_pk"] = cur.fetchone()[0]
    return demo


def _load(config: Config, demo: dict, *, total: int, already: int) -> None:
    """Grow the ledger to `total` transfers: half on the deep member while small, then spread."""
    with psycopg.connect(f"{PG}/{config.database}") as conn:
        if already == 0:
            loader.load_members(
                conn,
                org_id=demo["org_id"],
                program_id=demo["program_pk"],
                count=config.members,
                prefix=MEMBER_PREFIX,
            )
            loader.load_members(
                conn,
                org_id=demo["org_id"],
                program_id=demo["program_pk"],
                count=1,
                prefix=DEEP_MEMBER,
            )
            deep = total // 5
            spread = (total - deep) // config.members
            loader.load_transfers(
                conn, program_id=demo["program_pk"], prefix=DEEP_MEMBER, per_member={"*": deep}
            )
            loader.load_transfers(
                conn,
                program_id=demo["program_pk"],
                prefix=MEMBER_PREFIX,
                per_member={"*": max(1, spread)},
            )
        else:
            spread = (total - already) // config.members
            loader.load_transfers(
                conn, program_id=demo["program_pk"], prefix=MEMBER_PREFIX, per_member={"*": spread}
            )


def _mark(results: Results, workload: str) -> None:
    """Record the machine's load as a workload starts: other processes skew every figure."""
    results.machine.setdefault("load_1min_at_start", {})[workload] = round(os.getloadavg()[0], 2)


def _drop_queue(config: Config) -> None:
    """Delete this run's Celery queue (only it: the Redis database may be shared)."""
    import redis

    with redis.Redis.from_url(config.redis_url) as client:
        client.delete(config.queue)


def _wait_idle(config: Config, timeout: float = 180) -> None:
    """Wait until no other session on the benchmark database is busy.

    wrk stops at its deadline, but the platform finishes the requests in flight (a follower
    batch can take seconds): the next workload must not start behind them.
    """
    deadline = time.monotonic() + timeout
    quiet = 0
    with psycopg.connect(f"{PG}/{config.database}", autocommit=True) as conn:
        while time.monotonic() < deadline and quiet < 3:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid() AND state NOT IN ('idle')",
                [config.database],
            ).fetchone()[0]
            quiet = quiet + 1 if busy == 0 else 0
            time.sleep(0.2)


def _transfer_count(config: Config) -> int:
    with psycopg.connect(f"{PG}/{config.database}") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM points_transfer")
        return cur.fetchone()[0]


def _balance_paths(demo: dict, count: int, path_file: Path) -> None:
    lines = [
        f"/api/v1/orgs/{demo['org_id']}/point-programs/default/balances/{MEMBER_PREFIX}{n}"
        for n in range(1, count + 1)
    ]
    path_file.write_text("\n".join(lines) + "\n")


def _deep_log_path(base: str, token: str, pages: int = 50) -> str | None:
    """Walk the deep member's point log to a deep page; return that page's path."""
    path = f"/api/v1/customers/{DEEP_MEMBER}1/point-log?limit=20"
    for _ in range(pages):
        response = requests.get(
            base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        if response.status_code != 200:
            return None
        cursor = response.json().get("nextCursor")
        if not cursor:
            break
        path = f"/api/v1/customers/{DEEP_MEMBER}1/point-log?limit=20&cursor={cursor}"
    return path


def _follower_bodies(demo: dict, workdir: Path, count: int = 20) -> Path:
    """Pre-built request bodies of 1000 transactions on random bench members."""
    import random

    definition_id = demo["follower"]["definition_id"]
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    files = []
    for n in range(count):
        items = [
            {
                "contactId": f"{MEMBER_PREFIX}{random.randint(1, 10_000)}",
                "amount": random.randint(1, 50),
                "definitionId": definition_id,
                "timeStamp": now,
                "source": "Purchase",
                "description": f"bench {n}",
                "validFrom": now,
                "validTo": None,
            }
            for _ in range(1000)
        ]
        file = workdir / f"follower-{n}.json"
        file.write_text(json.dumps(items))
        files.append(str(file))
    listing = workdir / "follower-bodies.txt"
    listing.write_text("\n".join(files) + "\n")
    return listing


def executemany_reference(config: Config, demo: dict, seconds: int) -> float:
    """Rows/s of a plain psycopg executemany into the same tables the follower bulk writes."""
    with psycopg.connect(f"{PG}/{config.database}") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT a.id FROM points_pointaccount a JOIN points_pointprogram p ON p.id = "
            "a.program_id WHERE p.definition_id = %s AND a.kind = 'issued' "
            "AND p.organization_id = %s",
            [demo["follower"]["definition_id"], demo["org_id"]],
        )
        issued = cur.fetchone()
        cur.execute(
            "SELECT id, program_id FROM points_pointaccount WHERE kind = 'member' "
            "AND program_id = %s LIMIT 1000",
            [demo["program_pk"]],
        )
        accounts = cur.fetchall()
        issued_id = issued[0] if issued else accounts[0][0]
        rows, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            now = dt.datetime.now(dt.UTC)
            transfer_rows = [
                (
                    program_id,
                    issued_id,
                    account_id,
                    account_id,
                    5,
                    "sync",
                    "Purchase",
                    "ref",
                    "",
                    "bench",
                    5,
                    now,
                )
                for account_id, program_id in accounts
            ]
            cur.executemany(
                "INSERT INTO points_transfer (program_id, debit_account_id, credit_account_id, "
                "member_account_id, amount, kind, source, description, reference, actor, "
                "member_balance_after, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                transfer_rows,
            )
            cur.executemany(
                "INSERT INTO points_pointlot (account_id, amount, remaining, valid_from, status, "
                "source, description, reference, actor, created_at) "
                "VALUES (%s, 5, 5, %s, 'active', 'Purchase', 'ref', '', 'bench', %s)",
                [(account_id, now, now) for account_id, _ in accounts],
            )
            cur.executemany(
                "UPDATE points_pointaccount SET balance = balance + 5 WHERE id = %s",
                [(account_id,) for account_id, _ in accounts],
            )
            conn.rollback()  # measure the writes, keep the ledger as it was
            rows += len(accounts)
        return rows / (time.monotonic() - started)


def _e2e_latencies(config: Config, sink: CallbackSink, run: str) -> tuple[list[float], int, int]:
    with psycopg.connect(f"{PG}/{config.database}") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT request_id, extract(epoch from created_at) FROM partner_partnerrequest "
            "WHERE request_id LIKE %s",
            [f"{run}-%"],
        )
        accepted = dict(cur.fetchall())
    # The requestId ends with the millisecond wrk made the request (bench/lua/partner_earn.lua);
    # the request's created_at is the fallback for ids without it.
    latencies = []
    for request_id, created in accepted.items():
        if request_id not in sink.arrivals:
            continue
        sent_ms = request_id.rsplit("-", 1)[-1]
        sent = int(sent_ms) / 1000 if sent_ms.isdigit() else float(created)
        latencies.append((sink.arrivals[request_id] - sent) * 1000)
    return latencies, len(accepted), len(accepted) - len(latencies)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def _web_command(config: Config) -> list[str]:
    bind = ["--host", "127.0.0.1", "--port", str(config.port)]
    if config.web_server == "granian":
        return [
            str(Path(sys.executable).parent / "granian"),
            "--interface",
            "wsgi",
            "--workers",
            str(config.web_workers),
            "--blocking-threads",
            str(config.web_threads),
            *bind,
            "--log-level",
            "warning",
            "--no-access-log",
            "loyalty.wsgi:application",
        ]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "loyalty.wsgi:application",
        "--workers",
        str(config.web_workers),
        *(
            ["--worker-class", "gthread", "--threads", str(config.web_threads)]
            if config.web_threads > 1
            else []
        ),
        "--bind",
        f"127.0.0.1:{config.port}",
        "--log-level",
        "warning",
        "--keep-alive",
        "30",
    ]


def run(config: Config) -> Results:
    for tool in ("wrk", "pgbench", "createdb", "dropdb"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install wrk postgresql-client")
    results = Results(
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine={
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "host": socket.gethostname(),
        },
        config=config.__dict__.copy(),
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    print("preparing database and demo data ...", flush=True)
    demo = _prepare_database(config)
    _load(config, demo, total=config.small_transfers, already=0)
    base = f"http://127.0.0.1:{config.port}"
    web = _start(_web_command(config), config, workdir / "web.log")
    _drop_queue(config)
    worker = _start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "loyalty",
            "worker",
            "--concurrency",
            str(config.celery_concurrency),
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        config,
        workdir / "celery.log",
    )
    sink = CallbackSink()
    reference = Pgbench(config)
    profiler = Profiler(config.profile, workdir)
    cpu = CpuMeter(web, worker)
    try:
        _wait_http(f"{base}/healthz")
        partner_token = _token(base, demo["partner"]["client_id"], demo["partner"]["client_secret"])
        follower_token = _token(
            base, demo["follower"]["client_id"], demo["follower"]["client_secret"]
        )
        balance_paths = workdir / "balances.txt"
        _balance_paths(demo, config.members, balance_paths)

        print("cost growth: small ledger ...", flush=True)
        small = _cost_growth_probe(config, base, partner_token, balance_paths)

        print("reference: pgbench initialisation ...", flush=True)
        reference.init()

        print("loading the large ledger ...", flush=True)
        _load(config, demo, total=config.large_transfers, already=_transfer_count(config))
        results.config["transfers_loaded"] = _transfer_count(config)
        large = _cost_growth_probe(config, base, partner_token, balance_paths)

        eai_auth = base64.b64encode(
            f"{demo['eai_vendor']['username']}:{demo['eai_vendor']['password']}".encode()
        ).decode()
        eai_env = {
            "BENCH_EAI_AUTH": eai_auth,
            "BENCH_MEMBERS": str(config.members),
            "BENCH_MEMBER_PREFIX": MEMBER_PREFIX,
        }
        print("reference: pgbench TPC-B ...", flush=True)
        tpcb = results.reference["tpcb_tps_before_eai"] = reference.run(select_only=False)
        print("workload 1: EAI commit -> confirm ...", flush=True)
        stamp = int(time.time())
        wrk(
            config,
            "eai_pairs.lua",
            "/",
            {**eai_env, "BENCH_RUN": f"w{stamp}"},
            duration=config.warmup,
        )
        _wait_idle(config)
        _mark(results, "eai_pairs")
        profiler.start("eai_pairs", [web], config.duration)
        cpu.start()
        eai = wrk(
            config,
            "eai_pairs.lua",
            "/",
            {**eai_env, "BENCH_RUN": f"m{stamp}"},
            duration=config.duration,
        )
        # A pair counts when its confirm succeeded.
        pairs = eai.extra.get("pairs", 0) / eai.duration_s
        results.workloads["eai_pairs"] = {
            "pairs_per_s": round(pairs, 1),
            "p50_ms": eai.p50_ms,
            "p99_ms": eai.p99_ms,
            "errors": eai.errors,
            "non2xx": eai.non2xx,
            "statuses": eai.statuses,
            "ratio_to_tpcb": round(pairs / tpcb, 3),
            "cpu_ms_per_request": cpu.per_request_ms(eai.ok),
            "profile": profiler.summary(),
        }
        _wait_idle(config)

        print("reference: pgbench TPC-B ...", flush=True)
        tpcb = results.reference["tpcb_tps_before_partner"] = reference.run(select_only=False)
        print("workload 2: partner earn ...", flush=True)
        run_id = f"bench{int(time.time())}"
        partner_env = {
            "BENCH_TOKEN": partner_token,
            "BENCH_RULE": demo["bench_rule_id"],
            "BENCH_SINK": sink.url,
            "BENCH_MEMBERS": str(config.members),
            "BENCH_MEMBER_PREFIX": MEMBER_PREFIX,
        }
        wrk(
            config,
            "partner_earn.lua",
            "/",
            {**partner_env, "BENCH_RUN": f"{run_id}w"},
            duration=config.warmup,
        )
        # The warm-up's requests are processed before the measured run starts, so its callbacks
        # are not queued ahead of the measured ones.
        _wait_for_callbacks(config, sink, f"{run_id}w", timeout=120)
        _wait_idle(config)
        _mark(results, "partner_earn")
        profiler.start("partner_earn", [web, worker], config.duration)
        cpu.start()
        earn = wrk(
            config,
            "partner_earn.lua",
            "/",
            {**partner_env, "BENCH_RUN": run_id},
            duration=config.duration,
        )
        _wait_for_callbacks(config, sink, run_id, timeout=120)
        # Accepting, processing and calling back every request of the run.
        earn_cpu = cpu.per_request_ms(earn.ok)
        latencies, accepted, missing = _e2e_latencies(config, sink, run_id)
        results.workloads["partner_earn"] = {
            "accepted_per_s": round(earn.rate, 1),
            "p50_ms": earn.p50_ms,
            "p99_ms": earn.p99_ms,
            "callback_p50_ms": round(_percentile(latencies, 50), 1),
            "callback_p99_ms": round(_percentile(latencies, 99), 1),
            "accepted": accepted,
            "callbacks_missing": missing,
            "callbacks_failed": sum(
                1
                for request_id, status in sink.statuses.items()
                if request_id.startswith(f"{run_id}-") and status != "success"
            ),
            "callbacks_duplicated": sink.duplicates,
            "non2xx": earn.non2xx,
            "statuses": earn.statuses,
            "ratio_to_tpcb": round(earn.rate / tpcb, 3),
            "cpu_ms_per_request": earn_cpu,
            "profile": profiler.summary(),
        }
        _wait_idle(config)

        print("workload 3: follower bulk transactions ...", flush=True)
        bodies = _follower_bodies(demo, workdir)
        follower_env = {
            "BENCH_TOKEN": follower_token,
            "BENCH_BODIES": str(bodies),
            "BENCH_PATH": "/api/v2/point-accounts/transactions",
        }
        wrk(config, "post_bodies.lua", "/", follower_env, duration=config.warmup, timeout_s=60)
        _wait_idle(config)
        _mark(results, "follower_bulk")
        profiler.start("follower_bulk", [web], config.duration)
        bulk = wrk(
            config, "post_bodies.lua", "/", follower_env, duration=config.duration, timeout_s=60
        )
        # Requests still running when wrk stops would slow the next workload down.
        _wait_idle(config)
        reference_rows = executemany_reference(config, demo, seconds=min(10, config.duration))
        rows_per_s = bulk.rate * 1000
        results.workloads["follower_bulk"] = {
            "rows_per_s": round(rows_per_s, 1),
            "requests_per_s": round(bulk.rate, 2),
            "p50_ms": bulk.p50_ms,
            "p99_ms": bulk.p99_ms,
            "non2xx": bulk.non2xx,
            "statuses": bulk.statuses,
            "executemany_rows_per_s": round(reference_rows, 1),
            "ratio_to_executemany": round(rows_per_s / reference_rows, 3),
            "profile": profiler.summary(),
        }

        print("reference: pgbench -S ...", flush=True)
        select_only = results.reference["select_only_tps"] = reference.run(select_only=True)
        print("workload 4: balance reads ...", flush=True)
        read_env = {"BENCH_TOKEN": partner_token, "BENCH_PATHS": str(balance_paths)}
        wrk(config, "get_paths.lua", "/", read_env, duration=config.warmup)
        _mark(results, "balance_reads")
        profiler.start("balance_reads", [web], config.duration)
        cpu.start()
        reads = wrk(config, "get_paths.lua", "/", read_env, duration=config.duration)
        reads_cpu = cpu.per_request_ms(reads.ok)
        results.workloads["balance_reads"] = {
            "requests_per_s": round(reads.rate, 1),
            "p50_ms": reads.p50_ms,
            "p99_ms": reads.p99_ms,
            "non2xx": reads.non2xx,
            "statuses": reads.statuses,
            "ratio_to_select_only": round(reads.rate / select_only, 3),
            "cpu_ms_per_request": reads_cpu,
            "profile": profiler.summary(),
        }

        results.workloads["cost_growth"] = {
            "balance_p50_ms_small": small["balance_p50_ms"],
            "balance_p50_ms_large": large["balance_p50_ms"],
            "balance_ratio": _ratio(large["balance_p50_ms"], small["balance_p50_ms"]),
            "deep_log_p50_ms_small": small.get("deep_log_p50_ms"),
            "deep_log_p50_ms_large": large.get("deep_log_p50_ms"),
            "deep_log_ratio": _ratio(large.get("deep_log_p50_ms"), small.get("deep_log_p50_ms")),
        }
        print("verifying the ledger ...", flush=True)
        verify = subprocess.run(
            [sys.executable, "manage.py", "verify_ledger"],
            env=_env(config),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        results.checks["verify_ledger"] = "ok" if verify.returncode == 0 else verify.stderr[-500:]
    finally:
        sink.stop()
        _stop(web)
        _stop(worker)
        _drop_queue(config)
        reference.drop()
    results.reference["tpcb_tps"] = round(
        (
            results.reference.get("tpcb_tps_before_eai", 0)
            + results.reference.get("tpcb_tps_before_partner", 0)
        )
        / 2,
        1,
    )
    results.checks["targets"] = _targets(results)
    print(f"logs and raw profiles: {workdir}", flush=True)
    return results


def _cost_growth_probe(config: Config, base: str, token: str, balance_paths: Path) -> dict:
    env = {"BENCH_TOKEN": token, "BENCH_PATHS": str(balance_paths)}
    seconds = max(5, config.duration // 2)
    # The load has just left hundreds of megabytes to write back: write them now, so the probe
    # measures reads of a bigger ledger, not the checkpointer's disk and CPU.
    with psycopg.connect(f"{PG}/{config.database}", autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    _wait_idle(config)
    # Warm the workers (imports, connections, caches) so both probes measure steady state.
    wrk(config, "get_paths.lua", "/", env, duration=config.warmup, connections=4)
    balance = wrk(config, "get_paths.lua", "/", env, duration=seconds, connections=4)
    probe = {"balance_p50_ms": balance.p50_ms}
    deep = _deep_log_path(base, token)
    if deep:
        deep_file = balance_paths.with_name("deep.txt")
        deep_file.write_text(deep + "\n")
        log = wrk(
            config,
            "get_paths.lua",
            "/",
            {"BENCH_TOKEN": token, "BENCH_PATHS": str(deep_file)},
            duration=seconds,
            connections=4,
        )
        probe["deep_log_p50_ms"] = log.p50_ms
    return probe


def _wait_for_callbacks(config: Config, sink: CallbackSink, run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _latencies, accepted, missing = _e2e_latencies(config, sink, run_id)
        if accepted and missing == 0:
            return
        time.sleep(1)


def _ratio(a, b):
    if not a or not b:
        return None
    return round(a / b, 3)


def _targets(results: Results) -> dict:
    w = results.workloads
    checks = {}

    def check(name, value, target, higher_is_better=True):
        if value is None:
            checks[name] = {"value": None, "target": target, "met": False, "note": "not measured"}
            return
        met = value >= target if higher_is_better else value <= target
        gap = value / target if higher_is_better else target / value if value else None
        checks[name] = {
            "value": value,
            "target": target,
            "met": met,
            "factor_of_target": round(gap, 3) if gap else None,
        }

    check(
        "eai_pairs_ratio", w.get("eai_pairs", {}).get("ratio_to_tpcb"), TARGETS["eai_pairs_ratio"]
    )
    check("eai_p99_ms", w.get("eai_pairs", {}).get("p99_ms"), TARGETS["eai_p99_ms"], False)
    check(
        "partner_accept_ratio",
        w.get("partner_earn", {}).get("ratio_to_tpcb"),
        TARGETS["partner_accept_ratio"],
    )
    check(
        "partner_callback_p99_ms",
        w.get("partner_earn", {}).get("callback_p99_ms"),
        TARGETS["partner_callback_p99_ms"],
        False,
    )
    check(
        "follower_rows_ratio",
        w.get("follower_bulk", {}).get("ratio_to_executemany"),
        TARGETS["follower_rows_ratio"],
    )
    check(
        "balance_reads_ratio",
        w.get("balance_reads", {}).get("ratio_to_select_only"),
        TARGETS["balance_reads_ratio"],
    )
    growth = w.get("cost_growth", {})
    check("cost_growth_balance", growth.get("balance_ratio"), TARGETS["cost_growth_ratio"], False)
    check("cost_growth_deep_log", growth.get("deep_log_ratio"), TARGETS["cost_growth_ratio"], False)
    lost = w.get("partner_earn", {}).get("callbacks_missing")
    checks["callbacks_lost"] = {"value": lost, "target": 0, "met": lost == 0}
    return checks


def _web_server_label(config: dict) -> str:
    # Results written before the choice existed ran gunicorn.
    server = config.get("web_server", "gunicorn")
    workers, threads = config["web_workers"], config["web_threads"]
    return f"{server}, {workers} workers x {threads} threads"


def render_markdown(results: Results) -> str:
    r = results.reference
    lines = [
        f"# Benchmark {results.started_at}",
        "",
        f"Machine: {results.machine['cpus']} CPUs, Python {results.machine['python']}. "
        f"{results.config['clients']} clients, {results.config['duration']} s per workload "
        f"after {results.config['warmup']} s warm-up; ledger "
        f"{results.config.get('transfers_loaded', '?')} transfers, "
        f"{results.config['members']} members. Web: {_web_server_label(results.config)}.",
        "",
        f"Reference, measured right before the workloads it is compared with: pgbench TPC-B "
        f"{r.get('tpcb_tps_before_eai', 0):.0f} tps (before EAI), "
        f"{r.get('tpcb_tps_before_partner', 0):.0f} tps (before partner earn); pgbench -S "
        f"{r.get('select_only_tps', 0):.0f} tps (before balance reads).",
        "",
        "Load average (1 min) as each workload started (other processes on the machine): "
        + ", ".join(
            f"{name} {load}" for name, load in results.machine.get("load_1min_at_start", {}).items()
        )
        + ".",
        "",
        "| workload | figure | reference ratio | target | met | factor of target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    w, t = results.workloads, results.checks.get("targets", {})

    def row(name, figure, check_name):
        check = t.get(check_name, {})
        met = "yes" if check.get("met") else "no"
        # Above 1 the target is met with that much to spare; below 1 it is missed by that factor.
        factor = check.get("factor_of_target")
        lines.append(
            f"| {name} | {figure} | {check.get('value')} | {check.get('target')} | {met} "
            f"| {factor if factor is not None else '-'} |"
        )

    if "eai_pairs" in w:
        e = w["eai_pairs"]
        row("EAI commit->confirm", f"{e['pairs_per_s']} pairs/s", "eai_pairs_ratio")
        row(
            "EAI per-request p99",
            f"p50 {e['p50_ms']:.1f} ms, p99 {e['p99_ms']:.1f} ms",
            "eai_p99_ms",
        )
    if "partner_earn" in w:
        p = w["partner_earn"]
        row("partner earn accepted", f"{p['accepted_per_s']} /s", "partner_accept_ratio")
        row(
            "partner callback e2e",
            f"p50 {p['callback_p50_ms']} ms, p99 "
            f"{p['callback_p99_ms']} ms, lost {p['callbacks_missing']}",
            "partner_callback_p99_ms",
        )
    if "follower_bulk" in w:
        f = w["follower_bulk"]
        row(
            "follower bulk",
            f"{f['rows_per_s']} rows/s (executemany {f['executemany_rows_per_s']})",
            "follower_rows_ratio",
        )
    if "balance_reads" in w:
        b = w["balance_reads"]
        row("balance reads", f"{b['requests_per_s']} /s", "balance_reads_ratio")
    if "cost_growth" in w:
        c = w["cost_growth"]
        row(
            "cost growth: balance p50",
            f"{c['balance_p50_ms_small']} -> {c['balance_p50_ms_large']} ms",
            "cost_growth_balance",
        )
        row(
            "cost growth: deep audit page p50",
            f"{c['deep_log_p50_ms_small']} -> {c['deep_log_p50_ms_large']} ms",
            "cost_growth_deep_log",
        )
    lines += [
        "",
        "The executemany reference rolls its rows back (it must leave the ledger as it was), so "
        "it never waits for a commit's WAL flush; the platform's batches do: the follower ratio "
        "is on the conservative side.",
        "",
        f"verify_ledger: {results.checks.get('verify_ledger')}",
        "",
    ]
    cpu = {name: w[name].get("cpu_ms_per_request") for name in w if isinstance(w[name], dict)}
    if any(cpu.values()):
        lines += [
            "CPU time per successful request, by process (/proc; a partner earn's includes its "
            "processing and callback):",
            "",
        ]
        for name, parts in cpu.items():
            if parts:
                lines.append(
                    f"- {name}: " + ", ".join(f"{part} {ms} ms" for part, ms in parts.items())
                )
        lines.append("")
    profiles = {name: w[name].get("profile") for name in w if isinstance(w[name], dict)}
    if any(profiles.values()):
        lines += ["## Where the time goes (py-spy samples of the platform's processes)", ""]
        for name, profile in profiles.items():
            if not profile or not profile.get("samples"):
                continue
            packages = ", ".join(
                f"{package} {pct}%" for package, pct in profile["innermost_frame_by_package_pct"]
            )
            functions = ", ".join(
                f"{function} {pct}%"
                for function, pct in profile["project_functions_inclusive_pct"][:8]
            )
            lines += [
                f"- **{name}** ({profile['samples']} samples). Innermost frame by package: "
                f"{packages}.",
                f"  Project functions (inclusive): {functions}.",
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs on a small ledger (a smoke test, not a measurement)",
    )
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument(
        "--web-server",
        choices=["granian", "gunicorn"],
        default=Config.web_server,
        help="granian (production's) or gunicorn",
    )
    parser.add_argument(
        "--web-workers", type=int, help="processes (default: 2 for granian, 4 for gunicorn)"
    )
    parser.add_argument(
        "--web-threads",
        type=int,
        help="threads per process (default: 2 for granian, 1 for gunicorn; > 1: gthread)",
    )
    parser.add_argument("--celery-concurrency", type=int, default=Config.celery_concurrency)
    parser.add_argument(
        "--no-profile", action="store_true", help="do not sample the platform with py-spy"
    )
    args = parser.parse_args(argv)
    sizes = (
        {"duration": 5, "warmup": 2, "members": 1000, "small_transfers": 2000}
        | {"large_transfers": 20_000}
        if args.quick
        else {"duration": args.duration}
    )
    config = Config(
        **sizes,
        web_server=args.web_server,
        web_workers=args.web_workers or (2 if args.web_server == "granian" else 4),
        web_threads=args.web_threads or (2 if args.web_server == "granian" else 1),
        celery_concurrency=args.celery_concurrency,
        profile=not args.no_profile,
    )
    results = run(config)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H%M")
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"{stamp}{suffix}.json").write_text(json.dumps(results.__dict__, indent=2))
    markdown = render_markdown(results)
    (RESULTS / f"{stamp}{suffix}.md").write_text(markdown)
    print(markdown)
    return 0
