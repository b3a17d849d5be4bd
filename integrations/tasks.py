"""Celery tasks of the outbox: thin wrappers over integrations.outbox, safe to run twice."""

from celery import shared_task

from integrations.outbox import outbox_deliver, outbox_sweep


@shared_task(name="integrations.outbox_deliver", ignore_result=True)
def outbox_deliver_task(message_id: str) -> None:
    outbox_deliver(message_id=message_id)


@shared_task(name="integrations.outbox_sweep", ignore_result=True)
def outbox_sweep_task() -> int:
    return outbox_sweep()
