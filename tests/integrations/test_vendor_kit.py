"""Tests for the vendor kit: SSO token verification (incl. JWKS) and the EAI client with retries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from integrations.vendor_kit import (
    EAIClient,
    EAIRequestRefused,
    EAIResult,
    EAIUnavailable,
    VendorTokenError,
    verify_vendor_token,
    verify_vendor_token_with_jwks,
)

AUDIENCE = "vendor-acme"
ISSUER = "https://loyalty.example.test"
HS_SECRET = "a-per-vendor-shared-secret-of-at-least-32-bytes!!"


@pytest.fixture(scope="module")
def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def public_key_pem(rsa_private_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "points": 1200,
        "email": "ada@example.test",
        "userid": "member-42",
        "iat": now,
        "exp": now + 60,
        "jti": "9b1c2f0e-token",
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_made_hs256_token(claims: dict[str, Any], secret: bytes) -> str:
    # PyJWT refuses to HMAC-sign with a PEM key, so forge the confused token by hand.
    signing_input = (
        b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64url(json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


# -- verify_vendor_token ------------------------------------------------------------------------


def test_valid_rs256_token_is_accepted_and_returns_claims(rsa_private_key, public_key_pem):
    token = jwt.encode(make_claims(), rsa_private_key, algorithm="RS256")

    claims = verify_vendor_token(
        token, key=public_key_pem, audience=AUDIENCE, issuer=ISSUER, algorithms=["RS256"]
    )

    assert claims["userid"] == "member-42"
    assert claims["points"] == 1200
    assert {"firstname", "lastname", "email", "iat", "exp", "jti", "iss", "aud"} <= set(claims)


def test_valid_hs256_token_is_accepted_with_shared_secret():
    token = jwt.encode(make_claims(), HS_SECRET, algorithm="HS256")

    claims = verify_vendor_token(token, key=HS_SECRET, audience=AUDIENCE, algorithms=["HS256"])

    assert claims["email"] == "ada@example.test"


def test_rs256_token_is_accepted_with_public_key_object(rsa_private_key):
    token = jwt.encode(make_claims(), rsa_private_key, algorithm="RS256")

    claims = verify_vendor_token(
        token, key=rsa_private_key.public_key(), audience=AUDIENCE, algorithms=["RS256"]
    )

    assert claims["lastname"] == "Lovelace"


def test_alg_none_token_is_refused(public_key_pem):
    token = jwt.encode(make_claims(), None, algorithm="none")

    with pytest.raises(VendorTokenError, match="algorithm 'none' not allowed"):
        verify_vendor_token(token, key=public_key_pem, audience=AUDIENCE, algorithms=["RS256"])


def test_none_can_not_be_configured_as_an_algorithm():
    token = jwt.encode(make_claims(), None, algorithm="none")

    with pytest.raises(VendorTokenError, match="not supported"):
        verify_vendor_token(token, key="", audience=AUDIENCE, algorithms=["none"])


def test_hs256_token_signed_with_rsa_public_key_pem_is_refused(rsa_private_key, public_key_pem):
    forged = hand_made_hs256_token(make_claims(points=10**9), public_key_pem)

    for key in (public_key_pem, public_key_pem.decode(), rsa_private_key.public_key()):
        with pytest.raises(VendorTokenError, match="algorithm 'HS256' not allowed"):
            verify_vendor_token(forged, key=key, audience=AUDIENCE, algorithms=["RS256"])


def test_hs256_token_signed_with_public_key_is_refused_even_if_hs256_is_listed(
    rsa_private_key, public_key_pem
):
    forged = hand_made_hs256_token(make_claims(), public_key_pem)

    with pytest.raises(VendorTokenError, match="do not mix"):
        verify_vendor_token(
            forged,
            key=rsa_private_key.public_key(),
            audience=AUDIENCE,
            algorithms=["RS256", "HS256"],
        )
    with pytest.raises(VendorTokenError, match="needs a shared secret"):
        verify_vendor_token(
            forged, key=rsa_private_key.public_key(), audience=AUDIENCE, algorithms=["HS256"]
        )
    # And PyJWT itself refuses a PEM public key as an HMAC secret.
    with pytest.raises(VendorTokenError, match="does not fit"):
        verify_vendor_token(forged, key=public_key_pem, audience=AUDIENCE, algorithms=["HS256"])


def test_token_expired_beyond_leeway_is_refused():
    now = int(time.time())
    token = jwt.encode(make_claims(iat=now - 120, exp=now - 11), HS_SECRET, algorithm="HS256")

    with pytest.raises(VendorTokenError, match="expired"):
        verify_vendor_token(token, key=HS_SECRET, audience=AUDIENCE, algorithms=["HS256"])


def test_token_expired_within_leeway_is_accepted():
    now = int(time.time())
    token = jwt.encode(make_claims(iat=now - 60, exp=now - 3), HS_SECRET, algorithm="HS256")

    claims = verify_vendor_token(token, key=HS_SECRET, audience=AUDIENCE, algorithms=["HS256"])

    assert claims["userid"] == "member-42"


@pytest.mark.parametrize("claim", ["exp", "iat", "aud"])
def test_token_missing_a_required_claim_is_refused(claim):
    token = jwt.encode(make_claims(**{claim: None}), HS_SECRET, algorithm="HS256")

    with pytest.raises(VendorTokenError, match=f"lacks the {claim} claim"):
        verify_vendor_token(token, key=HS_SECRET, audience=AUDIENCE, algorithms=["HS256"])


def test_token_missing_iss_is_refused_when_issuer_is_expected():
    token = jwt.encode(make_claims(iss=None), HS_SECRET, algorithm="HS256")

    with pytest.raises(VendorTokenError, match="lacks the iss claim"):
        verify_vendor_token(
            token, key=HS_SECRET, audience=AUDIENCE, issuer=ISSUER, algorithms=["HS256"]
        )


def test_token_with_future_nbf_is_refused():
    token = jwt.encode(make_claims(nbf=int(time.time()) + 300), HS_SECRET, algorithm="HS256")

    with pytest.raises(VendorTokenError, match="not yet valid"):
        verify_vendor_token(token, key=HS_SECRET, audience=AUDIENCE, algorithms=["HS256"])


def test_token_for_another_audience_is_refused():
    token = jwt.encode(make_claims(aud="vendor-other"), HS_SECRET, algorithm="HS256")

    with pytest.raises(VendorTokenError, match="audience"):
        verify_vendor_token(token, key=HS_SECRET, audience=AUDIENCE, algorithms=["HS256"])


def test_token_from_another_issuer_is_refused():
    token = jwt.encode(make_claims(iss="https://evil.test"), HS_SECRET, algorithm="HS256")

    with pytest.raises(VendorTokenError, match="issuer"):
        verify_vendor_token(
            token, key=HS_SECRET, audience=AUDIENCE, issuer=ISSUER, algorithms=["HS256"]
        )


def test_token_with_tampered_payload_is_refused(rsa_private_key, public_key_pem):
    token = jwt.encode(make_claims(), rsa_private_key, algorithm="RS256")
    header, _payload, signature = token.split(".")
    richer_payload = b64url(json.dumps(make_claims(points=999_999)).encode())

    with pytest.raises(VendorTokenError, match="signature does not verify"):
        verify_vendor_token(
            f"{header}.{richer_payload}.{signature}",
            key=public_key_pem,
            audience=AUDIENCE,
            algorithms=["RS256"],
        )


def test_garbage_token_is_refused():
    with pytest.raises(VendorTokenError, match="malformed"):
        verify_vendor_token("not-a-jwt", key=HS_SECRET, audience=AUDIENCE, algorithms=["HS256"])


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_hmac_secret_is_refused():
    short_secret = "too-short"
    token = jwt.encode(make_claims(), short_secret, algorithm="HS256")

    with pytest.raises(VendorTokenError):
        verify_vendor_token(token, key=short_secret, audience=AUDIENCE, algorithms=["HS256"])


# -- verify_vendor_token_with_jwks -------------------------------------------------------------


@dataclass
class ServerState:
    """What a local test server answers and what it saw."""

    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    default_reply: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
    requests: list[dict[str, Any]] = field(default_factory=list)


def start_server(state: ServerState) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length),
                }
            )
            status, headers, body = state.replies.pop(0) if state.replies else state.default_reply
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def local_server() -> Iterator[tuple[ServerState, str]]:
    state = ServerState()
    server, base_url = start_server(state)
    yield state, base_url
    server.shutdown()
    server.server_close()


@pytest.fixture
def jwks_url(local_server, rsa_private_key) -> str:
    state, base_url = local_server
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_private_key.public_key()))
    jwk.update({"kid": "platform-2025", "use": "sig", "alg": "RS256"})
    state.default_reply = (200, {}, json.dumps({"keys": [jwk]}).encode())
    return f"{base_url}/.well-known/jwks.json"


def test_jwks_token_with_known_kid_is_accepted(jwks_url, rsa_private_key):
    token = jwt.encode(
        make_claims(), rsa_private_key, algorithm="RS256", headers={"kid": "platform-2025"}
    )

    claims = verify_vendor_token_with_jwks(
        token, jwks_url=jwks_url, audience=AUDIENCE, issuer=ISSUER
    )

    assert claims["userid"] == "member-42"


@pytest.mark.parametrize(
    "hostile_kid", ["unknown-kid", "../../etc/passwd", "' OR 1=1 --", "x" * 5000]
)
def test_jwks_token_with_unknown_or_hostile_kid_is_refused(jwks_url, rsa_private_key, hostile_kid):
    token = jwt.encode(
        make_claims(), rsa_private_key, algorithm="RS256", headers={"kid": hostile_kid}
    )

    with pytest.raises(VendorTokenError, match="unknown kid"):
        verify_vendor_token_with_jwks(token, jwks_url=jwks_url, audience=AUDIENCE)


def test_jwks_token_without_kid_is_refused(jwks_url, rsa_private_key):
    token = jwt.encode(make_claims(), rsa_private_key, algorithm="RS256")

    with pytest.raises(VendorTokenError, match="no kid"):
        verify_vendor_token_with_jwks(token, jwks_url=jwks_url, audience=AUDIENCE)


def test_jwks_hs256_token_signed_with_the_jwks_public_key_is_refused(jwks_url, public_key_pem):
    claims = make_claims()
    forged = hand_made_hs256_token(claims, public_key_pem)

    with pytest.raises(VendorTokenError, match="algorithm 'HS256' not allowed"):
        verify_vendor_token_with_jwks(forged, jwks_url=jwks_url, audience=AUDIENCE)


def test_jwks_token_signed_by_another_key_with_a_known_kid_is_refused(jwks_url):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        make_claims(), other_key, algorithm="RS256", headers={"kid": "platform-2025"}
    )

    with pytest.raises(VendorTokenError, match="signature does not verify"):
        verify_vendor_token_with_jwks(token, jwks_url=jwks_url, audience=AUDIENCE)


# -- EAIClient ----------------------------------------------------------------------------------


def success_reply(message: str, transaction_id: str = "tx-1") -> tuple[int, dict, bytes]:
    body = {
        "status": "success",
        "message": message,
        "code": "ok",
        "transactionid": transaction_id,
    }
    return 200, {}, json.dumps(body).encode()


def failed_reply(status: int, message: str, code: str) -> tuple[int, dict, bytes]:
    return status, {}, json.dumps({"status": "failed", "message": message, "code": code}).encode()


def make_client(base_url: str, **options: Any) -> EAIClient:
    settings = {"timeout": 2.0, "max_attempts": 4, "backoff_base": 0.001, "backoff_max": 0.01}
    settings.update(options)
    return EAIClient(base_url, "vendor-acme", "s3cret", **settings)


def test_commit_posts_seed_body_with_basic_auth_and_returns_result(local_server):
    state, base_url = local_server
    state.replies.append(success_reply("points committed for transaction", "tx-42"))

    result = make_client(base_url).commit("member-42", 250, "tx-42", "redemption for mug")

    assert result == EAIResult(
        status="success",
        message="points committed for transaction",
        code="ok",
        transaction_id="tx-42",
        http_status=200,
    )
    (seen,) = state.requests
    assert seen["method"] == "POST"
    assert seen["path"] == "/eai/v1/points?commit"
    expected_auth = "Basic " + base64.b64encode(b"vendor-acme:s3cret").decode()
    assert seen["headers"]["Authorization"] == expected_auth
    assert seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["body"]) == {
        "userid": "member-42",
        "pointstodeduct": 250,
        "transactionid": "tx-42",
        "description": "redemption for mug",
    }


@pytest.mark.parametrize(
    ("action", "message"),
    [("confirm", "points successfully deducted"), ("rollback", "points successfully rolled back")],
)
def test_confirm_and_rollback_post_user_and_transaction_to_their_flag(
    local_server, action, message
):
    state, base_url = local_server
    state.replies.append(success_reply(message, "tx-7"))

    result = getattr(make_client(base_url), action)("member-42", "tx-7")

    assert result.message == message
    assert state.requests[0]["path"] == f"/eai/v1/points?{action}"
    assert json.loads(state.requests[0]["body"]) == {
        "userid": "member-42",
        "transactionid": "tx-7",
    }


def test_commit_succeeds_on_third_attempt_after_two_503s(local_server):
    state, base_url = local_server
    state.replies += [
        failed_reply(503, "maintenance", "unavailable"),
        failed_reply(503, "maintenance", "unavailable"),
        success_reply("points committed for transaction"),
    ]

    result = make_client(base_url).commit("member-42", 10, "tx-1")

    assert result.status == "success"
    assert len(state.requests) == 3
    assert {request["body"] for request in state.requests} == {state.requests[0]["body"]}


def test_429_is_retried_honouring_a_numeric_retry_after(local_server):
    state, base_url = local_server
    state.replies += [
        (429, {"Retry-After": "0"}, b'{"status": "failed", "message": "slow down"}'),
        success_reply("points successfully deducted"),
    ]

    result = make_client(base_url).confirm("member-42", "tx-1")

    assert result.http_status == 200
    assert len(state.requests) == 2


def test_retry_after_is_capped_at_backoff_max(local_server):
    state, base_url = local_server
    state.replies += [
        (503, {"Retry-After": "3600"}, b"{}"),
        success_reply("points successfully deducted"),
    ]

    started = time.monotonic()
    make_client(base_url, backoff_max=0.05).confirm("member-42", "tx-1")

    assert time.monotonic() - started < 2


def test_400_raises_request_refused_after_exactly_one_request(local_server):
    state, base_url = local_server
    state.replies.append(failed_reply(400, "insufficient points", "insufficient_points"))

    with pytest.raises(EAIRequestRefused) as refused:
        make_client(base_url).commit("member-42", 10_000, "tx-1")

    assert refused.value.http_status == 400
    assert refused.value.code == "insufficient_points"
    assert refused.value.message == "insufficient points"
    assert len(state.requests) == 1


def test_409_on_a_resolved_hold_is_not_retried(local_server):
    state, base_url = local_server
    state.replies.append(failed_reply(409, "points already deducted", "already_confirmed"))

    with pytest.raises(EAIRequestRefused, match="points already deducted"):
        make_client(base_url).rollback("member-42", "tx-1")

    assert len(state.requests) == 1


def test_5xx_on_every_attempt_raises_unavailable(local_server):
    state, base_url = local_server
    state.default_reply = failed_reply(502, "bad gateway", "upstream")

    with pytest.raises(EAIUnavailable) as unavailable:
        make_client(base_url, max_attempts=3).confirm("member-42", "tx-1")

    assert unavailable.value.http_status == 502
    assert len(state.requests) == 3


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.post_calls = 0

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.post_calls += 1
        return super().post(*args, **kwargs)


def test_connection_refused_raises_unavailable_after_max_attempts():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    session = CountingSession()
    client = make_client(f"http://127.0.0.1:{closed_port}", max_attempts=3, session=session)

    with pytest.raises(EAIUnavailable, match="after 3 attempts"):
        client.commit("member-42", 10, "tx-1")

    assert session.post_calls == 3


def test_commit_refuses_non_positive_points_without_calling():
    session = CountingSession()
    client = make_client("http://127.0.0.1:9", session=session)

    with pytest.raises(ValueError):
        client.commit("member-42", 0, "tx-1")

    assert session.post_calls == 0
