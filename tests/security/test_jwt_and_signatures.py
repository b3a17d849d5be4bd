"""The known attacks on the platform's tokens and signatures, each refused.

SSO tokens (seed 000), verified as a vendor does with the shipped kit, against the platform's
live JWKS and its pinned public key: `alg: none`, HS/RS confusion, missing `exp`, expired beyond
the leeway, future `nbf`, wrong `aud` / `iss`, hostile `kid` (and `jku`), another key, a changed
payload. A JWT is also no way into the APIs, whose tokens are the platform's own.

Partner request signatures (seed 001), sent over the API: digest mismatch, future or stale
`created`, missing covered headers, an algorithm conflicting with the key, another client's key,
another target; each is 401 and changes nothing. A replay of an identical signed request inside
the window is answered as the idempotent repeat it is (DESIGN.md): the same reply, nothing done
twice; a replay with anything changed is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from django.conf import settings
from django.test import TestCase
from django.utils import timezone

from integrations import vendor_kit
from integrations.eai import services as eai_services
from integrations.eai.models import SsoAlgorithm
from integrations.eai.tokens import sso_claims, sso_token_issue
from integrations.http_signatures import digest_header, sign_request
from integrations.partner.credentials import partner_client_create
from integrations.vendor_kit import (
    VendorTokenError,
    verify_vendor_token,
    verify_vendor_token_with_jwks,
)
from points.models import Transfer
from tests.conftest import unique
from tests.http_support import RecordingServer
from tests.reliability.support import db_fingerprint, fingerprint_changes
from tests.reliability.worlds import token_for
from tests.security.conftest import Caller

LEEWAY = 10


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def pem_of(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- SSO tokens ------------------------------------------------------------------------------


@pytest.fixture
def platform(live_server, world_a):
    """The platform's signing key, its JWKS URL, a vendor and a member, and a genuine token."""
    jwks_client_cache_cleared()
    vendor = world_a.vendors[0].vendor
    member = world_a.members[0]
    key = eai_services.signing_key_ensure()
    yield {
        "vendor": vendor,
        "member": member,
        "kid": key.kid,
        "private_key": serialization.load_pem_private_key(
            key.private_key_pem.encode(), password=None
        ),
        "public_pem": pem_of(
            serialization.load_pem_private_key(
                key.private_key_pem.encode(), password=None
            ).public_key()
        ),
        "jwks_url": f"{live_server.url}/.well-known/jwks.json",
        "token": sso_token_issue(vendor=vendor, member=member),
    }
    jwks_client_cache_cleared()


def jwks_client_cache_cleared():
    # Each test is a fresh vendor process: keys cached from another test's database must go.
    vendor_kit._jwks_clients.clear()


def verify_with_the_jwks(platform, token: str) -> dict:
    return verify_vendor_token_with_jwks(
        token,
        jwks_url=platform["jwks_url"],
        audience=platform["vendor"].sso_audience,
        issuer=settings.LOYALTY_ISSUER,
    )


def verify_as_a_vendor(platform, token: str) -> dict:
    """Verify with the JWKS, and with the pinned public key; both must agree."""
    audience = platform["vendor"].sso_audience
    results = []
    for verify in (
        lambda: verify_vendor_token_with_jwks(
            token, jwks_url=platform["jwks_url"], audience=audience, issuer=settings.LOYALTY_ISSUER
        ),
        lambda: verify_vendor_token(
            token,
            key=platform["public_pem"],
            audience=audience,
            issuer=settings.LOYALTY_ISSUER,
            algorithms=["RS256"],
        ),
    ):
        try:
            results.append(verify())
        except VendorTokenError as error:
            results.append(error)
    assert type(results[0]) is type(results[1]), results
    if isinstance(results[0], VendorTokenError):
        raise results[0]
    return results[0]


def signed(platform, claims: dict, **header) -> str:
    return jwt.encode(
        claims,
        platform["private_key"],
        algorithm="RS256",
        headers={"kid": platform["kid"], "typ": "JWT", **header},
    )


def claims_now(platform, **changes) -> dict:
    claims = sso_claims(vendor=platform["vendor"], member=platform["member"], now=timezone.now())
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def unsigned(platform, alg: str) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": platform["kid"]}
    return f"{b64url_json(header)}.{b64url_json(claims_now(platform))}."


def hs256_keyed_with_the_public_key(platform) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": platform["kid"]}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims_now(platform))}"
    mac = hmac.new(platform["public_pem"], signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def signed_by_another_key(platform) -> str:
    intruder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        claims_now(platform), intruder, algorithm="RS256", headers={"kid": platform["kid"]}
    )


