"""Fixtures of the reliability suite: the world of every contract (tests/reliability/worlds.py),
a partner's server, and a directory for the logs of the processes a test starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.cache import cache

from integrations.partner.services import drain_key, drain_slots
from tests.reliability.worlds import build_world


@pytest.fixture(autouse=True)
def generous_rate_limit(settings):
    # Tests send faster than any partner would; the throttle has its own tests (security/).
    settings.PARTNER_API_RATE = "100000/s"


@pytest.fixture(autouse=True)
def free_drain_slots():
    # A drainer killed with an earlier test's worker holds its slot until the lease runs out;
    # a request accepted meanwhile would find it taken and not publish (what some tests watch).
    cache.delete_many([drain_key(slot) for slot in range(drain_slots())])


@pytest.fixture
def log_dir(tmp_path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def world(db, org, make_program, make_member, receiver, insecure_callbacks, django_user_model):
    return build_world(
        org=org,
        make_program=make_program,
        make_member=make_member,
        callback_url=f"{receiver.url}/callback",
        django_user_model=django_user_model,
    )
