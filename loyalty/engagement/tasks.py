"""Periodic engagement jobs (scheduled with django-celery-beat): thin wrappers over services."""

from celery import shared_task

from loyalty.engagement import services


@shared_task(name="engagement.tiers_recompute", ignore_result=True)
def tiers_recompute_task(program_id: int | None = None) -> int:
    """Rolling 12-month tiers (hourly), and members of a program whose tiers just changed."""
    return services.tiers_recompute(program_id=program_id)


@shared_task(name="engagement.campaigns_refresh", ignore_result=True)
def campaigns_refresh_task() -> int:
    """Points campaigns: progress from points earned outside events."""
    return services.campaigns_refresh()
