"""Customer engagement: tiers, tags, events, campaigns, reward stores and the activity log.

Invariants, kept by loyalty/engagement/services.py and by the constraints below:

* Tiers belong to one point program and share one basis (lifetime or rolling 12-month earned
  points); thresholds are distinct per program, so "the highest tier whose threshold the member
  reaches" is always one tier. Programs in `follower_balance` mode have no tiers (seed 002: a
  balance-only follower has no member levels).
* A member's current tier per program is one MemberTier row (unique per member and program).
  Lifetime tiers change inside the ledger transaction that changes `lifetime_earned` (the
  account row is locked then); rolling tiers change in the periodic job. Every change appends a
  TierChange and an ActivityEntry in the same transaction.
* An event is stored once per (client, Idempotency-Key); its stored reply is what every repeat
  gets back, and its effects (points, rewards, campaign progress) exist iff the event row does.
* A campaign's completion reward is given at most once per member: CampaignCompletion is unique
  per (campaign, member), and the reward is written in the transaction that inserts it.
* ActivityEntry and TierChange rows are append-only: the activity log is a history.
"""

import uuid

from django.db import models
from django.db.models import Q

from loyalty.models import Member, Organization


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("This history is append-only.")

    def delete(self):
        raise TypeError("This history is append-only.")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("This history is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("This history is append-only.")


# --- tiers ---------------------------------------------------------------------------------------


class TierBasis(models.TextChoices):
    LIFETIME = "lifetime", "Lifetime earned points"
    ROLLING_12_MONTHS = "rolling_12_months", "Points earned in the last 12 months"


class Tier(models.Model):
    """One level of a program's tier ladder: reached at `threshold` points on the basis."""

    program = models.ForeignKey(
        "points.PointProgram", on_delete=models.PROTECT, related_name="tiers"
    )
    name = models.CharField(max_length=100)
    threshold = models.PositiveBigIntegerField(
        help_text="Points (on the basis) a member needs to reach this tier; 0 = every member."
    )
    basis = models.CharField(
        max_length=32,
        choices=TierBasis.choices,
        default=TierBasis.LIFETIME,
        help_text="Every tier of a program has the same basis.",
    )
    earn_multiplier = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        default=1,
        help_text="Event-triggered earns of members in this tier are multiplied by this.",
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["program", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["program", "name"], name="tier_name_unique"),
            # Also the index of the hot-path look-up (program, threshold <= n, newest first).
            models.UniqueConstraint(fields=["program", "threshold"], name="tier_threshold_unique"),
            models.CheckConstraint(
                condition=Q(earn_multiplier__gt=0) & Q(earn_multiplier__lte=100),
                name="tier_earn_multiplier_range",
            ),
            models.CheckConstraint(condition=~Q(name=""), name="tier_name_set"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.threshold}+)"


