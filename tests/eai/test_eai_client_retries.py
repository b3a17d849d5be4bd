"""Must-show 4: the vendor kit's EAIClient retries 5xx (and 429, network errors) with backoff and
never retries a 4xx; the platform's idempotent repeats make those retries safe."""

from __future__ import annotations

import json

import pytest

from integrations.vendor_kit import EAIClient, EAIRequestRefused, EAIResult, EAIUnavailable
from tests.http_support import RecordingServer, ScriptedResponse

SUCCESS = json.dumps(
    {
        "status": "success",
        "message": "points committed for transaction",
        "code": "committed",
        "transactionid": "order-9",
    }
).encode()
UNAVAILABLE = ScriptedResponse(503, b'{"status": "failed", "message": "try later"}')


@pytest.fixture
def eai_server():
    servers = []

    def start(responses, default=None) -> RecordingServer:
        server = RecordingServer(responses, default=default).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def client_for(server: RecordingServer, **options) -> EAIClient:
    # Small backoff so the test is quick; the schedule itself is the kit's own.
    return EAIClient(
        server.url, "vendor-user", "vendor-secret", backoff_base=0.01, backoff_max=0.05, **options
    )


def test_two_503s_then_an_answer_succeed_on_the_third_attempt(eai_server):
    server = eai_server([UNAVAILABLE, UNAVAILABLE, ScriptedResponse(200, SUCCESS)])

    result = client_for(server).commit("member-1", 300, "order-9", "redemption for a mug")

    assert result == EAIResult(
        status="success",
        message="points committed for transaction",
        code="committed",
        transaction_id="order-9",
        http_status=200,
    )
    attempts = server.requests
    assert len(attempts) == 3
    # Every attempt is the same request, so the platform sees one transaction retried.
    assert {(r.method, r.path, r.body) for r in attempts} == {
        ("POST", "/eai/v1/points?commit", attempts[0].body)
    }
    assert attempts[0].json() == {
        "userid": "member-1",
        "pointstodeduct": 300,
        "transactionid": "order-9",
        "description": "redemption for a mug",
    }
    assert all(r.headers["authorization"].startswith("Basic ") for r in attempts)


@pytest.mark.parametrize("status", [400, 401, 404, 409])
def test_a_4xx_is_not_retried(eai_server, status):
    body = json.dumps(
        {"status": "failed", "message": "insufficient points", "code": "insufficient_points"}
    ).encode()
    server = eai_server([ScriptedResponse(status, body)], default=ScriptedResponse(200, SUCCESS))

    with pytest.raises(EAIRequestRefused) as refused:
        client_for(server).confirm("member-1", "order-9")

    assert len(server.requests) == 1
    assert refused.value.http_status == status
    assert refused.value.code == "insufficient_points"


def test_429_is_retried_like_a_5xx(eai_server):
    server = eai_server(
        [ScriptedResponse(429, b"{}", {"Retry-After": "0"}), ScriptedResponse(200, SUCCESS)]
    )

    assert client_for(server).rollback("member-1", "order-9").http_status == 200
    assert len(server.requests) == 2


def test_the_client_gives_up_after_its_attempts_with_an_unknown_outcome(eai_server):
    server = eai_server([], default=UNAVAILABLE)

    with pytest.raises(EAIUnavailable) as unavailable:
        client_for(server, max_attempts=3).commit("member-1", 5, "order-10")

    assert len(server.requests) == 3
    assert unavailable.value.http_status == 503
