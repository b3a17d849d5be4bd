"""Campaigns: opt-in, progress per member, completion and its reward (given once).

Progress rows are locked (`SELECT ... FOR UPDATE`) by every writer, so two events of one member
are counted one after the other. The completion reward is written in the transaction that inserts
the CampaignCompletion row, which is unique per (campaign, member): a second completion of the
same member, however it races, finds the row and gives nothing.

Event-count goals move with each event (services/events.py). Points goals count the points
credited to the member in the goal program inside the campaign window (earned and synced
credits, not adjustments and not other campaigns' rewards), read from the ledger: by the event
that earned them, at opt-in, and by the periodic job `campaigns_refresh` for points earned any
other way (partner API, purchases, the point master's sync).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty.engagement.exceptions import CampaignClosed, CustomerBlocked
from loyalty.engagement.models import (
    ActivityKind,
    Campaign,
    CampaignCompletion,
    CampaignProgress,
    GoalType,
)
from loyalty.engagement.services.activity import activity_record
from loyalty.models import Member
from points import services as point_services
from points.exceptions import PointsError
from points.models import PointAccount, Transfer, TransferKind

CAMPAIGN_SOURCE = "Campaign"
CAMPAIGN_BUILDING_BLOCK = "campaigns"
# A points campaign keeps being refreshed this long after it ends, for credits of its last
# minutes that the job had not seen yet (they count only if made before the end).
POINTS_REFRESH_GRACE = dt.timedelta(days=1)
COUNTED_KINDS = (TransferKind.EARN, TransferKind.SYNC)


@dataclass(frozen=True)
class ProgressOutcome:
    campaign: Campaign
    progress: int
    completed: bool
    completed_now: bool
    reward_error: str = ""


def _progress_locked(*, campaign: Campaign, member: Member, create: bool):
    """The member's progress row, locked; created empty first if `create` (race-safe)."""
    lookup = {"campaign": campaign, "member": member}
    if create and not CampaignProgress.objects.filter(**lookup).exists():
        try:
            with transaction.atomic():
                CampaignProgress.objects.create(**lookup)
        except IntegrityError:
            pass  # a concurrent writer created it; the lock below waits for it
    return CampaignProgress.objects.select_for_update().filter(**lookup).first()


def campaign_opt_in(
    *, campaign: Campaign, member: Member, actor: str = "", now: dt.datetime | None = None
) -> CampaignProgress:
    """Opt the member in (idempotent: a repeat keeps the first opt-in time).

    Allowed from before the start until the end. Raises CampaignClosed for an ended or inactive
    campaign, CustomerBlocked for a blocked member. A points campaign's progress is read from
    the ledger at once.
    """
    now = now or timezone.now()
    if member.status != Member.Status.ACTIVE:
        raise CustomerBlocked(field="customerId")
    if not campaign.active or campaign.ends_at <= now:
        raise CampaignClosed(field="campaignId")
    with transaction.atomic():
        progress = _progress_locked(campaign=campaign, member=member, create=True)
        if progress.opted_in_at is None:
            progress.opted_in_at = now
            progress.save(update_fields=["opted_in_at", "updated_at"])
            activity_record(
                member=member,
                kind=ActivityKind.CAMPAIGN_OPTED_IN,
                summary=f"Opted in to {campaign.name}",
                data={"campaignId": str(campaign.pk), "campaignKey": campaign.key},
                actor=actor,
            )
        if campaign.goal_type == GoalType.POINTS_EARNED and campaign.starts_at <= now:
            campaign_points_refresh(campaign=campaign, member=member, now=now, actor=actor)
        progress.refresh_from_db()
    return progress


