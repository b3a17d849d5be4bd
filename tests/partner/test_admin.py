"""Operator console for API clients: create a client (secrets shown once), reset credentials,
edit scopes, rules and the signing key with the checks a careless edit needs."""

import re

import pytest
from django.urls import reverse

from integrations.models import ApiClient
from points.models import RuleKind
from tests.partner.conftest import issue_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("op", "op@example.com", "pw"))
    return client


def _shown(response, element_id):
    match = re.search(rf'id="{element_id}">([^<]+)<', response.content.decode())
    assert match, element_id
    return match.group(1)


class Created:
    def __init__(self, client_id, client_secret):
        self.client_id, self.client_secret = client_id, client_secret


def test_creating_a_client_shows_its_secrets_once_and_they_work(
    operator, org, earn_rule, rsa_key_pair
):
    response = operator.post(
        reverse("admin:integrations_apiclient_add"),
        {
            "organization": org.pk,
            "name": "Acme",
            "scopes": ["points:earn", "points:read"],
            "rules": [earn_rule.pk],
            "signing_key_id": "acme-1",
            "signing_public_key_pem": rsa_key_pair[1],
        },
    )

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    client_id, secret = _shown(response, "client-id"), _shown(response, "client-secret")
    webhook_secret = _shown(response, "webhook-secret")
    api_client = ApiClient.objects.get(name="Acme")
    assert (api_client.client_id, api_client.webhook_secret) == (client_id, webhook_secret)
    assert api_client.scopes == "points:earn points:read"
    assert list(api_client.rules.all()) == [earn_rule]
    assert api_client.signing_key_id == "acme-1"
    assert issue_token(operator, Created(client_id, secret))
    # The change page never shows the secrets again.
    change = operator.get(reverse("admin:integrations_apiclient_change", args=[api_client.pk]))
    assert change.status_code == 200
    assert secret.encode() not in change.content
    assert webhook_secret.encode() not in change.content


def test_resetting_credentials_replaces_the_secret(operator, partner, client):
    url = reverse("admin:integrations_apiclient_reset_credentials", args=[partner.client.pk])
    old_webhook_secret = partner.client.webhook_secret

    assert operator.get(url).status_code == 200
    response = operator.post(url, {"rotate_webhook_secret": "on"})

    new_secret = _shown(response, "client-secret")
    new_webhook_secret = _shown(response, "webhook-secret")
    assert new_webhook_secret != old_webhook_secret
    assert ApiClient.objects.get(pk=partner.client.pk).webhook_secret == new_webhook_secret
    old_reply = operator.post(
        "/o/token/",
        {
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
    )
    assert old_reply.status_code == 401
    assert issue_token(operator, Created(partner.client_id, new_secret))


def test_a_reset_may_keep_the_webhook_secret(operator, partner):
    url = reverse("admin:integrations_apiclient_reset_credentials", args=[partner.client.pk])

    response = operator.post(url, {})

    assert b'id="webhook-secret"' not in response.content
    assert ApiClient.objects.get(pk=partner.client.pk).webhook_secret == (
        partner.client.webhook_secret
    )


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        (
            {"signing_public_key_pem": "not a key", "signing_key_id": "k"},
            "signing_public_key_pem",
            "not a PEM public key",
        ),
        ({"require_signature": "on"}, "require_signature", "public key first"),
        ({"foreign_rule": True}, "rules", "another organisation"),
    ],
)
def test_the_create_form_refuses_unusable_settings(
    operator, org, make_org, make_program, make_rule, earn_rule, fields, field, problem
):
    data = {"organization": org.pk, "name": "Bad", "scopes": ["points:earn"]}
    if fields.pop("foreign_rule", False):
        data["rules"] = [make_rule(make_program(make_org())).pk]
    data.update(fields)

    response = operator.post(reverse("admin:integrations_apiclient_add"), data)

    assert response.status_code == 200
    assert problem in str(response.context["form"].errors[field])
    assert not ApiClient.objects.filter(name="Bad").exists()


def test_the_change_form_edits_scopes_and_rules_of_the_own_organisation_only(
    operator, partner, program, make_rule, make_org, make_program
):
    own_rule = make_rule(program, RuleKind.BURN, name="another burn")
    foreign_rule = make_rule(make_program(make_org()))
    url = reverse("admin:integrations_apiclient_change", args=[partner.client.pk])
    form = operator.get(url).context["adminform"].form
    assert foreign_rule not in form.fields["rules"].queryset
    assert own_rule in form.fields["rules"].queryset

    response = operator.post(
        url,
        {
            "name": partner.client.name,
            "scopes": ["points:read"],
            "active": "on",
            "rules": [own_rule.pk],
            "signing_key_id": "",
            "signing_public_key_pem": "",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    partner.client.refresh_from_db()
    assert partner.client.scopes == "points:read"
    assert list(partner.client.rules.all()) == [own_rule]


def test_partner_requests_are_listed_read_only(operator, partner, earn_rule, member):
    from integrations.partner.services import PointRequestInput, partner_request_submit

    request = partner_request_submit(
        client=partner.client,
        scopes=frozenset({"points:earn"}),
        data=PointRequestInput(
            user_id=member.external_id,
            rule_id=str(earn_rule.pk),
            amount=5,
            request_id="listed",
            callback_url="https://partner.example/cb",
        ),
    ).request

    listing = operator.get(reverse("admin:partner_partnerrequest_changelist"))
    detail = operator.get(reverse("admin:partner_partnerrequest_change", args=[request.pk]))

    assert listing.status_code == detail.status_code == 200
    assert b"listed" in listing.content
    assert not detail.context["has_change_permission"]
