"""Signed requests (seed 001): RSA-SHA256 over (created), Digest and (request-target).

Valid signatures are accepted; a wrong key, a body changed after signing, a stale or future
`created`, another client's keyId, and an unsigned request from a client that requires signing
are 401 with the reason and change nothing; an identical replay does nothing twice.
"""

import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.http_signatures import sign_request
from integrations.partner.credentials import partner_client_signing_key_set
from integrations.partner.models import PartnerRequest
from integrations.partner.services import partner_request_process
from points.models import Transfer
from tests.partner.conftest import issue_token, point_body, post_points, snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_dns")]

KEY_ID = "partner-key-1"


@pytest.fixture
def signing_partner(partner, rsa_key_pair):
    private_pem, public_pem = rsa_key_pair
    partner_client_signing_key_set(
        client=partner.client, key_id=KEY_ID, public_key_pem=public_pem, require_signature=False
    )
    return private_pem


def signed_post(client, token, raw_body: bytes, private_pem, *, key_id=KEY_ID, created=None):
    headers = sign_request(
        method="POST",
        path_with_query="/api/v1/points",
        body=raw_body,
        key_id=key_id,
        private_key_pem=private_pem,
        created=created,
    )
    return post_points(client, token, raw_body, **headers)


def _raw(member, rule, **fields) -> bytes:
    return json.dumps(point_body(user_id=member.external_id, rule=rule, **fields)).encode()


def test_a_validly_signed_request_is_accepted(client, token, signing_partner, earn_rule, member):
    response = signed_post(client, token, _raw(member, earn_rule), signing_partner)

    assert response.status_code == 202, response.content


def _other_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong key", "does not verify"),
        ("body changed after signing", "Digest does not match"),
        ("stale created", "older than 300 seconds"),
        ("future created", "in the future"),
        ("unknown key id", "unknown keyId"),
        ("garbled header", "Signature header"),
    ],
)
def test_a_refused_signature_is_401_with_the_reason_and_changes_nothing(
    client, token, signing_partner, earn_rule, program, member, case, reason
):
    raw = _raw(member, earn_rule, request_id=f"signed-{case}")
    before = snapshot(program, member)

    if case == "wrong key":
        response = signed_post(client, token, raw, _other_key_pem())
    elif case == "body changed after signing":
        headers = sign_request(
            method="POST",
            path_with_query="/api/v1/points",
            body=raw,
            key_id=KEY_ID,
            private_key_pem=signing_partner,
        )
        tampered = raw.replace(b'"amount": 100', b'"amount": 900')
        assert tampered != raw
        response = post_points(client, token, tampered, **headers)
    elif case == "stale created":
        response = signed_post(client, token, raw, signing_partner, created=int(time.time()) - 301)
    elif case == "future created":
        response = signed_post(client, token, raw, signing_partner, created=int(time.time()) + 120)
    elif case == "unknown key id":
        response = signed_post(client, token, raw, signing_partner, key_id="someone-else")
    else:
        response = post_points(client, token, raw, Signature="keyId=oops")

    assert response.status_code == 401, response.content
    error = response.json()
    assert error["code"] == "invalid_signature"
    assert reason in error["message"]
    assert snapshot(program, member) == before


def test_a_key_id_of_another_client_is_refused(
    client, org, make_partner, signing_partner, earn_rule, program, member, rsa_key_pair
):
    # Another client registered under the same organisation with its own key id.
    other = make_partner(org, rules=[earn_rule])
    other_private = _other_key_pem()
    other_public = (
        serialization.load_pem_private_key(other_private.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    partner_client_signing_key_set(
        client=other.client,
        key_id="other-key",
        public_key_pem=other_public,
        require_signature=False,
    )
    token = issue_token(client, other)

    # The first partner's key id and key do not authenticate a request on the other's token.
    response = signed_post(client, token, _raw(member, earn_rule), signing_partner)

    assert response.status_code == 401
    assert "unknown keyId" in response.json()["message"]


def test_a_client_that_requires_signatures_refuses_an_unsigned_request(
    client, token, partner, signing_partner, earn_rule, program, member
):
    partner.client.require_signature = True
    partner.client.save(update_fields=["require_signature"])
    before = snapshot(program, member)

    response = post_points(client, token, point_body(user_id=member.external_id, rule=earn_rule))

    assert response.status_code == 401
    assert response.json()["message"] == "Signature header is missing"
    assert snapshot(program, member) == before
    assert signed_post(client, token, _raw(member, earn_rule), signing_partner).status_code == 202


def test_a_signature_from_a_client_without_a_registered_key_is_refused(
    client, token, earn_rule, program, member
):
    response = signed_post(client, token, _raw(member, earn_rule), _other_key_pem())

    assert response.status_code == 401
    assert "no public key is registered" in response.json()["message"]


def test_an_identical_signed_replay_is_answered_as_the_repeat_and_does_nothing_twice(
    client, token, signing_partner, earn_rule, member, django_capture_on_commit_callbacks
):
    raw = _raw(member, earn_rule, request_id="signed-once")
    headers = sign_request(
        method="POST",
        path_with_query="/api/v1/points",
        body=raw,
        key_id=KEY_ID,
        private_key_pem=signing_partner,
    )
    with django_capture_on_commit_callbacks() as dispatched:
        first = post_points(client, token, raw, **headers)
    partner_request_process(partner_request_id=PartnerRequest.objects.get().pk)

    with django_capture_on_commit_callbacks() as dispatched_again:
        replay = post_points(client, token, raw, **headers)  # the same bytes, the same headers

    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert (len(dispatched), len(dispatched_again)) == (1, 0)
    assert PartnerRequest.objects.count() == 1
    assert Transfer.objects.count() == 1
