"""Operator roles as Django groups with permissions.

Roles: viewer (read-only), inventory manager (rewards, inventories, claims), points officer
(adjustments, holds), integrations admin (partner clients, vendors, follower settings), and the
superuser flag for everything else. A role is a set of permission rules over app labels and
models; `roles_sync` turns it into groups, and runs from a migration and from
`manage.py sync_roles` (after new models arrive).

Which rows an operator sees is a separate matter: organisation scoping (loyalty/console/scoping.py).
"""

from __future__ import annotations

# The apps whose models operators work with.
DOMAIN_APPS = [
    "loyalty",
    "points",
    "rewards",
    "integrations",
    "eai",
    "partner",
    "follower",
    "engagement",
]

VIEWER = "Viewer"
INVENTORY_MANAGER = "Inventory manager"
POINTS_OFFICER = "Points officer"
INTEGRATIONS_ADMIN = "Integrations admin"

# role -> list of (app_label, model name or "*", actions)
ROLE_RULES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    VIEWER: [(app, "*", ("view",)) for app in DOMAIN_APPS],
    INVENTORY_MANAGER: [
        *((app, "*", ("view",)) for app in DOMAIN_APPS),
        ("rewards", "*", ("add", "change", "delete")),
        ("loyalty", "importjob", ("add",)),
    ],
    POINTS_OFFICER: [
        *((app, "*", ("view",)) for app in DOMAIN_APPS),
        # Adjustments post transfers (through the service); holds are rolled back.
        ("points", "transfer", ("add",)),
        ("points", "hold", ("change",)),
        ("loyalty", "member", ("add", "change")),
        ("loyalty", "importjob", ("add",)),
    ],
    INTEGRATIONS_ADMIN: [
        *((app, "*", ("view",)) for app in DOMAIN_APPS),
        ("integrations", "apiclient", ("add", "change", "delete")),
        ("integrations", "outboxmessage", ("change",)),
        ("eai", "*", ("add", "change", "delete")),
        ("partner", "*", ("change",)),
        ("follower", "*", ("add", "change")),
        ("points", "pointprogram", ("change",)),
        ("points", "pointrule", ("add", "change")),
    ],
}

# Never granted to a role, whatever the rules say: the ledger and the audit trail are
# written only by services.
FORBIDDEN = {
    ("points", "change_transfer"),
    ("points", "delete_transfer"),
    ("loyalty", "change_auditentry"),
    ("loyalty", "delete_auditentry"),
    ("loyalty", "add_auditentry"),
}


def roles_sync(apps=None) -> dict[str, int]:
    """Create or update the role groups; return how many permissions each holds."""
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    counts = {}
    for role, rules in ROLE_RULES.items():
        wanted = set()
        for app_label, model, actions in rules:
            permissions = Permission.objects.filter(content_type__app_label=app_label)
            if model != "*":
                permissions = permissions.filter(content_type__model=model)
            for permission in permissions.select_related("content_type"):
                action = permission.codename.split("_", 1)[0]
                key = (permission.content_type.app_label, permission.codename)
                if action in actions and key not in FORBIDDEN:
                    wanted.add(permission.pk)
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(wanted)
        counts[role] = len(wanted)
    return counts