def campaign_event_count(
    *,
    campaign: Campaign,
    member: Member,
    occurred_at: dt.datetime,
    actor: str,
    now: dt.datetime,
) -> ProgressOutcome | None:
    """Count one event toward an event-count campaign (caller matched the name and checked the
    campaign is running). None when it does not count: the event happened before the campaign
    started, or the campaign needs an opt-in the member has not given."""
    if occurred_at < campaign.starts_at or occurred_at >= campaign.ends_at:
        return None
    with transaction.atomic():
        progress = _progress_locked(
            campaign=campaign, member=member, create=not campaign.opt_in_required
        )
        if progress is None or (campaign.opt_in_required and progress.opted_in_at is None):
            return None
        if progress.completed_at is not None:
            return ProgressOutcome(campaign, progress.progress, True, False)
        progress.progress += 1
        progress.save(update_fields=["progress", "updated_at"])
        if progress.progress < campaign.goal_target:
            return ProgressOutcome(campaign, progress.progress, False, False)
        completion = _complete(
            campaign=campaign, member=member, progress=progress, now=now, actor=actor
        )
        return ProgressOutcome(
            campaign,
            progress.progress,
            True,
            completion is not None,
            completion.reward_error if completion else "",
        )


def _points_window_start(campaign: Campaign, progress: CampaignProgress | None) -> dt.datetime:
    if campaign.opt_in_required and progress is not None and progress.opted_in_at is not None:
        return max(campaign.starts_at, progress.opted_in_at)
    return campaign.starts_at


def _points_earned(*, campaign: Campaign, account_id: int, since: dt.datetime) -> int:
    return (
        Transfer.objects.filter(
            member_account_id=account_id,
            credit_account_id=F("member_account_id"),
            kind__in=COUNTED_KINDS,
            created_at__gte=since,
            created_at__lt=campaign.ends_at,
        )
        .exclude(source=CAMPAIGN_SOURCE)
        .aggregate(total=Coalesce(Sum("amount"), 0))["total"]
    )


def campaign_points_refresh(
    *, campaign: Campaign, member: Member, now: dt.datetime, actor: str = "system"
) -> ProgressOutcome | None:
    """Set a points campaign's progress from the ledger; complete it when the goal is reached.

    None when the member does not take part (opt-in needed and not given) or has no account.
    """
    account_id = (
        PointAccount.objects.filter(program_id=campaign.goal_program_id, member=member)
        .values_list("pk", flat=True)
        .first()
    )
    if account_id is None:
        return None
    with transaction.atomic():
        progress = _progress_locked(
            campaign=campaign, member=member, create=not campaign.opt_in_required
        )
        if progress is None or (campaign.opt_in_required and progress.opted_in_at is None):
            return None
        if progress.completed_at is not None:
            return ProgressOutcome(campaign, progress.progress, True, False)
        earned = _points_earned(
            campaign=campaign,
            account_id=account_id,
            since=_points_window_start(campaign, progress),
        )
        if earned != progress.progress:
            progress.progress = earned
            progress.save(update_fields=["progress", "updated_at"])
        if earned < campaign.goal_target:
            return ProgressOutcome(campaign, earned, False, False)
        completion = _complete(
            campaign=campaign, member=member, progress=progress, now=now, actor=actor
        )
        return ProgressOutcome(
            campaign,
            earned,
            True,
            completion is not None,
            completion.reward_error if completion else "",
        )


def _complete(
    *, campaign: Campaign, member: Member, progress: CampaignProgress, now: dt.datetime, actor: str
) -> CampaignCompletion | None:
    """Mark the campaign completed for the member and give the reward: once (unique row)."""
    try:
        with transaction.atomic():
            completion = CampaignCompletion.objects.create(
                campaign=campaign, member=member, completed_at=now
            )
    except IntegrityError:
        return None
    progress.completed_at = now
    progress.save(update_fields=["completed_at", "updated_at"])
    activity_record(
        member=member,
        kind=ActivityKind.CAMPAIGN_COMPLETED,
        summary=f"Completed {campaign.name}",
        data={"campaignId": str(campaign.pk), "campaignKey": campaign.key},
        actor=actor,
    )
    _reward_give(completion=completion, campaign=campaign, member=member, now=now, actor=actor)
    return completion


