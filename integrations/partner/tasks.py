"""Celery tasks of the partner Point API: thin wrappers over services, safe to run twice."""

from celery import shared_task

from integrations.partner import services


@shared_task(name="partner.process_request", ignore_result=True)
def partner_request_process_task(partner_request_id: int) -> None:
    services.partner_request_process(partner_request_id=partner_request_id)


@shared_task(name="partner.sweep_requests", ignore_result=True)
def partner_requests_sweep_task() -> int:
    return services.partner_requests_sweep().dispatched
