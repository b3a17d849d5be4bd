"""The ledger is append-only, and verify_ledger notices tampering."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from points import services
from points.models import PointAccount, Transfer

pytestmark = pytest.mark.django_db


def test_model_refuses_to_update_or_delete_a_transfer(program, member):
    transfer = services.earn(program=program, member=member, amount=5).transfer
    transfer.amount = 500
    with pytest.raises(TypeError):
        transfer.save()
    with pytest.raises(TypeError):
        transfer.delete()
    with pytest.raises(TypeError):
        Transfer.objects.filter(pk=transfer.pk).update(amount=1)
    with pytest.raises(TypeError):
        Transfer.objects.filter(pk=transfer.pk).delete()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE points_transfer SET amount = 1 WHERE id = %s",
        "DELETE FROM points_transfer WHERE id = %s",
    ],
)
def test_database_trigger_refuses_raw_update_and_delete(program, member, statement):
    transfer = services.earn(program=program, member=member, amount=5).transfer

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [transfer.pk])

    assert Transfer.objects.get(pk=transfer.pk).amount == 5


def test_verify_ledger_passes_on_a_clean_ledger(program, member, capsys):
    services.earn(program=program, member=member, amount=5)
    call_command("verify_ledger")
    assert "ledger OK" in capsys.readouterr().out


def test_verify_ledger_fails_after_a_balance_is_tampered_with(program, member, capsys):
    services.earn(program=program, member=member, amount=5)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE points_pointaccount SET balance = balance + 7 WHERE member_id = %s",
            [member.pk.hex if connection.vendor == "sqlite" else member.pk],
        )
    assert PointAccount.objects.get(member=member).balance == 12

    with pytest.raises(CommandError, match="mismatches"):
        call_command("verify_ledger")
    assert "balance vs posted transfers: stored 12, computed 5" in capsys.readouterr().err


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_verify_ledger_exits_non_zero_from_the_shell(program, member):
    """The command's exit status, as an operator's script sees it, in another process."""
    services.earn(program=program, member=member, amount=5)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE points_pointaccount SET held = 3 WHERE member_id = %s", [member.pk])
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "loyalty.settings.base",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "verify_ledger"],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )

    assert result.returncode != 0, result.stdout
    assert "held vs open holds: stored 3, computed 0" in result.stderr
