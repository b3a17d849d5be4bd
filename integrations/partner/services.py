"""Writes of the partner Point API (seed 001): judge a request, process it, sweep stuck ones.

`partner_request_submit` judges a request when it arrives and stores it with its reply (202
accepted, or a 400 refusal that every retry of the requestId gets again). `partner_request_process`
applies an accepted request in one transaction: the rule's per-request cap, per-member limit and
total budget, the earn or burn in the ledger, and the callback (an outbox message, signed with the
client's webhook secret). The Celery task that calls it may run twice: the second run finds the
request processed and does nothing. `partner_requests_sweep` re-dispatches accepted requests
whose broker message was lost, so a request accepted while the broker or every worker was down
is processed once they are back.

Accepted requests are processed by drainers: each accepted request belongs to one of
PARTNER_DRAIN_SLOTS slots (its id modulo the count); accepting wakes the slot's drainer, a Celery
task that processes the slot's waiting requests in id order, up to DRAIN_TRANSACTION_SIZE per
transaction, until none wait. A slot has at most one drainer at a time (a short-lived key in the
cache, Redis in production), so a burst of requests costs one broker message and one task per
slot, not one per request. Without a broker (tasks run in-process) or with the cache down, each
request is dispatched as its own task, as the sweeper does.

Lock order in processing: partner request, rule usage, rule, member account (points.services).
A batch takes the accounts of its plain earns (no limit, no budget: the common case) together,
in account id order, and then those of its other requests in member order. Two batches can
still wait on each other (through a budgeted rule's row, or when both mix plain and limited
requests of the same members); PostgreSQL then aborts one, and the drainer processes that batch
one request per transaction.

Every accepted request runs the same few statements (judging, storing, the locked read, marking
it processed): they are written once below from the models' tables and columns (loyalty/sql.py),
not built by the ORM per request. The rare paths (limits, budget, sweeps) keep the ORM.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from oauth2_provider.models import get_application_model

from integrations.models import ApiClient
from integrations.outbox import OutboxSpec, outbox_enqueue_many
from integrations.partner.exceptions import (
    InsufficientBalance,
    InsufficientScope,
    PartnerApiError,
    RequestIdConflict,
    RuleForbidden,
    RuleInactive,
    RuleNotFound,
    RuleOutsidePeriod,
    RuleProgramIsFollower,
    UserInvalid,
)
from integrations.partner.models import PartnerAction, PartnerRequest, PartnerRequestStatus
from loyalty import sql
from loyalty.models import Member, Organization
from points import services as point_services
from points.exceptions import InsufficientPoints, PointsError
from points.models import LimitPeriod, PointAccount, PointProgram, PointRule, RuleKind, RuleUsage

logger = logging.getLogger(__name__)

CALLBACK_TOPIC = "partner.callback"
SCOPE_FOR_KIND = {RuleKind.EARN: "points:earn", RuleKind.BURN: "points:burn"}
ACTION_FOR_KIND = {RuleKind.EARN: PartnerAction.EARN, RuleKind.BURN: PartnerAction.BURN}

# The seed's errorMessage vocabulary ("reaching earning limit, redemption limit, insufficient
# balance, unexpected error"), in the spelling of its example.
LIMIT_MESSAGE = {
    RuleKind.EARN: "Reaching Earning Limit",
    RuleKind.BURN: "Reaching Redemption Limit",
}
INSUFFICIENT_BALANCE_MESSAGE = "insufficient balance"
RULE_INACTIVE_MESSAGE = "rule inactive"
UNEXPECTED_MESSAGE = "unexpected error"

# How long an accepted request may wait before the sweeper dispatches it again, and how long
# before it is given up (failed, with a callback) because it could not be processed.
DEFAULT_SWEEP_AFTER_SECONDS = 60
DEFAULT_GIVE_UP_AFTER_SECONDS = 24 * 60 * 60

LIFETIME_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    """The error shape of the platform's /api/v1 endpoints."""
    return {"code": code, "message": message, "details": details or {}}


