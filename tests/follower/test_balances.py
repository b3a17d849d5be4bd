"""POST /api/v2/point-accounts/balances and its status: a queued job that sets each balance."""

from __future__ import annotations

import datetime as dt
import io
import time

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from integrations.follower import services
from integrations.follower.models import BalanceJob, BalanceJobStatus
from loyalty.models import Member
from points.models import PointAccount, ProgramMode, Transfer, TransferKind
from points.selectors import balance_get, ledger_verify
from tests.celery_support import purge_queue, real_broker, running_worker
from tests.conftest import rerun_data_migration
from tests.follower.conftest import BALANCES, MasterApi, status_path, token_for

pytestmark = pytest.mark.django_db

T1 = "2023-05-16T12:20:03.807Z"
T2 = "2023-05-16T12:25:00.000Z"


def balance(contact, amount, definition_id, time_stamp=T1):
    return {
        "contactId": contact,
        "amount": amount,
        "definitionId": definition_id,
        "timeStamp": time_stamp,
    }


def points_of(program, external_id) -> int:
    member = Member.objects.get(organization=program.organization, external_id=external_id)
    return balance_get(program=program, member=member).balance


# --- with a real worker, over HTTP ---------------------------------------------------------------


class HttpMaster:
    """The point master as a real HTTP client of the live server."""

    def __init__(self, base_url, created_client):
        self.base_url = base_url
        token = requests.post(
            f"{base_url}/o/token/",
            data={
                "grant_type": "client_credentials",
                "client_id": created_client.client_id,
                "client_secret": created_client.client_secret,
            },
            timeout=10,
        ).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def post_balances(self, body):
        return requests.post(
            f"{self.base_url}{BALANCES}", json=body, headers=self.headers, timeout=10
        )

    def wait_until_finished(self, job_id, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = requests.get(
                f"{self.base_url}{status_path(job_id)}", headers=self.headers, timeout=10
            )
            assert response.status_code == 200, response.text
            body = response.json()
            if body["status"] not in ("queued", "processing"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {body}")


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_balances_posted_over_http_are_set_by_a_real_worker_and_newer_updates_win(
    live_server, org, master_client, balance_program
):
    definition = balance_program.definition_id
    with real_broker():
        purge_queue()
        with running_worker():
            master = HttpMaster(live_server.url, master_client)

            # when the master posts two balances (one contact is unknown so far)
            response = master.post_balances(
                [balance("contact-1", 122, definition), balance("contact-2", 63, definition)]
            )

            # then it gets a job id at once, and the worker completes the job
            assert response.status_code == 202, response.text
            accepted = response.json()
            assert accepted["status"] == "queued"
            assert set(accepted) == {"id", "status", "timeStamp"}
            status = master.wait_until_finished(accepted["id"])
            assert status["status"] == "completed"
            assert status["id"] == accepted["id"]
            assert any("contact-1 set to 122" in m["message"] for m in status["messages"])
            assert all(set(m) == {"message", "timeStamp"} for m in status["messages"])
            assert points_of(balance_program, "contact-1") == 122
            assert points_of(balance_program, "contact-2") == 63
            assert (
                Transfer.objects.filter(program=balance_program, kind=TransferKind.SYNC).count()
                == 2
            )
            assert ledger_verify(program=balance_program).ok

            # when the master's newer update (T2) arrives before an older one (T1)
            newer = master.post_balances([balance("contact-1", 300, definition, T2)]).json()
            assert master.wait_until_finished(newer["id"])["status"] == "completed"
            older = master.post_balances([balance("contact-1", 10, definition, T1)]).json()
            status = master.wait_until_finished(older["id"])

            # then the newer amount stays and the older update is reported as skipped
            assert status["status"] == "completed"
            assert any("skipped" in m["message"] for m in status["messages"])
            assert points_of(balance_program, "contact-1") == 300
    # and verify_ledger finds every invariant intact
    out = io.StringIO()
    call_command("verify_ledger", stdout=out)
    assert "ledger OK" in out.getvalue()


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_broker_message_was_lost_is_sent_again_by_the_sweeper(
    org, master_client, balance_program
):
    # given a job accepted while its broker message got lost
    with real_broker():
        purge_queue()
        job = services.balance_job_create(
            client=master_client.client,
            items=[
                services.BalanceItem(
                    contact_id="contact-1",
                    amount=40,
                    definition_id=balance_program.definition_id,
                    time_stamp=timezone.now(),
                )
            ],
        )
        purge_queue()

        with running_worker():
            # when the sweeper runs later
            later = timezone.now() + dt.timedelta(minutes=5)
            assert services.balance_jobs_sweep(now=later) == 1

            # then a worker applies the job
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                job.refresh_from_db()
                if job.status == BalanceJobStatus.COMPLETED:
                    break
                time.sleep(0.1)
    assert job.status == BalanceJobStatus.COMPLETED
    assert points_of(balance_program, "contact-1") == 40


# --- in process --------------------------------------------------------------------------------


def test_items_naming_a_master_or_unknown_program_are_refused_in_the_messages(
    master_api, org, make_program, balance_program, django_capture_on_commit_callbacks
):
    # given a master-mode program next to the follower one
    master_program = make_program(org, key="own", mode=ProgramMode.MASTER)
    body = [
        balance("contact-1", 5, balance_program.definition_id),
        balance("contact-2", 6, master_program.definition_id),
        balance("contact-3", 7, 999),
    ]

    # when the job runs (in process)
    with django_capture_on_commit_callbacks(execute=True):
        response = master_api.post(BALANCES, body)
    status = master_api.get(status_path(response.json()["id"])).json()

    # then the follower item is applied and the other two are refused, each named
    assert status["status"] == "completed_with_errors"
    messages = [m["message"] for m in status["messages"]]
    assert any(m.startswith("item 1: contact contact-2 refused") for m in messages)
    assert any(m.startswith("item 2: contact contact-3 refused: unknown") for m in messages)
    assert points_of(balance_program, "contact-1") == 5
    # nothing happened in the master program, and no member was made for refused items
    assert not Transfer.objects.filter(program=master_program).exists()
    assert not Member.objects.filter(external_id__in=["contact-2", "contact-3"]).exists()


def test_both_follower_modes_accept_balances(
    master_api, transactions_program, balance_program, django_capture_on_commit_callbacks
):
    body = [
        balance("contact-1", 5, balance_program.definition_id),
        balance("contact-1", 8, transactions_program.definition_id),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        job_id = master_api.post(BALANCES, body).json()["id"]

    assert master_api.get(status_path(job_id)).json()["status"] == "completed"
    assert points_of(balance_program, "contact-1") == 5
    assert points_of(transactions_program, "contact-1") == 8


def test_running_a_job_twice_applies_it_once(master_client, balance_program):
    job = services.balance_job_create(
        client=master_client.client,
        items=[
            services.BalanceItem(
                contact_id="contact-1",
                amount=40,
                definition_id=balance_program.definition_id,
                time_stamp=timezone.now(),
            )
        ],
    )
    first = services.balance_job_process(job_id=str(job.pk))
    transfers = Transfer.objects.count()

    second = services.balance_job_process(job_id=str(job.pk))

    assert first.status == BalanceJobStatus.COMPLETED
    assert second is None
    assert Transfer.objects.count() == transfers
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_job_left_processing_by_a_dead_worker_is_taken_over_after_its_lease(
    master_client, balance_program
):
    # given a job a worker took and then died on
    job = services.balance_job_create(
        client=master_client.client,
        items=[
            services.BalanceItem(
                contact_id="contact-1",
                amount=40,
                definition_id=balance_program.definition_id,
                time_stamp=timezone.now(),
            )
        ],
    )
    BalanceJob.objects.filter(pk=job.pk).update(
        status=BalanceJobStatus.PROCESSING, started_at=timezone.now(), attempts=1
    )

    # then a second worker leaves it alone while the lease runs, and takes it over afterwards
    assert services.balance_job_process(job_id=str(job.pk)) is None
    later = timezone.now() + dt.timedelta(hours=1)
    taken = services.balance_job_process(job_id=str(job.pk), now=later)

    assert taken.status == BalanceJobStatus.COMPLETED
    assert taken.attempts == 2
    assert points_of(balance_program, "contact-1") == 40


@pytest.mark.parametrize(
    ("bad_fields", "field"),
    [
        ({"amount": -1}, "amount"),
        ({"amount": "5"}, "amount"),
        ({"contactId": "+46 70 123 45 67"}, "contactId"),
        ({"definitionId": "one"}, "definitionId"),
        ({"timeStamp": "16/05/2023"}, "timeStamp"),
    ],
)
def test_a_bad_balance_item_is_refused_naming_index_and_field_and_no_job_is_stored(
    master_api, balance_program, bad_fields, field
):
    body = [balance(f"contact-{n}", 5, balance_program.definition_id) for n in range(3)]
    body[2].update(bad_fields)

    response = master_api.post(BALANCES, body)

    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(2, field)]
    assert not BalanceJob.objects.exists()
    assert not Member.objects.exists()


def test_more_than_1000_balances_are_too_many_items(master_api, balance_program):
    body = [balance(f"contact-{n}", 5, balance_program.definition_id) for n in range(1001)]

    response = master_api.post(BALANCES, body)

    assert response.status_code == 400
    assert response.json()["message"] == "Too many items"
    assert not BalanceJob.objects.exists()


def test_another_organisations_job_is_404_like_an_unknown_one(
    client, master_api, make_org, make_master_client, make_follower_program
):
    # given a job of another organisation's master
    other_org = make_org()
    other_program = make_follower_program(other_org, mode=ProgramMode.FOLLOWER_BALANCE)
    other_master = MasterApi(client, token_for(client, make_master_client(other_org)))
    job_id = other_master.post(
        BALANCES, [balance("contact-1", 5, other_program.definition_id)]
    ).json()["id"]

    # then our master cannot see it; unknown and malformed ids are 404 too
    assert other_master.get(status_path(job_id)).status_code == 200
    response = master_api.get(status_path(job_id))
    assert response.status_code == 404
    assert response.json() == {"message": "balance job not found", "errors": []}
    assert master_api.get(status_path("00000000-0000-0000-0000-000000000000")).status_code == 404
    assert master_api.get(status_path("not-a-uuid")).status_code == 404


def test_a_token_without_follower_write_gets_403_and_no_job(
    client, org, make_master_client, balance_program
):
    api = MasterApi(client, token_for(client, make_master_client(org, scopes=["points:read"])))

    response = api.post(BALANCES, [balance("contact-1", 5, balance_program.definition_id)])

    assert response.status_code == 403
    assert not BalanceJob.objects.exists()
    assert not PointAccount.objects.filter(member__isnull=False).exists()


def test_the_sweeper_is_scheduled_in_celery_beat():
    rerun_data_migration("integrations.follower.migrations.0002_periodic_jobs")
    task = PeriodicTask.objects.get(task="follower.balance_jobs_sweep")

    assert task.enabled
    assert task.interval.every == 60
