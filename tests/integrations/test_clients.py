"""API clients: client-credentials tokens at both endpoints, bounded by the client's scopes."""

import pytest
from oauth2_provider.models import AccessToken

from integrations.clients import api_client_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner(org):
    return api_client_create(organization=org, name="partner", scopes=["points:earn"])


@pytest.mark.parametrize("path", ["/o/token/", "/realms/partner/protocol/openid-connect/token"])
def test_client_credentials_token_at_both_endpoints(client, partner, path):
    response = client.post(
        path,
        {
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "points:earn"
    assert (
        AccessToken.objects.get(token_checksum__isnull=False).application.api_client
        == partner.client
    )


def test_a_client_cannot_request_scopes_beyond_its_own(client, partner):
    response = client.post(
        "/o/token/",
        {
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
            "scope": "points:earn points:burn",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_wrong_secret_gets_no_token(client, partner):
    response = client.post(
        "/o/token/",
        {
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": "wrong",
        },
    )
    assert response.status_code == 401


def test_an_inactive_client_gets_no_scopes(client, partner):
    partner.client.active = False
    partner.client.save()
    response = client.post(
        "/o/token/",
        {
            "grant_type": "client_credentials",
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
            "scope": "points:earn",
        },
    )
    assert response.status_code == 400
