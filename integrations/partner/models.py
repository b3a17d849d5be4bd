"""Partner Point API requests (seed 001): one row per (client, requestId), with its stored reply.

A request is judged when it arrives: refused (a 400 the partner can retry only with a new
requestId, because the refusal is stored and repeated) or accepted (202). An accepted request is
processed once, by a Celery task, into succeeded or failed; the callback that reports it is an
outbox message written in the same transaction. Transitions:

    accepted -> succeeded | failed        (processing; never back)
    refused                               (final from the start)

The reply (status and body) is stored so that a repeat with the same requestId and the same
meaningful fields gets exactly the first answer; `fingerprint` holds a hash of those fields
(userId, ruleId, amount, callbackUrl) to answer a repeat with different ones 409.
"""

from django.db import models
from django.db.models import Q

from integrations.models import ApiClient
from loyalty.models import Member, Organization
from points.models import PointRule, Transfer


class PartnerRequestStatus(models.TextChoices):
    ACCEPTED = "accepted", "Accepted (waiting to be processed)"
    REFUSED = "refused", "Refused when it arrived"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class PartnerAction(models.TextChoices):
    EARN = "point_earn", "Earn"
    BURN = "point_burn", "Burn"


class PartnerRequest(models.Model):
    # organization and client are indexed by partner_request_org_idx and the requestId
    # constraint, which lead with them: two indexes less to write on every accept and outcome.
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="partner_requests", db_index=False
    )
    client = models.ForeignKey(
        ApiClient, on_delete=models.PROTECT, related_name="point_requests", db_index=False
    )
    request_id = models.CharField(max_length=200, help_text="The partner's requestId.")
    # What the partner sent, kept as sent: a refused request may name a rule or user that
    # does not exist.
    user_id = models.CharField(max_length=128, help_text="The partner's userId.")
    rule_ref = models.CharField(max_length=64, help_text="The partner's ruleId.")
    amount = models.PositiveBigIntegerField(help_text="Points requested.")
    callback_url = models.URLField(max_length=2000)
    fingerprint = models.CharField(
        max_length=64, help_text="sha256 of userId, ruleId, amount and callbackUrl."
    )
    # Resolved when the request was judged.
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, null=True, blank=True, related_name="partner_requests"
    )
    rule = models.ForeignKey(
        PointRule, on_delete=models.PROTECT, null=True, blank=True, related_name="partner_requests"
    )
    action = models.CharField(max_length=16, choices=PartnerAction.choices, blank=True)
    status = models.CharField(max_length=16, choices=PartnerRequestStatus.choices)
    # The outcome of processing.
    point = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Points applied (below amount when the rule capped it)."
    )
    transfer = models.OneToOneField(
        Transfer,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="partner_request",
    )
    failure_code = models.CharField(
        max_length=64, blank=True, help_text="Why it was refused or failed (machine-readable)."
    )
    error_message = models.CharField(
        max_length=500, blank=True, help_text="What the partner was told."
    )
    reply_status = models.PositiveSmallIntegerField(help_text="HTTP status of the first reply.")
    reply_body = models.JSONField(help_text="Body of the first reply, repeated to repeats.")
    created_at = models.DateTimeField(auto_now_add=True)
    # When processing was last handed to the broker; the sweeper re-dispatches stale ones.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "request_id"], name="partner_request_id_unique_per_client"
            ),
            models.CheckConstraint(
                condition=Q(status=PartnerRequestStatus.REFUSED)
                | (Q(rule__isnull=False) & Q(member__isnull=False) & ~Q(action="")),
                name="partner_request_accepted_is_resolved",
            ),
            models.CheckConstraint(
                condition=~Q(status=PartnerRequestStatus.SUCCEEDED)
                | (Q(transfer__isnull=False) & Q(point__gt=0)),
                name="partner_request_success_has_transfer",
            ),
        ]
        indexes = [
            # The requests waiting to be processed (few at any time): the drainers look them
            # up in id order (services._WAITING_SQL), the sweeper by their times.
            models.Index(
                fields=["id"],
                condition=Q(status=PartnerRequestStatus.ACCEPTED),
                name="partner_request_accepted_idx",
            ),
            models.Index(fields=["organization", "-created_at"], name="partner_request_org_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.client_id}/{self.request_id} ({self.status})"
