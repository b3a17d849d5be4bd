"""Every write of customer engagement, one module per area; the public services are here.

`tier_recompute_for_account` is the ledger's hook (points.services calls it where
lifetime_earned changes); `earn_multiplier_for` is re-exported for earning rules.
"""

from loyalty.engagement.selectors import earn_multiplier_for
from loyalty.engagement.services.activity import activity_record
from loyalty.engagement.services.campaigns import (
    campaign_event_count,
    campaign_opt_in,
    campaign_points_refresh,
    campaign_reward_retry,
    campaigns_refresh,
)
from loyalty.engagement.services.events import EventInput, EventResult, event_record
from loyalty.engagement.services.profiles import profile_create, profile_update
from loyalty.engagement.services.stores import offer_on_sale, offer_purchase, reward_redeem
from loyalty.engagement.services.tags import member_tag_remove, member_tags_add, tag_name_clean
from loyalty.engagement.services.tiers import (
    tier_check,
    tier_create,
    tier_delete,
    tier_recompute_for_account,
    tier_save,
    tiers_recompute,
)

__all__ = [
    "EventInput",
    "EventResult",
    "activity_record",
    "campaign_event_count",
    "campaign_opt_in",
    "campaign_points_refresh",
    "campaign_reward_retry",
    "campaigns_refresh",
    "earn_multiplier_for",
    "event_record",
    "member_tag_remove",
    "member_tags_add",
    "offer_on_sale",
    "offer_purchase",
    "profile_create",
    "profile_update",
    "reward_redeem",
    "tag_name_clean",
    "tier_check",
    "tier_create",
    "tier_delete",
    "tier_recompute_for_account",
    "tier_save",
    "tiers_recompute",
]
