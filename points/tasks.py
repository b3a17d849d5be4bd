"""Periodic ledger jobs (scheduled with django-celery-beat): thin wrappers over services."""

from celery import shared_task

from points import services


@shared_task(name="points.activate_due_lots", ignore_result=True)
def activate_due_lots_task() -> int:
    return services.activate_due_lots()


@shared_task(name="points.expire_due_lots", ignore_result=True)
def expire_due_lots_task() -> int:
    return services.expire_due_lots()


@shared_task(name="points.expire_stale_holds", ignore_result=True)
def expire_stale_holds_task() -> int:
    return services.expire_stale_holds()
