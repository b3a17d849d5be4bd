"""The EAI two-phase points API (seed 000) through Django's test client: every reply of the
contract, and that every refusal changes nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from integrations.eai import services
from points import services as point_services
from points.models import Hold, HoldStatus, PointProgram, ProgramMode, Transfer, TransferKind
from points.selectors import balance_get, ledger_verify
from points.tasks import expire_stale_holds_task
from tests.eai.conftest import EAI_URL, EaiCaller, basic_auth, ledger_snapshot

pytestmark = pytest.mark.django_db


def reply(response) -> dict:
    return json.loads(response.content)


def assert_failed(response, status: int, code: str, message: str | None = None) -> dict:
    body = reply(response)
    assert response.status_code == status, body
    assert body["status"] == "failed"
    assert body["code"] == code
    if message is not None:
        assert body["message"] == message
    return body


# --- the happy paths ----------------------------------------------------------------------------


def test_commit_holds_the_points_and_replies_with_the_seed_message(
    eai, vendor, program, funded_member
):
    started = timezone.now()
    response = eai.commit(funded_member.external_id, 300, "order-1", "redemption for a mug")
    finished = timezone.now()

    assert response.status_code == 200
    assert reply(response) == {
        "status": "success",
        "message": "points committed for transaction",
        "code": "committed",
        "transactionid": "order-1",
    }
    balance = balance_get(program=program, member=funded_member)
    assert (balance.balance, balance.held, balance.available) == (1000, 300, 700)
    hold = Hold.objects.get(transaction_id="order-1")
    assert (hold.owner, hold.amount, hold.status) == (f"vendor:{vendor.pk}", 300, HoldStatus.HELD)
    assert hold.description == "redemption for a mug"
    ttl = dt.timedelta(seconds=program.hold_ttl_seconds)
    assert started + ttl <= hold.expires_at <= finished + ttl
    assert program.hold_ttl_seconds == 15 * 60  # the program's default hold time-to-live
    assert not Transfer.objects.filter(kind=TransferKind.BURN).exists()


def test_every_reply_has_exactly_the_documented_fields(eai, funded_member):
    from integrations.eai.api import EaiReplySerializer

    documented = set(EaiReplySerializer().fields)
    replies = [
        eai.commit(funded_member.external_id, 5, "shape-1"),
        eai.post("?confirm", {"userid": funded_member.external_id, "transactionid": "shape-1"}),
        eai.post("?rollback", {"userid": funded_member.external_id, "transactionid": "shape-1"}),
        eai.post("?commit", {"userid": funded_member.external_id}),
    ]

    assert [response.status_code for response in replies] == [200, 200, 409, 400]
    assert all(set(reply(response)) == documented for response in replies)


def test_confirm_deducts_the_held_points_once_with_a_transfer_naming_vendor_and_transaction(
    eai, vendor, program, funded_member
):
    eai.commit(funded_member.external_id, 300, "order-2", "redemption for a lamp")

    response = eai.confirm(funded_member.external_id, "order-2")

    assert response.status_code == 200
    assert reply(response) == {
        "status": "success",
        "message": "points successfully deducted",
        "code": "deducted",
        "transactionid": "order-2",
    }
    balance = balance_get(program=program, member=funded_member)
    assert (balance.balance, balance.held, balance.available) == (700, 0, 700)
    burn = Transfer.objects.get(kind=TransferKind.BURN)
    assert (burn.amount, burn.reference, burn.actor) == (300, "order-2", f"vendor:{vendor.pk}")
    assert burn.description == "redemption for a lamp"
    assert Hold.objects.get(transaction_id="order-2").status == HoldStatus.CONFIRMED
    assert ledger_verify().ok, ledger_verify().mismatches


def test_rollback_releases_the_held_points_and_burns_nothing(eai, program, funded_member):
    eai.commit(funded_member.external_id, 300, "order-3")

    response = eai.rollback(funded_member.external_id, "order-3")

    assert response.status_code == 200
    assert reply(response)["message"] == "points successfully rolled back"
    assert reply(response)["code"] == "rolled_back"
    balance = balance_get(program=program, member=funded_member)
    assert (balance.balance, balance.held, balance.available) == (1000, 0, 1000)
    assert not Transfer.objects.filter(kind=TransferKind.BURN).exists()
    assert Hold.objects.get(transaction_id="order-3").status == HoldStatus.ROLLED_BACK


def test_camel_case_keys_work_like_the_seeds_spelling(eai, program, funded_member):
    committed = eai.post(
        "?commit",
        {"userId": funded_member.external_id, "pointsToDeduct": 40, "transactionId": "camel-1"},
    )
    confirmed = eai.post(
        "?confirm", {"userId": funded_member.external_id, "transactionId": "camel-1"}
    )

    assert (committed.status_code, confirmed.status_code) == (200, 200)
    assert balance_get(program=program, member=funded_member).balance == 960


def test_action_parameter_is_the_same_as_the_bare_flag(eai, program, funded_member):
    response = eai.post(
        "?action=commit",
        {"userid": funded_member.external_id, "pointstodeduct": 5, "transactionid": "act-1"},
    )

    assert response.status_code == 200
    assert balance_get(program=program, member=funded_member).held == 5


# --- repeats --------------------------------------------------------------------------------------


def test_identical_repeats_get_the_stored_200_and_change_nothing(eai, program, funded_member):
    user = funded_member.external_id
    first_commit = eai.commit(user, 250, "again-1")
    repeated_commit = eai.commit(user, 250, "again-1", "a different free-text description")
    assert reply(repeated_commit) == reply(first_commit)
    assert repeated_commit["Idempotent-Replayed"] == "true"
    assert Hold.objects.count() == 1
    assert balance_get(program=program, member=funded_member).held == 250

    first_confirm = eai.confirm(user, "again-1")
    after_confirm = ledger_snapshot()
    repeated_confirm = eai.confirm(user, "again-1")
    repeated_commit_after_confirm = eai.commit(user, 250, "again-1")

    assert repeated_confirm.status_code == 200
    assert reply(repeated_confirm) == reply(first_confirm)
    assert repeated_confirm["Idempotent-Replayed"] == "true"
    assert reply(repeated_commit_after_confirm) == reply(first_commit)
    assert ledger_snapshot() == after_confirm
    assert Transfer.objects.filter(kind=TransferKind.BURN).count() == 1
    assert balance_get(program=program, member=funded_member).balance == 750


def test_identical_rollback_repeat_gets_the_stored_200_and_changes_nothing(
    eai, program, funded_member
):
    eai.commit(funded_member.external_id, 100, "again-2")
    first = eai.rollback(funded_member.external_id, "again-2")
    after_first = ledger_snapshot()

    repeated = eai.rollback(funded_member.external_id, "again-2")

    assert repeated.status_code == 200
    assert reply(repeated) == reply(first)
    assert ledger_snapshot() == after_first


@pytest.mark.parametrize(
    "changed", [{"pointstodeduct": 301}, {"userid": "other"}], ids=["amount", "user"]
)
def test_a_commit_reusing_a_transaction_id_with_another_user_or_amount_is_409(
    eai, org, make_member, program, funded_member, changed
):
    other = make_member(org, external_id="other-member")
    point_services.earn(program=program, member=other, amount=1000)
    eai.commit(funded_member.external_id, 300, "reuse-1")
    before = ledger_snapshot()
    body = {
        "userid": funded_member.external_id,
        "pointstodeduct": 300,
        "transactionid": "reuse-1",
        **({"userid": other.external_id} if "userid" in changed else changed),
    }

    response = eai.post("?commit", body)

    assert_failed(response, 409, "transaction_conflict")
    assert reply(response)["transactionid"] == "reuse-1"
    assert ledger_snapshot() == before


def test_the_opposite_action_on_a_confirmed_hold_is_409_already_deducted(eai, funded_member):
    eai.commit(funded_member.external_id, 100, "opp-1")
    eai.confirm(funded_member.external_id, "opp-1")
    before = ledger_snapshot()

    response = eai.rollback(funded_member.external_id, "opp-1")

    assert_failed(response, 409, "points_already_deducted", "points already deducted")
    assert ledger_snapshot() == before


def test_the_opposite_action_on_a_rolled_back_hold_is_409_already_rolled_back(eai, funded_member):
    eai.commit(funded_member.external_id, 100, "opp-2")
    eai.rollback(funded_member.external_id, "opp-2")
    before = ledger_snapshot()

    response = eai.confirm(funded_member.external_id, "opp-2")

    assert_failed(response, 409, "points_already_rolled_back", "points already rolled back")
    assert ledger_snapshot() == before


# --- 404 and cross-vendor / cross-member isolation -------------------------------------------


@pytest.mark.parametrize("action", ["confirm", "rollback"])
def test_an_unknown_transaction_is_404(eai, funded_member, action):
    before = ledger_snapshot()

    response = getattr(eai, action)(funded_member.external_id, "never-committed")

    assert_failed(response, 404, "transaction_not_found", "transaction not found")
    assert ledger_snapshot() == before


@pytest.mark.parametrize("action", ["confirm", "rollback"])
def test_another_members_transaction_is_404(eai, org, make_member, program, funded_member, action):
    other = make_member(org)
    eai.commit(funded_member.external_id, 100, "mine-1")
    before = ledger_snapshot()

    response = getattr(eai, action)(other.external_id, "mine-1")

    assert_failed(response, 404, "transaction_not_found")
    assert ledger_snapshot() == before


def test_a_vendor_cannot_resolve_another_vendors_transaction(
    client, eai, org, program, make_vendor, funded_member
):
    eai.commit(funded_member.external_id, 100, "shared-id")
    second = make_vendor(org, program, name="Second vendor", sso_audience="second")
    other_vendor = EaiCaller(client, second.eai_username, second.eai_secret)
    before = ledger_snapshot()

    response = other_vendor.confirm(funded_member.external_id, "shared-id")

    assert_failed(response, 404, "transaction_not_found")
    assert ledger_snapshot() == before
    # The same transaction id is free for the second vendor: ids are scoped per vendor.
    assert other_vendor.commit(funded_member.external_id, 50, "shared-id").status_code == 200


def test_a_member_of_another_organisation_is_an_unknown_user(
    eai, make_org, make_program, make_member
):
    other_org = make_org()
    other_program = make_program(other_org)
    stranger = make_member(other_org)
    point_services.earn(program=other_program, member=stranger, amount=500)
    before = ledger_snapshot()

    response = eai.commit(stranger.external_id, 100, "cross-tenant")

    assert_failed(response, 400, "invalid_user", "user is invalid")
    assert ledger_snapshot() == before


# --- 400: malformed requests and refusals of the ledger --------------------------------------


def test_insufficient_points_is_400_and_leaves_the_transaction_id_free(eai, program, funded_member):
    before = ledger_snapshot()

    response = eai.commit(funded_member.external_id, 1001, "too-much")

    assert_failed(response, 400, "insufficient_points", "insufficient points")
    assert ledger_snapshot() == before
    assert eai.commit(funded_member.external_id, 1000, "too-much").status_code == 200


VALID = {"userid": "__member__", "pointstodeduct": 10, "transactionid": "bad-1"}


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"pointstodeduct": 10, "transactionid": "t"}, "invalid_userid", "userid is required"),
        ({"userid": "__member__", "transactionid": "t"}, "invalid_pointstodeduct", None),
        ({"userid": "__member__", "pointstodeduct": 10}, "invalid_transactionid", None),
        ({**VALID, "pointstodeduct": 10.5}, "invalid_pointstodeduct", None),
        ({**VALID, "pointstodeduct": 10.0}, "invalid_pointstodeduct", None),
        (
            {**VALID, "pointstodeduct": "10"},
            "invalid_pointstodeduct",
            "pointstodeduct must be a whole number",
        ),
        ({**VALID, "pointstodeduct": True}, "invalid_pointstodeduct", None),
        ({**VALID, "pointstodeduct": None}, "invalid_pointstodeduct", None),
        (
            {**VALID, "pointstodeduct": 0},
            "invalid_pointstodeduct",
            "pointstodeduct must be greater than zero",
        ),
        ({**VALID, "pointstodeduct": -5}, "invalid_pointstodeduct", None),
        ({**VALID, "pointstodeduct": 10**12}, "invalid_pointstodeduct", None),
        ({**VALID, "userid": 12345}, "invalid_userid", "userid must be a string"),
        ({**VALID, "transactionid": ""}, "invalid_transactionid", None),
        ({**VALID, "transactionid": "x" * 201}, "invalid_transactionid", None),
        ({**VALID, "description": 7}, "invalid_description", None),
        ({**VALID, "description": "x" * 501}, "invalid_description", None),
        (
            {**VALID, "transactionid": "nul\u0000"},
            "invalid_transactionid",
            "transactionid must not contain a null character",
        ),
        ({**VALID, "description": "half \ud83d"}, "invalid_description", None),
        ({**VALID, "userid": None}, "invalid_userid", "userid must not be null"),
        ({**VALID, "userid": "nobody-here"}, "invalid_user", "user is invalid"),
        ({**VALID, "userId": "someone-else"}, "invalid_request", None),
    ],
    ids=[
        "missing-userid",
        "missing-points",
        "missing-transactionid",
        "fractional-points",
        "float-points",
        "string-points",
        "bool-points",
        "null-points",
        "zero-points",
        "negative-points",
        "too-many-points",
        "integer-userid",
        "empty-transactionid",
        "long-transactionid",
        "non-string-description",
        "long-description",
        "nul-in-transactionid",
        "lone-surrogate-in-description",
        "null-userid",
        "unknown-user",
        "two-spellings-disagree",
    ],
)
def test_a_malformed_commit_is_400_naming_the_problem_and_changes_nothing(
    eai, funded_member, body, code, message
):
    body = {
        key: (funded_member.external_id if value == "__member__" else value)
        for key, value in body.items()
    }
    before = ledger_snapshot()

    response = eai.post("?commit", body)

    failed = assert_failed(response, 400, code, message)
    field = code.removeprefix("invalid_")
    if field in ("userid", "pointstodeduct", "transactionid", "description"):
        assert failed["message"].startswith(field)
    assert ledger_snapshot() == before


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"", b"[1, 2]", b'"a string"', b'{"userid": ', b"\xff\xfe\x00"],
    ids=["text", "empty", "array", "string", "truncated", "bad-bytes"],
)
def test_a_body_that_is_not_a_json_object_is_400_and_changes_nothing(eai, funded_member, raw):
    before = ledger_snapshot()

    response = eai.post("?commit", raw, raw=True)

    assert_failed(response, 400, "invalid_request", "the body must be a JSON object")
    assert ledger_snapshot() == before


def test_a_json_body_with_another_content_type_is_still_understood(eai, program, funded_member):
    body = {"userid": funded_member.external_id, "pointstodeduct": 1, "transactionid": "ct-1"}

    response = eai.post("?commit", json.dumps(body), raw=True, content_type="text/plain")

    assert response.status_code == 200
    assert balance_get(program=program, member=funded_member).held == 1


@pytest.mark.parametrize(
    "query",
    ["", "?", "?commit&confirm", "?confirm&rollback", "?commit&action=rollback", "?action=burn"],
    ids=["none", "empty", "commit+confirm", "confirm+rollback", "flag+action", "unknown-action"],
)
def test_no_flag_or_several_flags_is_400_and_changes_nothing(eai, funded_member, query):
    before = ledger_snapshot()
    body = {"userid": funded_member.external_id, "pointstodeduct": 5, "transactionid": "flag-1"}

    response = eai.post(query, body)

    assert_failed(response, 400, "invalid_request")
    assert ledger_snapshot() == before


@pytest.mark.parametrize("action", ["confirm", "rollback"])
def test_a_malformed_confirm_or_rollback_is_400(eai, funded_member, action):
    eai.commit(funded_member.external_id, 5, "res-1")
    before = ledger_snapshot()

    response = eai.post(f"?{action}", {"userid": funded_member.external_id})

    assert_failed(response, 400, "invalid_transactionid", "transactionid is required")
    assert ledger_snapshot() == before


def test_get_is_405_in_the_contracts_shape(eai):
    response = eai.client.get(
        f"{EAI_URL}?commit", HTTP_AUTHORIZATION=basic_auth(eai.username, eai.password)
    )

    assert_failed(response, 405, "method_not_allowed")


# --- 401 and 403 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "wrong-password",
        "unknown-user",
        "Basic !!!not-base64!!!",
        "Basic " + "bm9jb2xvbg==",  # "nocolon"
        "Bearer some-token",
    ],
    ids=["missing", "wrong-secret", "unknown-username", "bad-base64", "no-colon", "bearer"],
)
def test_missing_or_wrong_credentials_are_401_with_www_authenticate(eai, funded_member, auth):
    if auth == "wrong-password":
        auth = basic_auth(eai.username, eai.password + "x")
    elif auth == "unknown-user":
        auth = basic_auth("no-such-vendor", eai.password)
    before = ledger_snapshot()

    response = eai.post(
        "?commit",
        {"userid": funded_member.external_id, "pointstodeduct": 5, "transactionid": "auth-1"},
        auth=auth,
    )

    body = reply(response)
    assert response.status_code == 401, body
    assert body["status"] == "failed"
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert ledger_snapshot() == before


def test_an_old_secret_stops_working_when_credentials_are_recreated(eai, vendor, funded_member):
    services.vendor_credentials_reset(vendor=vendor)

    response = eai.commit(funded_member.external_id, 5, "old-secret")

    assert response.status_code == 401
    assert not Hold.objects.exists()


def test_an_inactive_vendor_is_403_and_changes_nothing(eai, vendor, funded_member):
    vendor.active = False
    services.vendor_save(vendor=vendor)
    before = ledger_snapshot()

    response = eai.commit(funded_member.external_id, 5, "inactive-1")

    assert_failed(response, 403, "vendor_inactive", "vendor is inactive")
    assert ledger_snapshot() == before


def test_an_address_outside_the_allowlist_is_403_and_changes_nothing(eai, vendor, funded_member):
    vendor.ip_allowlist = "198.51.100.0/24\n2001:db8::/32"
    services.vendor_save(vendor=vendor)
    before = ledger_snapshot()

    refused = eai.commit(funded_member.external_id, 5, "ip-1", REMOTE_ADDR="203.0.113.9")

    assert_failed(refused, 403, "ip_not_allowed", "IP address not allowed")
    assert ledger_snapshot() == before
    allowed = eai.commit(funded_member.external_id, 5, "ip-1", REMOTE_ADDR="198.51.100.77")
    assert allowed.status_code == 200


def test_the_forwarded_header_counts_only_when_a_trusted_proxy_is_configured(
    eai, vendor, funded_member, settings
):
    vendor.ip_allowlist = "198.51.100.0/24"
    services.vendor_save(vendor=vendor)
    spoofed = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "198.51.100.5"}

    settings.LOYALTY_TRUSTED_PROXY_HEADER = ""
    untrusted = eai.commit(funded_member.external_id, 5, "proxy-1", **spoofed)
    assert_failed(untrusted, 403, "ip_not_allowed")

    settings.LOYALTY_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    # The client wrote the left entry; the proxy appended the address it really saw.
    forged = eai.commit(
        funded_member.external_id,
        5,
        "proxy-1",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.5, 203.0.113.50",
    )
    assert_failed(forged, 403, "ip_not_allowed")
    assert not Hold.objects.exists()

    trusted = eai.commit(funded_member.external_id, 5, "proxy-1", **spoofed)
    assert trusted.status_code == 200


# --- 409: follower programs and expired holds -------------------------------------------------


def test_a_hold_on_a_follower_program_is_409_and_changes_nothing(
    eai, vendor, program, funded_member
):
    PointProgram.objects.filter(pk=program.pk).update(
        mode=ProgramMode.FOLLOWER_TRANSACTIONS,
        master_webhook_url="https://master.example.test/hook",
        master_webhook_key="a2V5",
    )
    before = ledger_snapshot()

    response = eai.commit(funded_member.external_id, 5, "follower-1")

    assert_failed(response, 409, "program_is_follower")
    assert ledger_snapshot() == before


def _move_past_expiry(transaction_id: str) -> None:
    # The clock passing the hold's time-to-live: expires_at is set back instead of waiting.
    Hold.objects.filter(transaction_id=transaction_id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )


def test_a_hold_past_its_ttl_is_released_by_the_job_and_a_later_confirm_is_409(
    eai, program, funded_member
):
    eai.commit(funded_member.external_id, 300, "late-1")
    _move_past_expiry("late-1")

    expire_stale_holds_task.delay()  # the periodic job (in-process here)

    hold = Hold.objects.get(transaction_id="late-1")
    assert hold.status == HoldStatus.EXPIRED
    balance = balance_get(program=program, member=funded_member)
    assert (balance.balance, balance.held) == (1000, 0)
    before = ledger_snapshot()

    response = eai.confirm(funded_member.external_id, "late-1")

    assert_failed(response, 409, "hold_expired")
    assert ledger_snapshot() == before
    assert not Transfer.objects.filter(kind=TransferKind.BURN).exists()


def test_a_confirm_after_expires_at_before_the_job_ran_is_409_and_burns_nothing(
    eai, program, funded_member
):
    eai.commit(funded_member.external_id, 300, "late-2")
    _move_past_expiry("late-2")
    before = ledger_snapshot()

    confirm = eai.confirm(funded_member.external_id, "late-2")
    rollback = eai.rollback(funded_member.external_id, "late-2")

    assert_failed(confirm, 409, "hold_expired")
    assert_failed(rollback, 409, "hold_expired")
    assert ledger_snapshot() == before
    assert not Transfer.objects.filter(kind=TransferKind.BURN).exists()
    # The job then releases it as usual.
    assert point_services.expire_stale_holds() == 1
    assert balance_get(program=program, member=funded_member).available == 1000


# --- the hot path stays light -----------------------------------------------------------------


def test_the_eai_hot_path_query_counts_are_pinned(
    eai, program, funded_member, django_assert_num_queries
):
    user = funded_member.external_id
    eai.commit(user, 1, "warm-up")  # the account row and system accounts exist from here on

    # The vendor (with program and organisation) and the member the body names: 1; in the
    # ledger: earmark the points on the account (one conditional UPDATE), insert the hold unless
    # its id is taken; 2 savepoint statements.
    with django_assert_num_queries(5):
        assert eai.commit(user, 10, "hot-1").status_code == 200
    # Vendor and member 1; in the ledger (in a transaction here, so step by step): find the hold
    # and lock its account (with the redeemed account's id) in one statement, mark the hold,
    # take the points from the first lot (one statement, as it holds enough), update the
    # account, insert the transfer; 2 savepoint statements. Outside a transaction, as in
    # production, the ledger's part is one statement (tests/points/test_concurrency.py).
    with django_assert_num_queries(8):
        assert eai.confirm(user, "hot-1").status_code == 200
    # A repeat: vendor and member, then the ledger finds the resolved hold under its locks.
    with django_assert_num_queries(5):
        assert eai.confirm(user, "hot-1").status_code == 200


# --- the contract in the OpenAPI schema ---------------------------------------------------------


def test_the_schema_has_one_eai_operation_with_a_documented_flag(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    schema = json.loads(response.content)

    operations = schema["paths"]["/eai/v1/points"]
    assert list(operations) == ["post"]
    operation = operations["post"]
    action = next(p for p in operation["parameters"] if p["name"] == "action")
    assert action["in"] == "query"
    assert action["schema"]["enum"] == ["commit", "confirm", "rollback"]
    assert "?commit" in operation["description"]
    assert {"200", "400", "401", "403", "404", "409"} <= set(operation["responses"])
    assert operation["security"] == [{"eaiBasicAuth": []}]
    assert schema["components"]["securitySchemes"]["eaiBasicAuth"]["scheme"] == "basic"
    assert "get" in schema["paths"]["/.well-known/jwks.json"]


def test_a_blocked_member_cannot_commit_but_open_holds_can_still_be_rolled_back(
    eai, program, funded_member
):
    eai.commit(funded_member.external_id, 100, "before-block")
    funded_member.status = funded_member.Status.BLOCKED
    funded_member.save(update_fields=["status"])
    before = ledger_snapshot()

    refused = eai.commit(funded_member.external_id, 100, "after-block")

    assert_failed(refused, 400, "user_inactive", "user is not active")
    assert ledger_snapshot() == before
    assert eai.rollback(funded_member.external_id, "before-block").status_code == 200
    assert balance_get(program=program, member=funded_member).held == 0
