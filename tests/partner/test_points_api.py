"""POST /api/v1/points: acceptance, every refusal of the seed's table, idempotency by requestId.

HTTP is not the point here, so these use Django's test client; tests/partner/test_end_to_end.py
drives the same API over a real socket with a real worker.
"""

import datetime as dt
import uuid

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken
from rest_framework.exceptions import ValidationError

from integrations.models import OutboxMessage
from integrations.partner.api import (
    PointRequestCreateApi,
    _validation_message,
    point_request_input,
)
from integrations.partner.models import PartnerRequest, PartnerRequestStatus
from loyalty.models import Member
from points import services as point_services
from points.models import ProgramMode, RuleKind, Transfer
from tests.partner.conftest import CALLBACK_URL, issue_token, point_body, post_points, snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_dns")]


def test_earn_request_is_accepted_and_dispatched_after_commit(
    client, token, partner, earn_rule, program, member, django_capture_on_commit_callbacks
):
    body = point_body(user_id=member.external_id, rule=earn_rule, amount=120, request_id="r-1")

    with django_capture_on_commit_callbacks() as callbacks:
        response = post_points(client, token, body)

    assert response.status_code == 202
    assert response.json() == {"requestId": "r-1", "status": "accepted"}
    request = PartnerRequest.objects.get()
    assert (request.status, request.client, request.member, request.rule) == (
        PartnerRequestStatus.ACCEPTED,
        partner.client,
        member,
        earn_rule,
    )
    # Nothing is applied in the request: processing is dispatched once the row is committed.
    assert not Transfer.objects.filter(member_account__member=member).exists()
    assert len(callbacks) == 1


def test_the_seed_token_endpoint_token_is_accepted(client, partner, earn_rule, member):
    token = issue_token(client, partner, path="/realms/partner/protocol/openid-connect/token")

    response = post_points(client, token, point_body(user_id=member.external_id, rule=earn_rule))

    assert response.status_code == 202


def test_burn_within_the_balance_is_accepted(client, token, burn_rule, program, member):
    point_services.earn(program=program, member=member, amount=50)

    response = post_points(
        client, token, point_body(user_id=member.external_id, rule=burn_rule, amount=50)
    )

    assert response.status_code == 202


# --- 400: invalid parameters (nothing stored: there is no request to keep) ----------------------


def _valid(member, rule):
    return point_body(user_id=member.external_id, rule=rule, request_id="bad-1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"userId": None}, "userId"),
        ({"userId": ""}, "userId"),
        ({"userId": "someone@example.com"}, "userId"),
        ({"userId": "+46 70 123 45 67"}, "userId"),
        ({"userId": "x" * 129}, "userId"),
        ({"ruleId": None}, "ruleId"),
        ({"ruleId": "r" * 65}, "ruleId"),
        ({"amount": None}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": "10"}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 10**12}, "amount"),
        ({"requestId": None}, "requestId"),
        ({"requestId": ""}, "requestId"),
        ({"requestId": "x" * 201}, "requestId"),
        ({"requestId": "line\nbreak"}, "requestId"),
        ({"callbackUrl": None}, "callbackUrl"),
        ({"callbackUrl": "not a url"}, "callbackUrl"),
        ({"callbackUrl": "ftp://partner.example/cb"}, "callbackUrl"),
        ({"callbackUrl": "http://partner.example/cb"}, "callbackUrl"),
        ({"callbackUrl": "https://user:pw@partner.example/cb"}, "callbackUrl"),
    ],
)
def test_invalid_parameters_are_400_naming_the_field_and_change_nothing(
    client, token, earn_rule, program, member, change, field
):
    body = _valid(member, earn_rule)
    for name, value in change.items():
        if value is None:
            del body[name]
        else:
            body[name] = value
    before = snapshot(program, member)

    response = post_points(client, token, body)

    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == "invalid_parameters"
    assert field in error["message"]
    assert list(error["details"]["fields"]) == [field]
    assert snapshot(program, member) == before


def _serializer_answer(data):
    serializer = PointRequestCreateApi.InputSerializer(data=data)
    if serializer.is_valid():
        return {key: serializer.validated_data[key] for key in data if key in serializer.fields}
    return _validation_message(serializer.errors)


def _hand_answer(data):
    try:
        parsed = point_request_input(data)
    except ValidationError as exc:
        return _validation_message(exc.detail)
    return {
        "userId": parsed.user_id,
        "ruleId": parsed.rule_id,
        "amount": parsed.amount,
        "requestId": parsed.request_id,
        "callbackUrl": parsed.callback_url,
    }


