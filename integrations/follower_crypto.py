"""Encryption of the point-follower adjustment webhook payload (seed 002).

When a program follows an external point master, an adjustment made here is sent to the master's
webhook as ``{"eventType": "loyalty.addPoints", "id", "payload", "tenant"}`` with ``payload``
encrypted under a key both sides hold. The seed does not name the cipher; we use AES-256-GCM
because it is authenticated (a changed payload fails to decrypt instead of decrypting to garbage).

Wire form of ``payload``: base64 (standard alphabet, padded) of nonce (12 bytes) + ciphertext +
tag (16 bytes), no associated data; the plaintext is compact UTF-8 JSON. The key is exchanged as
base64 of 32 random bytes. This module is also shipped to masters so they can decrypt.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["PayloadDecryptError", "decrypt_payload", "encrypt_payload", "new_follower_key"]

KEY_BYTES = 32
NONCE_BYTES = 12  # GCM's standard nonce; random nonces are safe far beyond our message volume.
TAG_BYTES = 16


class PayloadDecryptError(ValueError):
    """The payload could not be decrypted: wrong key, changed in transit, or not our format."""


def new_follower_key() -> str:
    """A fresh AES-256 key as base64 of 32 random bytes."""
    return base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode("ascii")


def _key_bytes(key: str) -> bytes:
    try:
        raw = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("follower key must be base64 of 32 bytes") from error
    if len(raw) != KEY_BYTES:
        raise ValueError(f"follower key must be 32 bytes, got {len(raw)}")
    return raw


def encrypt_payload(payload: dict[str, Any], key: str) -> str:
    """Encrypt ``payload`` (a JSON-serialisable dict) for the master; returns base64 text."""
    plaintext = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    nonce = os.urandom(NONCE_BYTES)
    ciphertext_and_tag = AESGCM(_key_bytes(key)).encrypt(nonce, plaintext, None)
    return base64.b64encode(nonce + ciphertext_and_tag).decode("ascii")


def decrypt_payload(token: str, key: str) -> dict[str, Any]:
    """Decrypt a payload made by ``encrypt_payload``.

    Raises ``PayloadDecryptError`` if it was tampered with, the key is wrong or it is not a JSON
    object; ``ValueError`` if ``key`` itself is not base64 of 32 bytes.
    """
    aesgcm = AESGCM(_key_bytes(key))
    try:
        blob = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError) as error:
        raise PayloadDecryptError("payload is not base64") from error
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise PayloadDecryptError("payload is too short")
    try:
        plaintext = aesgcm.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], None)
    except InvalidTag as error:
        raise PayloadDecryptError("payload was changed or the key is wrong") from error
    try:
        payload = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadDecryptError("decrypted payload is not JSON") from error
    if not isinstance(payload, dict):
        raise PayloadDecryptError("decrypted payload is not a JSON object")
    return payload
