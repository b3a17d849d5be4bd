"""Rewards (seed 003): reward types, inventories, operations, grants, claims, the reward store.

Tables and field names follow the seed (Rokwire's Rewards Building Block); `org` is the seed's
`org_id`. Invariants, kept by rewards/services.py and checked by `rewards_verify`:

* Counters change only through services, by conditional UPDATEs or under row locks, never by
  writing a value read earlier. CHECK constraints keep every counter non-negative.
* Per inventory: amount_granted == sum of its grants; amount_claimed == sum of its claim items
  whose claim still holds them (pending or fulfilled; rejected and cancelled claims give back).
* Per member and reward type (RewardBalance): granted == sum of the member's grants, claimed ==
  sum of the member's live claim items, and 0 <= claimed <= granted (a CHECK): the balance
  granted - claimed never goes negative.
* `grant_depleted` / `claim_depleted` are permissions to go on past amount_total; what went past
  is recorded per grant / claim item in `overdrawn`. The computed "is depleted" state is a
  separate read-only property.
* A claim's status moves only through `claim_set_status` (pending -> fulfilled | rejected |
  cancelled); every move appends a ClaimStatusChange in the same transaction.
"""

import uuid

from django.db import models
from django.db.models import F, Q

from loyalty.models import Member, Organization


class Fulfilment(models.TextChoices):
    MANUAL = "manual", "Manual (an operator marks the claim fulfilled)"
    CODE_POOL = "code_pool", "Digital code from a pool (handed out at once)"
    WEBHOOK = "webhook", "Fulfilment webhook (an external system fulfils)"


class RewardType(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="reward_types")
    reward_type = models.CharField(
        max_length=100, help_text="Unique, human-readable identifier, e.g. tshirt."
    )
    display_name = models.CharField(max_length=200)
    active = models.BooleanField(default=True, help_text="Inactive types are not grantable.")
    description = models.TextField(blank=True)
    points_price = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Reward store: points for one; empty: not for sale."
    )
    fulfilment = models.CharField(
        max_length=16, choices=Fulfilment.choices, default=Fulfilment.MANUAL
    )
    webhook_url = models.URLField(
        max_length=2000, blank=True, help_text="Fulfilment webhook: where new claims are sent."
    )
    # Standard Webhooks secret (whsec_...) that signs fulfilment webhooks of this type.
    webhook_secret = models.CharField(max_length=200, blank=True, editable=False)
    date_created = models.DateTimeField(auto_now_add=True)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["org", "reward_type"]
        constraints = [
            models.UniqueConstraint(fields=["org", "reward_type"], name="reward_type_unique"),
            models.CheckConstraint(
                condition=Q(points_price__isnull=True) | Q(points_price__gt=0),
                name="reward_type_points_price_positive",
            ),
            models.CheckConstraint(
                condition=~Q(fulfilment="webhook") | ~Q(webhook_url=""),
                name="reward_type_webhook_needs_url",
            ),
            models.CheckConstraint(condition=~Q(reward_type=""), name="reward_type_set"),
        ]

    def __str__(self) -> str:
        return self.reward_type


