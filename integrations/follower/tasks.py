"""Celery tasks of the follower mode: thin wrappers over integrations.follower.services.

Both are safe to run twice: a job is claimed under a row lock, and the sweeper only publishes.
"""

from celery import shared_task

from integrations.follower import services


@shared_task(name="follower.balance_account_to_amount_job", ignore_result=True)
def balance_account_to_amount_job(job_id: str) -> None:
    """The seed's BalanceAccountToAmountJob: set each account of a balance job to its amount."""
    services.balance_job_process(job_id=job_id)


@shared_task(name="follower.balance_jobs_sweep", ignore_result=True)
def balance_jobs_sweep_task() -> int:
    return services.balance_jobs_sweep()
