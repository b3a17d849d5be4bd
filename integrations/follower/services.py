"""Writes of the point-follower mode (seed 002): balance jobs, transaction batches, adjustments.

* Balances (balance-only mode): `balance_job_create` stores the validated items as a queued job
  and publishes it after commit; `balance_job_process` (the seed's BalanceAccountToAmountJob, run
  by a Celery worker) sets each account to the master's amount with `points.services.set_balance`;
  `balance_jobs_sweep` re-publishes jobs whose broker message was lost or whose worker died.
* Transactions (all-transaction mode): `transactions_apply` applies up to 1000 items in one
  database transaction with `points.services.master_transactions_apply_bulk` (each item as
  `master_transaction_apply` would apply it, in a few statements for the whole batch), idempotent
  on an optional Idempotency-Key. Each transfer and lot records `batch:<batch id>:<index>`.
* Adjustments: `adjustment_send_to_master` turns an adjustment in a follower program into an
  encrypted webhook to the master, written to the outbox (see integrations/follower/routing.py
  for the mode routing and the master's side of the decryption).

The master is the truth in a follower program: nothing here writes ledger rows itself; every
movement goes through points.services.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.follower.exceptions import (
    IdempotencyKeyReused,
    InvalidItems,
    NewPointSystemNotActive,
)
from integrations.follower.models import (
    BALANCE_JOB_TRANSITIONS,
    AdjustmentSource,
    BalanceJob,
    BalanceJobStatus,
    MasterAdjustment,
    TransactionBatch,
)
from integrations.follower_crypto import encrypt_payload, new_follower_key
from integrations.models import ApiClient
from integrations.outbox import outbox_enqueue
from loyalty import sql
from loyalty.models import Member, Organization
from points import services as point_services
from points.exceptions import InvalidAmount, ProgramNotFollower
from points.models import PointProgram, ProgramMode

logger = logging.getLogger(__name__)

MAX_ITEMS_PER_REQUEST = 1000  # seed 002: "up to a maximum of 1000" (balances too, see api.py)
ADJUSTMENT_EVENT_TYPE = "loyalty.addPoints"
ADJUSTMENT_TOPIC = "follower.adjustment"


def _job_lease_seconds() -> int:
    # A worker that took a job longer ago than this is presumed dead; it must outlast the task's
    # hard time limit, or a live worker's job would be taken over.
    hard_limit = getattr(settings, "CELERY_TASK_TIME_LIMIT", 180)
    return max(getattr(settings, "FOLLOWER_BALANCE_JOB_LEASE_SECONDS", 600), 2 * hard_limit)


def _redispatch_seconds() -> int:
    return getattr(settings, "FOLLOWER_BALANCE_JOB_REDISPATCH_SECONDS", 120)


# --- members ---------------------------------------------------------------------------------


def members_resolve(
    *, organization: Organization, external_ids: Iterable[str]
) -> dict[str, Member]:
    """The organisation's members by external id; unknown contacts are created (seed 002).

    Three queries whatever the number of ids. The caller has validated every id with
    loyalty.validators.external_id_problem. Creation is race-safe: concurrent creators meet in
    the unique constraint (ON CONFLICT DO NOTHING) and both re-select the winner's row. Rows are
    inserted in sorted order, so two batches creating overlapping contacts wait for each other
    instead of deadlocking.
    """
    wanted = sorted(set(external_ids))
    found = _members_by_external_id(organization=organization, external_ids=wanted)
    missing = [external_id for external_id in wanted if external_id not in found]
    if missing:
        Member.objects.bulk_create(
            [Member(organization=organization, external_id=external_id) for external_id in missing],
            ignore_conflicts=True,
        )
        found.update(_members_by_external_id(organization=organization, external_ids=missing))
    return found


_MEMBER_COLUMNS = sql.Columns(Member)
# The ids as one array parameter: one short statement whatever the batch's size (an IN list of a
# thousand placeholders costs more to build and parse than the query costs to run).
_MEMBERS_BY_EXTERNAL_ID_SQL = (
    f'SELECT {_MEMBER_COLUMNS.select("m")} FROM "{Member._meta.db_table}" m '  # noqa: S608
    'WHERE m."organization_id" = %s AND m."external_id" = ANY(%s)'
)


def _members_by_external_id(
    *, organization: Organization, external_ids: list[str]
) -> dict[str, Member]:
    if connection.vendor == "postgresql":
        rows = sql.fetch_all(_MEMBERS_BY_EXTERNAL_ID_SQL, [organization.pk, external_ids])
        members = map(_MEMBER_COLUMNS.instance, rows)
    else:
        members = Member.objects.filter(organization=organization, external_id__in=external_ids)
    return {member.external_id: member for member in members}


def _programs_by_definition(
    *, organization: Organization, definition_ids: Iterable[int]
) -> dict[int, PointProgram]:
    return {
        program.definition_id: program
        for program in PointProgram.objects.filter(
            organization=organization, definition_id__in=set(definition_ids)
        ).select_related("organization")
    }


# --- balances (balance-only mode) -----------------------------------------------------------


@dataclass(frozen=True)
class BalanceItem:
    contact_id: str
    amount: int
    definition_id: int
    time_stamp: dt.datetime

    def as_json(self) -> dict:
        return {
            "contactId": self.contact_id,
            "amount": self.amount,
            "definitionId": self.definition_id,
            "timeStamp": self.time_stamp.isoformat(),
        }


def balance_job_create(*, client: ApiClient, items: list[BalanceItem]) -> BalanceJob:
    """Store validated balance items as a queued job; a worker picks it up after commit.

    The caller has validated every item's shape. Programs are resolved when the job runs (an
    item naming a master-mode or unknown program is refused in the job's messages). A broker
    that is down at commit time loses nothing: the job stays queued and the sweeper publishes it.
    """
    now = timezone.now()
    with transaction.atomic():
        job = BalanceJob.objects.create(
            organization_id=client.organization_id,
            client=client,
            items=[item.as_json() for item in items],
            status=BalanceJobStatus.QUEUED,
            dispatched_at=now,
        )
        job_id = str(job.pk)
        transaction.on_commit(lambda: balance_job_dispatch(job_id))
    return job


def balance_job_dispatch(job_id: str) -> None:
    """Publish the job to the workers; a broker outage is logged (the sweeper publishes later)."""
    from integrations.follower.tasks import balance_account_to_amount_job

    try:
        balance_account_to_amount_job.delay(job_id)
    except Exception:  # the broker may be down; the job is safe in the database
        logger.warning("follower: could not publish balance job %s", job_id, exc_info=True)


class InvalidJobTransition(RuntimeError):
    pass


def _balance_job_set_status(*, job: BalanceJob, status: str, now: dt.datetime) -> None:
    """Move the (locked) job along BALANCE_JOB_TRANSITIONS; the caller saves it."""
    if status not in BALANCE_JOB_TRANSITIONS[job.status]:
        raise InvalidJobTransition(f"balance job {job.pk}: {job.status} -> {status}")
    job.status = status
    if status == BalanceJobStatus.PROCESSING:
        job.started_at = now
        job.attempts += 1
    else:
        job.finished_at = now


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _message(text: str, now: dt.datetime) -> dict:
    return {"message": text, "timeStamp": _iso(now)}


def _balance_job_claim(*, job_id: str, now: dt.datetime) -> BalanceJob | None:
    """Take the job for this worker, or None when it is done or another live worker has it."""
    with transaction.atomic():
        job = BalanceJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return None
        lease_expired = job.status == BalanceJobStatus.PROCESSING and (
            job.started_at is None
            or job.started_at <= now - dt.timedelta(seconds=_job_lease_seconds())
        )
        if job.status != BalanceJobStatus.QUEUED and not lease_expired:
            return None
        if lease_expired:
            job.messages = [
                *job.messages,
                _message("the previous worker stopped; processing the job again", now),
            ]
        _balance_job_set_status(job=job, status=BalanceJobStatus.PROCESSING, now=now)
        job.save(update_fields=["status", "started_at", "attempts", "messages", "updated_at"])
        return job


def _balance_job_finish(
    *, job: BalanceJob, status: str, messages: list[dict], now: dt.datetime
) -> bool:
    """Record the outcome, unless another worker took the job over meanwhile (then it reports)."""
    with transaction.atomic():
        current = BalanceJob.objects.select_for_update().get(pk=job.pk)
        if current.status != BalanceJobStatus.PROCESSING or current.started_at != job.started_at:
            return False
        _balance_job_set_status(job=current, status=status, now=now)
        current.messages = [*current.messages, *messages]
        current.save(update_fields=["status", "finished_at", "messages", "updated_at"])
        job.status, job.messages, job.finished_at = (
            current.status,
            current.messages,
            current.finished_at,
        )
        return True


def balance_job_process(*, job_id: str, now: dt.datetime | None = None) -> BalanceJob | None:
    """Apply a balance job (the seed's BalanceAccountToAmountJob); safe to run twice.

    Each item sets the contact's account to the master's amount through a ledger transfer of
    the difference (points.services.set_balance), creating the member and the account when
    unknown. An update older than the one already applied to the account is skipped; an item
    naming an unknown or master-mode program is refused. Every item gets a message. Final
    status: completed (nothing refused), completed_with_errors (some refused) or failed (the job
    itself broke). Each item commits on its own, so a worker that dies mid-job leaves the
    items it did applied; the job is taken over when its lease runs out, and re-applying a
    balance with the same timestamp moves nothing. Returns None when there was nothing to do.
    """
    job = _balance_job_claim(job_id=job_id, now=now or timezone.now())
    if job is None:
        return None
    try:
        messages, refused = _balance_items_apply(job)
    except Exception as exc:
        logger.exception("follower: balance job %s failed", job.pk)
        _balance_job_finish(
            job=job,
            status=BalanceJobStatus.FAILED,
            messages=[_message(f"the job failed: {type(exc).__name__}", timezone.now())],
            now=timezone.now(),
        )
        return job
    status = BalanceJobStatus.COMPLETED_WITH_ERRORS if refused else BalanceJobStatus.COMPLETED
    _balance_job_finish(job=job, status=status, messages=messages, now=timezone.now())
    return job


def _balance_items_apply(job: BalanceJob) -> tuple[list[dict], int]:
    organization = job.organization
    actor = f"client:{job.client_id}"
    items = job.items
    programs = _programs_by_definition(
        organization=organization, definition_ids=(item["definitionId"] for item in items)
    )

    def refusal(item: dict) -> str | None:
        program = programs.get(item["definitionId"])
        if program is None:
            return f"unknown point definition {item['definitionId']}"
        if program.mode == ProgramMode.MASTER:
            return f"point definition {item['definitionId']} is not in a follower mode"
        return None

    # Members are created only for items that can be applied.
    members = members_resolve(
        organization=organization,
        external_ids=(item["contactId"] for item in items if refusal(item) is None),
    )
    messages: list[dict] = []
    applied = skipped = refused = 0
    for index, item in enumerate(items):
        contact = item["contactId"]
        reason = refusal(item)
        if reason is None:
            try:
                result = point_services.set_balance(
                    program=programs[item["definitionId"]],
                    member=members[contact],
                    amount=item["amount"],
                    as_of=dt.datetime.fromisoformat(item["timeStamp"]),
                    actor=actor,
                    description="Balance from the point master",
                )
            except (ProgramNotFollower, InvalidAmount) as exc:
                # The program switched to master mode after its items were accepted, or an
                # amount the intake let through is beyond what the ledger takes.
                reason = exc.message
            else:
                if result.applied:
                    applied += 1
                    text = (
                        f"item {index}: contact {contact} set to {result.balance} points"
                        f" (was {result.previous_balance})"
                    )
                else:
                    skipped += 1
                    text = (
                        f"item {index}: contact {contact} skipped: the update of "
                        f"{item['timeStamp']} is older than the one already applied"
                    )
                messages.append(_message(text, timezone.now()))
                continue
        refused += 1
        messages.append(
            _message(f"item {index}: contact {contact} refused: {reason}", timezone.now())
        )
    summary = (
        f"{len(items)} items: {applied} applied, {skipped} skipped as out of date, "
        f"{refused} refused"
    )
    messages.append(_message(summary, timezone.now()))
    return messages, refused


def balance_jobs_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Re-publish jobs still queued long after their last publish (the broker lost the message)
    and jobs whose worker died (processing past the lease). Returns how many it published."""
    now = now or timezone.now()
    redispatch_before = now - dt.timedelta(seconds=_redispatch_seconds())
    lease_before = now - dt.timedelta(seconds=_job_lease_seconds())
    due = Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=redispatch_before)
    job_ids = list(
        BalanceJob.objects.filter(
            (Q(status=BalanceJobStatus.QUEUED) & due)
            | (Q(status=BalanceJobStatus.PROCESSING, started_at__lte=lease_before) & due)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not job_ids:
        return 0
    BalanceJob.objects.filter(pk__in=job_ids).update(dispatched_at=now)
    for job_id in job_ids:
        balance_job_dispatch(str(job_id))
    return len(job_ids)


# --- transactions (all-transaction mode) ------------------------------------------------------


@dataclass(frozen=True)
class TransactionItem:
    contact_id: str
    amount: int
    definition_id: int
    time_stamp: dt.datetime
    source: str
    description: str
    valid_from: dt.datetime | None
    valid_to: dt.datetime | None

    def meaningful_fields(self) -> list:
        # What makes two requests "the same" for Idempotency-Key (DESIGN.md): not free text.
        return [
            self.contact_id,
            self.amount,
            self.definition_id,
            self.time_stamp.isoformat(),
            self.valid_from.isoformat() if self.valid_from else None,
            self.valid_to.isoformat() if self.valid_to else None,
        ]


def transactions_request_hash(items: list[TransactionItem]) -> str:
    canonical = json.dumps([item.meaningful_fields() for item in items], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class TransactionsOutcome:
    batch: TransactionBatch
    replayed: bool


def _replay(*, existing: TransactionBatch, request_hash: str) -> TransactionsOutcome:
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return TransactionsOutcome(batch=existing, replayed=True)


def _validity(item: TransactionItem, now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    # Without validFrom the points count from the master's timeStamp (never from a future one:
    # a master clock running ahead must not make points pending).
    return item.valid_from or min(item.time_stamp, now), item.valid_to


def transactions_apply(
    *,
    client: ApiClient,
    items: list[TransactionItem],
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> TransactionsOutcome:
    """Apply the master's transactions all together, or none of them.

    The caller has checked the count (<= MAX_ITEMS_PER_REQUEST) and each item's shape. Raises
    NewPointSystemNotActive when an item names a program not in follower_transactions mode,
    InvalidItems (index and field) for an unknown definitionId or a validity window that ends
    before it starts, IdempotencyKeyReused for a key already used with other meaningful fields;
    nothing is stored then. A repeat with the same key and fields returns the first batch with
    replayed=True and applies nothing.

    Credits become lots (pending until validFrom, expiring at validTo); a debit beyond the
    balance takes the account to zero and is listed under "clamped" in the reply. Accounts are
    locked in id order before anything moves, so concurrent batches touching the same contacts
    queue instead of deadlocking.
    """
    now = now or timezone.now()
    organization = client.organization
    request_hash = transactions_request_hash(items)
    if idempotency_key is not None:
        existing = TransactionBatch.objects.filter(
            client=client, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return _replay(existing=existing, request_hash=request_hash)

    programs = _transaction_programs(organization=organization, items=items, now=now)
    with transaction.atomic():
        try:
            # First, so that a concurrent request with the same key waits here (on the unique
            # index) until this one commits, then replays it.
            with transaction.atomic():
                batch = TransactionBatch.objects.create(
                    organization=organization,
                    client=client,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    item_count=len(items),
                )
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = TransactionBatch.objects.get(client=client, idempotency_key=idempotency_key)
            return _replay(existing=existing, request_hash=request_hash)

        members = members_resolve(
            organization=organization, external_ids=(item.contact_id for item in items)
        )
        # The ledger applies the whole batch: accounts created and locked in id order first,
        # then every item as master_transaction_apply would (in bulk where it can).
        applied = point_services.master_transactions_apply_bulk(
            items=[
                point_services.MasterTransaction(
                    program=programs[item.definition_id],
                    member=members[item.contact_id],
                    amount=item.amount,
                    source=item.source,
                    description=item.description,
                    valid_from=_validity(item, now)[0] if item.amount > 0 else None,
                    valid_to=item.valid_to if item.amount > 0 else None,
                    reference=f"batch:{batch.pk}:{index}",
                )
                for index, item in enumerate(items)
            ],
            actor=f"client:{client.pk}",
            now=now,
        )
        accounts_created = applied.accounts_created
        credited = debited = pending = 0
        clamped = []
        for index, (item, result) in enumerate(zip(items, applied.results, strict=True)):
            if item.amount > 0:
                credited += result.applied
                pending += result.applied if result.transfer_id is None else 0
            else:
                debited += -result.applied
                if result.applied != result.requested:
                    clamped.append(
                        {
                            "index": index,
                            "contactId": item.contact_id,
                            "requested": result.requested,
                            "applied": result.applied,
                        }
                    )
        batch.reply = {
            "id": str(batch.pk),
            "status": "applied",
            "timeStamp": _iso(batch.created_at),
            "items": len(items),
            "credited": credited,
            "pendingCredited": pending,
            "debited": debited,
            "accountsCreated": accounts_created,
            "clamped": clamped,
        }
        batch.save(update_fields=["reply"])
    return TransactionsOutcome(batch=batch, replayed=False)


def _transaction_programs(
    *, organization: Organization, items: list[TransactionItem], now: dt.datetime
) -> dict[int, PointProgram]:
    programs = _programs_by_definition(
        organization=organization, definition_ids=(item.definition_id for item in items)
    )
    unknown, inactive, bad_window = [], [], []
    for index, item in enumerate(items):
        program = programs.get(item.definition_id)
        if program is None:
            unknown.append(
                {
                    "index": index,
                    "field": "definitionId",
                    "message": f"unknown point definition {item.definition_id}",
                }
            )
        elif program.mode != ProgramMode.FOLLOWER_TRANSACTIONS:
            inactive.append(
                {
                    "index": index,
                    "field": "definitionId",
                    "message": (
                        f"point definition {item.definition_id} is not in "
                        "follower_transactions mode"
                    ),
                }
            )
        if item.amount > 0 and item.valid_to is not None:
            valid_from, valid_to = _validity(item, now)
            if valid_to <= valid_from:
                bad_window.append(
                    {
                        "index": index,
                        "field": "validTo",
                        "message": "must be after validFrom (or timeStamp without validFrom)",
                    }
                )
    if inactive:
        raise NewPointSystemNotActive(errors=inactive)
    if unknown or bad_window:
        raise InvalidItems.naming_first(sorted(unknown + bad_window, key=lambda e: e["index"]))
    return programs


# --- adjustments sent to the master -----------------------------------------------------------


AUTOMATION_FIELDS = ("Reason", "ProcessId", "WorkflowId", "WorkflowName")


def adjustment_send_to_master(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    description: str,
    source: str,
    operator=None,
    automation: dict | None = None,
) -> MasterAdjustment:
    """Send an adjustment of a follower program to the master's webhook (seed 002, part 4).

    Writes an outbox message (topic follower.adjustment) in the caller's transaction; it is
    delivered with retries after commit. The body is {"eventType": "loyalty.addPoints", "id",
    "payload", "tenant"} with the seed's payload JSON encrypted under the program's key (see
    integrations.follower.routing for how the master decrypts). The local balance does not move:
    the master's next sync brings the change back.

    source "Manual" needs `operator` (the user: UserId, UserName); source "Automation" needs
    `automation` ({Reason, ProcessId, WorkflowId, WorkflowName}). Raises ProgramNotFollower for
    a master program, InvalidAmount for a zero, non-integer or oversized amount or an empty
    description, ValueError for a member of another organisation or a missing source detail.
    """
    if not program.is_follower:
        raise ProgramNotFollower()
    if member.organization_id != program.organization_id:
        raise ValueError("member and program belong to different organisations")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidAmount("the adjustment must be a non-zero whole number")
    if abs(amount) > point_services.MAX_POINTS_PER_OPERATION:
        raise InvalidAmount(f"points must be at most {point_services.MAX_POINTS_PER_OPERATION}")
    if not description or not description.strip():
        raise InvalidAmount("an adjustment needs a description")
    payload: dict = {
        "ContactId": member.external_id,
        "Amount": amount,
        "Description": description,
        "Source": source,
        "PointDefinitionId": program.definition_id,
    }
    if source == AdjustmentSource.MANUAL:
        if operator is None:
            raise ValueError("a manual adjustment needs the operator")
        payload["UserId"] = str(operator.pk)
        payload["UserName"] = operator.get_full_name() or operator.get_username()
        actor = f"user:{operator.pk}"
    elif source == AdjustmentSource.AUTOMATION:
        if automation is None:
            raise ValueError("an automation's adjustment needs its Reason, ProcessId, ...")
        for field in AUTOMATION_FIELDS:
            payload[field] = str(automation.get(field) or "")
        actor = f"automation:{payload['WorkflowId'] or payload['ProcessId']}"
    else:
        raise ValueError(f"unknown adjustment source {source!r}")

    event_id = uuid.uuid4()  # also the adjustment's id: the master de-duplicates retries by it
    body = {
        "eventType": ADJUSTMENT_EVENT_TYPE,
        "id": str(event_id),
        "payload": encrypt_payload(payload, program.master_webhook_key),
        "tenant": program.organization.slug,
    }
    with transaction.atomic():
        message = outbox_enqueue(
            topic=ADJUSTMENT_TOPIC,
            url=program.master_webhook_url,
            payload=body,
            organization=program.organization,
        )
        return MasterAdjustment.objects.create(
            id=event_id,
            organization_id=program.organization_id,
            program=program,
            member=member,
            amount=amount,
            description=description[:500],
            source=source,
            actor=actor[:200],
            payload=payload,
            message=message,
        )


# --- operator: the master connection -----------------------------------------------------------


def program_webhook_key_generate(*, program: PointProgram) -> str:
    """Give the program a new AES-256 key for the master's webhook and return it.

    Adjustments already in the outbox stay encrypted under the old key; tell the master the new
    key before generating it on a live program.
    """
    key = new_follower_key()
    PointProgram.objects.filter(pk=program.pk).update(master_webhook_key=key)
    program.master_webhook_key = key
    return key
