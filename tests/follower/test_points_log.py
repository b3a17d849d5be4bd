"""The master's points log: fetched live, validated, shown on the member's admin page."""

from __future__ import annotations

import json
import socket

import pytest
from django.urls import reverse

from integrations.follower.selectors import points_log_for
from points.models import ProgramMode
from tests.http_support import RecordingServer, ScriptedResponse

pytestmark = pytest.mark.django_db

SEED_LOG = [
    {"transactionDate": "2023-05-08T12:02:55Z", "amount": 1500, "description": "Purchase of jeans"},
    {
        "transactionDate": "2023-05-08T12:06:58Z",
        "amount": 1900,
        "description": "Purchase of tshirt",
    },
]


@pytest.fixture
def master_server():
    server = RecordingServer(default=ScriptedResponse(200, json.dumps(SEED_LOG).encode()))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def follower(org, make_follower_program, master_server):
    return make_follower_program(
        org,
        mode=ProgramMode.FOLLOWER_BALANCE,
        name="Points from the master",
        master_points_log_url=f"{master_server.url}/fetchPointHistory",
    )


def test_the_points_log_is_the_masters_answer_newest_first(
    follower, member, master_server, insecure_callbacks
):
    log = points_log_for(program=follower, member=member)

    assert log.available
    assert [(e.amount, e.description) for e in log.entries] == [
        (1900, "Purchase of tshirt"),
        (1500, "Purchase of jeans"),
    ]
    assert master_server.requests[0].path == f"/fetchPointHistory?id={member.external_id}"


def test_an_empty_array_is_an_empty_log(follower, member, master_server, insecure_callbacks):
    master_server.default = ScriptedResponse(200, b"[]")

    log = points_log_for(program=follower, member=member)

    assert (log.available, log.entries) == (True, [])


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"[]"),
        (404, b"not found"),
        (200, b"<html>oops</html>"),
        (200, b'{"transactionDate": "2023-05-08T12:06:58Z", "amount": 1}'),
        (200, b'[{"transactionDate": "last week", "amount": 1, "description": "x"}]'),
        (200, b'[{"transactionDate": "2023-05-08T12:06:58Z", "amount": "1900"}]'),
        (200, b'[{"amount": 1900, "description": "no date"}]'),
        (200, b"[1, 2]"),
    ],
)
def test_a_failing_or_malformed_master_makes_the_log_unavailable(
    follower, member, master_server, insecure_callbacks, status, body
):
    master_server.default = ScriptedResponse(status, body)

    log = points_log_for(program=follower, member=member)

    assert not log.available
    assert log.entries == []
    assert log.error.startswith("points log unavailable")


def test_a_master_that_never_answers_times_out_as_unavailable(
    follower, member, insecure_callbacks, settings
):
    # given a master that accepts the connection and then says nothing
    settings.FOLLOWER_POINTS_LOG_TIMEOUT_SECONDS = 0.3
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    follower.master_points_log_url = f"http://127.0.0.1:{silent.getsockname()[1]}/log"
    try:
        log = points_log_for(program=follower, member=member)
    finally:
        silent.close()

    assert not log.available
    assert "did not answer" in log.error


def test_a_loopback_log_url_is_not_called_outside_development(follower, member, master_server):
    log = points_log_for(program=follower, member=member)

    assert not log.available
    assert "may not be called" in log.error
    assert master_server.requests == []


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    return client


def test_the_member_admin_page_shows_the_masters_points_log(
    admin_client, follower, member, insecure_callbacks
):
    response = admin_client.get(reverse("admin:loyalty_member_change", args=[member.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Points from the master" in page
    assert "Purchase of tshirt" in page
    assert "1900" in page
    assert "points log unavailable" not in page


def test_with_the_master_down_the_member_admin_page_says_unavailable_and_still_renders(
    admin_client, follower, member, master_server, insecure_callbacks
):
    master_server.stop()

    response = admin_client.get(reverse("admin:loyalty_member_change", args=[member.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "points log unavailable" in page
    assert "Purchase of tshirt" not in page
