"""Demo part "follower" of seed_demo: a program in follower_transactions mode and its master client.

The program `follower` (definition id 2) follows a point master that does not exist: its webhook
and points log URLs are on the reserved `.invalid` domain (never resolvable, so nothing leaves
the machine), so an adjustment's delivery fails visibly under Deliveries and the points log says
"unavailable" until an operator points them at a real master under "Point master connections".
A script playing the master reads `webhook_key` from `seed_demo --json` and sets its own URLs
there. The webhook key and the client secret are new on every run.
"""

from __future__ import annotations

from integrations.clients import api_client_create, api_client_reset_secret
from integrations.follower.services import program_webhook_key_generate
from integrations.follower_crypto import new_follower_key
from integrations.models import ApiClient
from loyalty.demo import register_demo_part
from points import services as point_services
from points.models import PointProgram, ProgramMode

DEMO_PROGRAM_KEY = "follower"
DEMO_DEFINITION_ID = 2
DEMO_CLIENT_NAME = "demo point master"
DEMO_WEBHOOK_URL = "https://master.example.invalid/webhook"
DEMO_POINTS_LOG_URL = "https://master.example.invalid/points-log"


@register_demo_part("follower")
def follower_demo_part(context: dict) -> dict:
    organization = context["organization"]
    program, created = PointProgram.objects.get_or_create(
        organization=organization,
        key=DEMO_PROGRAM_KEY,
        defaults={
            "name": "Demo points (followed from a master)",
            "definition_id": DEMO_DEFINITION_ID,
            "mode": ProgramMode.FOLLOWER_TRANSACTIONS,
            "master_webhook_url": DEMO_WEBHOOK_URL,
            "master_webhook_key": new_follower_key(),
            "master_points_log_url": DEMO_POINTS_LOG_URL,
        },
    )
    if not created:
        program_webhook_key_generate(program=program)
    point_services.program_system_accounts_ensure(program=program)

    client = ApiClient.objects.filter(organization=organization, name=DEMO_CLIENT_NAME).first()
    if client is None:
        created_client = api_client_create(
            organization=organization, name=DEMO_CLIENT_NAME, scopes=["follower:write"]
        )
        client_id, client_secret = created_client.client_id, created_client.client_secret
    else:
        client_id, client_secret = client.client_id, api_client_reset_secret(client=client)
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "definition_id": program.definition_id,
        "program": program.key,
        "webhook_key": program.master_webhook_key,
    }