@dataclass(frozen=True)
class PointRequestInput:
    """A validated POST /api/v1/points body."""

    user_id: str
    rule_id: str
    amount: int
    request_id: str
    callback_url: str

    @property
    def fingerprint(self) -> str:
        # The meaningful fields; a UUID ruleId compares in its canonical spelling.
        try:
            rule_id = str(uuid.UUID(self.rule_id))
        except ValueError:
            rule_id = self.rule_id
        meaningful = {
            "userId": self.user_id,
            "ruleId": rule_id,
            "amount": self.amount,
            "callbackUrl": self.callback_url,
        }
        return hashlib.sha256(json.dumps(meaningful, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class SubmitResult:
    request: PartnerRequest
    replayed: bool  # True when this is a repeat answered with the stored reply


# --- acceptance ---------------------------------------------------------------------------------

_REQUEST_COLUMNS = sql.Columns(PartnerRequest)
_RULE_COLUMNS = sql.Columns(PointRule)
_PROGRAM_COLUMNS = sql.Columns(PointProgram)
_MEMBER_COLUMNS = sql.Columns(Member)
_CLIENT_RULES = ApiClient.rules.through._meta
# Everything judging a request reads, in one statement: a stored request with its requestId;
# the rule, its program and whether the client may use it; the member; and, for a burn rule,
# the member's available points (balance - held, as points.selectors.balance_get; no account
# reads as 0). A part that is not there comes back as NULLs.
_JUDGE_SQL = (
    f"SELECT {_REQUEST_COLUMNS.select('req')}, {_RULE_COLUMNS.select('r')}, "  # noqa: S608
    f"{_PROGRAM_COLUMNS.select('p')}, {_MEMBER_COLUMNS.select('m')}, "
    f'EXISTS (SELECT 1 FROM "{_CLIENT_RULES.db_table}" cr '
    f'WHERE cr."{_CLIENT_RULES.get_field("apiclient").column}" = %s '
    f'AND cr."{_CLIENT_RULES.get_field("pointrule").column}" = r."id"), '
    'a."balance" - a."held" '
    "FROM (SELECT 1) AS one "
    f'LEFT JOIN "{PartnerRequest._meta.db_table}" req '
    'ON req."client_id" = %s AND req."request_id" = %s '
    f'LEFT JOIN "{PointRule._meta.db_table}" r ON r."id" = %s '
    f'LEFT JOIN "{PointProgram._meta.db_table}" p ON p."id" = r."program_id" '
    f'LEFT JOIN "{Member._meta.db_table}" m '
    'ON m."organization_id" = %s AND m."external_id" = %s '
    f'LEFT JOIN "{PointAccount._meta.db_table}" a '
    'ON r."kind" = %s AND a."program_id" = r."program_id" AND a."member_id" = m."id"'
)


@dataclass(frozen=True)
class _Judged:
    """What _JUDGE_SQL read for one request."""

    existing: PartnerRequest | None
    rule: PointRule | None  # with its program
    client_allowed: bool
    member: Member | None
    available: int  # the member's available points for a burn rule, else 0


def _judged_read(*, client: ApiClient, data: PointRequestInput) -> _Judged:
    try:
        rule_pk = uuid.UUID(data.rule_id)
    except ValueError:
        rule_pk = None  # not a rule id: no rule is found
    row = sql.fetch_one(
        _JUDGE_SQL,
        [
            client.pk,
            client.pk,
            data.request_id,
            sql.param(PointRule, "id", rule_pk),
            sql.param(Member, "organization", client.organization_id),
            data.user_id,
            RuleKind.BURN,
        ],
    )
    parts = (_REQUEST_COLUMNS, _RULE_COLUMNS, _PROGRAM_COLUMNS, _MEMBER_COLUMNS)
    existing, rule, program, member = sql.instances(row, *parts)
    offset = sum(len(part) for part in parts)
    if rule is not None:
        rule.program = program
    client_allowed, available = row[offset], row[offset + 1]
    return _Judged(
        existing=existing,
        rule=rule,
        client_allowed=bool(client_allowed),
        member=member,
        available=available or 0,
    )


def partner_request_submit(
    *,
    client: ApiClient,
    scopes: frozenset[str],
    data: PointRequestInput,
    now: dt.datetime | None = None,
) -> SubmitResult:
    """Judge a point request and store it with its reply; dispatch processing after commit.

    A repeat of a stored requestId with the same meaningful fields returns the stored request
    (replayed=True) and changes nothing; with different ones it raises RequestIdConflict.
    Raises RuleForbidden (rule of another organisation or not allowed to the client) and
    InsufficientScope (the token lacks points:earn / points:burn for the rule's kind); those are
    not stored. Stored refusals (rule not found, inactive, outside its period, invalid user,
    insufficient balance for a burn) come back as a request with status refused.

    The caller has authenticated the client, verified any request signature and validated the
    fields (types, lengths, callback URL safety).
    """
    now = now or timezone.now()
    judged = _judged_read(client=client, data=data)
    if judged.existing is not None:
        return _repeat(judged.existing, data)

    rule = _rule_for_client(client=client, scopes=scopes, judged=judged)
    member = None
    refusal: PartnerApiError | None = None
    try:
        if rule is None:
            raise RuleNotFound()
        member = _judge(rule=rule, judged=judged, data=data, now=now)
    except PartnerApiError as exc:
        if not exc.stored:
            raise
        refusal = exc

    fields = {
        "organization_id": client.organization_id,
        "client": client,
        "request_id": data.request_id,
        "user_id": data.user_id,
        "rule_ref": data.rule_id,
        "amount": data.amount,
        "callback_url": data.callback_url,
        "fingerprint": data.fingerprint,
        "member": member,
        "rule": rule,
        "action": ACTION_FOR_KIND[rule.kind] if rule is not None else "",
    }
    if refusal is None:
        fields.update(
            status=PartnerRequestStatus.ACCEPTED,
            reply_status=202,
            reply_body={"requestId": data.request_id, "status": "accepted"},
            dispatched_at=now,
        )
    else:
        fields.update(
            status=PartnerRequestStatus.REFUSED,
            failure_code=refusal.code,
            error_message=refusal.message,
            reply_status=refusal.status_code,
            reply_body=error_body(refusal.code, refusal.message, refusal.details),
            processed_at=now,
        )
    request = PartnerRequest(**fields)
    # One statement: the unique (client, requestId) constraint decides between this request and
    # a concurrent one with the same requestId (no savepoint needed).
    if not point_services.insert_unless_conflict(request):
        existing = PartnerRequest.objects.filter(client=client, request_id=data.request_id).first()
        if existing is None:
            raise IntegrityError(f"requestId {data.request_id!r} neither stored nor found")
        return _repeat(existing, data)
    if refusal is None:
        request_pk = request.pk
        transaction.on_commit(lambda: partner_request_wake(request_pk))
    return SubmitResult(request=request, replayed=False)


def _repeat(existing: PartnerRequest, data: PointRequestInput) -> SubmitResult:
    if existing.fingerprint != data.fingerprint:
        raise RequestIdConflict(requestId=data.request_id)
    return SubmitResult(request=existing, replayed=True)


def _rule_for_client(
    *, client: ApiClient, scopes: frozenset[str], judged: _Judged
) -> PointRule | None:
    """The rule, or None when it does not exist; raises when the client may not use it."""
    rule = judged.rule
    if rule is None:
        return None
    if rule.program.organization_id != client.organization_id:
        raise RuleForbidden("ruleId: the rule belongs to another organisation")
    if not judged.client_allowed:
        raise RuleForbidden()
    needed = SCOPE_FOR_KIND[rule.kind]
    if needed not in scopes:
        raise InsufficientScope(f"lacks sufficient scope permissions: needs {needed}")
    return rule


def _judge(
    *, rule: PointRule, judged: _Judged, data: PointRequestInput, now: dt.datetime
) -> Member:
    """Raise the stored refusal that applies to the request, or return its member."""
    if not rule.active:
        raise RuleInactive()
    if (rule.starts_at and now < rule.starts_at) or (rule.ends_at and now >= rule.ends_at):
        raise RuleOutsidePeriod()
    if rule.program.is_follower:
        raise RuleProgramIsFollower()
    # The partner API never creates members: an unknown userId is the seed's invalid user.
    member = judged.member
    if member is None or member.status != Member.Status.ACTIVE:
        raise UserInvalid()
    # The balance itself is not in the refusal: reading it needs points:read.
    if rule.kind == RuleKind.BURN and judged.available < capped_amount(
        rule=rule, amount=data.amount
    ):
        raise InsufficientBalance()
    return member


def capped_amount(*, rule: PointRule, amount: int) -> int:
    """The points a request moves: the amount asked, at most the rule's per-request cap."""
    if rule.max_points_per_request is not None:
        return min(amount, rule.max_points_per_request)
    return amount


def partner_request_dispatch(partner_request_id: int) -> None:
    """Hand processing to a worker. A broker outage is logged, not raised: the sweeper resends.

    In eager mode (no broker) the task runs here; its errors are logged the same way, and the
    request stays accepted for the sweeper.
    """
    from integrations.partner.tasks import partner_request_process_task

    try:
        partner_request_process_task.delay(partner_request_id)
    except Exception:
        logger.warning(
            "partner: could not dispatch request %s; the sweeper will",
            partner_request_id,
            exc_info=True,
        )


# --- drainers ----------------------------------------------------------------------------------

DEFAULT_DRAIN_SLOTS = 4
# A drainer holds its slot's key this long and renews it as it goes; a drainer that died frees
# its slot when the key runs out (its requests are then taken by the next wake or the sweeper).
DRAIN_LEASE_SECONDS = 15
# A drainer hands over to a fresh task after this long (time limits, fairness with other tasks).
DRAIN_TASK_SECONDS = 10
DRAIN_BATCH = 50
# How long a drainer with nothing to do looks for more before freeing its slot, and how often.
DEFAULT_DRAIN_LINGER_SECONDS = 0.05
DRAIN_LINGER_POLL_SECONDS = 0.01
# Requests a drainer processes in one transaction (one locked read, one batch of outcomes and
# callbacks, one commit); their members' accounts stay locked until it commits. A batch's fixed
# statements are shared by its requests: in-process, a drainer's CPU per earn under a backlog is
# about 30% lower at 25 than at 10, while the transaction stays a few tens of milliseconds.
DRAIN_TRANSACTION_SIZE = 25

# Accepted requests in id order, from the partial index of accepted requests (an index-only
# scan); the slot is picked out in Python. With the slot's modulo in the WHERE clause,
# PostgreSQL chose a bitmap scan, which never marks the index entries of requests processed
# since they were accepted as dead: each look then read every such request since the last
# vacuum (2 ms after a 25 s burst, several looks a second per drainer). An index scan marks
# them as it passes and skips them from then on. The status is written in, not bound, so that
# a prepared statement's generic plan can still use the partial index.
_WAITING_SQL = (
    f'SELECT "id" FROM "{PartnerRequest._meta.db_table}" '  # noqa: S608
    f'WHERE "status" = \'{PartnerRequestStatus.ACCEPTED.value}\' AND "id" > %s '
    'ORDER BY "id" LIMIT %s'
)
_WAITING_PAGE_MAX = 1000


def _waiting_in_slot(*, slots: int, slot: int, skipped: list[int], limit: int) -> list[int]:
    """The first `limit` accepted requests of the slot, in id order, but those in `skipped`."""
    page = min(_WAITING_PAGE_MAX, (limit + len(skipped)) * slots)
    found, after = [], 0
    while True:
        ids = [row[0] for row in sql.fetch_all(_WAITING_SQL, [after, page])]
        for partner_request_id in ids:
            if partner_request_id % slots == slot and partner_request_id not in skipped:
                found.append(partner_request_id)
                if len(found) == limit:
                    return found
        if len(ids) < page:
            return found
        after = ids[-1]


def drain_slots() -> int:
    return max(1, int(getattr(settings, "PARTNER_DRAIN_SLOTS", DEFAULT_DRAIN_SLOTS)))


def drain_key(slot: int) -> str:
    return f"partner-drain:{slot}"


def _take_slot(slot: int) -> bool:
    """Hold the slot's key (for DRAIN_LEASE_SECONDS) unless another drainer holds it."""
    return cache.add(drain_key(slot), "1", timeout=DRAIN_LEASE_SECONDS)


def partner_request_wake(partner_request_id: int) -> None:
    """After an accept commits: make sure a drainer of the request's slot will process it.

    Publishes a drain task only when the slot has no drainer; a running one sees the request
    (it committed before this look, and a drainer looks again after freeing its slot).
    """
    from integrations.partner.tasks import partner_requests_drain_task

    if partner_requests_drain_task.app.conf.task_always_eager:
        partner_request_dispatch(partner_request_id)
        return
    slot = partner_request_id % drain_slots()
    try:
        woken = _take_slot(slot)
    except Exception:
        logger.warning("partner: drain slots unavailable (cache down); dispatching alone")
        partner_request_dispatch(partner_request_id)
        return
    if woken:
        _publish_drain(slot)


def _publish_drain(slot: int) -> None:
    from integrations.partner.tasks import partner_requests_drain_task

    try:
        partner_requests_drain_task.delay(slot)
    except Exception:
        # The broker is down: free the slot for the next wake; the sweeper resends the rest.
        logger.warning("partner: could not publish the drain of slot %s", slot, exc_info=True)
        with contextlib.suppress(Exception):
            cache.delete(drain_key(slot))


def partner_requests_wake_all() -> int:
    """Free every slot and wake those with requests waiting (a worker starting: slots held by
    drainers that died with their worker need not run out first). Returns the slots woken."""
    slots, woken = drain_slots(), 0
    for slot in range(slots):
        cache.delete(drain_key(slot))
        if _waiting_in_slot(slots=slots, slot=slot, skipped=[], limit=1) and _take_slot(slot):
            _publish_drain(slot)
            woken += 1
    return woken


@dataclass(frozen=True)
class DrainResult:
    processed: int
    skipped: int  # requests whose processing raised; left accepted for the sweeper
    handed_over: bool  # the time budget ran out and a fresh task goes on


def drain_linger_seconds() -> float:
    return float(getattr(settings, "PARTNER_DRAIN_LINGER_SECONDS", DEFAULT_DRAIN_LINGER_SECONDS))


def partner_requests_drain(*, slot: int, seconds: float = DRAIN_TASK_SECONDS) -> DrainResult:
    """Process the slot's accepted requests in id order until none wait (or `seconds` pass).

    When none wait, the drainer looks again a few times over PARTNER_DRAIN_LINGER_SECONDS
    before it frees its slot: under steady traffic the next requests arrive meanwhile, and are
    taken without a new task (publishing one costs the accepting web process more than the
    accept's own checks).
    """
    slots, key = drain_slots(), drain_key(slot)
    deadline = time.monotonic() + seconds
    linger_until = None
    processed, skipped = 0, []
    while True:
        waiting = _waiting_in_slot(slots=slots, slot=slot, skipped=skipped, limit=DRAIN_BATCH)
        if not waiting:
            now = time.monotonic()
            if linger_until is None:
                linger_until = min(now + drain_linger_seconds(), deadline)
            if now + DRAIN_LINGER_POLL_SECONDS <= linger_until:
                time.sleep(DRAIN_LINGER_POLL_SECONDS)
                continue
            # Free the slot, then look once more: a request whose wake found the slot taken
            # committed before that, so it is seen now, or its wake came after the free.
            cache.delete(key)
            if not _waiting_in_slot(slots=slots, slot=slot, skipped=skipped, limit=1):
                return DrainResult(processed, len(skipped), handed_over=False)
            if not _take_slot(slot):
                return DrainResult(processed, len(skipped), handed_over=False)
            continue
        linger_until = None
        for start in range(0, len(waiting), DRAIN_TRANSACTION_SIZE):
            chunk = waiting[start : start + DRAIN_TRANSACTION_SIZE]
            try:
                processed += partner_requests_process_batch(partner_request_ids=chunk)
            except Exception:
                logger.warning("partner: a batch failed; processing it one by one", exc_info=True)
                for partner_request_id in chunk:
                    try:
                        partner_request_process(partner_request_id=partner_request_id)
                        processed += 1
                    except Exception:
                        # One request must not hold up its slot: the sweeper takes it up.
                        logger.exception(
                            "partner: request %s could not be processed", partner_request_id
                        )
                        skipped.append(partner_request_id)
            if time.monotonic() >= deadline:
                cache.set(key, "1", timeout=DRAIN_LEASE_SECONDS)
                _publish_drain(slot)
                return DrainResult(processed, len(skipped), handed_over=True)
        cache.touch(key, DRAIN_LEASE_SECONDS)


# --- processing ---------------------------------------------------------------------------------


class _ProcessingFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def period_start(*, period: str, at: dt.datetime) -> dt.datetime:
    """Start (UTC) of the per-member limit period that contains `at`."""
    day = at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == LimitPeriod.DAY:
        return day
    if period == LimitPeriod.WEEK:
        return day - dt.timedelta(days=day.weekday())
    if period == LimitPeriod.MONTH:
        return day.replace(day=1)
    if period == LimitPeriod.YEAR:
        return day.replace(month=1, day=1)
    return LIFETIME_START


_ORGANIZATION_COLUMNS = sql.Columns(Organization)
_CLIENT_COLUMNS = sql.Columns(ApiClient)
_APPLICATION_COLUMNS = sql.Columns(get_application_model(), ["id", "client_id"])
# The request, locked (only its own row), with what processing it uses: its organisation, its
# client (and the client's client_id), its rule with the program, its member.
_LOCKED_REQUESTS_FROM = (
    f"SELECT {_REQUEST_COLUMNS.select('req')}, {_ORGANIZATION_COLUMNS.select('o')}, "  # noqa: S608
    f"{_CLIENT_COLUMNS.select('c')}, {_APPLICATION_COLUMNS.select('app')}, "
    f"{_RULE_COLUMNS.select('r')}, {_PROGRAM_COLUMNS.select('p')}, "
    f"{_MEMBER_COLUMNS.select('m')} "
    f'FROM "{PartnerRequest._meta.db_table}" req '
    f'JOIN "{Organization._meta.db_table}" o ON o."id" = req."organization_id" '
    f'JOIN "{ApiClient._meta.db_table}" c ON c."id" = req."client_id" '
    f'JOIN "{get_application_model()._meta.db_table}" app ON app."id" = c."application_id" '
    f'LEFT JOIN "{PointRule._meta.db_table}" r ON r."id" = req."rule_id" '
    f'LEFT JOIN "{PointProgram._meta.db_table}" p ON p."id" = r."program_id" '
    f'LEFT JOIN "{Member._meta.db_table}" m ON m."id" = req."member_id" '
)


@functools.cache
def _locked_requests_sql(count: int) -> str:
    """`count` requests, locked (only their own rows), with what processing uses; in member
    order, the order in which the accounts of requests settled one by one are then locked."""
    return (
        f'{_LOCKED_REQUESTS_FROM}WHERE req."id" IN ({", ".join(["%s"] * count)}) '
        'ORDER BY req."member_id", req."id"' + sql.for_update(of="req")
    )


_FINISH_SQL = (
    f'UPDATE "{PartnerRequest._meta.db_table}" SET "status" = %s, "point" = %s, '  # noqa: S608
    '"transfer_id" = %s, "failure_code" = %s, "error_message" = %s, "processed_at" = %s '
    'WHERE "id" = %s'
)


def _locked_request(partner_request_id: int) -> PartnerRequest:
    """The request, locked FOR UPDATE, with its organisation, client, rule and member loaded."""
    row = sql.fetch_one(_locked_requests_sql(1), [partner_request_id])
    if row is None:
        raise PartnerRequest.DoesNotExist(f"partner request {partner_request_id} does not exist")
    return _request_from_row(row)


def _request_from_row(row) -> PartnerRequest:
    request, organization, client, application, rule, program, member = sql.instances(
        row,
        _REQUEST_COLUMNS,
        _ORGANIZATION_COLUMNS,
        _CLIENT_COLUMNS,
        _APPLICATION_COLUMNS,
        _RULE_COLUMNS,
        _PROGRAM_COLUMNS,
        _MEMBER_COLUMNS,
    )
    client.application = application
    request.organization, request.client = organization, client
    if rule is not None:
        rule.program = program
        request.rule = rule
    if member is not None:
        request.member = member
    return request


def partner_request_process(
    *, partner_request_id: int, now: dt.datetime | None = None
) -> PartnerRequest:
    """Apply an accepted request and write its callback, all in one transaction.

    Returns the request, succeeded or failed; a request that is not accepted any more (processed
    by an earlier run of the task) is returned unchanged. The rule is applied as it stands now
    (an operator's deactivation stops requests still waiting), but the per-member limit is
    counted in the period in which the request was accepted. A request that would cross the
    member's limit or the rule's budget fails whole; only the per-request cap trims the amount.
    """
    now = now or timezone.now()
    with transaction.atomic():
        request = _locked_request(partner_request_id)
        if request.status != PartnerRequestStatus.ACCEPTED:
            return request
        _settle(request, now=now)
        _write_outcomes([request], now=now)
    return request


def partner_requests_process_batch(
    *, partner_request_ids: list[int], now: dt.datetime | None = None
) -> int:
    """partner_request_process for several requests in one transaction: one locked read, one
    batch of outcomes and callbacks, one commit. Returns how many were processed (those still
    accepted). Raises whatever one of them raises, and then none is processed: the caller goes
    on one by one."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = sql.fetch_all(_locked_requests_sql(len(partner_request_ids)), partner_request_ids)
        requests = [
            request
            for request in map(_request_from_row, rows)
            if request.status == PartnerRequestStatus.ACCEPTED
        ]
        plain, others = [], []
        for request in requests:
            (plain if _is_plain_earn(request.rule) else others).append(request)
        _settle_plain_earns(plain, now=now)
        for request in others:
            _settle(request, now=now)
        _write_outcomes(requests, now=now)
    return len(requests)


def _settle(request: PartnerRequest, *, now: dt.datetime) -> None:
    """Apply the locked, accepted request in the ledger and set its outcome on it (written by
    _write_outcomes in the same transaction)."""
    rule, member = request.rule, request.member
    amount = capped_amount(rule=rule, amount=request.amount)
    try:
        # One savepoint per request: a failure undoes its usage, budget and ledger writes and
        # leaves the batch's other requests alone (the ledger takes no savepoint of its own).
        with transaction.atomic():
            transfer = _apply(request=request, rule=rule, member=member, amount=amount)
    except _ProcessingFailed as failure:
        _set_outcome(request, now=now, failure_code=failure.code, error_message=failure.message)
    except InsufficientPoints:
        _set_outcome(
            request,
            now=now,
            failure_code="insufficient_balance",
            error_message=INSUFFICIENT_BALANCE_MESSAGE,
        )
    except PointsError as exc:
        logger.warning("partner: request %s failed in the ledger: %s", request.pk, exc)
        _set_outcome(request, now=now, failure_code=exc.code, error_message=UNEXPECTED_MESSAGE)
    else:
        _set_outcome(request, now=now, point=amount, transfer_id=transfer.pk)


def _is_plain_earn(rule: PointRule) -> bool:
    """An active earn rule without a per-member limit or a budget: nothing can refuse its
    requests once accepted (but a ledger key already used, which is a bug or a repeat)."""
    return (
        rule.active
        and rule.kind == RuleKind.EARN
        and rule.member_limit is None
        and rule.total_budget is None
    )


def _settle_plain_earns(requests: list[PartnerRequest], *, now: dt.datetime) -> None:
    """_settle for a batch's plain earns, all in the ledger at once (points.services.earn_many:
    a few statements for the batch instead of a savepoint and five statements each). A refusal
    (a ledger key already used) raises, and the batch is processed again one request at a
    time, where each request gets its own outcome."""
    if not requests:
        return
    amounts = [capped_amount(rule=request.rule, amount=request.amount) for request in requests]
    written = point_services.earn_many(
        items=[
            point_services.EarnItem(
                program=request.rule.program,
                member=request.member,
                amount=amount,
                **_ledger_fields(request),
            )
            for request, amount in zip(requests, amounts, strict=True)
        ],
        now=now,
        savepoint=False,  # a refusal fails the whole batch (see above)
    )
    for request, amount, (_lot_id, transfer_id) in zip(requests, amounts, written, strict=True):
        _set_outcome(request, now=now, point=amount, transfer_id=transfer_id)


def _ledger_fields(request: PartnerRequest) -> dict:
    """How a partner request is recorded in the ledger (transfer and lot)."""
    return {
        "source": "Partner",
        "description": request.rule.name,
        "reference": request.request_id,
        "actor": f"client:{request.client_id}",
        "idempotency_key": f"partner:{request.client_id}:{request.request_id}",
    }


def _write_outcomes(requests: list[PartnerRequest], *, now: dt.datetime) -> None:
    """Write the settled requests' outcomes and their callbacks. Processing runs in a worker:
    it makes each callback's first delivery attempt itself, after commit."""
    if not requests:
        return
    sql.execute_many(_FINISH_SQL, [_finish_row(request) for request in requests])
    outbox_enqueue_many(
        [_callback_spec(request=request, client=request.client, now=now) for request in requests],
        deliver_in_process=True,
    )


# Conditional UPDATE: concurrent requests never take a rule's budget past total_budget.
_TAKE_BUDGET_SQL = (
    f'UPDATE "{PointRule._meta.db_table}" SET "total_used" = "total_used" + %s '  # noqa: S608
    'WHERE "id" = %s AND "total_used" + %s <= "total_budget"'
)
# Count the amount in the member's usage of the rule for the period, in one statement: the first
# use of a period inserts the row; later ones add to it only while the sum stays within the
# limit (the row's lock serialises concurrent adders, and each re-checks). A row comes back when
# the amount was counted.
_TAKE_ALLOWANCE_SQL = (
    f'INSERT INTO "{RuleUsage._meta.db_table}" AS u '  # noqa: S608
    '("rule_id", "member_id", "period_start", "used") VALUES (%s, %s, %s, %s) '
    'ON CONFLICT ("rule_id", "member_id", "period_start") '
    'DO UPDATE SET "used" = u."used" + EXCLUDED."used" '
    'WHERE u."used" + EXCLUDED."used" <= %s '
    'RETURNING "id"'
)


def _apply(*, request: PartnerRequest, rule: PointRule, member: Member, amount: int):
    if not rule.active:
        raise _ProcessingFailed("rule_inactive", RULE_INACTIVE_MESSAGE)
    if not _take_member_allowance(rule=rule, member=member, amount=amount, at=request.created_at):
        raise _ProcessingFailed("member_limit_reached", LIMIT_MESSAGE[rule.kind])
    if rule.total_budget is not None:
        taken = sql.execute(_TAKE_BUDGET_SQL, [amount, sql.param(PointRule, "id", rule.pk), amount])
        if not taken:
            raise _ProcessingFailed("budget_exhausted", LIMIT_MESSAGE[rule.kind])
    common = {
        "program": rule.program,
        "member": member,
        "amount": amount,
        **_ledger_fields(request),
        "savepoint": False,  # _settle's savepoint covers the ledger's writes too
    }
    if rule.kind == RuleKind.EARN:
        return point_services.earn(**common).transfer
    return point_services.burn(**common)


def _take_member_allowance(*, rule: PointRule, member: Member, amount: int, at) -> bool:
    """Count `amount` in the member's usage of the rule for the period; False if over limit."""
    if rule.member_limit is None:
        return True
    if amount > rule.member_limit:
        return False
    start = period_start(period=rule.member_limit_period, at=at)
    params = [
        sql.param(RuleUsage, "rule", rule.pk),
        sql.param(RuleUsage, "member", member.pk),
        sql.param(RuleUsage, "period_start", start),
        amount,
        rule.member_limit,
    ]
    return sql.fetch_one(_TAKE_ALLOWANCE_SQL, params) is not None


def _set_outcome(
    request: PartnerRequest,
    *,
    now: dt.datetime,
    point: int | None = None,
    transfer_id: int | None = None,
    failure_code: str = "",
    error_message: str = "",
) -> None:
    request.status = (
        PartnerRequestStatus.SUCCEEDED if transfer_id is not None else PartnerRequestStatus.FAILED
    )
    request.point = point
    request.transfer_id = transfer_id
    request.failure_code = failure_code
    request.error_message = error_message
    request.processed_at = now


def _finish_row(request: PartnerRequest) -> list:
    """_FINISH_SQL's parameters for a request whose outcome is set."""
    return [
        request.status,
        request.point,
        request.transfer_id,
        request.failure_code,
        request.error_message,
        sql.param(PartnerRequest, "processed_at", request.processed_at),
        request.pk,
    ]


def callback_timestamp(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a Z, as the seed's callbacks ("2024-04-12T07:41:26.633135Z")."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def callback_payload(*, request: PartnerRequest, client_id: str, now: dt.datetime) -> dict:
    """The seed's callback body, key for key and in its order."""
    body: dict = {
        "action": request.action,
        "clientId": client_id,
        "userId": request.user_id,
        "requestId": request.request_id,
        "ruleId": request.rule_ref,
    }
    if request.status == PartnerRequestStatus.SUCCEEDED:
        body["point"] = request.point
        body["transactionId"] = str(request.transfer_id)
        body["timestamp"] = callback_timestamp(now)
        body["status"] = "success"
    else:
        body["timestamp"] = callback_timestamp(now)
        body["status"] = "failed"
        body["errorMessage"] = request.error_message
    return body


def _callback_spec(*, request: PartnerRequest, client: ApiClient, now: dt.datetime) -> OutboxSpec:
    return OutboxSpec(
        topic=CALLBACK_TOPIC,
        url=request.callback_url,
        payload=callback_payload(request=request, client_id=client.client_id, now=now),
        organization=request.organization,
        signing_secret=client.webhook_secret,
    )


# --- recovery -----------------------------------------------------------------------------------


def partner_request_give_up(
    *, partner_request_id: int, now: dt.datetime | None = None
) -> PartnerRequest:
    """Fail a request that could not be processed in time, and tell the partner (callback)."""
    now = now or timezone.now()
    with transaction.atomic():
        request = _locked_request(partner_request_id)
        if request.status != PartnerRequestStatus.ACCEPTED:
            return request
        _set_outcome(
            request, now=now, failure_code="not_processed", error_message=UNEXPECTED_MESSAGE
        )
        sql.execute(_FINISH_SQL, _finish_row(request))
        outbox_enqueue_many([_callback_spec(request=request, client=request.client, now=now)])
    return request


@dataclass(frozen=True)
class SweepResult:
    dispatched: int
    given_up: int


def partner_requests_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> SweepResult:
    """Re-dispatch accepted requests whose dispatch is older than PARTNER_SWEEP_AFTER_SECONDS
    (their broker message was lost or the broker was down), and give up those accepted more than
    PARTNER_GIVE_UP_AFTER_SECONDS ago."""
    now = now or timezone.now()
    sweep_after = getattr(settings, "PARTNER_SWEEP_AFTER_SECONDS", DEFAULT_SWEEP_AFTER_SECONDS)
    give_up_after = getattr(
        settings, "PARTNER_GIVE_UP_AFTER_SECONDS", DEFAULT_GIVE_UP_AFTER_SECONDS
    )
    waiting = PartnerRequest.objects.filter(status=PartnerRequestStatus.ACCEPTED)
    expired = list(
        waiting.filter(created_at__lte=now - dt.timedelta(seconds=give_up_after))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in expired:
        partner_request_give_up(partner_request_id=pk, now=now)
    stale = list(
        waiting.filter(dispatched_at__lte=now - dt.timedelta(seconds=sweep_after))
        .order_by("dispatched_at")
        .values_list("pk", flat=True)[:limit]
    )
    # Mark them dispatched first, so the next sweep waits for this dispatch before another.
    PartnerRequest.objects.filter(pk__in=stale, status=PartnerRequestStatus.ACCEPTED).update(
        dispatched_at=now
    )
    for pk in stale:
        partner_request_dispatch(pk)
    return SweepResult(dispatched=len(stale), given_up=len(expired))