class MemberTier(models.Model):
    """The member's current tier in one program (tier null: below the lowest threshold)."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="tiers")
    program = models.ForeignKey("points.PointProgram", on_delete=models.CASCADE, related_name="+")
    tier = models.ForeignKey(
        Tier, on_delete=models.SET_NULL, null=True, blank=True, related_name="members"
    )
    qualifying_points = models.BigIntegerField(
        default=0, help_text="The points on the tier basis when the tier was last set."
    )
    since = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "program"], name="member_tier_unique"),
        ]
        indexes = [models.Index(fields=["program", "tier"], name="member_tier_program_idx")]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.program_id}: {self.tier or '-'}"


class TierChangeReason(models.TextChoices):
    EARN = "earn", "Points earned (lifetime tiers)"
    RECOMPUTE = "recompute", "Periodic recompute (rolling window, changed thresholds)"


class TierChange(AppendOnlyModel):
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="tier_changes")
    program = models.ForeignKey("points.PointProgram", on_delete=models.PROTECT, related_name="+")
    # Names, not foreign keys: tiers may be renamed or removed later, and history stays as it was.
    from_name = models.CharField(max_length=100, blank=True)
    to_name = models.CharField(max_length=100, blank=True)
    qualifying_points = models.BigIntegerField()
    reason = models.CharField(max_length=16, choices=TierChangeReason.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["member", "-id"], name="tier_change_member_idx")]

    def __str__(self) -> str:
        return f"{self.from_name or '-'} -> {self.to_name or '-'}"


# --- tags ----------------------------------------------------------------------------------------


class Tag(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="tags")
    name = models.CharField(max_length=64, help_text="Lower case: letters, digits and . _ : -")
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="tag_name_unique"),
            models.CheckConstraint(condition=~Q(name=""), name="tag_name_set"),
        ]

    def __str__(self) -> str:
        return self.name


class MemberTag(models.Model):
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="member_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="member_tags")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "tag"], name="member_tag_unique"),
        ]
        # Listing a tag's members newest first, a keyset page at a time.
        indexes = [models.Index(fields=["tag", "-id"], name="member_tag_listing_idx")]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.tag_id}"


# --- events --------------------------------------------------------------------------------------


class Event(models.Model):
    """One event a client sent for a member (POST /api/v1/events), with the reply it got.

    Written once: inserted first (the unique key holds concurrent repeats back), its reply set
    in the same transaction, never changed after.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="events")
    client = models.ForeignKey(
        "integrations.ApiClient",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="events",
    )
    name = models.CharField(max_length=100)
    properties = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the meaningful fields.")
    reply = models.JSONField(default=dict, help_text="What the client was answered.")

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="event_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "name", "-received_at"], name="event_name_idx"),
            models.Index(fields=["member", "-received_at"], name="event_member_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} for {self.member_id}"


class EventOperation(models.Model):
    """An event of this name grants the reward of a rewards operation (seed 003)."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    event_name = models.CharField(max_length=100)
    operation = models.ForeignKey(
        "rewards.Operation", on_delete=models.PROTECT, related_name="event_bindings"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "event_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "event_name", "operation"],
                name="event_operation_unique",
            ),
            models.CheckConstraint(condition=~Q(event_name=""), name="event_operation_name_set"),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} -> {self.operation_id}"


# --- campaigns -----------------------------------------------------------------------------------


class GoalType(models.TextChoices):
    EVENT_COUNT = "event_count", "Send an event a number of times"
    POINTS_EARNED = "points_earned", "Earn a number of points in a program"


class Campaign(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="campaigns"
    )
    key = models.SlugField(max_length=64, help_text="Stable id for apps, e.g. spring-checkins.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    opt_in_required = models.BooleanField(
        default=False, help_text="Only members who opted in make progress."
    )
    active = models.BooleanField(default=True, help_text="Inactive campaigns make no progress.")
    goal_type = models.CharField(max_length=16, choices=GoalType.choices)
    goal_event_name = models.CharField(
        max_length=100, blank=True, help_text="Event count goals: the event that counts."
    )
    goal_program = models.ForeignKey(
        "points.PointProgram",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Points goals: the program whose earned points count.",
    )
    goal_target = models.PositiveBigIntegerField(help_text="Events or points to reach.")
    reward_points = models.PositiveBigIntegerField(null=True, blank=True)
    reward_program = models.ForeignKey(
        "points.PointProgram",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Points reward: the program the points are earned in.",
    )
    reward_type = models.ForeignKey(
        "rewards.RewardType",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    reward_quantity = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "-starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="campaign_key_unique"),
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="campaign_period_ordered"
            ),
            models.CheckConstraint(condition=Q(goal_target__gt=0), name="campaign_goal_positive"),
            models.CheckConstraint(
                condition=(
                    Q(goal_type=GoalType.EVENT_COUNT)
                    & ~Q(goal_event_name="")
                    & Q(goal_program__isnull=True)
                )
                | (
                    Q(goal_type=GoalType.POINTS_EARNED)
                    & Q(goal_event_name="")
                    & Q(goal_program__isnull=False)
                ),
                name="campaign_goal_consistent",
            ),
            models.CheckConstraint(
                condition=(
                    Q(reward_points__gt=0)
                    & Q(reward_program__isnull=False)
                    & Q(reward_type__isnull=True)
                    & Q(reward_quantity__isnull=True)
                )
                | (
                    Q(reward_type__isnull=False)
                    & Q(reward_quantity__gt=0)
                    & Q(reward_points__isnull=True)
                    & Q(reward_program__isnull=True)
                ),
                name="campaign_one_reward",
            ),
        ]
        indexes = [models.Index(fields=["organization", "ends_at"], name="campaign_live_idx")]

    def __str__(self) -> str:
        return self.name


class CampaignProgress(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="progress")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="campaign_progress")
    opted_in_at = models.DateTimeField(null=True, blank=True)
    progress = models.BigIntegerField(default=0, help_text="Events counted or points earned.")
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "campaign progress"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member"], name="campaign_progress_unique"),
            models.CheckConstraint(
                condition=Q(progress__gte=0), name="campaign_progress_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["member", "campaign"], name="campaign_progress_member_idx")]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.campaign_id}: {self.progress}"


class CampaignCompletion(models.Model):
    """A member completed a campaign; the reward given for it (at most once: unique)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="completions")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    completed_at = models.DateTimeField()
    reward_transfer = models.ForeignKey(
        "points.Transfer", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reward_grant = models.ForeignKey(
        "rewards.RewardGrant", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reward_sent_to_master = models.BooleanField(default=False)
    reward_error = models.CharField(
        max_length=300, blank=True, help_text="Why the reward could not be given (retryable)."
    )
    rewarded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-completed_at"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member"], name="campaign_completion_once"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} completed {self.campaign_id}"


