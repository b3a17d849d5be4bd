"""One organisation wired to every contract a partner writes through, each contract with two
principals (clients, vendors, services or members), and the HTTP helpers that call them through
Django's test client or over a socket. Used by the reliability and the security suites.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import requests
from django.test import TestCase
from django.utils import timezone
from oauth2_provider.models import AccessToken, get_application_model

from integrations.clients import api_client_create
from integrations.eai import services as eai_services
from integrations.follower_crypto import new_follower_key
from integrations.partner.credentials import partner_client_create
from points import services as point_services
from points.models import PointRule, ProgramMode, RuleKind
from rewards import services as reward_services
from tests.conftest import unique

FUNDS = 1_000_000


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_for(application, scopes, user=None) -> str:
    token = AccessToken.objects.create(
        application=application,
        user=user,
        token=unique("tok"),
        scope=" ".join(scopes),
        expires=timezone.now() + dt.timedelta(hours=1),
    )
    return token.token


# --- HTTP: the same calls through Django's test client or over a real socket -------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: object
    headers: dict = field(default_factory=dict, compare=False)


class DjangoHttp:
    """Requests through django.test.Client (in process, one thread). On-commit callbacks run
    as in production, also inside a test's transaction (dispatch, eager processing, callbacks).
    """

    def __init__(self, client):
        self.client = client

    def post(self, path: str, body, headers: dict[str, str]) -> Reply:
        extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                path, data=json.dumps(body), content_type="application/json", **extra
            )
        return Reply(response.status_code, _json(response.content), dict(response.headers))


class LiveHttp:
    """Requests over a socket to a running server (live_server or a process)."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def post(self, path: str, body, headers: dict[str, str]) -> Reply:
        response = requests.post(f"{self.base_url}{path}", json=body, headers=headers, timeout=30)
        return Reply(response.status_code, _json(response.content), dict(response.headers))


def _json(content: bytes):
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")


# --- one organisation, every contract, two principals each ---------------------------------------


@dataclass
class World:
    org: object
    program: object
    members: list
    callback_url: str
    earn_rule: object = None
    burn_rule: object = None
    partners: list = field(default_factory=list)  # [(CreatedClient, token)]
    vendors: list = field(default_factory=list)  # [VendorSecrets]
    follower_program: object = None
    masters: list = field(default_factory=list)  # [(CreatedClient, token)]
    services: list = field(default_factory=list)  # [(RewardsService, raw key, Operation)]
    priced_type: object = None
    member_tokens: list = field(default_factory=list)
    profile_clients: list = field(default_factory=list)  # [(CreatedClient, token)]
    offer: object = None
    event_name: str = "app_open"


def build_world(*, org, make_program, make_member, callback_url, django_user_model) -> World:
    """Create everything of `org` that the World lists."""
    program = make_program(org)
    members = [make_member(org) for _ in range(3)]
    for member in members:
        point_services.earn(program=program, member=member, amount=FUNDS, description="Funding")
    world = World(org=org, program=program, members=members, callback_url=callback_url)

    # Seed 001: two partner clients allowed an earn and a burn rule.
    world.earn_rule = PointRule.objects.create(program=program, name="earn", kind=RuleKind.EARN)
    world.burn_rule = PointRule.objects.create(program=program, name="burn", kind=RuleKind.BURN)
    scopes = ["points:earn", "points:burn", "points:read"]
    for _ in range(2):
        created = partner_client_create(
            organization=org,
            name=unique("partner"),
            scopes=scopes,
            rules=[world.earn_rule, world.burn_rule],
        )
        world.partners.append((created, token_for(created.client.application, scopes)))

    # Seed 000: two vendors on the program.
    for _ in range(2):
        world.vendors.append(
            eai_services.vendor_create(
                organization=org,
                program=program,
                name=unique("vendor"),
                sso_audience=unique("aud"),
                sso_redirect_url="https://rewards.example.test/redeem",
            )
        )

    # Seed 002: a follower program and two point masters.
    world.follower_program = make_program(
        org,
        key="follower",
        mode=ProgramMode.FOLLOWER_TRANSACTIONS,
        master_webhook_url="https://master.example.invalid/hook",
        master_webhook_key=new_follower_key(),
    )
    for _ in range(2):
        created = api_client_create(
            organization=org, name=unique("master"), scopes=["follower:write"]
        )
        world.masters.append((created, token_for(created.client.application, ["follower:write"])))

    # Seed 003: two building blocks with an operation each; a reward type for sale.
    granted = reward_services.reward_type_create(
        org=org, reward_type=unique("badge"), display_name="Badge"
    )
    reward_services.inventory_create(reward_type=granted, amount_total=10_000)
    for building_block in ("groups", "events"):
        service, raw_key = reward_services.rewards_service_create(
            org=org, name=f"{building_block} service", building_block=building_block
        )
        operation = reward_services.operation_create(
            reward_type=granted,
            code=f"{building_block}_done",
            building_block=building_block,
            amount=1,
        )
        world.services.append((service, raw_key, operation))
    world.priced_type = reward_services.reward_type_create(
        org=org, reward_type=unique("mug"), display_name="Mug", points_price=10
    )
    reward_services.inventory_create(reward_type=world.priced_type, amount_total=10_000)
    Application = get_application_model()
    member_app = Application.objects.create(
        name=unique("member-app"),
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="https://app.example.com/callback",
    )
    for member in members[:2]:
        user = django_user_model.objects.create_user(
            username=unique("person"), email=f"{unique('p')}@example.com", password="pw-12345678"
        )
        member.user = user
        member.save(update_fields=["user"])
        world.member_tokens.append(token_for(member_app, ["member"], user=user))

    # Seed 004: two profile clients, an event rule, an offer in a store.
    from loyalty.engagement.models import RewardStore, StoreOffer

    PointRule.objects.create(
        program=program,
        name="on app open",
        kind=RuleKind.EARN,
        event_name=world.event_name,
        event_points=5,
    )
    for _ in range(2):
        created = api_client_create(
            organization=org,
            name=unique("app"),
            scopes=["customers:read", "customers:write"],
        )
        world.profile_clients.append(
            (created, token_for(created.client.application, ["customers:read", "customers:write"]))
        )
    store = RewardStore.objects.create(
        organization=org, key=unique("store"), name="Main", program=program
    )
    world.offer = StoreOffer.objects.create(store=store, reward_type=world.priced_type)
    return world
