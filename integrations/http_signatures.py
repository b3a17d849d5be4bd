"""HTTP request signatures for the partner Point API (seed 001), draft-cavage-http-signatures-12.

A partner that registered an RSA public key signs ``POST /api/v1/points`` with two headers::

    Digest: SHA-512=<base64 of sha512(body)>
    Signature: keyId="...",algorithm="RSA-SHA256",created=<unix seconds>,
               headers="(created) digest (request-target)",signature="<base64>"

The signing string is one ``name: value`` line per entry of ``headers``, in that order, joined by
``\\n``; ``(request-target)`` is ``<lower-case method> <path and query>``. The signature is RSA
PKCS#1 v1.5 with SHA-256. (Draft 12 would have ``hs2019`` with ``(created)``; the seed uses
``RSA-SHA256`` with ``(created)``, and the seed wins.)

``sign_request`` is used by tests, the demo and partners; ``verify_request`` by the API. Replays of
an identical signed request inside the window are not refused here: the API answers them as the
idempotent repeat (same ``requestId``) they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "MAX_CLOCK_SKEW_SECONDS",
    "REQUIRED_COVERED_HEADERS",
    "SignatureError",
    "SignedRequest",
    "digest_header",
    "sign_request",
    "verify_request",
]

SIGNATURE_ALGORITHM = "rsa-sha256"
SIGNED_HEADERS = ("(created)", "digest", "(request-target)")
REQUIRED_COVERED_HEADERS = frozenset(SIGNED_HEADERS)
# "created" must never be in the future, but a partner's clock a few seconds ahead of ours is
# normal NTP drift, not an attack; 5 seconds tolerates that without widening the replay window.
MAX_CLOCK_SKEW_SECONDS = 5
MIN_RSA_KEY_BITS = 2048

# One signature parameter: name="quoted value" or name=digits (created/expires are bare numbers).
_PARAMETER = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"([^"]*)"|(\d+))\s*(?:,|$)')


class SignatureError(ValueError):
    """The request signature was refused; ``reason`` is a clear, loggable explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedRequest:
    """What a verified signature proves: who signed (``key_id``) and when (``created``)."""

    key_id: str
    created: int


PublicKeySource = Callable[[str], "PublicKeyTypes | bytes | str | None"]


def digest_header(body: bytes) -> str:
    """The ``Digest`` header value for ``body``: ``SHA-512=<base64>``."""
    return "SHA-512=" + base64.b64encode(hashlib.sha512(body).digest()).decode("ascii")


def _signing_string(covered: list[str], values: Mapping[str, str]) -> bytes:
    return "\n".join(f"{name}: {values[name]}" for name in covered).encode("utf-8")


def sign_request(
    *,
    method: str,
    path_with_query: str,
    body: bytes,
    key_id: str,
    private_key_pem: bytes | str,
    created: int | None = None,
) -> dict[str, str]:
    """Sign a request the way seed 001 describes; returns the ``Digest`` and ``Signature``
    headers to add to it."""
    if '"' in key_id or "\n" in key_id:
        raise ValueError("key_id must not contain quotes or newlines")
    if isinstance(private_key_pem, str):
        private_key_pem = private_key_pem.encode("ascii")
    private_key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError("RSA-SHA256 needs an RSA private key")
    created = int(time.time()) if created is None else int(created)
    digest = digest_header(body)
    values = {
        "(created)": str(created),
        "digest": digest,
        "(request-target)": f"{method.lower()} {path_with_query}",
    }
    signature = private_key.sign(
        _signing_string(list(SIGNED_HEADERS), values), padding.PKCS1v15(), hashes.SHA256()
    )
    signature_b64 = base64.b64encode(signature).decode("ascii")
    return {
        "Digest": digest,
        "Signature": (
            f'keyId="{key_id}",algorithm="RSA-SHA256",created={created},'
            f'headers="{" ".join(SIGNED_HEADERS)}",signature="{signature_b64}"'
        ),
    }


