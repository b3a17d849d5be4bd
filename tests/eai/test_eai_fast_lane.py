"""The EAI call in the fast lane (integrations/eai/fast_lane.py): a plain commit, confirm or
rollback (and its identical repeat) is answered there exactly as EaiPointsApi answers it; any
refusal reaches the view, which answers it from the start, with the ledger as one call of the
view would leave it."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from integrations.eai.api import EaiPointsApi
from integrations.eai.auth import VendorAllowed, VendorBasicAuthentication
from loyalty.models import Member
from points.selectors import balance_get
from tests.eai.conftest import ledger_snapshot
from tests.fast_lane_support import answer, answered_by_lane

pytestmark = pytest.mark.django_db


def rolled_back(call):
    """`call`'s response, with whatever it wrote rolled back."""
    with transaction.atomic():
        response = call()
        transaction.set_rollback(True)
    return response


def lane_and_django(settings, call):
    """`call` answered with the lane on, then (with the first's writes rolled back) off."""
    lane = rolled_back(call)
    settings.LOYALTY_FAST_LANE = False
    try:
        django = rolled_back(call)
    finally:
        settings.LOYALTY_FAST_LANE = True
    assert not answered_by_lane(django)
    return lane, django


def test_a_commit_confirm_pair_is_answered_by_the_lane_as_the_view_answers_it(
    eai, settings, program, funded_member
):
    user = funded_member.external_id

    lane, django = lane_and_django(settings, lambda: eai.commit(user, 40, "lane-1"))
    assert answered_by_lane(lane)
    assert answer(lane) == answer(django)
    assert lane.json()["code"] == "committed"

    assert eai.commit(user, 40, "lane-1").status_code == 200
    lane, django = lane_and_django(settings, lambda: eai.confirm(user, "lane-1"))
    assert answered_by_lane(lane)
    assert answer(lane) == answer(django)
    assert lane.json()["code"] == "deducted"


def test_a_rollback_and_a_repeat_are_answered_by_the_lane_as_the_view_answers_them(
    eai, settings, program, funded_member
):
    user = funded_member.external_id
    assert eai.commit(user, 40, "lane-2").status_code == 200

    lane, django = lane_and_django(settings, lambda: eai.rollback(user, "lane-2"))
    assert answered_by_lane(lane)
    assert answer(lane) == answer(django)

    assert eai.rollback(user, "lane-2").status_code == 200
    lane, django = lane_and_django(settings, lambda: eai.rollback(user, "lane-2"))
    assert answered_by_lane(lane)
    assert answer(lane) == answer(django)
    assert lane["Idempotent-Replayed"] == "true"
    assert balance_get(program=program, member=funded_member).available == 1000


def test_the_lane_commits_in_the_pinned_statements(
    eai, program, funded_member, django_assert_num_queries
):
    user = funded_member.external_id
    eai.commit(user, 1, "warm-up")
    # As tests/eai/test_eai_api.py pins them: vendor and member 1, the ledger 2, savepoints 2.
    with django_assert_num_queries(5):
        response = eai.commit(user, 10, "pinned")
    assert answered_by_lane(response)


def _calls(eai, user):
    return {
        "insufficient points": lambda: eai.commit(user, 5000, "refused-1"),
        "unknown user": lambda: eai.commit("nobody", 5, "refused-2"),
        "no such hold": lambda: eai.confirm(user, "never-committed"),
        "a body that is not JSON": lambda: eai.post("?commit", b"{oops", raw=True),
        "a missing field": lambda: eai.post("?commit", {"userid": user, "transactionid": "x"}),
        "no flag": lambda: eai.post("", {"userid": user, "transactionid": "x"}),
        "two flags": lambda: eai.post("?commit&confirm", {"userid": user, "transactionid": "x"}),
        "wrong credentials": lambda: eai.commit(user, 5, "refused-3", auth="Basic eDp5"),
        "no credentials": lambda: eai.commit(user, 5, "refused-4", auth=None),
        "a bearer token": lambda: eai.commit(user, 5, "refused-5", auth="Bearer abc"),
        "another Accept": lambda: eai.commit(user, 5, "refused-6", HTTP_ACCEPT="text/html"),
        "a format override": lambda: eai.post(
            "?commit&format=json",
            {"userid": user, "pointstodeduct": 5, "transactionid": "refused-7"},
        ),
    }


CALLS = list(_calls(None, None))


@pytest.mark.parametrize("name", CALLS)
def test_a_refused_or_unusual_call_is_the_views_answer_and_changes_only_what_it_does(
    eai, settings, program, funded_member, name
):
    call = _calls(eai, funded_member.external_id)[name]
    before = ledger_snapshot()

    lane, django = lane_and_django(settings, call)

    assert not answered_by_lane(lane)
    assert answer(lane) == answer(django)
    assert ledger_snapshot() == before


def test_a_refused_commit_reaches_the_view_with_its_body(eai, funded_member):
    response = eai.commit(funded_member.external_id, 5000, "named-in-the-reply")

    assert not answered_by_lane(response)
    assert response.status_code == 400
    assert response.json()["transactionid"] == "named-in-the-reply"


def test_a_blocked_member_or_an_address_not_allowed_is_the_views_answer(eai, vendor, funded_member):
    Member.objects.filter(pk=funded_member.pk).update(status=Member.Status.BLOCKED)
    refused_member = eai.commit(funded_member.external_id, 5, "inactive-member")
    Member.objects.filter(pk=funded_member.pk).update(status=Member.Status.ACTIVE)
    vendor.ip_allowlist = "198.51.100.0/24"
    vendor.save(update_fields=["ip_allowlist"])
    refused_address = eai.commit(funded_member.external_id, 5, "address")

    assert [refused_member.status_code, refused_address.status_code] == [400, 403]
    assert not answered_by_lane(refused_member)
    assert not answered_by_lane(refused_address)
    assert json.loads(refused_address.content)["code"] == "ip_not_allowed"


def test_the_lane_makes_every_check_the_view_makes():
    # The lane repeats the view's checks: one added to the view must be added to the lane.
    assert EaiPointsApi.authentication_classes == [VendorBasicAuthentication]
    assert EaiPointsApi.permission_classes == [VendorAllowed]
    assert list(EaiPointsApi.throttle_classes) == []