_GOOD = {
    "userId": "member-1",
    "ruleId": "0b0e2c1e-1111-4222-8333-944455556666",
    "amount": 10,
    "requestId": "r-1",
    "callbackUrl": CALLBACK_URL,
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"extra": "ignored", "amount": 1},
        {"amount": 10_000_000},
        {"userId": None},
        {"userId": ""},
        {"userId": " "},
        {"userId": "a" * 500},
        {"userId": "a\x00b"},
        {"userId": "x" * 300 + "\x00\ud800"},
        {"userId": "a@b.example"},
        {"userId": 42},
        {"userId": ["a"]},
        {"ruleId": True},
        {"ruleId": "r" * 65},
        {"amount": "10"},
        {"amount": 10.0},
        {"amount": True},
        {"amount": 0},
        {"amount": -5},
        {"amount": 10**12},
        {"amount": None},
        {"amount": ""},
        {"requestId": "\t"},
        {"requestId": "a\nb"},
        {"requestId": "r" * 201},
        {"callbackUrl": "http://partner.example/cb"},
        {"callbackUrl": "https://127.0.0.1/cb"},
        {"callbackUrl": "not a url"},
        {"userId": "", "ruleId": 1, "amount": "x", "requestId": None, "callbackUrl": ""},
    ],
)
def test_the_hand_checked_body_answers_as_the_documented_serializer(change):
    # given a body with the change (a None value in `change` itself means: leave it out)
    body = {**_GOOD, **change}
    if "userId" in change and change["userId"] is None and len(change) == 1:
        del body["userId"]

    # then the view's check and the schema's serializer agree, to the message and field list
    assert _hand_answer(body) == _serializer_answer(body)


@pytest.mark.parametrize("payload", [[1, 2], "text", None, 3])
def test_a_body_that_is_not_an_object_is_refused_as_the_serializer_refuses_it(payload):
    assert _hand_answer(payload) == _serializer_answer(payload)


@pytest.mark.parametrize("payload", ["[1, 2]", "{not json", '"text"'])
def test_a_body_that_is_not_a_json_object_is_400(client, token, program, member, payload):
    before = snapshot(program, member)

    response = post_points(client, token, payload)

    assert response.status_code == 400
    assert set(response.json()) == {"code", "message", "details"}
    assert snapshot(program, member) == before


# --- 400: stored refusals (the request is judged and its refusal kept) --------------------------


def _refusal_case(name, program, member, make_rule, make_member, make_org, partner):
    """Arrange one refused request; return (rule, userId, amount, expected code)."""
    allow = partner.client.rules.add
    if name == "rule_not_found_uuid":
        return str(uuid.uuid4()), member.external_id, 10, "rule_not_found"
    if name == "rule_not_found_text":
        return "no-such-rule", member.external_id, 10, "rule_not_found"
    if name == "rule_inactive":
        rule = make_rule(program, active=False)
        allow(rule)
        return rule, member.external_id, 10, "rule_inactive"
    if name == "rule_not_started":
        rule = make_rule(program, starts_at=timezone.now() + dt.timedelta(days=1))
        allow(rule)
        return rule, member.external_id, 10, "rule_outside_period"
    if name == "rule_ended":
        rule = make_rule(
            program,
            starts_at=timezone.now() - dt.timedelta(days=2),
            ends_at=timezone.now() - dt.timedelta(days=1),
        )
        allow(rule)
        return rule, member.external_id, 10, "rule_outside_period"
    if name == "unknown_user":
        rule = make_rule(program)
        allow(rule)
        return rule, "nobody-here", 10, "user_invalid"
    if name == "blocked_user":
        rule = make_rule(program)
        allow(rule)
        blocked = make_member(program.organization, status=Member.Status.BLOCKED)
        return rule, blocked.external_id, 10, "user_invalid"
    if name == "user_of_another_org":
        rule = make_rule(program)
        allow(rule)
        stranger = make_member(make_org())
        return rule, stranger.external_id, 10, "user_invalid"
    if name == "burn_beyond_balance":
        rule = make_rule(program, RuleKind.BURN)
        allow(rule)
        point_services.earn(program=program, member=member, amount=30)
        return rule, member.external_id, 31, "insufficient_balance"
    if name == "burn_beyond_available_with_a_hold":
        rule = make_rule(program, RuleKind.BURN)
        allow(rule)
        point_services.earn(program=program, member=member, amount=30)
        point_services.hold_create(
            program=program, member=member, amount=20, owner="vendor:x", transaction_id="t1"
        )
        return rule, member.external_id, 11, "insufficient_balance"
    raise AssertionError(name)


