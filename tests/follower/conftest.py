"""Fixtures of the follower tests: follower programs, the master's API client and its token."""

from __future__ import annotations

import json

import pytest

from integrations.clients import api_client_create
from integrations.follower_crypto import new_follower_key
from points.models import ProgramMode

TOKEN_PATH = "/o/token/"
BALANCES = "/api/v2/point-accounts/balances"
TRANSACTIONS = "/api/v2/point-accounts/transactions"


def status_path(job_id) -> str:
    return f"/api/v2/point-accounts/balances/status/{job_id}"


@pytest.fixture
def make_follower_program(make_program):
    def make(organization, mode=ProgramMode.FOLLOWER_TRANSACTIONS, **fields):
        return make_program(
            organization,
            key=fields.pop("key", f"follower-{mode}"),
            mode=mode,
            master_webhook_url=fields.pop(
                "master_webhook_url", "https://master.example.invalid/hook"
            ),
            master_webhook_key=fields.pop("master_webhook_key", new_follower_key()),
            **fields,
        )

    return make


@pytest.fixture
def transactions_program(org, make_follower_program):
    return make_follower_program(org, mode=ProgramMode.FOLLOWER_TRANSACTIONS)


@pytest.fixture
def balance_program(org, make_follower_program):
    return make_follower_program(org, mode=ProgramMode.FOLLOWER_BALANCE)


@pytest.fixture
def make_master_client():
    def make(organization, scopes=("follower:write",)):
        return api_client_create(
            organization=organization, name="point master", scopes=list(scopes)
        )

    return make


@pytest.fixture
def master_client(org, make_master_client):
    return make_master_client(org)


def token_for(client, created) -> str:
    response = client.post(
        TOKEN_PATH,
        {
            "grant_type": "client_credentials",
            "client_id": created.client_id,
            "client_secret": created.client_secret,
        },
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


class MasterApi:
    """The point master calling the follower API through Django's test client."""

    def __init__(self, client, token):
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def post(self, path, body, **headers):
        return self.client.post(
            path, json.dumps(body), content_type="application/json", **self.headers, **headers
        )

    def get(self, path):
        return self.client.get(path, **self.headers)


@pytest.fixture
def master_api(client, master_client):
    return MasterApi(client, token_for(client, master_client))
