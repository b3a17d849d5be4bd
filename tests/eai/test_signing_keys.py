"""Platform RS256 keys: the JWKS, rotation without breaking tokens in flight, withdrawal."""

from __future__ import annotations

import datetime as dt
import json

import jwt
import pytest
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.eai import selectors, services
from integrations.eai.models import RETIRED_KEY_GRACE_SECONDS, SigningKey
from integrations.eai.tokens import sso_token_issue
from integrations.vendor_kit import VendorTokenError, verify_vendor_token

pytestmark = pytest.mark.django_db


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def jwks_kids(client) -> list[str]:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [key["kid"] for key in json.loads(response.content)["keys"]]


def verify_with_published_keys(client, token: str, audience: str) -> dict:
    """What a vendor does: take the key the token's kid names from the JWKS, verify with it."""
    keys = {
        key["kid"]: key for key in json.loads(client.get("/.well-known/jwks.json").content)["keys"]
    }
    jwk = keys.get(kid_of(token))
    if jwk is None:
        raise VendorTokenError("unknown kid")
    return verify_vendor_token(
        token,
        key=jwt.PyJWK(jwk).key,
        audience=audience,
        issuer=settings.LOYALTY_ISSUER,
        algorithms=["RS256"],
    )


def test_the_first_rs256_token_makes_a_key_that_the_jwks_publishes(client, vendor, member):
    assert jwks_kids(client) == []

    token = sso_token_issue(vendor=vendor, member=member)

    key = SigningKey.objects.get()
    assert kid_of(token) == key.kid
    assert jwks_kids(client) == [key.kid]
    published = json.loads(client.get("/.well-known/jwks.json").content)["keys"][0]
    assert {published["kty"], published["alg"], published["use"]} == {"RSA", "RS256", "sig"}
    assert "d" not in published  # never the private part
    assert jwt.PyJWK(published).key.key_size >= 2048
    assert verify_with_published_keys(client, token, vendor.sso_audience)["userid"]


def test_the_jwks_may_be_cached_briefly(client):
    response = client.get("/.well-known/jwks.json")

    assert response["Cache-Control"] == "public, max-age=60"


def test_rotation_publishes_the_new_key_first_and_keeps_tokens_in_flight_valid(
    client, vendor, member
):
    now = timezone.now()
    token_before = sso_token_issue(vendor=vendor, member=member, now=now)
    old_kid = kid_of(token_before)

    new_key = services.signing_key_rotate(now=now)

    # The new key is published at once but does not sign yet: vendors' caches catch up first.
    assert new_key.activates_at > now
    assert set(jwks_kids(client)) == {old_kid, new_key.kid}
    assert kid_of(sso_token_issue(vendor=vendor, member=member)) == old_kid
    # The token issued before the rotation still verifies against the published keys.
    assert verify_with_published_keys(client, token_before, vendor.sso_audience)
    # From its activation the new key signs; the old one is still published for its tokens.
    after_activation = new_key.activates_at + dt.timedelta(seconds=1)
    assert kid_of(sso_token_issue(vendor=vendor, member=member, now=after_activation)) == (
        new_key.kid
    )
    published = [k["kid"] for k in selectors.published_jwks(now=after_activation)["keys"]]
    assert published == [new_key.kid, old_kid]
    # Once every token the old key can have signed has expired, it leaves the JWKS.
    later = new_key.activates_at + dt.timedelta(seconds=RETIRED_KEY_GRACE_SECONDS + 1)
    assert [k["kid"] for k in selectors.published_jwks(now=later)["keys"]] == [new_key.kid]


def test_a_rotation_keeps_old_keys_published_longer_than_any_token_lives(vendor):
    now = timezone.now()
    old = services.signing_key_ensure(now=now)

    new = services.signing_key_rotate(now=now)

    old.refresh_from_db()
    # The last token the old key signs is issued just before the new key activates.
    longest_token = dt.timedelta(seconds=600 + 10)  # the lifetime cap plus the kit's leeway
    assert old.publish_until >= new.activates_at + longest_token


def test_a_withdrawn_key_leaves_the_jwks_and_stops_signing_at_once(client, vendor, member):
    token = sso_token_issue(vendor=vendor, member=member)
    compromised = SigningKey.objects.get(kid=kid_of(token))

    services.signing_key_withdraw(key=compromised)

    assert compromised.kid not in jwks_kids(client)
    with pytest.raises(VendorTokenError):
        verify_with_published_keys(client, token, vendor.sso_audience)
    fresh = sso_token_issue(vendor=vendor, member=member)
    assert kid_of(fresh) != compromised.kid
    assert verify_with_published_keys(client, fresh, vendor.sso_audience)


def test_a_generation_is_taken_once_so_concurrent_key_makers_cannot_both_win(vendor):
    first = services.signing_key_ensure()

    again = services.signing_key_ensure()

    assert again.pk == first.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        SigningKey.objects.create(
            kid="another-kid",
            generation=first.generation,
            private_key_pem="-",
            public_jwk={},
            activates_at=timezone.now(),
        )
