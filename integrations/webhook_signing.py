"""Standard Webhooks signatures for the messages we send (seed 001 callbacks, outbox deliveries).

Per https://www.standardwebhooks.com: the receiver gets ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. The secret is shown to
the receiver as ``whsec_<base64>``; the HMAC key is the base64-decoded part. This is a small,
dependency-free signer; the tests verify it with the reference ``standardwebhooks`` package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = ["SECRET_PREFIX", "new_webhook_secret", "sign_webhook"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format marker, not a secret
# Standard Webhooks recommends 24 to 64 bytes of key; 32 matches the HMAC-SHA256 block of safety.
SECRET_BYTES = 32


def new_webhook_secret() -> str:
    """A fresh random secret in the ``whsec_<base64>`` form (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key_from_secret(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must look like whsec_<base64>")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("webhook secret is not valid base64 after whsec_") from error
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign_webhook(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers that let the receiver authenticate ``body``: ``webhook-id``,
    ``webhook-timestamp`` (unix seconds) and ``webhook-signature``.

    ``msg_id`` must stay the same across retries of one message so receivers can deduplicate.
    """
    if not msg_id or any(character in msg_id for character in "\r\n"):
        raise ValueError("msg_id must be a non-empty single-line string")
    timestamp_text = str(int(timestamp))
    signed_content = f"{msg_id}.{timestamp_text}.".encode() + body
    mac = hmac.new(_key_from_secret(secret), signed_content, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp_text,
        "webhook-signature": "v1," + base64.b64encode(mac).decode("ascii"),
    }