def payload_changed(platform) -> str:
    header, _payload, signature = platform["token"].split(".")
    richer = claims_now(platform, points=10_000_000)
    return f"{header}.{b64url_json(richer)}.{signature}"


ATTACKS = {
    "alg none": lambda p: unsigned(p, "none"),
    "alg None": lambda p: unsigned(p, "None"),
    "alg NONE": lambda p: unsigned(p, "NONE"),
    "HS256 keyed with the RSA public key": hs256_keyed_with_the_public_key,
    "missing exp": lambda p: signed(p, claims_now(p, exp=None)),
    "missing aud": lambda p: signed(p, claims_now(p, aud=None)),
    "expired beyond the leeway": lambda p: signed(
        p, claims_now(p, exp=int(time.time()) - LEEWAY - 5)
    ),
    "not valid yet (future nbf)": lambda p: signed(p, claims_now(p, nbf=int(time.time()) + 300)),
    "another audience": lambda p: signed(p, claims_now(p, aud="another-vendor")),
    "another issuer": lambda p: signed(p, claims_now(p, iss="https://evil.example")),
    "signed by another key": signed_by_another_key,
    "payload changed after signing": payload_changed,
}


def with_kid(platform, kid) -> str:
    """A token the platform's key really signed, naming another kid (only a JWKS looks it up)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims_now(platform))}".encode()
    signature = platform["private_key"].sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64url(signature)}"


HOSTILE_KIDS = {
    "a path": "../../../../etc/passwd",
    "SQL": "' OR '1'='1",
    "10000 characters": "k" * 10_000,
    "a number": 12345,
    "an object": {"kid": "x"},
    "empty": "",
    "absent": None,
}


@pytest.mark.django_db(transaction=True)
def test_the_genuine_token_and_one_just_inside_the_leeway_verify(platform):
    assert verify_as_a_vendor(platform, platform["token"])["userid"] == (
        platform["member"].external_id
    )
    late = signed(platform, claims_now(platform, exp=int(time.time()) - LEEWAY // 2))
    assert verify_as_a_vendor(platform, late)["userid"] == platform["member"].external_id


@pytest.mark.django_db(transaction=True)
def test_every_forged_token_is_refused(platform):
    accepted = []
    for attack, forge in sorted(ATTACKS.items()):
        try:
            verify_as_a_vendor(platform, forge(platform))
        except VendorTokenError:
            continue
        accepted.append(attack)
    assert accepted == []


@pytest.mark.django_db(transaction=True)
def test_a_hostile_kid_finds_no_key(platform):
    # A JWKS verifier looks the key up by kid: none but the platform's own may match.
    accepted = []
    for name, kid in sorted(HOSTILE_KIDS.items()):
        try:
            verify_with_the_jwks(platform, with_kid(platform, kid))
        except VendorTokenError:
            continue
        accepted.append(name)
    assert accepted == []
    assert verify_with_the_jwks(platform, with_kid(platform, platform["kid"]))


@pytest.mark.django_db(transaction=True)
def test_a_jku_or_x5u_header_sends_the_verifier_nowhere(platform):
    # Given a token signed by an intruder, naming the intruder's key set in jku and x5u
    intruder_server = RecordingServer().start()
    try:
        intruder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(
            claims_now(platform),
            intruder,
            algorithm="RS256",
            headers={
                "kid": "intruder",
                "jku": f"{intruder_server.url}/jwks.json",
                "x5u": f"{intruder_server.url}/cert.pem",
            },
        )

        # When a vendor verifies it
        with pytest.raises(VendorTokenError):
            verify_as_a_vendor(platform, token)

        # Then the key set came from the configured URL only
        assert intruder_server.requests == []
    finally:
        intruder_server.stop()


@pytest.mark.django_db
def test_an_hs256_vendors_verifier_refuses_rs256_none_and_other_secrets(world_a):
    # Given a vendor signing with a shared secret
    created = eai_services.vendor_create(
        organization=world_a.org,
        program=world_a.program,
        name=unique("hs-vendor"),
        sso_audience="hs-audience",
        sso_redirect_url="https://rewards.example.test/redeem",
        sso_algorithm=SsoAlgorithm.HS256,
    )
    token = sso_token_issue(vendor=created.vendor, member=world_a.members[0])

    def verify(candidate, secret=created.sso_secret):
        return verify_vendor_token(
            candidate, key=secret, audience="hs-audience", algorithms=["HS256"]
        )

    assert verify(token)["userid"] == world_a.members[0].external_id
    _header, payload, _signature = token.split(".")
    intruder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = {
        "alg none": f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "RS256 instead": jwt.encode(claims, intruder, algorithm="RS256"),
        "another secret": jwt.encode(claims, "x" * 64, algorithm="HS256"),
    }
    for name, candidate in forged.items():
        with pytest.raises(VendorTokenError):
            verify(candidate)
        assert name
    # ... and a verifier is never configured with HMAC and public-key algorithms at once
    with pytest.raises(VendorTokenError):
        verify_vendor_token(
            token,
            key=created.sso_secret,
            audience="hs-audience",
            algorithms=[
                "HS256",
                "RS256",
            ],
        )


@pytest.mark.django_db
def test_a_jwt_is_no_key_to_the_apis(world_a):
    # Given well-formed JWTs, unsigned and signed, claiming a partner's client
    client_id = world_a.partners[0][0].client_id
    claims = {"sub": client_id, "client_id": client_id, "scope": "points:earn points:read"}
    tokens = [
        f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}.",
        jwt.encode(claims, "a-guessed-secret-of-32-characters-x", algorithm="HS256"),
    ]
    for token in tokens:
        caller = Caller(Authorization=f"Bearer {token}")
        before = db_fingerprint()

        # When they are presented as bearer tokens
        replies = [
            caller(
                "GET",
                f"/api/v1/orgs/{world_a.org.pk}/point-programs/default/balances/"
                f"{world_a.members[0].external_id}",
            ),
            caller("POST", "/api/v1/points", {"requestId": "jwt"}),
            caller("GET", f"/api/v1/customers/{world_a.members[0].external_id}"),
            caller("GET", "/rewards/admin/types"),
            caller("GET", "/rewards/user/balance"),
        ]

        # Then every API refuses them as unknown tokens, and nothing changed
        assert [reply.status_code for reply in replies] == [401] * len(replies)
        assert fingerprint_changes(before, db_fingerprint()) == []


# --- partner request signatures ----------------------------------------------------------------


@pytest.fixture
def signer(world_a):
    """A partner that registered an RSA key (and requires signatures), and its token."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    created = partner_client_create(
        organization=world_a.org,
        name=unique("signer"),
        scopes=["points:earn"],
        rules=[world_a.earn_rule],
        signing_key_id="signer-key",
        signing_public_key_pem=pem_of(key.public_key()).decode(),
        require_signature=True,
    )
    other = partner_client_create(
        organization=world_a.org,
        name=unique("other-signer"),
        scopes=["points:earn"],
        rules=[world_a.earn_rule],
        signing_key_id="other-key",
        signing_public_key_pem=pem_of(
            rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        ).decode(),
    )
    return {
        "key": key,
        "private_pem": private_pem,
        "client": created.client,
        "other": other.client,
        "caller": Caller(
            Authorization=f"Bearer {token_for(created.client.application, ['points:earn'])}"
        ),
    }


