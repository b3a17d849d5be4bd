"""Demo data for a first run and for scripts (`manage.py seed_demo [--json]`).

Idempotent: rows are found or created by natural keys, initial points are earned once (by
idempotency key). Each run resets the demo credentials and reports the new ones, in the shape
DESIGN.md fixes; a part whose feature is not built yet is None.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import transaction

from loyalty.models import Member, Organization
from points import services as point_services
from points.models import PointProgram, ProgramMode
from points.selectors import balance_get

DEMO_ORG_SLUG = "demo"
DEMO_MEMBERS = [
    # external id, first name, last name, e-mail, initial points
    ("demo-alice", "Alice", "Andersson", "alice@example.com", 2500),
    ("demo-bob", "Bob", "Berg", "bob@example.com", 800),
    ("demo-carol", "Carol", "Carlsson", "carol@example.com", 150),
]


def new_password() -> str:
    return secrets.token_urlsafe(12)


def _organization() -> Organization:
    org, _ = Organization.objects.get_or_create(
        slug=DEMO_ORG_SLUG, defaults={"name": "Demo Retail"}
    )
    return org


def _program(org: Organization) -> PointProgram:
    program, _ = PointProgram.objects.get_or_create(
        organization=org,
        key="default",
        defaults={
            "name": "Demo points",
            "definition_id": 1,
            "mode": ProgramMode.MASTER,
            "default_validity_days": 365,
        },
    )
    point_services.program_system_accounts_ensure(program=program)
    return program


def _admin(org: Organization) -> dict:
    User = get_user_model()
    password = new_password()
    user, _ = User.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return {"username": user.username, "password": password}


def _members(org: Organization, program: PointProgram) -> list[dict]:
    User = get_user_model()
    result = []
    for external_id, first, last, email, points in DEMO_MEMBERS:
        password = new_password()
        user, _ = User.objects.get_or_create(username=email, defaults={"email": email})
        user.first_name, user.last_name = first, last
        user.set_password(password)
        user.save()
        member, _ = Member.objects.update_or_create(
            organization=org,
            external_id=external_id,
            defaults={"first_name": first, "last_name": last, "email": email, "user": user},
        )
        point_services.earn(
            program=program,
            member=member,
            amount=points,
            source="Demo",
            description="Welcome points",
            actor="system:demo",
            idempotency_key=f"demo:welcome:{external_id}",
        )
        result.append(
            {
                "user_id": external_id,
                "email": email,
                "password": password,
                "points": balance_get(program=program, member=member).available,
            }
        )
    return result


# Later features register a builder here: it receives the demo context and returns its part.
DemoPart = Callable[[dict], dict | None]
DEMO_PARTS: dict[str, DemoPart] = {}


def register_demo_part(key: str) -> Callable[[DemoPart], DemoPart]:
    def decorator(builder: DemoPart) -> DemoPart:
        DEMO_PARTS[key] = builder
        return builder

    return decorator


@transaction.atomic
def demo_seed() -> dict:
    org = _organization()
    program = _program(org)
    context = {"organization": org, "program": program}
    data = {
        "org_id": str(org.pk),
        "program": program.key,
        "definition_id": program.definition_id,
        "admin": _admin(org),
        "members": _members(org, program),
        "partner": None,
        "eai_vendor": None,
        "follower": None,
        "rewards_service": None,
    }
    _load_demo_parts()
    for key, builder in DEMO_PARTS.items():
        data[key] = builder(context)
    return data


def _load_demo_parts() -> None:
    """Import each app's demo module so that its parts register themselves."""
    from importlib import import_module
    from importlib.util import find_spec

    from django.apps import apps

    for app in apps.get_app_configs():
        module_name = f"{app.name}.demo"
        if app.name != "loyalty" and find_spec(module_name) is not None:
            import_module(module_name)
