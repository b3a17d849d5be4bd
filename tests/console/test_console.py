"""Operator console: dashboard numbers, streamed exports, CSV imports with a report."""

import csv
import io
import tracemalloc

import pytest
from django.db import connection
from django.urls import reverse

from loyalty.models import AuditEntry, ImportJob, Member
from loyalty.services import import_job_create
from points import services
from points.models import Transfer

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    client.user = user
    return client


def test_dashboard_shows_points_per_day_and_deliveries(superuser_client, org, program, member):
    services.earn(program=program, member=member, amount=120)
    services.burn(program=program, member=member, amount=20)
    services.hold_create(program=program, member=member, amount=5, owner="v:1", transaction_id="t")

    response = superuser_client.get(reverse("admin:console_dashboard"), {"org": org.slug})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="total-issued">120<' in html
    assert 'data-testid="total-redeemed">20<' in html
    assert 'data-testid="open-holds">1<' in html
    assert "<svg" in html and "issued: 120" in html


def _rows(response):
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_transfer_export_streams_the_period_as_csv(superuser_client, org, program, member):
    services.earn(program=program, member=member, amount=7, reference="order-1")
    services.burn(program=program, member=member, amount=3)

    response = superuser_client.get(
        reverse("admin:console_export"), {"kind": "transfers", "organization": org.pk}
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    rows = _rows(response)
    assert rows[0][:7] == [
        "id",
        "created_at",
        "program",
        "member_external_id",
        "kind",
        "source",
        "points",
    ]
    assert [row[6] for row in rows[1:]] == ["7", "-3"]
    assert rows[1][8] == "order-1"


def test_export_of_another_organisation_is_refused(
    client, django_user_model, org, make_org, program, member
):
    operator = django_user_model.objects.create_user("op", "op@example.com", "pw", is_staff=True)
    from django.contrib.auth.models import Permission

    operator.user_permissions.add(Permission.objects.get(codename="view_transfer"))
    mine = make_org()
    mine.operators.add(operator)
    client.force_login(operator)

    response = client.get(
        reverse("admin:console_export"), {"kind": "transfers", "organization": org.pk}
    )

    assert response.status_code == 200  # the form again, with the choice refused
    assert b"Select a valid choice" in response.content


@pytest.mark.postgres
def test_exporting_200000_transfers_streams_with_flat_memory(
    superuser_client, org, program, member
):
    account = services.account_get_or_create(program=program, member=member)
    issued = program.accounts.get(kind="issued")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO points_transfer (program_id, debit_account_id, credit_account_id,
                member_account_id, amount, kind, source, description, reference, actor,
                member_balance_after, created_at)
            SELECT %s, %s, %s, %s, 1, 'earn', 'Bulk', '', 'r' || n, 'test', n, now()
            FROM generate_series(1, 200000) AS n
            """,
            [program.pk, issued.pk, account.pk, account.pk],
        )
    response = superuser_client.get(
        reverse("admin:console_export"), {"kind": "transfers", "organization": org.pk}
    )

    tracemalloc.start()
    rows, size = 0, 0
    for chunk in response.streaming_content:
        rows += 1
        size += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert rows == 200_001  # header + every transfer, one chunk per row
    assert peak < 30 * 1024 * 1024, f"peak {peak} bytes while streaming {size} bytes"
    assert size > 10 * 1024 * 1024


def test_member_import_imports_good_rows_and_reports_bad_ones(
    superuser_client, org, django_capture_on_commit_callbacks
):
    content = (
        "external_id,first_name,last_name,email\n"
        "cust-1,Ann,A,ann@example.com\n"
        "ann@example.com,Bad,Id,\n"
        "cust-2,Ben,B,not-an-email\n"
        "cust-3,Cy,C,\n"
        "cust-3,Cy,C,\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = import_job_create(
            organization=org,
            kind=ImportJob.Kind.MEMBERS,
            file_name="members.csv",
            content=content,
            user=superuser_client.user,
        )

    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert (job.total_rows, job.processed_rows, job.imported_rows) == (5, 5, 2)
    assert [r["line"] for r in job.rejected] == [3, 4, 6]
    assert "e-mail address" in job.rejected[0]["reason"]
    assert "email" in job.rejected[1]["reason"]
    assert "duplicate" in job.rejected[2]["reason"]
    assert set(Member.objects.filter(organization=org).values_list("external_id", flat=True)) == {
        "cust-1",
        "cust-3",
    }
    page = superuser_client.get(reverse("admin:loyalty_importjob_change", args=[job.pk]))
    assert b"Rejected rows" in page.content and b"duplicate" in page.content


def test_import_without_the_required_column_fails_with_a_reason(superuser_client, org):
    job = ImportJob.objects.create(
        organization=org, kind="members", file_name="x.csv", content="name\nA\n"
    )
    from loyalty.services import import_job_run

    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.FAILED
    assert "external_id" in job.error
    assert not Member.objects.exists()


def test_upload_page_queues_an_import(superuser_client, org, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("m.csv", b"external_id,first_name\nz-1,Zed\n", "text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            reverse("admin:loyalty_importjob_add"),
            {"organization": org.pk, "kind": "members", "file": upload},
        )

    assert response.status_code == 302
    assert Member.objects.filter(external_id="z-1", first_name="Zed").exists()


def test_audit_entries_are_append_only(superuser_client, org):
    from loyalty.services import audit_record

    entry = audit_record(actor=superuser_client.user, action="changed", obj=org)
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="x")
    with pytest.raises(TypeError):
        AuditEntry.objects.all().delete()
    assert Transfer.objects.count() == 0


def test_digital_code_import_reports_bad_and_duplicate_lines(
    superuser_client, org, django_capture_on_commit_callbacks
):
    from rewards import services as reward_services
    from rewards.models import DigitalCode

    coffee = reward_services.reward_type_create(
        org=org, reward_type="coffee", display_name="Coffee", fulfilment="code_pool"
    )
    content = "code\nCOF-1\nCOF-2\nCOF-1\nbad code\n\nCOF-3\n"  # blank lines are skipped
    with django_capture_on_commit_callbacks(execute=True):
        job = import_job_create(
            organization=org,
            kind=ImportJob.Kind.DIGITAL_CODES,
            target="coffee",
            file_name="codes.csv",
            content=content,
            user=superuser_client.user,
        )

    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert job.imported_rows == 3
    assert [(r["line"], r["reason"][:10]) for r in job.rejected] == [
        (4, "duplicate "),
        (5, "code conta"),
    ]
    assert sorted(
        DigitalCode.objects.filter(reward_type=coffee).values_list("code", flat=True)
    ) == [
        "COF-1",
        "COF-2",
        "COF-3",
    ]
