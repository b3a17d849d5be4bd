"""Celery tasks of the partner Point API: thin wrappers over services, safe to run twice."""

import logging

from celery import shared_task, signals
from django import db

from integrations.partner import services


@shared_task(name="partner.process_request", ignore_result=True)
def partner_request_process_task(partner_request_id: int) -> None:
    services.partner_request_process(partner_request_id=partner_request_id)


@shared_task(name="partner.drain_requests", ignore_result=True)
def partner_requests_drain_task(slot: int) -> None:
    services.partner_requests_drain(slot=slot)


@shared_task(name="partner.sweep_requests", ignore_result=True)
def partner_requests_sweep_task() -> int:
    return services.partner_requests_sweep().dispatched


@signals.worker_ready.connect
def wake_waiting_requests(**kwargs) -> None:
    """A worker that starts takes up requests whose drainer died with an earlier worker."""
    try:
        services.partner_requests_wake_all()
    except Exception:  # the sweeper takes them up in any case
        logging.getLogger(__name__).warning("partner: could not wake drainers", exc_info=True)
    finally:
        db.connections.close_all()  # the main process of a worker keeps no connection