# --- reward stores -------------------------------------------------------------------------------


class RewardStore(models.Model):
    """A named store of offers: reward types sold for points of one program."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="reward_stores"
    )
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    program = models.ForeignKey(
        "points.PointProgram",
        on_delete=models.PROTECT,
        related_name="reward_stores",
        help_text="Purchases in this store are paid with points of this program.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "key"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="reward_store_key_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class StoreOffer(models.Model):
    """A reward type on sale in a store, at the reward type's points price."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    store = models.ForeignKey(RewardStore, on_delete=models.CASCADE, related_name="offers")
    reward_type = models.ForeignKey(
        "rewards.RewardType", on_delete=models.PROTECT, related_name="offers"
    )
    headline = models.CharField(max_length=200, blank=True)
    position = models.PositiveIntegerField(default=0, help_text="Lower comes first.")
    active = models.BooleanField(default=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["store", "position", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["store", "reward_type"], name="store_offer_unique"),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True)
                | Q(ends_at__isnull=True)
                | Q(ends_at__gt=models.F("starts_at")),
                name="store_offer_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.headline or str(self.reward_type_id)


# --- activity log --------------------------------------------------------------------------------


class ActivityKind(models.TextChoices):
    PROFILE_CREATED = "profile_created", "Profile created"
    PROFILE_UPDATED = "profile_updated", "Profile updated"
    TAG_ADDED = "tag_added", "Tag added"
    TAG_REMOVED = "tag_removed", "Tag removed"
    EVENT = "event", "Event"
    TIER_CHANGED = "tier_changed", "Tier changed"
    CAMPAIGN_OPTED_IN = "campaign_opted_in", "Opted in to a campaign"
    CAMPAIGN_COMPLETED = "campaign_completed", "Campaign completed"
    REWARD_GRANTED = "reward_granted", "Reward granted"
    REWARD_CLAIMED = "reward_claimed", "Reward claimed"
    OFFER_PURCHASED = "offer_purchased", "Offer purchased"


class ActivityEntry(AppendOnlyModel):
    """One line of a member's activity log (newest first by id, keyset-paginated)."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="activity")
    kind = models.CharField(max_length=32, choices=ActivityKind.choices)
    summary = models.CharField(max_length=300)
    data = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "activity entries"
        indexes = [models.Index(fields=["member", "-id"], name="activity_member_history_idx")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary}"
