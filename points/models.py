"""Point programs, accounts, lots, the ledger (transfers), holds and earning/burning rules.

The ledger follows TigerBeetle's model, kept in PostgreSQL. Invariants (checked by
`verify_ledger` and by the stateful tests after every step):

* Every movement is a Transfer of a positive amount from a debit account to a credit account of
  the same program. Member accounts and the program's system accounts (issued, redeemed,
  expired) take part; earn = issued -> member, burn = member -> redeemed, expiry = member ->
  expired. Transfers are never updated or deleted (model guard, and a PostgreSQL trigger).
* Per program, posted transfers sum to zero over all accounts (each transfer debits one account
  and credits another by the same amount).
* Per member account: balance == posted credits - posted debits == sum(remaining of active
  lots); held == sum(open holds); pending == sum(amount of pending lots); 0 <= held <= balance.
  Available to spend = balance - held.
* A hold is a pending transfer member -> redeemed: it counts in `held`, in no posted sum, and
  resolves exactly once: held -> confirmed | rolled_back | expired.

Only member accounts carry materialised balances. A system account's balance is derived from
the transfers when it is needed (verify_ledger, the operator dashboard): materialising it would
make every earn in a program queue on one hot row.
"""

import uuid

from django.db import models
from django.db.models import F, Q

from loyalty.models import Member, Organization


class ProgramMode(models.TextChoices):
    MASTER = "master", "Master (the platform owns the points)"
    FOLLOWER_BALANCE = "follower_balance", "Follower: balances pushed by the point master"
    FOLLOWER_TRANSACTIONS = (
        "follower_transactions",
        "Follower: transactions pushed by the point master",
    )