@pytest.mark.parametrize(
    "case",
    [
        "rule_not_found_uuid",
        "rule_not_found_text",
        "rule_inactive",
        "rule_not_started",
        "rule_ended",
        "unknown_user",
        "blocked_user",
        "user_of_another_org",
        "burn_beyond_balance",
        "burn_beyond_available_with_a_hold",
    ],
)
def test_refusals_of_the_seed_table_are_400_stored_and_change_nothing_else(
    client, token, partner, program, member, make_rule, make_member, make_org, case
):
    rule, user_id, amount, code = _refusal_case(
        case, program, member, make_rule, make_member, make_org, partner
    )
    body = point_body(user_id=user_id, rule=rule, amount=amount, request_id=f"refused-{case}")
    before = snapshot(program, member)

    response = post_points(client, token, body)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    stored = PartnerRequest.objects.get(request_id=f"refused-{case}")
    assert (stored.status, stored.failure_code) == (PartnerRequestStatus.REFUSED, code)
    after = snapshot(program, member)
    assert after.pop("partner_requests") == before.pop("partner_requests") + 1
    assert after == before

    # A retry with the same requestId keeps the refusal, even if the cause went away.
    if hasattr(rule, "active"):
        rule.__class__.objects.filter(pk=rule.pk).update(active=True, starts_at=None, ends_at=None)
    point_services.earn(program=program, member=member, amount=1000)
    repeat = post_points(client, token, body)
    assert (repeat.status_code, repeat.json()) == (400, response.json())
    assert repeat["Idempotent-Replayed"] == "true"
    assert PartnerRequest.objects.filter(request_id=f"refused-{case}").count() == 1


def test_a_capped_burn_is_judged_on_the_capped_amount(client, token, partner, program, member):
    rule = partner.client.rules.create(
        program=program, name="capped burn", kind=RuleKind.BURN, max_points_per_request=20
    )
    point_services.earn(program=program, member=member, amount=25)

    response = post_points(
        client, token, point_body(user_id=member.external_id, rule=rule, amount=500)
    )

    assert response.status_code == 202


def test_a_rule_of_a_follower_program_is_refused(
    client, token, partner, org, make_program, member, make_rule
):
    follower = make_program(
        org,
        key="follower",
        mode=ProgramMode.FOLLOWER_TRANSACTIONS,
        master_webhook_url="https://master.example/hook",
        master_webhook_key="a2V5",
    )
    rule = make_rule(follower)
    partner.client.rules.add(rule)

    response = post_points(client, token, point_body(user_id=member.external_id, rule=rule))

    assert (response.status_code, response.json()["code"]) == (400, "program_is_follower")
    assert not Transfer.objects.exists()


# --- 401: token and scope (nothing stored) -------------------------------------------------------


def _expire(token_value):
    AccessToken.objects.filter(token_checksum__isnull=False).update(
        expires=timezone.now() - dt.timedelta(seconds=1)
    )


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Bearer not-a-token", "invalid_token"),
        ("Basic dXNlcjpwdw==", "invalid_token"),
        ("expired", "invalid_token"),
        ("inactive client", "authentication_failed"),
    ],
)
def test_missing_invalid_or_expired_tokens_are_401_and_change_nothing(
    client, token, partner, earn_rule, program, member, authorization, code
):
    if authorization == "expired":
        _expire(token)
        authorization = f"Bearer {token}"
    elif authorization == "inactive client":
        partner.client.__class__.objects.filter(pk=partner.client.pk).update(active=False)
        authorization = f"Bearer {token}"
    headers = {"Authorization": authorization} if authorization else {}
    before = snapshot(program, member)

    response = post_points(
        client, None, point_body(user_id=member.external_id, rule=earn_rule), **headers
    )

    assert response.status_code == 401, response.content
    assert response.json()["code"] == code
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(program, member) == before


@pytest.mark.parametrize(
    ("scopes", "kind", "needed"),
    [
        (["points:read"], RuleKind.EARN, "points:earn or points:burn"),
        (["points:burn"], RuleKind.EARN, "points:earn"),
        (["points:earn"], RuleKind.BURN, "points:burn"),
    ],
)
def test_a_token_lacking_the_scope_is_401_and_changes_nothing(
    client, org, program, member, make_partner, make_rule, scopes, kind, needed
):
    rule = make_rule(program, kind)
    point_services.earn(program=program, member=member, amount=100)
    created = make_partner(org, scopes=scopes, rules=[rule])
    token = issue_token(client, created)
    before = snapshot(program, member)

    response = post_points(client, token, point_body(user_id=member.external_id, rule=rule))

    assert response.status_code == 401
    error = response.json()
    assert error["code"] == "insufficient_scope"
    assert "lacks sufficient scope permissions" in error["message"]
    assert needed in error["message"]
    assert snapshot(program, member) == before


# --- 403: rule or organisation not allowed (nothing stored) --------------------------------------


def test_a_rule_not_allowed_to_the_client_is_403_and_not_kept(
    client, token, partner, program, member, make_rule
):
    rule = make_rule(program, name="someone else's")
    body = point_body(user_id=member.external_id, rule=rule, request_id="not-mine")
    before = snapshot(program, member)

    response = post_points(client, token, body)

    assert (response.status_code, response.json()["code"]) == (403, "rule_forbidden")
    assert snapshot(program, member) == before
    # Not stored: once the operator allows the rule, the same requestId goes through.
    partner.client.rules.add(rule)
    assert post_points(client, token, body).status_code == 202


