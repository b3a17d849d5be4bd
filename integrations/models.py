"""The outbox: every outbound message (callbacks, webhooks) and every attempt to deliver it.

A message is written in the same database transaction as the change it reports, so it exists if
and only if the change does. Workers send it after commit; a periodic sweeper sends what is due
or was lost with a broker message. Nothing is lost when Redis, a worker or the receiver is down.
"""

import uuid

from django.db import models
from django.db.models import Q

from loyalty.models import Organization


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending (retrying)"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead (gave up)"


class OutboxMessage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="outbox"
    )
    topic = models.CharField(
        max_length=64, help_text="What it reports: partner.callback, follower.adjustment, ..."
    )
    url = models.URLField(max_length=2000)
    body = models.BinaryField(help_text="The exact bytes sent.")
    headers = models.JSONField(default=dict, blank=True, help_text="Static headers to send.")
    # Standard Webhooks signing secret (whsec_...); signed per attempt because the timestamp is.
    signing_secret = models.CharField(max_length=200, blank=True, editable=False)
    status = models.CharField(
        max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    give_up_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status=OutboxStatus.PENDING),
                name="outbox_due_idx",
            ),
            models.Index(fields=["organization", "status"], name="outbox_org_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} -> {self.url} ({self.status})"

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class DeliveryAttempt(models.Model):
    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["message", "number"]
        constraints = [
            models.UniqueConstraint(fields=["message", "number"], name="attempt_number_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
