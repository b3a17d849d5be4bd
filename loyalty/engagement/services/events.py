"""Events: a client reports that a member did something; what is bound to its name happens.

An event triggers, in one database transaction with the stored event and its reply:

* earning rules (points.PointRule with `event_name`): `event_points` times the member's tier
  multiplier, capped per request, within the rule's period, per-member limit and budget. In a
  master program the points are earned here; in a follower program they go to the point master
  as an "Automation" adjustment (integrations.follower.routing) and come back with its sync.
* operations (rewards.Operation bound by EventOperation): the operation's reward is granted.
* campaign progress: event-count campaigns of that name, and points campaigns of the programs
  in which the event earned points.

Idempotency: the Idempotency-Key is scoped to the client. The event row is inserted first, so a
concurrent repeat waits on the unique index and then finds it; a repeat with the same userId,
name, properties and occurredAt gets the stored reply and changes nothing, anything else with
the same key is IdempotencyKeyReused (409).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from loyalty.engagement.exceptions import (
    CustomerBlocked,
    CustomerNotFound,
    IdempotencyKeyReused,
    InvalidInput,
    UnknownCustomer,
)
from loyalty.engagement.models import (
    ActivityKind,
    Campaign,
    Event,
    EventOperation,
    GoalType,
)
from loyalty.engagement.selectors import customer_get, earn_multiplier_for
from loyalty.engagement.services.activity import activity_record
from loyalty.engagement.services.campaigns import campaign_event_count, campaign_points_refresh
from loyalty.models import Member
from points import services as point_services
from points.exceptions import PointsError
from points.models import PointRule, ProgramMode, RuleKind, RuleUsage

EVENT_SOURCE = "Event"
# A device clock may run a little fast; an event further in the future than this is refused.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
PROPERTIES_MAX_BYTES = 16 * 1024


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class EventInput:
    user_id: str
    name: str
    properties: dict
    occurred_at: dt.datetime | None


@dataclass(frozen=True)
class EventResult:
    event: Event
    replayed: bool = False


def event_fingerprint(data: EventInput) -> str:
    """What makes two requests the same event: every field the client sent."""
    meaningful = {
        "userId": data.user_id,
        "name": data.name,
        "properties": data.properties,
        "occurredAt": iso(data.occurred_at) if data.occurred_at else None,
    }
    return hashlib.sha256(
        json.dumps(meaningful, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _replay(existing: Event, fingerprint: str) -> EventResult:
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReused(field="Idempotency-Key")
    return EventResult(event=existing, replayed=True)


def event_record(
    *, client, data: EventInput, idempotency_key: str, now: dt.datetime | None = None
) -> EventResult:
    """Store the event of the client's organisation and apply what is bound to its name.

    The caller has authenticated `client` (an integrations.ApiClient) and checked its scope.
    Returns the event (its `reply` is the API's answer) and whether it was a repeat. Raises
    InvalidInput (occurredAt in the future, properties too large), UnknownCustomer, CustomerBlocked,
    IdempotencyKeyReused. Refusals of single rules or operations (limits, empty inventory) are
    not errors: the reply lists them as skipped with the reason.
    """
    now = now or timezone.now()
    if data.occurred_at is not None and data.occurred_at > now + FUTURE_TOLERANCE:
        raise InvalidInput("occurredAt: must not be in the future", field="occurredAt")
    if len(json.dumps(data.properties)) > PROPERTIES_MAX_BYTES:
        raise InvalidInput(
            f"properties: must be at most {PROPERTIES_MAX_BYTES} bytes of JSON",
            field="properties",
        )
    fingerprint = event_fingerprint(data)
    existing = Event.objects.filter(client=client, idempotency_key=idempotency_key).first()
    if existing is not None:
        return _replay(existing, fingerprint)
    try:
        member = customer_get(organization_id=client.organization_id, identifier=data.user_id)
    except CustomerNotFound:
        raise UnknownCustomer(field="userId") from None
    if member.status != Member.Status.ACTIVE:
        raise CustomerBlocked("userId: the customer is blocked", field="userId")
    with transaction.atomic():
        try:
            with transaction.atomic():
                event = Event.objects.create(
                    organization_id=client.organization_id,
                    member=member,
                    client=client,
                    name=data.name,
                    properties=data.properties,
                    occurred_at=data.occurred_at or now,
                    received_at=now,
                    idempotency_key=idempotency_key,
                    fingerprint=fingerprint,
                )
        except IntegrityError:
            # A concurrent request with the same key committed first.
            existing = Event.objects.get(client=client, idempotency_key=idempotency_key)
            return _replay(existing, fingerprint)
        event.reply = _apply(event=event, member=member, actor=f"client:{client.pk}", now=now)
        event.save(update_fields=["reply"])
    return EventResult(event=event)


class _Skipped(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _apply(*, event: Event, member: Member, actor: str, now: dt.datetime) -> dict:
    points = [
        _apply_rule(event=event, member=member, rule=rule, actor=actor, now=now)
        for rule in PointRule.objects.filter(
            program__organization_id=event.organization_id,
            kind=RuleKind.EARN,
            active=True,
            event_name=event.name,
            event_points__isnull=False,
        )
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .select_related("program")
        .order_by("program__key", "name", "pk")
    ]
    rewards = [
        _apply_operation(event=event, member=member, binding=binding, actor=actor)
        for binding in EventOperation.objects.filter(
            organization_id=event.organization_id, event_name=event.name, active=True
        )
        .select_related("operation__reward_type")
        .order_by("pk")
    ]
    earned_in = {item["programId"] for item in points if item.pop("earnedHere")}
    for item in points:
        item.pop("programId")
    campaigns = _apply_campaigns(
        event=event, member=member, earned_program_ids=earned_in, actor=actor, now=now
    )
    total = sum(item["points"] for item in points)
    activity_record(
        member=member,
        kind=ActivityKind.EVENT,
        summary=f"Event {event.name}" + (f": {total} points" if total else ""),
        data={"eventId": str(event.pk), "name": event.name, "points": total},
        actor=actor,
    )
    return {
        "id": str(event.pk),
        "userId": member.external_id,
        "customerId": str(member.pk),
        "name": event.name,
        "occurredAt": iso(event.occurred_at),
        "receivedAt": iso(event.received_at),
        "points": points,
        "rewards": rewards,
        "campaigns": campaigns,
    }


def event_points_for(*, base: int, multiplier: Decimal, cap: int | None) -> int:
    """Points an event earns: base x tier multiplier, rounded down, at most the rule's cap."""
    amount = int((Decimal(base) * multiplier).to_integral_value(rounding=ROUND_FLOOR))
    return min(amount, cap) if cap is not None else amount


def _take_member_allowance(*, rule: PointRule, member: Member, amount: int, at) -> bool:
    """Count `amount` in the member's usage of the rule for the period; False if over the limit.

    The same bookkeeping as the partner API (points.RuleUsage), so a rule's per-member limit
    covers the points earned through both.
    """
    from integrations.partner.services import period_start

    if rule.member_limit is None:
        return True
    if amount > rule.member_limit:
        return False
    lookup = {
        "rule": rule,
        "member": member,
        "period_start": period_start(period=rule.member_limit_period, at=at),
    }
    if not RuleUsage.objects.filter(**lookup).exists():
        try:
            with transaction.atomic():
                RuleUsage.objects.create(**lookup)
        except IntegrityError:
            pass  # created concurrently; the conditional update below decides
    return bool(
        RuleUsage.objects.filter(**lookup, used__lte=rule.member_limit - amount).update(
            used=F("used") + amount
        )
    )


def _apply_rule(*, event: Event, member: Member, rule: PointRule, actor: str, now) -> dict:
    from integrations.follower.routing import points_adjust

    program = rule.program
    multiplier = earn_multiplier_for(program=program, member=member)
    amount = event_points_for(
        base=rule.event_points, multiplier=multiplier, cap=rule.max_points_per_request
    )
    item = {
        "programId": program.pk,
        "earnedHere": False,
        "programKey": program.key,
        "ruleId": str(rule.pk),
        "points": 0,
        "multiplier": str(multiplier.normalize()),
        "status": "skipped",
        "reason": None,
        "transferId": None,
    }
    description = f"{event.name}: {rule.name}"
    try:
        if amount <= 0:
            raise _Skipped("no_points")
        # A savepoint: a skipped rule takes back the usage and budget it counted.
        with transaction.atomic():
            if not _take_member_allowance(rule=rule, member=member, amount=amount, at=now):
                raise _Skipped("member_limit_reached")
            if rule.total_budget is not None and not PointRule.objects.filter(
                pk=rule.pk, total_used__lte=F("total_budget") - amount
            ).update(total_used=F("total_used") + amount):
                raise _Skipped("budget_exhausted")
            if program.mode == ProgramMode.MASTER:
                result = point_services.earn(
                    program=program,
                    member=member,
                    amount=amount,
                    source=EVENT_SOURCE,
                    description=description,
                    reference=str(event.pk),
                    actor=actor,
                    idempotency_key=f"event:{event.pk}:{rule.pk}",
                )
                item.update(
                    status="earned",
                    transferId=result.transfer.pk if result.transfer else None,
                    earnedHere=True,
                )
            else:
                points_adjust(
                    program=program,
                    member=member,
                    amount=amount,
                    reason=description,
                    automation={
                        "Reason": f"Event {event.name}",
                        "ProcessId": str(event.pk),
                        "WorkflowId": str(rule.pk),
                        "WorkflowName": rule.name,
                    },
                )
                item["status"] = "sent_to_master"
            item["points"] = amount
    except _Skipped as skipped:
        item["reason"] = skipped.reason
    except PointsError as exc:
        item["reason"] = exc.code
    return item


def _apply_operation(*, event: Event, member: Member, binding: EventOperation, actor) -> dict:
    from rewards.exceptions import RewardsError
    from rewards.models import GrantSource
    from rewards.services import reward_grant

    operation = binding.operation
    item = {
        "operation": operation.code,
        "rewardType": operation.reward_type.reward_type,
        "amount": 0,
        "status": "skipped",
        "reason": None,
        "grantId": None,
    }
    try:
        with transaction.atomic():
            grant = reward_grant(
                member=member,
                reward_type=operation.reward_type,
                amount=operation.amount,
                source=GrantSource.OPERATION,
                code=operation.code,
                building_block=operation.building_block,
                description=f"Event {event.name}",
                operation=operation,
                actor=actor,
                activity_data={"eventId": str(event.pk)},
            ).grant
        item.update(amount=grant.amount, status="granted", grantId=str(grant.pk))
    except RewardsError as exc:
        item["reason"] = exc.code
    return item


def _apply_campaigns(
    *, event: Event, member: Member, earned_program_ids: set, actor: str, now
) -> list[dict]:
    goal = Q(goal_type=GoalType.EVENT_COUNT, goal_event_name=event.name)
    if earned_program_ids:
        goal |= Q(goal_type=GoalType.POINTS_EARNED, goal_program_id__in=earned_program_ids)
    campaigns = Campaign.objects.filter(
        organization_id=event.organization_id, active=True, starts_at__lte=now, ends_at__gt=now
    ).filter(goal)
    results = []
    for campaign in campaigns.select_related(
        "goal_program", "reward_program", "reward_type"
    ).order_by("ends_at", "pk"):
        if campaign.goal_type == GoalType.EVENT_COUNT:
            outcome = campaign_event_count(
                campaign=campaign,
                member=member,
                occurred_at=event.occurred_at,
                actor=actor,
                now=now,
            )
        else:
            outcome = campaign_points_refresh(
                campaign=campaign, member=member, now=now, actor=actor
            )
        if outcome is None:
            continue
        results.append(
            {
                "campaignId": str(campaign.pk),
                "key": campaign.key,
                "progress": outcome.progress,
                "target": campaign.goal_target,
                "completed": outcome.completed,
                "completedNow": outcome.completed_now,
            }
        )
    return results
