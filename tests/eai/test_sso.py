"""The SSO hand-over `GET /portal/vendors/{vendor_id}/redeem/` and the tokens it signs."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from django.conf import settings

from integrations.eai import services
from integrations.eai.models import SigningKey, SsoAlgorithm, SsoMethod
from integrations.vendor_kit import VendorTokenError, verify_vendor_token
from loyalty.selectors import SESSION_MEMBER_KEY
from points import services as point_services

pytestmark = pytest.mark.django_db


def redeem_url(vendor) -> str:
    return f"/portal/vendors/{vendor.pk}/redeem/"


@pytest.fixture
def portal_member(org, program, make_member, django_user_model):
    user = django_user_model.objects.create_user("grace@example.test", "grace@example.test", "pw")
    member = make_member(
        org,
        external_id="grace-1906",
        first_name="Grace",
        last_name="Hopper",
        email="grace@example.test",
        user=user,
    )
    point_services.earn(program=program, member=member, amount=800)
    return member


@pytest.fixture
def signed_in(client, portal_member):
    client.force_login(portal_member.user)
    return client


def token_from_redirect(response) -> str:
    assert response.status_code == 302
    return parse_qs(urlsplit(response["Location"]).query)["token"][0]


def platform_public_key(client):
    jwks = json.loads(client.get("/.well-known/jwks.json").content)
    return {key["kid"]: jwt.PyJWK(key).key for key in jwks["keys"]}


def test_an_anonymous_visitor_is_sent_to_sign_in_and_back(client, vendor):
    response = client.get(redeem_url(vendor))

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == settings.LOGIN_URL
    assert parse_qs(location.query)["next"] == [redeem_url(vendor)]


def test_get_method_redirects_to_the_vendor_with_a_verifiable_rs256_token(
    signed_in, vendor, portal_member
):
    response = signed_in.get(redeem_url(vendor))

    token = token_from_redirect(response)
    assert response["Location"].startswith("https://rewards.example.test/redeem?token=")
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    keys = platform_public_key(signed_in)
    claims = verify_vendor_token(
        token,
        key=keys[header["kid"]],
        audience=vendor.sso_audience,
        issuer=settings.LOYALTY_ISSUER,
        algorithms=["RS256"],
    )
    assert claims["userid"] == "grace-1906"
    assert (claims["firstname"], claims["lastname"]) == ("Grace", "Hopper")
    assert claims["email"] == "grace@example.test"
    assert claims["points"] == 800
    assert claims["exp"] - claims["iat"] == vendor.sso_token_lifetime_seconds == 60


def test_post_method_renders_an_auto_submitted_form_with_the_token(
    signed_in, org, program, make_vendor
):
    vendor = make_vendor(org, program, sso_method=SsoMethod.POST).vendor

    response = signed_in.get(redeem_url(vendor))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'method="post"' in page
    assert f'action="{vendor.sso_redirect_url}"' in page
    assert ".submit()" in page
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    token = html.unescape(re.search(r'name="token" value="([^"]+)"', page).group(1))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["userid"] == "grace-1906"


def test_an_hs256_vendor_gets_tokens_only_its_own_secret_verifies(
    signed_in, org, program, make_vendor
):
    created = make_vendor(org, program, sso_algorithm=SsoAlgorithm.HS256, sso_audience="hs-aud")
    other = make_vendor(
        org, program, name="Other", sso_algorithm=SsoAlgorithm.HS256, sso_audience="hs-aud"
    )
    assert len(created.sso_secret) >= 32

    token = token_from_redirect(signed_in.get(redeem_url(created.vendor)))

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = verify_vendor_token(
        token, key=created.sso_secret, audience="hs-aud", algorithms=["HS256"]
    )
    assert claims["userid"] == "grace-1906"
    with pytest.raises(VendorTokenError, match="signature"):
        verify_vendor_token(token, key=other.sso_secret, audience="hs-aud", algorithms=["HS256"])
    assert not SigningKey.objects.exists()  # HS256 needs no platform key


def test_points_are_the_available_points_in_the_vendors_program(
    signed_in, org, vendor, program, make_program, portal_member
):
    other_program = make_program(org, key="other")
    point_services.earn(program=other_program, member=portal_member, amount=5000)
    point_services.hold_create(
        program=program, member=portal_member, amount=300, owner="vendor:x", transaction_id="t"
    )

    token = token_from_redirect(signed_in.get(redeem_url(vendor)))

    assert jwt.decode(token, options={"verify_signature": False})["points"] == 500


def test_each_visit_gets_its_own_token_id_and_the_vendors_lifetime(
    signed_in, org, program, make_vendor
):
    vendor = make_vendor(org, program, sso_token_lifetime_seconds=120).vendor

    first = jwt.decode(
        token_from_redirect(signed_in.get(redeem_url(vendor))),
        options={"verify_signature": False},
    )
    second = jwt.decode(
        token_from_redirect(signed_in.get(redeem_url(vendor))),
        options={"verify_signature": False},
    )

    assert first["jti"] != second["jti"]
    assert first["exp"] - first["iat"] == 120


@pytest.mark.parametrize("case", ["other-org", "inactive", "no-sso", "unknown"])
def test_a_vendor_the_member_may_not_visit_is_404(
    signed_in, make_org, make_program, org, program, make_vendor, case
):
    if case == "other-org":
        other_org = make_org()
        vendor = make_vendor(other_org, make_program(other_org)).vendor
    elif case == "inactive":
        vendor = make_vendor(org, program, active=False).vendor
    elif case == "no-sso":
        vendor = make_vendor(org, program, sso_redirect_url="").vendor
    else:
        vendor = type("Missing", (), {"pk": "00000000-0000-0000-0000-000000000000"})()

    response = signed_in.get(redeem_url(vendor))

    assert response.status_code == 404
    assert "token" not in response.get("Location", "")


def test_a_person_without_a_chosen_membership_gets_no_token(
    client, org, make_org, make_member, vendor, django_user_model
):
    user = django_user_model.objects.create_user("two@example.test", "two@example.test", "pw")
    make_member(org, user=user)
    make_member(make_org(), user=user)
    client.force_login(user)

    response = client.get(redeem_url(vendor))

    assert response.status_code == 403
    assert "Location" not in response


def test_the_membership_chosen_in_the_session_is_the_one_handed_over(
    client, org, make_org, make_member, vendor, django_user_model
):
    user = django_user_model.objects.create_user("two@example.test", "two@example.test", "pw")
    chosen = make_member(org, user=user)
    make_member(make_org(), user=user)
    client.force_login(user)
    session = client.session
    session[SESSION_MEMBER_KEY] = str(chosen.pk)
    session.save()

    token = token_from_redirect(client.get(redeem_url(vendor)))

    assert jwt.decode(token, options={"verify_signature": False})["userid"] == chosen.external_id


def test_redeem_answers_only_get(signed_in, vendor):
    assert signed_in.post(redeem_url(vendor)).status_code == 405


def test_a_vendor_needs_a_program_of_its_own_organisation_and_an_https_url(
    org, make_org, make_program, make_vendor, program, settings
):
    from django.core.exceptions import ValidationError

    # As in production, whatever the developer's shell says (the switch allows http URLs).
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = False

    foreign_program = make_program(make_org())
    with pytest.raises(ValidationError) as wrong_program:
        make_vendor(org, foreign_program)
    assert "program" in wrong_program.value.message_dict
    with pytest.raises(ValidationError) as plain_http:
        make_vendor(org, program, sso_redirect_url="http://rewards.example.test/")
    assert "sso_redirect_url" in plain_http.value.message_dict
    with pytest.raises(ValidationError) as bad_cidr:
        make_vendor(org, program, ip_allowlist="10.0.0.0/33")
    assert "ip_allowlist" in bad_cidr.value.message_dict


def test_switching_a_vendor_to_hs256_generates_its_secret_once(vendor):
    vendor.sso_algorithm = SsoAlgorithm.HS256

    first = services.vendor_save(vendor=vendor)
    second = services.vendor_save(vendor=vendor)

    assert first.sso_secret is not None and len(first.sso_secret) >= 32
    assert second.sso_secret is None
    vendor.refresh_from_db()
    assert vendor.sso_secret == first.sso_secret


def test_the_portal_lists_a_redeem_link_for_each_active_vendor_with_sso(
    org, program, make_vendor, portal_member
):
    from django.template.loader import render_to_string

    from integrations.eai.selectors import vendors_for_member

    shown = make_vendor(org, program, name="Acme").vendor
    make_vendor(org, program, name="Dormant", active=False)
    make_vendor(org, program, name="No SSO", sso_redirect_url="")

    page = render_to_string(
        "eai/redeem_links.html", {"vendors": vendors_for_member(member=portal_member)}
    )

    assert f'href="{redeem_url(shown)}"' in page
    assert "Redeem at Acme" in page
    assert "Dormant" not in page and "No SSO" not in page
