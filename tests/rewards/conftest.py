"""Factories for the rewards tests: catalogue rows, an admin API client, a service, members."""

from __future__ import annotations

import pytest
from oauth2_provider.models import AccessToken, get_application_model
from rest_framework.test import APIClient

from integrations.clients import api_client_create
from rewards import services
from tests.conftest import unique


@pytest.fixture
def make_reward_type(db):
    def make(org, **fields):
        return services.reward_type_create(
            org=org,
            reward_type=fields.pop("reward_type", unique("rt")),
            display_name=fields.pop("display_name", "A reward"),
            **fields,
        )

    return make


@pytest.fixture
def make_inventory(db):
    def make(reward_type, amount_total=100, **fields):
        return services.inventory_create(
            reward_type=reward_type, amount_total=amount_total, **fields
        )

    return make


@pytest.fixture
def admin_token(db):
    """An API client of the organisation holding rewards:admin, and a bearer token of it."""

    def make(org, scopes=("rewards:admin",)):
        created = api_client_create(organization=org, name=unique("admin"), scopes=list(scopes))
        token = AccessToken.objects.create(
            application=created.client.application,
            token=unique("tok"),
            scope=" ".join(scopes),
            expires=_in_an_hour(),
        )
        return token.token

    return make


@pytest.fixture
def admin_api(org, admin_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {admin_token(org)}")
    return client


@pytest.fixture
def make_service(db):
    def make(org, building_block="groups"):
        return services.rewards_service_create(
            org=org, name=f"{building_block} service", building_block=building_block
        )

    return make


@pytest.fixture
def make_login(db, django_user_model):
    """A person with a portal login who is a member of `member`'s organisation."""

    def make(member):
        user = django_user_model.objects.create_user(
            username=unique("person"), email=f"{unique('p')}@example.com", password="pw-12345678"
        )
        member.user = user
        member.save(update_fields=["user"])
        return user

    return make


@pytest.fixture
def member_api(make_login):
    """An API client signed in (portal session) as the member."""

    def make(member):
        client = APIClient()
        client.force_login(make_login(member))
        return client

    return make


@pytest.fixture
def member_token(make_login):
    """A member app's OAuth2 access token (authorization-code application, scope member)."""

    def make(member, scope="member"):
        user = member.user or make_login(member)
        Application = get_application_model()
        application = Application.objects.create(
            name=unique("member-app"),
            client_type=Application.CLIENT_PUBLIC,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris="https://app.example.com/callback",
        )
        token = AccessToken.objects.create(
            user=user,
            application=application,
            token=unique("member-tok"),
            scope=scope,
            expires=_in_an_hour(),
        )
        return token.token

    return make


def _in_an_hour():
    import datetime as dt

    from django.utils import timezone

    return timezone.now() + dt.timedelta(hours=1)
