"""Operator console of the follower mode, seed_demo's follower part, and the OpenAPI schema."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from integrations.follower import services
from integrations.follower.models import BalanceJob, FollowerProgram
from integrations.follower_crypto import decrypt_payload, encrypt_payload
from loyalty.demo import demo_seed
from points.models import PointProgram, ProgramMode
from tests.follower.conftest import BALANCES, TRANSACTIONS, MasterApi

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    return client


def _connection_form(program, **fields):
    return {
        "mode": program.mode,
        "master_webhook_url": program.master_webhook_url,
        "master_points_log_url": program.master_points_log_url,
        **fields,
    }


def test_a_program_cannot_switch_to_a_follower_mode_before_its_webhook_key_is_set(
    admin_client, program
):
    url = reverse("admin:follower_followerprogram_change", args=[program.pk])

    response = admin_client.post(
        url,
        _connection_form(
            program,
            mode=ProgramMode.FOLLOWER_BALANCE,
            master_webhook_url="https://93.184.215.14/webhook",
        ),
    )

    assert response.status_code == 200  # the form again, with the error
    assert "Generate a webhook key before switching" in response.content.decode()
    program.refresh_from_db()
    assert (program.mode, program.master_webhook_key) == (ProgramMode.MASTER, "")


def test_generating_a_key_and_setting_the_webhook_switches_the_program_to_follower(
    admin_client, program
):
    url = reverse("admin:follower_followerprogram_change", args=[program.pk])

    response = admin_client.post(
        url,
        _connection_form(
            program,
            mode=ProgramMode.FOLLOWER_TRANSACTIONS,
            master_webhook_url="https://93.184.215.14/webhook",
            generate_key="on",
        ),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    program.refresh_from_db()
    assert program.mode == ProgramMode.FOLLOWER_TRANSACTIONS
    # the new key is a working AES-256 key
    assert decrypt_payload(
        encrypt_payload({"a": 1}, program.master_webhook_key), program.master_webhook_key
    ) == {"a": 1}


def test_a_webhook_url_to_an_internal_address_is_refused(admin_client, program):
    url = reverse("admin:follower_followerprogram_change", args=[program.pk])

    response = admin_client.post(
        url, _connection_form(program, master_webhook_url="https://127.0.0.1/hook")
    )

    assert response.status_code == 200
    assert "This URL may not be called" in response.content.decode()
    program.refresh_from_db()
    assert program.master_webhook_url == ""


def test_the_generate_key_action_replaces_the_key(admin_client, transactions_program):
    old_key = transactions_program.master_webhook_key

    response = admin_client.post(
        reverse("admin:follower_followerprogram_changelist"),
        {"action": "generate_webhook_key", "_selected_action": [transactions_program.pk]},
    )

    assert response.status_code == 302
    transactions_program.refresh_from_db()
    assert transactions_program.master_webhook_key not in ("", old_key)


def test_a_balance_job_shows_its_status_and_messages(
    admin_client, master_api, balance_program, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        master_api.post(
            BALANCES,
            [
                {
                    "contactId": "contact-1",
                    "amount": 12,
                    "definitionId": balance_program.definition_id,
                    "timeStamp": "2023-05-16T12:20:03.807Z",
                }
            ],
        )
    job = BalanceJob.objects.get()

    changelist = admin_client.get(reverse("admin:follower_balancejob_changelist"))
    page = admin_client.get(reverse("admin:follower_balancejob_change", args=[job.pk]))

    assert changelist.status_code == 200
    assert page.status_code == 200
    assert "contact contact-1 set to 12 points" in page.content.decode()
    assert "Completed" in page.content.decode()


def test_seed_demo_makes_a_follower_program_and_a_working_master_client(client):
    first = demo_seed()["follower"]
    second = demo_seed()["follower"]

    # idempotent, with fresh credentials on each run
    assert set(second) == {"client_id", "client_secret", "definition_id", "program", "webhook_key"}
    assert second["client_id"] == first["client_id"]
    assert second["client_secret"] != first["client_secret"]
    assert second["webhook_key"] != first["webhook_key"]
    program = PointProgram.objects.get(key=second["program"])
    assert program.mode == ProgramMode.FOLLOWER_TRANSACTIONS
    assert program.definition_id == second["definition_id"] == 2
    assert program.master_webhook_key == second["webhook_key"]
    assert FollowerProgram.objects.filter(pk=program.pk).exists()

    # the printed credentials drive the follower API
    token = client.post(
        "/o/token/",
        {
            "grant_type": "client_credentials",
            "client_id": second["client_id"],
            "client_secret": second["client_secret"],
        },
    ).json()["access_token"]
    response = MasterApi(client, token).post(
        TRANSACTIONS,
        [
            {
                "contactId": "demo-alice",
                "amount": 10,
                "definitionId": second["definition_id"],
                "timeStamp": "2023-06-01T08:40:51.658Z",
            }
        ],
    )
    assert response.status_code == 202, response.content


def test_the_follower_endpoints_are_in_the_openapi_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    paths = schema["paths"]
    assert "post" in paths["/api/v2/point-accounts/balances"]
    assert "get" in paths["/api/v2/point-accounts/balances/status/{id}"]
    transactions = paths["/api/v2/point-accounts/transactions"]["post"]
    assert transactions["requestBody"]["content"]["application/json"]["schema"]["type"] == "array"
    assert {"202", "400", "401", "403", "409"} <= set(transactions["responses"])


def test_an_operator_sees_only_their_organisations_balance_jobs(
    client, django_user_model, org, make_org, master_client, make_master_client
):
    # given a job of our organisation and one of another
    ours = services.balance_job_create(client=master_client.client, items=[])
    theirs = services.balance_job_create(client=make_master_client(make_org()).client, items=[])
    operator = django_user_model.objects.create_user("op", "op@example.com", "pw", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="view_balancejob"))
    org.operators.add(operator)
    client.force_login(operator)

    # then the other organisation's job is not found for our operator
    assert (
        client.get(reverse("admin:follower_balancejob_change", args=[ours.pk])).status_code == 200
    )
    response = client.get(reverse("admin:follower_balancejob_change", args=[theirs.pk]))
    assert response.status_code == 302  # the admin's "does not exist" redirect