class PointProgram(models.Model):
    """A point definition of an organisation (seed 001 `programKey`, seed 002 `definitionId`)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="programs"
    )
    key = models.SlugField(max_length=64, help_text="The program key partners use, e.g. default.")
    name = models.CharField(max_length=200)
    definition_id = models.PositiveIntegerField(help_text="Seed 002 definitionId.")
    mode = models.CharField(max_length=32, choices=ProgramMode.choices, default=ProgramMode.MASTER)
    hold_ttl_seconds = models.PositiveIntegerField(
        default=15 * 60, help_text="How long a hold lasts before it expires."
    )
    default_validity_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Earned points expire after this many days; empty: never."
    )
    master_webhook_url = models.URLField(
        blank=True, help_text="Follower mode: where adjustments go to the point master."
    )
    master_webhook_key = models.CharField(
        max_length=100,
        blank=True,
        help_text="Follower mode: AES-256 key (base64) that encrypts the adjustment payload.",
    )
    master_points_log_url = models.URLField(
        blank=True, help_text="Follower mode: the master's points log, called with ?id=<contactId>."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "key"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="program_key_unique"),
            models.UniqueConstraint(
                fields=["organization", "definition_id"], name="program_definition_id_unique"
            ),
            # Seed 002's caution: adjustments made before the master's webhook is configured
            # would be lost, so a follower program needs the webhook first.
            models.CheckConstraint(
                condition=Q(mode=ProgramMode.MASTER)
                | (~Q(master_webhook_url="") & ~Q(master_webhook_key="")),
                name="program_follower_needs_master_webhook",
                violation_error_message=(
                    "Set the master's webhook URL and key (Point master connections) before "
                    "switching to a follower mode."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.key}"

    @property
    def is_follower(self) -> bool:
        return self.mode != ProgramMode.MASTER


class AccountKind(models.TextChoices):
    MEMBER = "member", "Member"
    ISSUED = "issued", "Issued (system)"
    REDEEMED = "redeemed", "Redeemed (system)"
    EXPIRED = "expired", "Expired (system)"


class PointAccount(models.Model):
    program = models.ForeignKey(PointProgram, on_delete=models.PROTECT, related_name="accounts")
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, null=True, blank=True, related_name="point_accounts"
    )
    kind = models.CharField(max_length=16, choices=AccountKind.choices, default=AccountKind.MEMBER)
    balance = models.BigIntegerField(default=0, help_text="Posted points, held ones included.")
    held = models.BigIntegerField(default=0, help_text="Points in open holds.")
    pending = models.BigIntegerField(default=0, help_text="Points in lots not active yet.")
    lifetime_earned = models.BigIntegerField(default=0)
    # Follower mode: the master's timestamp of the last balance applied, to skip older updates
    # that arrive out of order.
    synced_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["program", "member"],
                condition=Q(member__isnull=False),
                name="account_one_per_member_and_program",
            ),
            models.UniqueConstraint(
                fields=["program", "kind"],
                condition=~Q(kind=AccountKind.MEMBER),
                name="account_one_system_account_per_kind",
            ),
            models.CheckConstraint(
                condition=(Q(kind=AccountKind.MEMBER) & Q(member__isnull=False))
                | (~Q(kind=AccountKind.MEMBER) & Q(member__isnull=True)),
                name="account_member_iff_member_kind",
            ),
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="account_balance_not_negative"
            ),
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_not_negative"),
            models.CheckConstraint(
                condition=Q(held__lte=F("balance")), name="account_held_within_balance"
            ),
            models.CheckConstraint(
                condition=Q(pending__gte=0), name="account_pending_not_negative"
            ),
        ]

    def __str__(self) -> str:
        owner = self.member.external_id if self.member_id else self.kind
        return f"{self.program_id}:{owner}"

    @property
    def available(self) -> int:
        return self.balance - self.held


class LotStatus(models.TextChoices):
    PENDING = "pending", "Pending (valid_from in the future)"
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed (consumed or expired)"


class PointLot(models.Model):
    """Points credited together, with one validity window; debits consume them."""

    # Indexed by lot_spending_order_idx, which leads with it (one index less to write a lot).
    account = models.ForeignKey(
        PointAccount, on_delete=models.PROTECT, related_name="lots", db_index=False
    )
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=LotStatus.choices)
    # The posted credit; set when the lot becomes active.
    transfer = models.OneToOneField(
        "Transfer", on_delete=models.PROTECT, null=True, blank=True, related_name="lot"
    )
    # What the credit will say when a pending lot is posted.
    source = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=500, blank=True)
    reference = models.CharField(max_length=200, blank=True)
    actor = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=300, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # An account's lots by status in spending order (soonest-expiring first, then the
            # oldest): a debit reads its first active lot, however many the account holds.
            models.Index(
                fields=["account", "status", "valid_to", "id"], name="lot_spending_order_idx"
            ),
            models.Index(
                fields=["valid_from"],
                condition=Q(status=LotStatus.PENDING),
                name="lot_pending_due_idx",
            ),
            models.Index(
                fields=["valid_to"], condition=Q(status=LotStatus.ACTIVE), name="lot_active_due_idx"
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="lot_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")),
                name="lot_remaining_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=F("valid_from")),
                name="lot_valid_to_after_valid_from",
            ),
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="lot_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"lot {self.pk}: {self.remaining}/{self.amount} {self.status}"


class TransferKind(models.TextChoices):
    EARN = "earn", "Earn"
    BURN = "burn", "Burn"
    EXPIRE = "expire", "Expire"
    ADJUST = "adjust", "Adjustment"
    SYNC = "sync", "Sync from the point master"


class TransferQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Ledger transfers are append-only: post a correcting transfer instead.")

    def delete(self):
        raise TypeError("Ledger transfers are append-only: they are never deleted.")


class Transfer(models.Model):
    """One posted movement of points. Append-only."""

    # program and member_account are indexed by transfer_program_day_idx and
    # transfer_member_history_idx, which lead with them: two indexes less to write a transfer.
    program = models.ForeignKey(
        PointProgram, on_delete=models.PROTECT, related_name="transfers", db_index=False
    )
    debit_account = models.ForeignKey(PointAccount, on_delete=models.PROTECT, related_name="debits")
    credit_account = models.ForeignKey(
        PointAccount, on_delete=models.PROTECT, related_name="credits"
    )
    # The member side of the transfer, for a member's history (index-backed keyset pages).
    member_account = models.ForeignKey(
        PointAccount, on_delete=models.PROTECT, related_name="member_transfers", db_index=False
    )
    amount = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=TransferKind.choices)
    source = models.CharField(max_length=64, blank=True, help_text="Purchase, Partner, Manual, ...")
    description = models.CharField(max_length=500, blank=True)
    reference = models.CharField(
        max_length=200, blank=True, help_text="The caller's transaction or request id."
    )
    actor = models.CharField(
        max_length=200, blank=True, help_text="Who caused it: vendor:<id>, client:<id>, user:<id>."
    )
    member_balance_after = models.BigIntegerField(
        help_text="The member account's posted balance after this transfer."
    )
    hold = models.OneToOneField(
        "Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="confirm_transfer"
    )
    idempotency_key = models.CharField(max_length=300, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = TransferQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["member_account", "-id"], name="transfer_member_history_idx"),
            models.Index(fields=["program", "created_at"], name="transfer_program_day_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(
                condition=~Q(debit_account=F("credit_account")),
                name="transfer_accounts_differ",
            ),
            models.CheckConstraint(
                condition=Q(member_account=F("debit_account"))
                | Q(member_account=F("credit_account")),
                name="transfer_member_account_is_a_side",
            ),
            models.UniqueConstraint(
                fields=["program", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="transfer_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.amount}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Ledger transfers are append-only: post a correcting transfer instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Ledger transfers are append-only: they are never deleted.")

    @property
    def signed_amount(self) -> int:
        """The amount as seen from the member: positive for credits, negative for debits."""
        return self.amount if self.credit_account_id == self.member_account_id else -self.amount


class HoldStatus(models.TextChoices):
    HELD = "held", "Held"
    CONFIRMED = "confirmed", "Confirmed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    EXPIRED = "expired", "Expired"


class Hold(models.Model):
    """A pending transfer member -> redeemed (two-phase deduction, seed 000)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    program = models.ForeignKey(PointProgram, on_delete=models.PROTECT, related_name="holds")
    # Indexed by hold_account_status_idx, which leads with it.
    account = models.ForeignKey(
        PointAccount, on_delete=models.PROTECT, related_name="holds", db_index=False
    )
    amount = models.BigIntegerField()
    # Transaction ids are the caller's, so they are unique per owner (vendor:<id>), not globally.
    owner = models.CharField(max_length=100, help_text="Who placed it: vendor:<id>.")
    transaction_id = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.HELD)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=Q(status=HoldStatus.HELD), name="hold_open_due_idx"
            ),
            models.Index(fields=["account", "status"], name="hold_account_status_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "transaction_id"], name="hold_transaction_id_unique_per_owner"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(status=HoldStatus.HELD) | Q(resolved_at__isnull=False),
                name="hold_resolved_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner}/{self.transaction_id} {self.amount} {self.status}"


class RuleKind(models.TextChoices):
    EARN = "earn", "Earn"
    BURN = "burn", "Burn"


class LimitPeriod(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week"
    MONTH = "month", "Month"
    YEAR = "year", "Year"
    LIFETIME = "lifetime", "Lifetime"


class PointRule(models.Model):
    """An earning or burning rule (seed 001 `ruleId`)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    program = models.ForeignKey(PointProgram, on_delete=models.PROTECT, related_name="rules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=RuleKind.choices)
    active = models.BooleanField(default=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    max_points_per_request = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Per-request cap; a larger request gets this many."
    )
    member_limit = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Points one member may earn/burn by this rule per period."
    )
    member_limit_period = models.CharField(
        max_length=16, choices=LimitPeriod.choices, default=LimitPeriod.DAY
    )
    total_budget = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Points this rule may move in all; empty: unlimited."
    )
    total_used = models.PositiveBigIntegerField(default=0, editable=False)
    event_name = models.CharField(
        max_length=100, blank=True, help_text="Seed 004: an event of this name triggers the rule."
    )
    event_points = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Points an event earns through this rule."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True)
                | Q(ends_at__isnull=True)
                | Q(ends_at__gt=F("starts_at")),
                name="rule_period_ordered",
            ),
            models.CheckConstraint(
                condition=Q(total_budget__isnull=True) | Q(total_used__lte=F("total_budget")),
                name="rule_budget_not_exceeded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class RuleUsage(models.Model):
    """Points a member moved through a rule in one limit period (for per-member limits)."""

    rule = models.ForeignKey(PointRule, on_delete=models.CASCADE, related_name="usages")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="rule_usages")
    period_start = models.DateTimeField()
    used = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "member", "period_start"], name="rule_usage_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.member_id} since {self.period_start}: {self.used}"


def system_account_kinds() -> tuple[str, ...]:
    return (AccountKind.ISSUED, AccountKind.REDEEMED, AccountKind.EXPIRED)
