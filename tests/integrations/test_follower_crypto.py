"""Tests for the AES-256-GCM payload of the seed 002 adjustment webhook."""

from __future__ import annotations

import base64

import pytest

from integrations.follower_crypto import (
    PayloadDecryptError,
    decrypt_payload,
    encrypt_payload,
    new_follower_key,
)

ADJUSTMENT = {
    "ContactId": "1dfe06cd-a1be-4423-8ed4-afd900d998aa",
    "Amount": 40,
    "Description": "Points awarded \u2013 caf\u00e9 bonus",
    "Source": "Automation",
    "PointDefinitionId": 1,
}


def test_payload_round_trips():
    key = new_follower_key()

    assert decrypt_payload(encrypt_payload(ADJUSTMENT, key), key) == ADJUSTMENT


def test_wire_form_is_base64_of_nonce_ciphertext_and_tag():
    key = new_follower_key()

    blob = base64.b64decode(encrypt_payload(ADJUSTMENT, key), validate=True)

    compact_json_length = len(
        b'{"ContactId":"1dfe06cd-a1be-4423-8ed4-afd900d998aa","Amount":40,'
        b'"Description":"Points awarded \xe2\x80\x93 caf\xc3\xa9 bonus","Source":"Automation",'
        b'"PointDefinitionId":1}'
    )
    assert len(blob) == 12 + compact_json_length + 16


def test_each_encryption_uses_a_fresh_nonce():
    key = new_follower_key()

    assert encrypt_payload(ADJUSTMENT, key) != encrypt_payload(ADJUSTMENT, key)


def test_tampered_ciphertext_is_refused():
    key = new_follower_key()
    blob = bytearray(base64.b64decode(encrypt_payload(ADJUSTMENT, key)))
    blob[20] ^= 0x01
    tampered = base64.b64encode(bytes(blob)).decode()

    with pytest.raises(PayloadDecryptError):
        decrypt_payload(tampered, key)


def test_wrong_key_is_refused():
    token = encrypt_payload(ADJUSTMENT, new_follower_key())

    with pytest.raises(PayloadDecryptError):
        decrypt_payload(token, new_follower_key())


@pytest.mark.parametrize("token", ["not base64!!", base64.b64encode(b"short").decode()])
def test_garbage_payload_is_refused(token):
    with pytest.raises(PayloadDecryptError):
        decrypt_payload(token, new_follower_key())


@pytest.mark.parametrize(
    "bad_key", [base64.b64encode(b"x" * 16).decode(), base64.b64encode(b"x" * 33).decode(), "??"]
)
def test_key_that_is_not_32_bytes_is_refused(bad_key):
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt_payload(ADJUSTMENT, bad_key)


def test_new_key_is_base64_of_32_bytes():
    assert len(base64.b64decode(new_follower_key(), validate=True)) == 32
