"""Shared fixtures: organisations, programs and members, and the markers that need real services.

`postgres` tests skip on SQLite and `redis` tests skip without REDIS_URL, each saying why; CI
runs them all against PostgreSQL and Redis.
"""

import importlib
import itertools
import os
from pathlib import Path

import pytest
from django.conf import settings

from loyalty.models import Member, Organization
from points import services as point_services
from points.models import PointProgram
from tests.http_support import RecordingServer

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
_counter = itertools.count(1)


def is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] in (
        "django.db.backends.postgresql",
        "loyalty.backends.postgresql",
    )


def rerun_data_migration(module: str) -> None:
    """Run a data migration's RunPython steps again, as `migrate` did.

    Transactional tests flush the database, rows written by migrations included; a test of
    what a data migration writes calls this first, so it holds in any test order.
    """
    from django.apps import apps
    from django.db.migrations import RunPython

    for operation in importlib.import_module(module).Migration.operations:
        if isinstance(operation, RunPython):
            operation.code(apps, None)


def pytest_collection_modifyitems(config, items):
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
    skip_redis = pytest.mark.skip(reason="needs Redis and a real worker: set REDIS_URL (CI does)")
    for item in items:
        if "postgres" in item.keywords and not is_postgres():
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not os.environ.get("REDIS_URL"):
            item.add_marker(skip_redis)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Save a screenshot of the browser page when a browser test fails."""
    outcome = yield
    report = outcome.get_result()
    page = getattr(item, "browser_page", None)
    if report.when == "call" and report.failed and page is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{item.name}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
            report.sections.append(("screenshot", str(path)))
        except Exception as exc:  # the page may be gone; the failure itself matters more
            report.sections.append(("screenshot", f"not saved: {exc}"))


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def make_org(db):
    def make(**fields) -> Organization:
        slug = fields.pop("slug", unique("org"))
        return Organization.objects.create(name=fields.pop("name", slug), slug=slug, **fields)

    return make


@pytest.fixture
def org(make_org):
    return make_org()


@pytest.fixture
def make_program(db):
    def make(organization, **fields) -> PointProgram:
        key = fields.pop("key", "default")
        definition_id = fields.pop(
            "definition_id",
            PointProgram.objects.filter(organization=organization).count() + 1,
        )
        program = PointProgram.objects.create(
            organization=organization,
            key=key,
            name=fields.pop("name", key),
            definition_id=definition_id,
            **fields,
        )
        point_services.program_system_accounts_ensure(program=program)
        return program

    return make


@pytest.fixture
def program(org, make_program):
    return make_program(org)


@pytest.fixture
def make_member(db):
    def make(organization, **fields) -> Member:
        return Member.objects.create(
            organization=organization,
            external_id=fields.pop("external_id", unique("member")),
            first_name=fields.pop("first_name", "Test"),
            last_name=fields.pop("last_name", "Member"),
            **fields,
        )

    return make


@pytest.fixture
def member(org, make_member):
    return make_member(org)


@pytest.fixture
def insecure_callbacks(settings):
    """Callbacks and webhooks may go to http://127.0.0.1 (the tests' local receivers)."""
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True


@pytest.fixture
def receiver():
    """A local HTTP server standing in for a partner: it records what it receives."""
    server = RecordingServer().start()
    yield server
    server.stop()


@pytest.fixture
def client():
    """Django's test client, with the fast lane in front as in production (loyalty/wsgi.py)."""
    from tests.fast_lane_support import FastLaneClient

    return FastLaneClient()
