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
    # Indexed by outbox_org_status_idx, which leads with it.
    organization = models.ForeignKey(
        Organization,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="outbox",
        db_index=False,
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
    # Indexed by attempt_number_unique, which leads with it.
    message = models.ForeignKey(
        OutboxMessage, on_delete=models.CASCADE, related_name="attempt_log", db_index=False
    )
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


class ApiClient(models.Model):
    """An organisation's API client: an OAuth2 confidential application (client credentials).

    Partners (seed 001), the point master (seed 002), rewards administrators (seed 003) and
    profile integrations (seed 004) all authenticate this way; `scopes` bounds what a token of
    this client can hold.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="api_clients"
    )
    application = models.OneToOneField(
        "oauth2_provider.Application", on_delete=models.CASCADE, related_name="api_client"
    )
    name = models.CharField(max_length=200)
    scopes = models.CharField(
        max_length=500, help_text="Space-separated scopes this client may request."
    )
    active = models.BooleanField(default=True)
    rules = models.ManyToManyField(
        "points.PointRule",
        blank=True,
        related_name="clients",
        help_text="Seed 001 rules this client may use.",
    )
    # Standard Webhooks secret (whsec_...) that signs callbacks sent to this client.
    webhook_secret = models.CharField(max_length=200, blank=True)
    # Seed 001 request signatures: the client's RSA public key and its key id.
    signing_key_id = models.CharField(max_length=200, blank=True)
    signing_public_key_pem = models.TextField(blank=True)
    require_signature = models.BooleanField(
        default=False, help_text="Refuse unsigned requests from this client."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(require_signature=False) | ~Q(signing_public_key_pem=""),
                name="api_client_required_signature_has_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.organization})"

    @property
    def client_id(self) -> str:
        return self.application.client_id

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())
