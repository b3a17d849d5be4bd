"""The partner API's place in the platform: OpenAPI schema, Celery tasks, the beat schedule."""

import pytest
from django_celery_beat.models import PeriodicTask

from loyalty.celery import app
from tests.conftest import rerun_data_migration

pytestmark = pytest.mark.django_db


def test_every_partner_endpoint_is_in_the_openapi_schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    post = paths["/api/v1/points"]["post"]
    assert set(post["responses"]) >= {"202", "400", "401", "403", "409", "429"}
    assert "requestBody" in post
    for prefix in ("/api/v1", "/latitude-points"):
        path = f"{prefix}/orgs/{{orgId}}/point-programs/{{programKey}}/balances/{{userId}}"
        get = paths[path]["get"]
        assert set(get["responses"]) >= {"200", "401", "403", "404"}
    schemas = response.json()["components"]["schemas"]
    assert set(schemas["PartnerPointRequestRequest"]["properties"]) == {
        "userId",
        "ruleId",
        "amount",
        "requestId",
        "callbackUrl",
    }


def test_the_tasks_are_registered_and_the_sweeper_is_scheduled():
    rerun_data_migration("integrations.partner.migrations.0002_sweeper_job")
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery

    assert {"partner.process_request", "partner.sweep_requests"} <= set(app.tasks)
    job = PeriodicTask.objects.get(task="partner.sweep_requests")
    assert job.enabled and job.interval.every == 30