def point_body(world, request_id: str) -> bytes:
    return json.dumps(
        {
            "userId": world.members[0].external_id,
            "ruleId": str(world.earn_rule.pk),
            "amount": 25,
            "requestId": request_id,
            "callbackUrl": world.callback_url,
        }
    ).encode()


def send_signed(signer, body: bytes, headers: dict, path: str = "/api/v1/points"):
    caller = signer["caller"]
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return caller.client.post(
        path, data=body, content_type="application/json", **caller_headers(caller), **extra
    )


def caller_headers(caller) -> dict:
    return {
        f"HTTP_{name.upper().replace('-', '_')}": value for name, value in caller.headers.items()
    }


def signature_header(
    signer,
    *,
    body: bytes,
    covered: str,
    algorithm: str = "RSA-SHA256",
    created=None,
    key_id: str = "signer-key",
    target: str = "post /api/v1/points",
    key=None,
    raw_mac=None,
) -> dict:
    """A Signature header built by hand (independent of the platform's signer)."""
    created = int(time.time()) if created is None else created
    values = {"(created)": str(created), "digest": digest_header(body), "(request-target)": target}
    signing_string = "\n".join(f"{name}: {values[name]}" for name in covered.split()).encode()
    if raw_mac is not None:
        signature = hmac.new(raw_mac, signing_string, hashlib.sha256).digest()
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(signing_string, ec.ECDSA(hashes.SHA256()))
    else:
        signature = (key or signer["key"]).sign(signing_string, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Digest": values["digest"],
        "Signature": (
            f'keyId="{key_id}",algorithm="{algorithm}",created={created},'
            f'headers="{covered}",signature="{base64.b64encode(signature).decode()}"'
        ),
    }


FULL = "(created) digest (request-target)"


