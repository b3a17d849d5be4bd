"""Tests for seed 001 request signatures: Digest SHA-512 plus cavage-style RSA-SHA256 Signature."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from integrations.http_signatures import (
    SignatureError,
    SignedRequest,
    digest_header,
    sign_request,
    verify_request,
)

NOW = 1_760_000_000
KEY_ID = "partner-key-1"
METHOD = "POST"
PATH = "/api/v1/points"
BODY = b'{"userId":"u-1","ruleId":"earn-1","amount":10,"requestId":"r-1","callbackUrl":"https://p.test/cb"}'


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def partner_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signed_headers(key: rsa.RSAPrivateKey, *, created: int = NOW, body: bytes = BODY) -> dict:
    return sign_request(
        method=METHOD,
        path_with_query=PATH,
        body=body,
        key_id=KEY_ID,
        private_key_pem=private_pem(key),
        created=created,
    )


def verify(headers: dict, *, registered_pem: bytes, body: bytes = BODY, now: float = NOW):
    return verify_request(
        method=METHOD,
        path_with_query=PATH,
        headers=headers,
        body=body,
        public_key_for=lambda key_id: registered_pem if key_id == KEY_ID else None,
        now=now,
    )


def replace_parameter(signature_header: str, name: str, new_value: str) -> str:
    parameters = [part for part in signature_header.split(",") if not part.startswith(name + "=")]
    return ",".join([*parameters, f"{name}={new_value}"])


def test_sign_request_produces_seed_shaped_headers(partner_key):
    headers = signed_headers(partner_key)

    expected_digest = "SHA-512=" + base64.b64encode(hashlib.sha512(BODY).digest()).decode()
    assert headers["Digest"] == expected_digest == digest_header(BODY)
    assert headers["Signature"].startswith(
        f'keyId="{KEY_ID}",algorithm="RSA-SHA256",created={NOW},'
        'headers="(created) digest (request-target)",signature="'
    )


def test_validly_signed_request_is_accepted(partner_key):
    headers = signed_headers(partner_key)

    assert verify(headers, registered_pem=public_pem(partner_key)) == SignedRequest(
        key_id=KEY_ID, created=NOW
    )


def test_header_names_are_looked_up_case_insensitively(partner_key):
    headers = {name.lower(): value for name, value in signed_headers(partner_key).items()}

    assert verify(headers, registered_pem=public_pem(partner_key)).key_id == KEY_ID


def test_registered_key_may_be_a_key_object(partner_key):
    headers = signed_headers(partner_key)

    signed = verify_request(
        method=METHOD,
        path_with_query=PATH,
        headers=headers,
        body=BODY,
        public_key_for=lambda key_id: partner_key.public_key(),
        now=NOW + 299,
    )

    assert signed.created == NOW


def test_request_signed_with_another_key_is_refused(partner_key, other_key):
    headers = signed_headers(other_key)

    with pytest.raises(SignatureError, match="signature does not verify"):
        verify(headers, registered_pem=public_pem(partner_key))


def test_body_changed_after_signing_is_refused(partner_key):
    headers = signed_headers(partner_key)

    with pytest.raises(SignatureError, match="Digest does not match the body"):
        verify(headers, registered_pem=public_pem(partner_key), body=BODY.replace(b"10", b"99"))


def test_digest_replaced_to_match_a_changed_body_is_refused(partner_key):
    changed_body = BODY.replace(b"10", b"99")
    headers = {**signed_headers(partner_key), "Digest": digest_header(changed_body)}

    with pytest.raises(SignatureError, match="signature does not verify"):
        verify(headers, registered_pem=public_pem(partner_key), body=changed_body)


def test_stale_created_is_refused(partner_key):
    headers = signed_headers(partner_key, created=NOW - 301)

    with pytest.raises(SignatureError, match="older than 300 seconds"):
        verify(headers, registered_pem=public_pem(partner_key))


def test_created_in_the_future_is_refused(partner_key):
    headers = signed_headers(partner_key, created=NOW + 6)

    with pytest.raises(SignatureError, match="in the future"):
        verify(headers, registered_pem=public_pem(partner_key))


def test_created_a_few_seconds_ahead_is_tolerated_as_clock_skew(partner_key):
    headers = signed_headers(partner_key, created=NOW + 5)

    assert verify(headers, registered_pem=public_pem(partner_key)).created == NOW + 5


def test_missing_created_is_refused(partner_key):
    headers = signed_headers(partner_key)
    without_created = ",".join(
        part for part in headers["Signature"].split(",") if not part.startswith("created=")
    )

    with pytest.raises(SignatureError, match="lacks the created parameter"):
        verify({**headers, "Signature": without_created}, registered_pem=public_pem(partner_key))


@pytest.mark.parametrize("left_out", ["digest", "(request-target)", "(created)"])
def test_signature_not_covering_a_required_header_is_refused(partner_key, left_out):
    headers = signed_headers(partner_key)
    covered = " ".join(
        name for name in ("(created)", "digest", "(request-target)") if name != left_out
    )
    signature = replace_parameter(headers["Signature"], "headers", f'"{covered}"')

    with pytest.raises(SignatureError, match=rf"does not cover {re.escape(left_out)}"):
        verify({**headers, "Signature": signature}, registered_pem=public_pem(partner_key))


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "rsa-sha512", "hs2019", "ecdsa-sha256"])
def test_unsupported_algorithm_is_refused(partner_key, algorithm):
    headers = signed_headers(partner_key)
    signature = replace_parameter(headers["Signature"], "algorithm", f'"{algorithm}"')

    with pytest.raises(SignatureError, match="unsupported signature algorithm"):
        verify({**headers, "Signature": signature}, registered_pem=public_pem(partner_key))


def test_algorithm_name_is_case_insensitive(partner_key):
    headers = signed_headers(partner_key)
    signature = replace_parameter(headers["Signature"], "algorithm", '"rsa-sha256"')

    assert verify({**headers, "Signature": signature}, registered_pem=public_pem(partner_key))


def test_rsa_sha256_with_a_non_rsa_registered_key_is_refused(partner_key):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    headers = signed_headers(partner_key)

    with pytest.raises(SignatureError, match="does not match the registered key type"):
        verify(headers, registered_pem=public_pem(ec_key))


def test_unknown_key_id_is_refused(partner_key):
    headers = signed_headers(partner_key)
    signature = replace_parameter(headers["Signature"], "keyId", '"someone-else"')

    with pytest.raises(SignatureError, match="unknown keyId 'someone-else'"):
        verify({**headers, "Signature": signature}, registered_pem=public_pem(partner_key))


def test_missing_signature_header_is_refused(partner_key):
    headers = signed_headers(partner_key)
    del headers["Signature"]

    with pytest.raises(SignatureError, match="Signature header is missing"):
        verify(headers, registered_pem=public_pem(partner_key))


@pytest.mark.parametrize("garbage", ["keyId", "keyId=unquoted", 'keyId="a" junk', ",,,"])
def test_unparseable_signature_header_is_refused(partner_key, garbage):
    headers = {**signed_headers(partner_key), "Signature": garbage}

    with pytest.raises(SignatureError, match="Signature header"):
        verify(headers, registered_pem=public_pem(partner_key))


def test_missing_digest_header_is_refused(partner_key):
    headers = signed_headers(partner_key)
    del headers["Digest"]

    with pytest.raises(SignatureError, match="Digest header is missing"):
        verify(headers, registered_pem=public_pem(partner_key))


def test_request_target_binds_method_and_path(partner_key):
    headers = signed_headers(partner_key)

    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_request(
            method=METHOD,
            path_with_query="/api/v1/points?other=1",
            headers=headers,
            body=BODY,
            public_key_for=lambda key_id: public_pem(partner_key),
            now=NOW,
        )
