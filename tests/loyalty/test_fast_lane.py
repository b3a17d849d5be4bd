"""The fast lane's framing (loyalty/fast_lane.py): what it answers, how it declines, and that a
declined call reaches Django as it came (the routes themselves: tests/eai, tests/partner)."""

from __future__ import annotations

import logging
import re

import pytest
from django.core.signals import request_finished, request_started
from django.db import OperationalError
from django.test import RequestFactory

from loyalty.fast_lane import FastLane, Reply, Route
from tests.fast_lane_support import connections_left_alone


@pytest.fixture(autouse=True)
def database_connections_left_alone():
    # These tests use no database; the lane's request signals would check the connection.
    with connections_left_alone():
        yield


def django_stub(environ, start_response):
    """Stands for Django: answers 299 with the body it read."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("299 Django", [("Content-Type", "text/plain")])
    return [b"django:" + body]


def call(lane, request) -> tuple[str, dict, bytes]:
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(lane(request.environ, start_response))
    return seen["status"], seen["headers"], body


def lane_of(handler, method="POST") -> FastLane:
    return FastLane(django_stub, [Route(method, re.compile(r"/hot/([a-z]+)"), handler)])


def hello(request, name):
    return Reply(status=200, data={"hello": name, "body": request.body.decode()}, allow="POST")


def test_a_route_answers_with_drf_s_json_and_django_s_headers():
    status, headers, body = call(lane_of(hello), RequestFactory().post("/hot/you", "é", "x/y"))

    assert status == "200 OK"
    assert body == '{"hello":"you","body":"é"}'.encode()
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Allow"] == "POST"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "request_",
    [
        RequestFactory().get("/hot/you"),  # another method
        RequestFactory().post("/hot/you/", "x", "x/y"),  # another path
        RequestFactory().post("/hot/You", "x", "x/y"),
    ],
)
def test_other_calls_go_to_django(request_):
    assert call(lane_of(hello), request_)[0] == "299 Django"


def test_a_declined_call_reaches_django_with_its_body():
    def reads_then_declines(request, name):
        assert request.body == b"payload"
        return None

    status, _headers, body = call(
        lane_of(reads_then_declines), RequestFactory().post("/hot/you", "payload", "x/y")
    )

    assert (status, body) == ("299 Django", b"django:payload")


def test_a_route_that_fails_is_logged_and_django_answers(caplog):
    def fails(request, name):
        raise ZeroDivisionError

    with caplog.at_level(logging.ERROR, logger="loyalty.fast_lane"):
        status, _headers, _body = call(lane_of(fails), RequestFactory().post("/hot/you"))

    assert status == "299 Django"
    assert "fast lane: POST /hot/you failed" in caplog.text


def test_a_lost_database_is_left_to_django():
    def loses_the_database(request, name):
        raise OperationalError("server closed the connection unexpectedly")

    assert call(lane_of(loses_the_database), RequestFactory().post("/hot/you"))[0] == "299 Django"


def test_an_answered_call_starts_and_finishes_a_request_as_django_s_does(monkeypatch):
    # Only this test's receivers (Django's close_old_connections is on both in production).
    seen = []
    monkeypatch.setattr(request_started, "receivers", [])
    monkeypatch.setattr(request_finished, "receivers", [])
    request_started.connect(lambda **kwargs: seen.append("started"), weak=False)
    request_finished.connect(lambda **kwargs: seen.append("finished"), weak=False)

    call(lane_of(hello), RequestFactory().post("/hot/you"))

    assert seen == ["started", "finished"]


def test_a_host_not_allowed_or_a_body_too_large_is_left_to_django(settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.LOYALTY_MAX_BODY_BYTES = 4

    assert call(lane_of(hello), RequestFactory().post("/hot/you", HTTP_HOST="x.example"))[0] == (
        "299 Django"
    )
    assert call(lane_of(hello), RequestFactory().post("/hot/you", "12345", "x/y"))[0] == (
        "299 Django"
    )


def test_https_only_sites_leave_plain_http_to_django_s_redirect(settings):
    settings.SECURE_SSL_REDIRECT = True
    lane = lane_of(hello)

    assert call(lane, RequestFactory().post("/hot/you"))[0] == "299 Django"
    assert call(lane, RequestFactory().post("/hot/you", secure=True))[0] == "200 OK"


def test_the_lane_switched_off_leaves_everything_to_django(settings):
    settings.LOYALTY_FAST_LANE = False

    assert call(lane_of(hello), RequestFactory().post("/hot/you"))[0] == "299 Django"