def signature_attacks(signer, world) -> dict:
    body = point_body(world, unique("signed"))
    other_body = point_body(world, unique("swapped"))
    now = int(time.time())
    genuine = signature_header(signer, body=body, covered=FULL)
    public_pem = pem_of(signer["key"].public_key())
    return {
        "digest mismatch (body swapped)": (other_body, genuine),
        "digest rewritten for the new body": (
            other_body,
            {**genuine, "Digest": digest_header(other_body)},
        ),
        "created in the future": (
            body,
            signature_header(signer, body=body, covered=FULL, created=now + 120),
        ),
        "created before the window (a late replay)": (
            body,
            signature_header(
                signer,
                body=body,
                covered=FULL,
                created=now - settings.PARTNER_SIGNATURE_WINDOW_SECONDS - 5,
            ),
        ),
        "digest not covered": (
            body,
            signature_header(signer, body=body, covered="(created) (request-target)"),
        ),
        "request target not covered": (
            body,
            signature_header(signer, body=body, covered="(created) digest"),
        ),
        "created not covered": (
            body,
            signature_header(signer, body=body, covered="digest (request-target)"),
        ),
        "hmac-sha256 keyed with the public key": (
            body,
            signature_header(
                signer, body=body, covered=FULL, algorithm="hmac-sha256", raw_mac=public_pem
            ),
        ),
        "ecdsa-sha256 against an RSA key": (
            body,
            signature_header(
                signer,
                body=body,
                covered=FULL,
                algorithm="ecdsa-sha256",
                key=ec.generate_private_key(ec.SECP256R1()),
            ),
        ),
        "hs2019 with an algorithm of its own": (
            body,
            signature_header(signer, body=body, covered=FULL, algorithm="hs2019"),
        ),
        "keyId of another client": (
            body,
            signature_header(signer, body=body, covered=FULL, key_id="other-key"),
        ),
        "signed with another key": (
            body,
            signature_header(
                signer,
                body=body,
                covered=FULL,
                key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ),
        ),
        "signed for another target": (
            body,
            signature_header(
                signer, body=body, covered=FULL, target="post /api/v1/points?dry-run=1"
            ),
        ),
        "no signature at all (the client requires one)": (body, {}),
    }


@pytest.mark.django_db
def test_each_signature_attack_is_401_and_changes_nothing(world_a, signer, insecure_callbacks):
    wrong = []
    for name, (body, headers) in signature_attacks(signer, world_a).items():
        before = db_fingerprint()
        response = send_signed(signer, body, headers)
        changed = fingerprint_changes(before, db_fingerprint())
        if response.status_code != 401 or changed:
            wrong.append(f"{name}: {response.status_code} {response.content[:150]!r} {changed}")
        elif response.json()["code"] != "invalid_signature":
            wrong.append(f"{name}: {response.json()}")
    assert wrong == []


@pytest.mark.django_db
def test_an_identical_signed_replay_is_the_idempotent_repeat_and_does_nothing_twice(
    world_a, signer, insecure_callbacks
):
    # Given a signed request that was accepted and processed
    body = point_body(world_a, "signed-once")
    headers = sign_request(
        method="POST",
        path_with_query="/api/v1/points",
        body=body,
        key_id="signer-key",
        private_key_pem=signer["private_pem"],
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        first = send_signed(signer, body, headers)
    assert first.status_code == 202, first.content
    before = db_fingerprint()

    # When an eavesdropper replays it, byte for byte, inside the window
    replays = [send_signed(signer, body, headers) for _ in range(3)]

    # Then each gets the first reply, and nothing happens again
    assert [(r.status_code, r.json()) for r in replays] == [(202, first.json())] * 3
    assert {r["Idempotent-Replayed"] for r in replays} == {"true"}
    assert fingerprint_changes(before, db_fingerprint()) == []
    assert Transfer.objects.filter(reference="signed-once").count() == 1


@pytest.mark.django_db(transaction=True)
def test_signatures_are_checked_on_the_wire_too(live_server, world_a, signer, insecure_callbacks):
    # Over a real socket, the swapped body is refused and the genuine one accepted.
    body = point_body(world_a, "on-the-wire")
    headers = sign_request(
        method="POST",
        path_with_query="/api/v1/points",
        body=body,
        key_id="signer-key",
        private_key_pem=signer["private_pem"],
    )
    auth = signer["caller"].headers
    url = f"{live_server.url}/api/v1/points"
    common = {"Content-Type": "application/json", **auth}
    swapped = requests.post(
        url, data=point_body(world_a, "swapped"), headers={**common, **headers}, timeout=30
    )
    genuine = requests.post(url, data=body, headers={**common, **headers}, timeout=30)
    assert (swapped.status_code, genuine.status_code) == (401, 202)
