"""Celery tasks of the core domain: thin wrappers over loyalty.services."""

from celery import shared_task

from loyalty.services import import_job_run


@shared_task(name="loyalty.import_job_run", ignore_result=True)
def import_job_run_task(job_id: int) -> None:
    import_job_run(job_id=job_id)
