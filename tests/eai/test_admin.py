"""Operator console for vendors: "create credentials" shows secrets once, holds per vendor, key
rotation."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from integrations.eai.models import SigningKey, Vendor, eai_secret_digest
from integrations.eai.selectors import vendor_for_credentials
from points import services as point_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.test", "pw")
    client.force_login(user)
    return client


def shown(page: str, element_id: str) -> str | None:
    match = re.search(rf'id="{element_id}">([^<]+)<', page)
    return match.group(1) if match else None


def vendor_form(org, program, **overrides) -> dict:
    return {
        "organization": org.pk,
        "program": program.pk,
        "name": "Acme Rewards",
        "active": "on",
        "ip_allowlist": "",
        "sso_redirect_url": "https://acme.example.test/sso",
        "sso_method": "get",
        "sso_algorithm": "RS256",
        "sso_audience": "acme",
        "sso_token_lifetime_seconds": "60",
        **overrides,
    }


def test_creating_a_vendor_shows_its_secret_once(operator, org, program):
    response = operator.post(reverse("admin:eai_vendor_add"), vendor_form(org, program))

    assert response.status_code == 200
    page = response.content.decode()
    username, secret = shown(page, "eai-username"), shown(page, "eai-secret")
    assert username and secret
    assert "no-store" in response["Cache-Control"]
    vendor = Vendor.objects.get(name="Acme Rewards")
    assert vendor_for_credentials(username=username, secret=secret) == vendor
    # Only a digest is stored, and the secret is nowhere to be seen again.
    assert vendor.eai_secret_sha256 == eai_secret_digest(secret) != secret
    change_page = operator.get(reverse("admin:eai_vendor_change", args=[vendor.pk]))
    assert secret not in change_page.content.decode()


def test_creating_an_hs256_vendor_also_shows_its_sso_secret_once(operator, org, program):
    response = operator.post(
        reverse("admin:eai_vendor_add"), vendor_form(org, program, sso_algorithm="HS256")
    )

    sso_secret = shown(response.content.decode(), "sso-secret")
    vendor = Vendor.objects.get(name="Acme Rewards")
    assert sso_secret == vendor.sso_secret
    assert len(sso_secret) >= 32
    change_page = operator.get(reverse("admin:eai_vendor_change", args=[vendor.pk]))
    assert sso_secret not in change_page.content.decode()


def test_a_program_of_another_organisation_is_refused_in_the_form(
    operator, org, make_org, make_program
):
    foreign = make_program(make_org())

    response = operator.post(reverse("admin:eai_vendor_add"), vendor_form(org, foreign))

    assert response.status_code == 200
    assert "must belong to the vendor" in response.content.decode()
    assert not Vendor.objects.exists()


def test_create_new_credentials_replaces_the_old_secret(operator, vendor_secrets):
    vendor = vendor_secrets.vendor
    url = reverse("admin:eai_vendor_credentials", args=[vendor.pk])
    assert operator.get(url).status_code == 200  # the confirmation step

    response = operator.post(url, {"which": "eai"})

    new_secret = shown(response.content.decode(), "eai-secret")
    assert new_secret and new_secret != vendor_secrets.eai_secret
    username = vendor_secrets.eai_username
    assert vendor_for_credentials(username=username, secret=new_secret) == vendor
    assert vendor_for_credentials(username=username, secret=vendor_secrets.eai_secret) is None


def test_the_vendor_list_links_to_its_holds(operator, vendor, program, funded_member):
    point_services.hold_create(
        program=program,
        member=funded_member,
        amount=10,
        owner=vendor.hold_owner,
        transaction_id="mine",
    )
    point_services.hold_create(
        program=program, member=funded_member, amount=10, owner="vendor:other", transaction_id="x"
    )

    changelist = operator.get(reverse("admin:eai_vendor_changelist")).content.decode()
    link = re.search(r'href="([^"]*/points/hold/\?owner=[^"]+)"', changelist).group(1)
    holds_page = operator.get(link.replace("&amp;", "&")).content.decode()

    assert "mine" in holds_page
    assert ">x<" not in holds_page
    change_page = operator.get(reverse("admin:eai_vendor_change", args=[vendor.pk]))
    assert "1 holds, 1 open (10 points)" in change_page.content.decode()


def test_an_operator_rotates_the_signing_key(operator, vendor):
    assert operator.get(reverse("admin:eai_signingkey_changelist")).status_code == 200

    first = operator.post(reverse("admin:eai_signingkey_rotate"))
    second = operator.post(reverse("admin:eai_signingkey_rotate"))

    assert first.status_code == second.status_code == 302
    keys = list(SigningKey.objects.order_by("generation"))
    assert [k.generation for k in keys] == [1, 2]
    # The first key signs at once (there was none); the second is published ahead of signing.
    assert keys[1].activates_at > keys[0].activates_at
    assert keys[0].publish_until is not None and keys[1].publish_until is None
    listing = operator.get(reverse("admin:eai_signingkey_changelist")).content.decode()
    assert "signing" in listing and "published, signs from its activation" in listing
