"""Health check, demo data, member id validation."""

import json

import pytest
from django.core.management import call_command

from loyalty.validators import external_id_problem
from points.selectors import ledger_verify

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_broker(client, settings):
    settings.REDIS_URL = ""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "not configured"},
    }


def test_healthz_is_503_when_the_broker_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "down"


def test_seed_demo_is_idempotent_and_prints_every_key(capsys):
    call_command("seed_demo", "--json")
    first = json.loads(capsys.readouterr().out)
    call_command("seed_demo", "--json")
    second = json.loads(capsys.readouterr().out)

    expected = {
        "org_id",
        "program",
        "definition_id",
        "admin",
        "members",
        "partner",
        "eai_vendor",
        "follower",
        "rewards_service",
    }
    assert expected <= set(second)
    assert first["org_id"] == second["org_id"]
    # Credentials are reset on each run; points are granted once.
    assert first["admin"]["password"] != second["admin"]["password"]
    assert [m["points"] for m in first["members"]] == [m["points"] for m in second["members"]]
    assert ledger_verify().ok


def test_seed_demo_prints_each_client_s_credentials_in_full(capsys):
    call_command("seed_demo", "--json")
    data = json.loads(capsys.readouterr().out)
    call_command("seed_demo")
    lines = capsys.readouterr().out.splitlines()

    printed = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1] for line in lines if ": {" in line
    }
    for key in ("partner", "eai_vendor", "follower", "rewards_service"):
        # credentials are reset on each run: compare the shape, every key of the client
        assert set(json.loads(printed[key])) == set(data[key])
    assert f"organisation id: {data['org_id']}" in "\n".join(lines)


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.com",
        "+46 70 123 45 67",
        "(555) 123-4567",
        "555-123-4567",
        "123-45-6789",
        "19900101-1234",
        "",
        "x" * 200,
        "has space",
    ],
)
def test_pii_shaped_external_ids_are_refused(value):
    assert external_id_problem(value) is not None


@pytest.mark.parametrize(
    "value",
    [
        "demo-alice",
        "111111fa6-103b-459b-8d01-b6c000e8e26a",
        "00000000-0000-0000-0000-000000000001",
        "12345678",
        "CUST:000123",
    ],
)
def test_opaque_external_ids_are_accepted(value):
    assert external_id_problem(value) is None


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    assert (tmp_path / "s.yml").read_text().count("operationId") > 40
