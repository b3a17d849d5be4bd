"""Dashboard panels from other parts of the platform: inventory levels and follower jobs."""

from __future__ import annotations

from django.db.models import Count

from integrations.follower.models import BalanceJob
from loyalty.console.admin import register_dashboard_panel
from loyalty.models import Organization
from rewards import selectors as reward_selectors
from rewards.models import Inventory


@register_dashboard_panel
def inventory_panel(organization: Organization) -> dict:
    inventories = Inventory.objects.filter(org=organization, in_stock=True).select_related(
        "reward_type"
    )
    low = set(
        reward_selectors.low_stock_inventories(inventories).values_list("pk", flat=True)
    ) | set(reward_selectors.depleted_inventories(inventories).values_list("pk", flat=True))
    rows = [
        {
            "inventory": inventory,
            "left": max(0, inventory.amount_total - inventory.amount_granted),
            "low": inventory.pk in low,
        }
        for inventory in inventories.order_by("reward_type__reward_type", "date_created")[:20]
    ]
    return {"template": "admin/console/panel_inventory.html", "rows": rows, "low_count": len(low)}


@register_dashboard_panel
def follower_jobs_panel(organization: Organization) -> dict | None:
    counts = dict(
        BalanceJob.objects.filter(organization=organization)
        .values("status")
        .annotate(count=Count("id"))
        .values_list("status", "count")
        .order_by()
    )
    if not counts:
        return None
    latest = BalanceJob.objects.filter(organization=organization).order_by("-pk").first()
    return {"template": "admin/console/panel_follower.html", "counts": counts, "latest": latest}
