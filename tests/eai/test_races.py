"""Races on PostgreSQL with real commits: a vendor's confirm and rollback of one transaction sent
at the same moment over HTTP, and identical commits retried in parallel."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import requests
from django.db import connection

from integrations.eai import services
from integrations.eai.models import SigningKey
from points.models import Hold, HoldStatus, Transfer, TransferKind
from points.selectors import balance_get, ledger_verify
from tests.eai.conftest import EAI_URL

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TRANSACTIONS = 8


def run_together(calls) -> list:
    """Run each call on its own thread, all released by one barrier; return their results."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(index, call):
        try:
            barrier.wait()
            results[index] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_confirm_and_rollback_over_http_exactly_one_wins(
    live_server, vendor_secrets, program, funded_member
):
    auth = (vendor_secrets.eai_username, vendor_secrets.eai_secret)
    url = f"{live_server.url}{EAI_URL}"
    user = funded_member.external_id
    for number in range(TRANSACTIONS):
        committed = requests.post(
            f"{url}?commit",
            json={"userid": user, "pointstodeduct": 10, "transactionid": f"race-{number}"},
            auth=auth,
            timeout=10,
        )
        assert committed.status_code == 200

    def call(action, number):
        return lambda: (
            number,
            action,
            requests.post(
                f"{url}?{action}",
                json={"userid": user, "transactionid": f"race-{number}"},
                auth=auth,
                timeout=30,
            ).status_code,
        )

    results = run_together(
        [call(action, n) for n in range(TRANSACTIONS) for action in ("confirm", "rollback")]
    )

    by_transaction: dict[int, Counter] = {}
    winners = {}
    for number, action, status in results:
        by_transaction.setdefault(number, Counter())[status] += 1
        if status == 200:
            winners[number] = action
    assert all(counts == Counter({200: 1, 409: 1}) for counts in by_transaction.values())
    for number, action in winners.items():
        hold = Hold.objects.get(transaction_id=f"race-{number}")
        expected = HoldStatus.CONFIRMED if action == "confirm" else HoldStatus.ROLLED_BACK
        assert hold.status == expected
    confirmed = sum(1 for action in winners.values() if action == "confirm")
    assert Transfer.objects.filter(kind=TransferKind.BURN).count() == confirmed
    balance = balance_get(program=program, member=funded_member)
    assert (balance.balance, balance.held) == (1000 - 10 * confirmed, 0)
    assert ledger_verify().ok, ledger_verify().mismatches


def test_racing_identical_commits_hold_the_points_once(vendor, program, funded_member):
    results = run_together(
        [
            lambda: (
                services.vendor_points_commit(
                    vendor=vendor, member=funded_member, points=100, transaction_id="same"
                ).replayed
            )
            for _ in range(8)
        ]
    )

    assert sorted(results) == [False] + [True] * 7
    assert Hold.objects.get().amount == 100
    assert balance_get(program=program, member=funded_member).held == 100
    assert ledger_verify().ok


def test_racing_first_signing_keys_make_one_key():
    keys = run_together([services.signing_key_ensure for _ in range(4)])

    assert len({key.pk for key in keys}) == 1
    assert SigningKey.objects.count() == 1


def test_racing_confirm_and_rollback_through_the_service_exactly_one_wins(
    vendor, program, funded_member
):
    services.vendor_points_commit(
        vendor=vendor, member=funded_member, points=100, transaction_id="svc"
    )

    def attempt(action):
        def run():
            try:
                action(vendor=vendor, member=funded_member, transaction_id="svc")
            except Exception as exc:
                return type(exc).__name__
            return "ok"

        return run

    results = run_together(
        [attempt(services.vendor_points_confirm), attempt(services.vendor_points_rollback)] * 4
    )

    outcome = Hold.objects.get().status
    assert results.count("ok") + results.count("HoldAlreadyResolved") == 8
    # The winner's kind repeats as an idempotent "ok"; every opposite call is refused.
    assert results.count("ok") == 4 and results.count("HoldAlreadyResolved") == 4
    assert outcome in (HoldStatus.CONFIRMED, HoldStatus.ROLLED_BACK)
    assert ledger_verify().ok
