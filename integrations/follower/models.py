"""Point-follower mode (seed 002): balance jobs, transaction batches and adjustments for the master.

When a program follows an external point master, the master pushes balances (stored here as a
BalanceJob and applied by a Celery job) or transactions (applied at once, recorded as a
TransactionBatch, which also backs the optional Idempotency-Key), and adjustments made here go to
the master's webhook (a MasterAdjustment, delivered through the outbox).
"""

import uuid

from django.db import models
from django.db.models import Q

from integrations.models import ApiClient, OutboxMessage
from loyalty.models import Member, Organization
from points.models import PointProgram


class BalanceJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed (every item applied)"
    COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors (some items refused)"
    FAILED = "failed", "Failed (the job itself failed)"


# The state machine of a balance job. processing -> processing is a worker taking over a job
# whose previous worker died (its lease ran out).
BALANCE_JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    BalanceJobStatus.QUEUED: frozenset({BalanceJobStatus.PROCESSING}),
    BalanceJobStatus.PROCESSING: frozenset(
        {
            BalanceJobStatus.PROCESSING,
            BalanceJobStatus.COMPLETED,
            BalanceJobStatus.COMPLETED_WITH_ERRORS,
            BalanceJobStatus.FAILED,
        }
    ),
    BalanceJobStatus.COMPLETED: frozenset(),
    BalanceJobStatus.COMPLETED_WITH_ERRORS: frozenset(),
    BalanceJobStatus.FAILED: frozenset(),
}


class BalanceJob(models.Model):
    """One POST /api/v2/point-accounts/balances: the items, and what became of each of them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="balance_jobs"
    )
    client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="balance_jobs")
    items = models.JSONField(help_text="The validated items as received.")
    status = models.CharField(
        max_length=32, choices=BalanceJobStatus.choices, default=BalanceJobStatus.QUEUED
    )
    messages = models.JSONField(
        default=list, blank=True, help_text="[{message, timeStamp}] as the status endpoint shows."
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker took the job.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When a broker message was last published for it (the sweeper re-publishes lost ones).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["status", "dispatched_at"],
                condition=Q(status__in=["queued", "processing"]),
                name="balance_job_unfinished_idx",
            ),
            models.Index(fields=["organization", "-created_at"], name="balance_job_org_idx"),
        ]

    def __str__(self) -> str:
        return f"balance job {self.pk} ({self.status})"


class TransactionBatch(models.Model):
    """One accepted POST /api/v2/point-accounts/transactions and the reply it got.

    With an Idempotency-Key the (client, key) pair is unique: a repeat gets the stored reply.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="transaction_batches"
    )
    client = models.ForeignKey(
        ApiClient, on_delete=models.PROTECT, related_name="transaction_batches"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the items' meaningful fields."
    )
    item_count = models.PositiveIntegerField()
    reply = models.JSONField(default=dict, help_text="The 202 body sent back.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="transaction_batch_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="transaction_batch_org_idx"),
        ]

    def __str__(self) -> str:
        return f"transaction batch {self.pk} ({self.item_count} items)"


class AdjustmentSource(models.TextChoices):
    MANUAL = "Manual", "Manual (an operator)"
    AUTOMATION = "Automation", "Automation"


class MasterAdjustment(models.Model):
    """An adjustment sent to the point master instead of the ledger (seed 002, part 4).

    The webhook body is encrypted; this row keeps what was asked, in the clear, for operators.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="master_adjustments"
    )
    program = models.ForeignKey(
        PointProgram, on_delete=models.PROTECT, related_name="master_adjustments"
    )
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="master_adjustments")
    amount = models.BigIntegerField()
    description = models.CharField(max_length=500)
    source = models.CharField(max_length=16, choices=AdjustmentSource.choices)
    actor = models.CharField(max_length=200, blank=True, help_text="user:<id> or automation.")
    payload = models.JSONField(help_text="The decrypted payload the master receives.")
    message = models.OneToOneField(
        OutboxMessage, on_delete=models.PROTECT, related_name="master_adjustment"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0), name="master_adjustment_amount_not_zero"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} for {self.member_id} ({self.source})"


class FollowerProgram(PointProgram):
    """Proxy of PointProgram for the operator console's "master connection" page."""

    class Meta:
        proxy = True
        verbose_name = "point master connection"
        verbose_name_plural = "point master connections"
