"""Rewards-vendor kit for seed 000: verify the SSO token and call the EAI two-phase points API.

This module is shipped to vendors, so it depends only on PyJWT, cryptography and requests (no
Django). It has two halves:

* ``verify_vendor_token`` / ``verify_vendor_token_with_jwks`` check the JWT the platform hands the
  member over with (``?token=`` or a POSTed form). Algorithms are pinned by the caller, ``none`` is
  never accepted, ``exp``, ``iat`` and ``aud`` (and ``iss`` when given) are required, and every
  failure is a ``VendorTokenError`` with a short reason.
* ``EAIClient`` calls ``POST /eai/v1/points?commit|confirm|rollback`` with HTTP Basic auth. It
  retries network errors, 5xx and 429 with exponential backoff and full jitter, and never retries
  other 4xx. Retrying is safe because the platform treats ``transactionid`` as the idempotency key:
  an identical repeat gets the stored 200 again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "EAIClient",
    "EAIError",
    "EAIRequestRefused",
    "EAIResult",
    "EAIUnavailable",
    "VendorTokenError",
    "verify_vendor_token",
    "verify_vendor_token_with_jwks",
]

# ---------------------------------------------------------------------------------------------
# SSO token verification
# ---------------------------------------------------------------------------------------------

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
JWKS_ALGORITHM = "RS256"

# A JWKS fetch blocks the member's redirect, so keep it short.
JWKS_FETCH_TIMEOUT_SECONDS = 5.0


class VendorTokenError(ValueError):
    """The SSO token was refused; ``reason`` says why in a few words (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


VerificationKey = str | bytes | PublicKeyTypes | jwt.PyJWK


def _check_algorithms_match_key(algorithms: Sequence[str], key: Any) -> None:
    """Refuse configurations that would make an algorithm-confusion attack possible.

    One call verifies with either a shared secret (HS*) or a public key (RS*, ES*, ...), never
    both: a public key used as an HMAC secret is exactly how forged tokens get accepted.
    """
    if isinstance(algorithms, str) or not algorithms:
        raise VendorTokenError("algorithms must be a non-empty list, e.g. ['RS256']")
    requested = set(algorithms)
    unknown = requested - HMAC_ALGORITHMS - ASYMMETRIC_ALGORITHMS
    if unknown:
        # Covers "none" in any spelling: it is never a supported algorithm.
        raise VendorTokenError(f"algorithm not supported: {', '.join(sorted(unknown))}")
    if requested & HMAC_ALGORITHMS and requested & ASYMMETRIC_ALGORITHMS:
        raise VendorTokenError("do not mix HMAC and public-key algorithms in one verifier")
    if requested <= HMAC_ALGORITHMS and not isinstance(key, (str, bytes)):
        raise VendorTokenError("an HMAC algorithm needs a shared secret (str or bytes)")


def _reason_for(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "token expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "token not yet valid"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"token lacks the {error.claim} claim"
    if isinstance(error, jwt.InvalidAudienceError):
        return "token audience does not match"
    if isinstance(error, jwt.InvalidIssuerError):
        return "token issuer does not match"
    if isinstance(error, jwt.InvalidIssuedAtError):
        return "token iat is not a number"
    if isinstance(error, jwt.InvalidSignatureError):
        return "token signature does not verify"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "token algorithm not allowed"
    if isinstance(error, jwt.InvalidKeyError):
        return "verification key does not fit the token algorithm"
    if isinstance(error, jwt.DecodeError):
        return "token is malformed"
    return f"token invalid: {error}"


def verify_vendor_token(
    token: str,
    *,
    key: VerificationKey,
    audience: str,
    issuer: str | None = None,
    algorithms: Sequence[str],
    leeway: int = 10,
) -> dict[str, Any]:
    """Verify the platform's SSO token and return its claims.

    ``key`` is the per-vendor shared secret for HS256, or the platform's public key (PEM or a
    cryptography key object) for RS256. ``algorithms`` is pinned by the caller; a token whose
    header names another algorithm, or ``none``, is refused before any signature check.

    Returns the claims (``firstname, lastname, points, email, userid, iat, exp, jti, iss, aud``).
    Raises ``VendorTokenError`` for every refusal, including a misconfigured call.
    """
    _check_algorithms_match_key(algorithms, key)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise VendorTokenError("token is malformed") from error
    token_algorithm = header.get("alg")
    if token_algorithm not in algorithms:
        raise VendorTokenError(f"token algorithm {token_algorithm!r} not allowed")

    required_claims = ["exp", "iat", "aud"] + (["iss"] if issuer is not None else [])
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=list(algorithms),
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={
                "require": required_claims,
                "verify_signature": True,
                "verify_exp": True,
                "verify_nbf": True,
                "verify_iat": True,
                "verify_aud": True,
                "verify_iss": issuer is not None,
                # Short HMAC secrets and small RSA keys are brute-forceable; refuse them.
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.PyJWTError as error:
        raise VendorTokenError(_reason_for(error)) from error


# Per-process cache; a race only builds a second client, which is harmless.
_jwks_clients: dict[str, jwt.PyJWKClient] = {}


def _jwks_client_for(jwks_url: str) -> jwt.PyJWKClient:
    # One client per URL keeps the key-set cache (and PyJWT's refresh cooldown, which stops a
    # stream of unknown kids from turning into a stream of fetches) across calls in a process.
    client = _jwks_clients.get(jwks_url)
    if client is None:
        client = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=300,
            timeout=JWKS_FETCH_TIMEOUT_SECONDS,
        )
        _jwks_clients[jwks_url] = client
    return client


def verify_vendor_token_with_jwks(
    token: str,
    *,
    jwks_url: str,
    audience: str,
    issuer: str | None = None,
    leeway: int = 10,
) -> dict[str, Any]:
    """Verify an RS256 SSO token with the public key named by its ``kid`` in the platform's JWKS.

    Refuses a token without ``kid``, with a ``kid`` the JWKS does not hold, or whose JWK is not an
    RSA signing key for RS256. Raises ``VendorTokenError``; returns the claims.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise VendorTokenError("token is malformed") from error
    if header.get("alg") != JWKS_ALGORITHM:
        raise VendorTokenError(f"token algorithm {header.get('alg')!r} not allowed")
    key_id = header.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise VendorTokenError("token has no kid")

    try:
        signing_key = _jwks_client_for(jwks_url).get_signing_key(key_id)
    except jwt.PyJWKClientConnectionError as error:
        raise VendorTokenError("could not fetch the JWKS") from error
    except jwt.PyJWKClientError as error:
        # PyJWT words an unknown kid and an unusable key set the same way; both are refusals.
        raise VendorTokenError(f"unknown kid {key_id[:64]!r}") from error
    except jwt.PyJWTError as error:
        raise VendorTokenError("JWKS holds an unusable key") from error

    if signing_key.key_type != "RSA":
        raise VendorTokenError("JWKS key for this kid is not an RSA key")
    if signing_key.algorithm_name != JWKS_ALGORITHM:
        raise VendorTokenError("JWKS key for this kid is not meant for RS256")

    return verify_vendor_token(
        token,
        key=signing_key.key,
        audience=audience,
        issuer=issuer,
        algorithms=[JWKS_ALGORITHM],
        leeway=leeway,
    )


# ---------------------------------------------------------------------------------------------
# EAI two-phase points client
# ---------------------------------------------------------------------------------------------

EAI_PATH = "/eai/v1/points"


@dataclass(frozen=True)
class EAIResult:
    """A successful EAI reply (HTTP 2xx)."""

    status: str
    message: str
    code: str | None
    transaction_id: str | None
    http_status: int


class EAIError(Exception):
    """The EAI call did not succeed. ``code`` is the platform's machine-readable code, if any."""

    def __init__(self, message: str, *, http_status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code


class EAIRequestRefused(EAIError):
    """The platform answered 4xx (e.g. insufficient points, unknown transaction). Not retried."""


class EAIUnavailable(EAIError):
    """Network errors, 5xx or 429 on every attempt: the outcome is unknown, retry later with the
    same transaction id (the platform makes the repeat idempotent)."""


def _reply_json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        # An HTTP-date Retry-After (or none) falls back to our own backoff.
        return None
    return seconds if seconds >= 0 else None


class EAIClient:
    """Client for the platform's EAI two-phase points API (seed 000).

    Not thread-safe when sharing one ``requests.Session``: give each thread its own client.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 5.0,
        max_attempts: int = 4,
        backoff_base: float = 0.2,
        backoff_max: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.auth = (username, password)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.session = session if session is not None else requests.Session()

    # -- public API -------------------------------------------------------------------------

    def commit(
        self, user_id: str, points: int, transaction_id: str, description: str = ""
    ) -> EAIResult:
        """Phase 1: hold ``points`` of ``user_id`` under ``transaction_id``."""
        if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
            raise ValueError("points must be a positive integer")
        return self._call(
            "commit",
            {
                "userid": user_id,
                "pointstodeduct": points,
                "transactionid": transaction_id,
                "description": description,
            },
        )

    def confirm(self, user_id: str, transaction_id: str) -> EAIResult:
        """Phase 2a: deduct the points held for ``transaction_id``."""
        return self._call("confirm", {"userid": user_id, "transactionid": transaction_id})

    def rollback(self, user_id: str, transaction_id: str) -> EAIResult:
        """Phase 2b: release the points held for ``transaction_id``."""
        return self._call("rollback", {"userid": user_id, "transactionid": transaction_id})

    # -- internals --------------------------------------------------------------------------

    def _backoff_seconds(self, *, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        # Full jitter (AWS architecture blog): spreads retries of many vendors' clients apart.
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)

    def _call(self, action: str, body: dict[str, Any]) -> EAIResult:
        url = f"{self.base_url}{EAI_PATH}?{action}"
        last_failure = "no attempt made"
        last_status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = self.session.post(
                    url,
                    json=body,
                    auth=self.auth,
                    timeout=self.timeout,
                    headers={"Accept": "application/json"},
                    # A redirect would drop the body or leak credentials; treat it as an answer.
                    allow_redirects=False,
                )
            except requests.exceptions.SSLError as error:
                # A certificate problem will not fix itself between attempts.
                raise EAIUnavailable(f"TLS error: {error}") from error
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as error:
                last_failure, last_status = f"network error: {error}", None
            else:
                status = response.status_code
                if status >= 500 or status == 429:
                    reply = _reply_json(response)
                    last_failure = reply.get("message") or f"HTTP {status}"
                    last_status = status
                    retry_after = _retry_after_seconds(response)
                else:
                    return self._result_from(response)
            if attempt < self.max_attempts:
                time.sleep(self._backoff_seconds(attempt=attempt, retry_after=retry_after))
        raise EAIUnavailable(
            f"{action} failed after {self.max_attempts} attempts: {last_failure}",
            http_status=last_status,
        )

    @staticmethod
    def _result_from(response: requests.Response) -> EAIResult:
        status = response.status_code
        reply = _reply_json(response)
        message = str(reply.get("message") or response.reason or f"HTTP {status}")
        code = reply.get("code")
        if 400 <= status < 500:
            raise EAIRequestRefused(message, http_status=status, code=code)
        if not 200 <= status < 300:
            raise EAIError(f"unexpected HTTP {status}: {message}", http_status=status, code=code)
        if reply.get("status") != "success":
            raise EAIError(
                f"HTTP {status} without a success reply: {message}", http_status=status, code=code
            )
        return EAIResult(
            status=reply["status"],
            message=message,
            code=code,
            transaction_id=reply.get("transactionid"),
            http_status=status,
        )