def test_a_rule_of_another_organisation_is_403(
    client, token, partner, make_org, make_program, make_rule, program, member
):
    other_org = make_org()
    foreign_rule = make_rule(make_program(other_org))
    # Even if an operator had (wrongly) allowed it, another tenant's rule is never usable.
    partner.client.rules.add(foreign_rule)
    before = snapshot(program, member)

    response = post_points(client, token, point_body(user_id=member.external_id, rule=foreign_rule))

    assert (response.status_code, response.json()["code"]) == (403, "rule_forbidden")
    assert "another organisation" in response.json()["message"]
    assert snapshot(program, member) == before


# --- idempotency ---------------------------------------------------------------------------------


def test_a_repeat_with_the_same_fields_gets_the_first_reply_and_nothing_twice(
    client, token, earn_rule, member, django_capture_on_commit_callbacks
):
    body = point_body(user_id=member.external_id, rule=earn_rule, request_id="same")
    with django_capture_on_commit_callbacks() as first_dispatch:
        first = post_points(client, token, body)

    with django_capture_on_commit_callbacks() as repeat_dispatch:
        repeat = post_points(client, token, {**body, "ruleId": str(earn_rule.pk).upper()})

    assert (repeat.status_code, repeat.json()) == (first.status_code, first.json())
    assert repeat["Idempotent-Replayed"] == "true"
    assert PartnerRequest.objects.count() == 1
    assert (len(first_dispatch), len(repeat_dispatch)) == (1, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 101},
        {"userId": "someone-else"},
        {"ruleId": "other"},
        {"callbackUrl": CALLBACK_URL + "?v=2"},
    ],
)
def test_a_repeat_with_different_fields_is_409_and_changes_nothing(
    client, token, earn_rule, program, member, change
):
    body = point_body(user_id=member.external_id, rule=earn_rule, amount=100, request_id="dup")
    assert post_points(client, token, body).status_code == 202
    before = snapshot(program, member)

    response = post_points(client, token, {**body, **change})

    assert response.status_code == 409
    assert response.json()["code"] == "request_id_conflict"
    assert "requestId" in response.json()["message"]
    assert snapshot(program, member) == before
    assert PartnerRequest.objects.get(request_id="dup").amount == 100


def test_request_ids_are_scoped_to_the_client(
    client, org, partner, make_partner, earn_rule, member
):
    other = make_partner(org, rules=[earn_rule])
    body = point_body(user_id=member.external_id, rule=earn_rule, request_id="shared-id")

    assert post_points(client, issue_token(client, partner), body).status_code == 202
    assert post_points(client, issue_token(client, other), body).status_code == 202
    assert PartnerRequest.objects.filter(request_id="shared-id").count() == 2


def test_a_processed_request_repeated_gets_202_and_is_not_applied_again(
    client, token, earn_rule, program, member, django_capture_on_commit_callbacks
):
    from integrations.partner.services import partner_request_process

    body = point_body(user_id=member.external_id, rule=earn_rule, amount=40, request_id="once")
    post_points(client, token, body)
    partner_request_process(partner_request_id=PartnerRequest.objects.get().pk)

    repeat = post_points(client, token, body)

    assert (repeat.status_code, repeat.json()) == (202, {"requestId": "once", "status": "accepted"})
    assert Transfer.objects.filter(member_account__member=member).count() == 1
    assert OutboxMessage.objects.count() == 1


# --- query counts --------------------------------------------------------------------------------


def test_query_count_of_an_accepted_earn(
    client, token, earn_rule, member, django_assert_num_queries
):
    body = point_body(user_id=member.external_id, rule=earn_rule)
    # token (with its client); one read of the requestId, the rule (with "allowed") and the
    # member; one conditional insert (no savepoint).
    with django_assert_num_queries(3):
        assert post_points(client, token, body).status_code == 202


def test_query_count_of_an_accepted_burn(
    client, token, burn_rule, program, member, django_assert_num_queries
):
    point_services.earn(program=program, member=member, amount=100)
    body = point_body(user_id=member.external_id, rule=burn_rule, amount=10)
    # As an earn: the member's available points come with the same read.
    with django_assert_num_queries(3):
        assert post_points(client, token, body).status_code == 202


def test_query_count_of_a_repeat(client, token, earn_rule, member, django_assert_num_queries):
    body = point_body(user_id=member.external_id, rule=earn_rule)
    post_points(client, token, body)
    # token (with its client), the read that finds the requestId: nothing else.
    with django_assert_num_queries(2):
        assert post_points(client, token, body).status_code == 202