class Inventory(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="inventories")
    reward_type = models.ForeignKey(
        RewardType, on_delete=models.PROTECT, related_name="inventories"
    )
    in_stock = models.BooleanField(default=True, help_text="Out-of-stock inventories are skipped.")
    amount_total = models.BigIntegerField(help_text="The supply this inventory starts with.")
    amount_granted = models.BigIntegerField(default=0, editable=False)
    amount_claimed = models.BigIntegerField(default=0, editable=False)
    grant_depleted = models.BooleanField(
        default=False, help_text="Permission: go on granting past amount_total."
    )
    claim_depleted = models.BooleanField(
        default=False, help_text="Permission: go on claiming past amount_total."
    )
    description = models.TextField(blank=True)
    date_created = models.DateTimeField(auto_now_add=True)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["date_created", "id"]
        verbose_name_plural = "inventories"
        indexes = [
            models.Index(
                fields=["reward_type", "in_stock", "date_created"], name="inventory_allocation_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_total__gte=0), name="inventory_total_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(amount_granted__gte=0), name="inventory_granted_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(amount_claimed__gte=0), name="inventory_claimed_not_negative"
            ),
            # Without the permission, no grant or claim goes past the total.
            models.CheckConstraint(
                condition=Q(grant_depleted=True) | Q(amount_granted__lte=F("amount_total")),
                name="inventory_granted_within_total",
            ),
            models.CheckConstraint(
                condition=Q(claim_depleted=True) | Q(amount_claimed__lte=F("amount_total")),
                name="inventory_claimed_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reward_type}: {self.description or self.pk}"

    @property
    def depleted(self) -> bool:
        """Read-only state: everything in amount_total has been granted."""
        return self.amount_granted >= self.amount_total

    @property
    def grantable(self) -> int:
        return max(0, self.amount_total - self.amount_granted)

    @property
    def claimable(self) -> int:
        return max(0, self.amount_total - self.amount_claimed)


class Operation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="operations")
    reward_type = models.ForeignKey(RewardType, on_delete=models.PROTECT, related_name="operations")
    code = models.CharField(max_length=100, help_text="Human-readable id, e.g. 10_posts.")
    building_block = models.CharField(
        max_length=100, help_text="The service that may use this operation, e.g. groups."
    )
    amount = models.BigIntegerField(help_text="How many of the reward type one completion grants.")
    description = models.TextField(blank=True)
    date_created = models.DateTimeField(auto_now_add=True)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["org", "building_block", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "building_block", "code"], name="operation_code_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="operation_amount_positive"),
            models.CheckConstraint(condition=~Q(code=""), name="operation_code_set"),
            models.CheckConstraint(
                condition=~Q(building_block=""), name="operation_building_block_set"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.building_block}/{self.code}"


class RewardsService(models.Model):
    """A building block (service) that grants rewards through /rewards/int/reward.

    Its API key is `rwk_<prefix>_<secret>`; only the prefix (for the look-up) and the SHA-256 of
    the whole key are stored. The key has 256 bits of entropy, so a fast hash is enough.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="rewards_services")
    name = models.CharField(max_length=200)
    building_block = models.CharField(max_length=100)
    active = models.BooleanField(default=True)
    key_prefix = models.CharField(max_length=32, blank=True, editable=False)
    key_hash = models.CharField(max_length=64, blank=True, editable=False)
    key_created_at = models.DateTimeField(null=True, blank=True, editable=False)
    date_created = models.DateTimeField(auto_now_add=True)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["org", "building_block"]
        verbose_name = "rewards service"
        constraints = [
            models.UniqueConstraint(
                fields=["org", "building_block"], name="rewards_service_building_block_unique"
            ),
            models.UniqueConstraint(
                fields=["key_prefix"],
                condition=~Q(key_prefix=""),
                name="rewards_service_key_prefix_unique",
            ),
            models.CheckConstraint(
                condition=~Q(building_block=""), name="rewards_service_building_block_set"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.building_block})"


class RewardBalance(models.Model):
    """A member's balance of one reward type, materialised and locked by every grant and claim."""

    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="reward_balances")
    reward_type = models.ForeignKey(RewardType, on_delete=models.PROTECT, related_name="balances")
    granted = models.BigIntegerField(default=0)
    claimed = models.BigIntegerField(default=0)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "reward_type"], name="reward_balance_one_per_type"
            ),
            models.CheckConstraint(
                condition=Q(granted__gte=0), name="reward_balance_granted_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(claimed__gte=0), name="reward_balance_claimed_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(claimed__lte=F("granted")), name="reward_balance_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}/{self.reward_type_id}: {self.amount}"

    @property
    def amount(self) -> int:
        return self.granted - self.claimed


class GrantSource(models.TextChoices):
    OPERATION = "operation", "Operation (a building block)"
    STORE = "store", "Reward store purchase"


class RewardGrant(models.Model):
    """One entry of a member's reward history: a grant from one inventory."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="reward_grants")
    reward_type = models.ForeignKey(RewardType, on_delete=models.PROTECT, related_name="grants")
    inventory = models.ForeignKey(Inventory, on_delete=models.PROTECT, related_name="grants")
    operation = models.ForeignKey(
        Operation, on_delete=models.PROTECT, null=True, blank=True, related_name="grants"
    )
    service = models.ForeignKey(
        RewardsService, on_delete=models.PROTECT, null=True, blank=True, related_name="grants"
    )
    source = models.CharField(max_length=16, choices=GrantSource.choices)
    # The seed's history carries code and building_block; kept as granted (operations change).
    code = models.CharField(max_length=100)
    building_block = models.CharField(max_length=100)
    amount = models.BigIntegerField()
    overdrawn = models.BigIntegerField(
        default=0, help_text="The part granted past the inventory's total (grant_depleted)."
    )
    description = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    date_created = models.DateTimeField(auto_now_add=True)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date_created", "-id"]
        indexes = [
            models.Index(fields=["member", "-date_created"], name="reward_grant_history_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="reward_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(overdrawn__gte=0) & Q(overdrawn__lte=F("amount")),
                name="reward_grant_overdrawn_within_amount",
            ),
            models.UniqueConstraint(
                fields=["service", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="reward_grant_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.reward_type} to {self.member_id}"


class ClaimStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    FULFILLED = "fulfilled", "Fulfilled"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


# Statuses whose claims give their amount back to the balance and the inventory.
RETURNED_STATUSES = (ClaimStatus.REJECTED, ClaimStatus.CANCELLED)


class Claim(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="reward_claims")
    status = models.CharField(
        max_length=16, choices=ClaimStatus.choices, default=ClaimStatus.PENDING, editable=False
    )
    description = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, editable=False)
    request_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    date_created = models.DateTimeField(auto_now_add=True)
    date_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date_created", "-id"]
        indexes = [
            models.Index(fields=["member", "-date_created"], name="claim_member_idx"),
            models.Index(fields=["org", "status"], name="claim_org_status_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="claim_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"claim {self.pk} ({self.status})"


class ClaimItem(models.Model):
    claim = models.ForeignKey(Claim, on_delete=models.PROTECT, related_name="items")
    reward_type = models.ForeignKey(
        RewardType, on_delete=models.PROTECT, related_name="claim_items"
    )
    inventory = models.ForeignKey(Inventory, on_delete=models.PROTECT, related_name="claim_items")
    amount = models.BigIntegerField()
    overdrawn = models.BigIntegerField(
        default=0, help_text="The part claimed past the inventory's total (claim_depleted)."
    )

    class Meta:
        ordering = ["claim", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="claim_item_amount_positive"),
            models.CheckConstraint(
                condition=Q(overdrawn__gte=0) & Q(overdrawn__lte=F("amount")),
                name="claim_item_overdrawn_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.reward_type}"


class ClaimStatusChange(models.Model):
    """Audit row of one status move (or of the creation, with from_status empty)."""

    claim = models.ForeignKey(Claim, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, choices=ClaimStatus.choices)
    actor = models.CharField(max_length=200, help_text="user:<id>, client:<id>, member:<id>.")
    note = models.CharField(max_length=500, blank=True)
    date_created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["claim", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class DigitalCode(models.Model):
    """One code of a reward type's pool; a claim item takes it once, atomically."""

    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    reward_type = models.ForeignKey(
        RewardType, on_delete=models.PROTECT, related_name="digital_codes"
    )
    code = models.CharField(max_length=200)
    claim_item = models.ForeignKey(
        ClaimItem, on_delete=models.PROTECT, null=True, blank=True, related_name="digital_codes"
    )
    date_created = models.DateTimeField(auto_now_add=True)
    date_issued = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["reward_type", "id"]
        indexes = [
            models.Index(
                fields=["reward_type", "id"],
                condition=Q(claim_item__isnull=True),
                name="digital_code_free_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["reward_type", "code"], name="digital_code_unique_per_type"
            ),
            models.CheckConstraint(
                condition=Q(claim_item__isnull=True, date_issued__isnull=True)
                | Q(claim_item__isnull=False, date_issued__isnull=False),
                name="digital_code_issued_has_time",
            ),
        ]

    def __str__(self) -> str:
        # The code itself is a secret of its holder: never in lists or logs.
        return f"code #{self.pk} of {self.reward_type_id}"


class StorePurchase(models.Model):
    """A member bought a reward with points: one burn and one grant, committed together."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="store_purchases")
    reward_type = models.ForeignKey(RewardType, on_delete=models.PROTECT, related_name="purchases")
    program = models.ForeignKey(
        "points.PointProgram", on_delete=models.PROTECT, related_name="store_purchases"
    )
    quantity = models.BigIntegerField()
    unit_price = models.BigIntegerField(help_text="Points for one, at the time of purchase.")
    points = models.BigIntegerField(help_text="Points burned in all.")
    transfer = models.OneToOneField(
        "points.Transfer", on_delete=models.PROTECT, related_name="store_purchase"
    )
    grant = models.OneToOneField(
        RewardGrant, on_delete=models.PROTECT, related_name="store_purchase"
    )
    claim = models.OneToOneField(
        Claim, on_delete=models.PROTECT, null=True, blank=True, related_name="store_purchase"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    date_created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date_created"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="purchase_quantity_positive"),
            models.CheckConstraint(
                condition=Q(points=F("quantity") * F("unit_price")), name="purchase_points_sum"
            ),
            models.UniqueConstraint(
                fields=["member", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="purchase_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.reward_type} for {self.points} points"
