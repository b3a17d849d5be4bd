"""Tests for the Standard Webhooks signer, verified with the reference standardwebhooks package."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.webhook_signing import new_webhook_secret, sign_webhook

BODY = b'{"action":"point_earn","requestId":"r-1","status":"success"}'


def test_signature_verifies_with_the_reference_library():
    secret = new_webhook_secret()
    headers = sign_webhook(secret=secret, msg_id="msg_1", timestamp=int(time.time()), body=BODY)

    assert Webhook(secret).verify(BODY, headers) == {
        "action": "point_earn",
        "requestId": "r-1",
        "status": "success",
    }


def test_headers_carry_id_timestamp_and_v1_signature():
    headers = sign_webhook(secret=new_webhook_secret(), msg_id="msg_2", timestamp=1700, body=BODY)

    assert headers["webhook-id"] == "msg_2"
    assert headers["webhook-timestamp"] == "1700"
    assert headers["webhook-signature"].startswith("v1,")


def test_known_vector_from_the_standard_webhooks_spec_matches():
    # The reference library signs the same input; an independent check of key decoding.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = sign_webhook(
        secret=secret,
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )

    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_tampered_body_fails_verification():
    secret = new_webhook_secret()
    headers = sign_webhook(secret=secret, msg_id="msg_3", timestamp=int(time.time()), body=BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"success", b"failed!"), headers)


def test_signature_with_another_secret_fails_verification():
    headers = sign_webhook(
        secret=new_webhook_secret(), msg_id="msg_4", timestamp=int(time.time()), body=BODY
    )

    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(BODY, headers)


def test_new_secret_is_whsec_prefixed_base64_of_enough_random_bytes():
    secret = new_webhook_secret()

    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 32
    assert new_webhook_secret() != secret


@pytest.mark.parametrize(
    "bad_secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_"]
)
def test_malformed_secret_is_refused(bad_secret):
    with pytest.raises(ValueError):
        sign_webhook(secret=bad_secret, msg_id="msg_5", timestamp=1, body=BODY)