def _parse_signature_header(value: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    position = 0
    value = value.strip()
    while position < len(value):
        match = _PARAMETER.match(value, position)
        if match is None or match.end() == position:
            raise SignatureError("Signature header is not a list of name=value parameters")
        name = match.group(1)
        if name in parameters:
            raise SignatureError(f"Signature header repeats the {name} parameter")
        parameters[name] = match.group(2) if match.group(2) is not None else match.group(3)
        position = match.end()
    if not parameters:
        raise SignatureError("Signature header is empty")
    return parameters


def _sha512_from_digest_header(value: str) -> str:
    # Digest may list several algorithms ("SHA-256=..., SHA-512=..."); we need SHA-512.
    for entry in value.split(","):
        algorithm, separator, encoded = entry.strip().partition("=")
        if separator and algorithm.strip().lower() == "sha-512":
            return encoded.strip()
    raise SignatureError("Digest header has no SHA-512 value")


def _is_unsigned_integer(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _load_public_key(found: PublicKeyTypes | bytes | str) -> PublicKeyTypes:
    if isinstance(found, (bytes, str)):
        pem = found.encode("ascii") if isinstance(found, str) else found
        try:
            return serialization.load_pem_public_key(pem)
        except ValueError as error:
            raise SignatureError(
                "the registered public key for this keyId is unreadable"
            ) from error
    return found


def verify_request(
    *,
    method: str,
    path_with_query: str,
    headers: Mapping[str, str],
    body: bytes,
    public_key_for: PublicKeySource,
    window_seconds: int = 300,
    now: float | None = None,
) -> SignedRequest:
    """Verify the ``Digest`` and ``Signature`` headers of a request.

    ``headers`` is looked up case-insensitively. ``public_key_for(key_id)`` returns the client's
    registered public key (a key object or PEM), or ``None`` for an unknown keyId. ``created``
    must be within ``window_seconds`` in the past and at most ``MAX_CLOCK_SKEW_SECONDS`` ahead.

    Returns ``SignedRequest``; raises ``SignatureError`` with the reason otherwise. The caller
    must still check that the keyId belongs to the authenticated client.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    signature_header = lowered.get("signature")
    if not signature_header:
        raise SignatureError("Signature header is missing")
    parameters = _parse_signature_header(signature_header)

    algorithm = parameters.get("algorithm")
    if algorithm is None:
        raise SignatureError("Signature header lacks the algorithm parameter")
    if algorithm.lower() != SIGNATURE_ALGORITHM:
        raise SignatureError(f"unsupported signature algorithm {algorithm!r}; use RSA-SHA256")

    key_id = parameters.get("keyId")
    if not key_id:
        raise SignatureError("Signature header lacks the keyId parameter")
    signature_b64 = parameters.get("signature")
    if not signature_b64:
        raise SignatureError("Signature header lacks the signature parameter")

    # Draft 12: when "headers" is absent only "(created)" is signed, which we do not accept.
    covered = parameters.get("headers", "(created)").lower().split()
    not_covered = [name for name in SIGNED_HEADERS if name not in covered]
    if not_covered:
        raise SignatureError(f"signature does not cover {', '.join(not_covered)}")

    created_text = parameters.get("created")
    if created_text is None:
        raise SignatureError("Signature header lacks the created parameter")
    if not _is_unsigned_integer(created_text):
        raise SignatureError("signature created is not a number of seconds")
    created = int(created_text)
    current_time = time.time() if now is None else now
    if created > current_time + MAX_CLOCK_SKEW_SECONDS:
        raise SignatureError("signature created is in the future")
    if current_time - created > window_seconds:
        raise SignatureError(f"signature created is older than {window_seconds} seconds")
    expires_text = parameters.get("expires")
    if expires_text is not None and not _is_unsigned_integer(expires_text):
        raise SignatureError("signature expires is not a number of seconds")
    if expires_text is not None and int(expires_text) < current_time:
        raise SignatureError("signature has expired")

    digest_value = lowered.get("digest")
    if not digest_value:
        raise SignatureError("Digest header is missing")
    expected_sha512 = base64.b64encode(hashlib.sha512(body).digest()).decode("ascii")
    if not hmac.compare_digest(_sha512_from_digest_header(digest_value), expected_sha512):
        raise SignatureError("Digest does not match the body (the body was changed)")

    found = public_key_for(key_id)
    if found is None:
        raise SignatureError(f"unknown keyId {key_id[:64]!r}")
    public_key = _load_public_key(found)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureError("algorithm RSA-SHA256 does not match the registered key type")
    if public_key.key_size < MIN_RSA_KEY_BITS:
        raise SignatureError(f"registered RSA key is shorter than {MIN_RSA_KEY_BITS} bits")

    values: dict[str, str] = {
        "(created)": created_text,
        "(request-target)": f"{method.lower()} {path_with_query}",
    }
    if expires_text is not None:
        values["(expires)"] = expires_text
    for name in covered:
        if name in values:
            continue
        if name.startswith("("):
            raise SignatureError(f"signature covers unknown pseudo-header {name}")
        if name not in lowered:
            raise SignatureError(f"signed header {name} is missing from the request")
        values[name] = lowered[name].strip()

    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignatureError("signature is not valid base64") from error
    try:
        public_key.verify(
            signature, _signing_string(covered, values), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature as error:
        raise SignatureError("signature does not verify with the registered key") from error
    return SignedRequest(key_id=key_id, created=created)