def _reward_give(
    *,
    completion: CampaignCompletion,
    campaign: Campaign,
    member: Member,
    now: dt.datetime,
    actor: str,
) -> None:
    """Give the completion reward. A refusal (inventory empty, follower without webhook, ...)
    keeps the completion with `reward_error`, for an operator to retry; it is never lost."""
    from integrations.follower.routing import points_adjust
    from rewards.exceptions import RewardsError
    from rewards.models import GrantSource
    from rewards.services import reward_grant

    description = f"Campaign completed: {campaign.name}"
    try:
        with transaction.atomic():
            if campaign.reward_points:
                program = campaign.reward_program
                if program.is_follower:
                    # The point master owns the points: an Automation adjustment goes to it.
                    points_adjust(
                        program=program,
                        member=member,
                        amount=campaign.reward_points,
                        reason=description,
                        automation={
                            "Reason": description,
                            "ProcessId": str(completion.pk),
                            "WorkflowId": str(campaign.pk),
                            "WorkflowName": campaign.name,
                        },
                    )
                    completion.reward_sent_to_master = True
                else:
                    result = point_services.earn(
                        program=program,
                        member=member,
                        amount=campaign.reward_points,
                        source=CAMPAIGN_SOURCE,
                        description=description,
                        reference=f"campaign:{campaign.key}",
                        actor=actor or "system",
                        idempotency_key=f"campaign:{campaign.pk}:{member.pk}",
                    )
                    completion.reward_transfer = result.transfer
            else:
                grant = reward_grant(
                    member=member,
                    reward_type=campaign.reward_type,
                    amount=campaign.reward_quantity,
                    source=GrantSource.OPERATION,
                    code=campaign.key[:100],
                    building_block=CAMPAIGN_BUILDING_BLOCK,
                    description=description,
                    actor=actor,
                    activity_data={"campaignKey": campaign.key},
                ).grant
                completion.reward_grant = grant
            completion.rewarded_at = now
            completion.reward_error = ""
            completion.save(
                update_fields=[
                    "reward_transfer",
                    "reward_grant",
                    "reward_sent_to_master",
                    "rewarded_at",
                    "reward_error",
                ]
            )
    except (PointsError, RewardsError) as exc:
        completion.reward_error = exc.message[:300]
        completion.save(update_fields=["reward_error"])


def campaign_reward_retry(*, completion: CampaignCompletion, actor: str) -> CampaignCompletion:
    """Give a completion's reward that was refused before (admin action). Idempotent."""
    with transaction.atomic():
        locked = (
            CampaignCompletion.objects.select_for_update(of=("self",))
            .select_related("campaign__reward_program", "campaign__reward_type", "member")
            .get(pk=completion.pk)
        )
        if locked.rewarded_at is None:
            _reward_give(
                completion=locked,
                campaign=locked.campaign,
                member=locked.member,
                now=timezone.now(),
                actor=actor,
            )
    return locked


def campaigns_refresh(*, now: dt.datetime | None = None) -> int:
    """Periodic job: move points campaigns for points earned outside events. Returns how many
    members' progress it looked at."""
    now = now or timezone.now()
    campaigns = Campaign.objects.filter(
        goal_type=GoalType.POINTS_EARNED,
        active=True,
        starts_at__lte=now,
        ends_at__gt=now - POINTS_REFRESH_GRACE,
    ).select_related("goal_program", "reward_program", "reward_type")
    looked_at = 0
    for campaign in campaigns.order_by("pk"):
        if campaign.opt_in_required:
            member_ids = CampaignProgress.objects.filter(
                campaign=campaign, opted_in_at__isnull=False, completed_at__isnull=True
            ).values_list("member_id", flat=True)
        else:
            done = CampaignProgress.objects.filter(
                campaign=campaign, completed_at__isnull=False
            ).values("member_id")
            member_ids = (
                Transfer.objects.filter(
                    program_id=campaign.goal_program_id,
                    created_at__gte=campaign.starts_at,
                    created_at__lt=campaign.ends_at,
                    kind__in=COUNTED_KINDS,
                    credit_account_id=F("member_account_id"),
                )
                .exclude(member_account__member_id__in=done)
                .values_list("member_account__member_id", flat=True)
                .distinct()
            )
        for member in Member.objects.filter(pk__in=list(member_ids)).iterator(chunk_size=500):
            campaign_points_refresh(campaign=campaign, member=member, now=now)
            looked_at += 1
    return looked_at
