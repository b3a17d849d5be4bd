"""Outbox services: write a message in the caller's transaction, deliver it, retry, sweep.

Delivery is at-least-once: a message is sent until the receiver answers 2xx, it answers 410
(gone: stop), or the retry window closes. Receivers de-duplicate with `webhook-id`, which stays
the same across retries while `webhook-timestamp` and the signature change.

Retries are scheduled by `next_attempt_at`, never by long broker countdowns: a retry due within
OUTBOX_COUNTDOWN_MAX_SECONDS is also sent as a short Celery countdown (below the broker's
visibility timeout), and the periodic sweeper sends whatever is due, including messages whose
broker message was lost.

Writing a message and each delivery attempt run for every partner callback, so their statements
are written once here (loyalty/sql.py) rather than built by the ORM per call. A message that its
own worker delivers right after commit is written already leased to that worker, and a 2xx is
recorded in one statement: the common callback costs one statement beyond the POST.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations.models import DeliveryAttempt, OutboxMessage, OutboxStatus
from integrations.url_safety import UnsafeURLError, post_json_safely
from integrations.webhook_signing import sign_webhook
from loyalty import sql
from loyalty.models import Organization

logger = logging.getLogger(__name__)

_MESSAGES = f'"{OutboxMessage._meta.db_table}"'
_MESSAGE_FIELDS = OutboxMessage._meta.concrete_fields
_MESSAGE_COLUMNS = ", ".join(f'"{field.column}"' for field in _MESSAGE_FIELDS)
_INSERT_MESSAGE_SQL = (
    f"INSERT INTO {_MESSAGES} ({_MESSAGE_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join(['%s'] * len(_MESSAGE_FIELDS))})"
)
# Taking the lease returns what the attempt sends: one statement, no read after it.
_LEASED_COLUMNS = sql.Columns(
    OutboxMessage, ["id", "url", "body", "headers", "signing_secret", "attempts"]
)
_LEASE_SQL = (
    f'UPDATE {_MESSAGES} SET "next_attempt_at" = %s, "attempts" = "attempts" + 1 '  # noqa: S608
    'WHERE "id" = %s AND "status" = %s AND "next_attempt_at" <= %s '
    f"RETURNING {_LEASED_COLUMNS.select(_MESSAGES)}"
)
# What recording an attempt decides on, read again under the row lock (an operator's "retry now"
# may have changed it while the attempt ran).
_RECORD_COLUMNS = sql.Columns(
    OutboxMessage,
    ["id", "status", "attempts", "next_attempt_at", "give_up_at", "last_error", "delivered_at"],
)
_LOCK_FOR_RECORD_SQL = (
    f'SELECT {_RECORD_COLUMNS.select("m")} FROM {_MESSAGES} m WHERE m."id" = %s'  # noqa: S608
    + sql.for_update()
)
_INSERT_ATTEMPT_SQL = (
    f'INSERT INTO "{DeliveryAttempt._meta.db_table}" ("message_id", "number", "started_at", '  # noqa: S608
    '"duration_ms", "status_code", "error", "response_excerpt") '
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_RECORD_SQL = (
    f'UPDATE {_MESSAGES} SET "status" = %s, "delivered_at" = %s, "last_error" = %s, '  # noqa: S608
    '"next_attempt_at" = %s WHERE "id" = %s'
)
# A delivered attempt: the attempt row (numbered by the message's attempts) and the message marked
# delivered. Nothing else is decided on a 2xx, so no locked read comes first.
_INSERT_DELIVERED_ATTEMPT_SQL = (
    f'INSERT INTO "{DeliveryAttempt._meta.db_table}" ("message_id", "number", "started_at", '  # noqa: S608
    '"duration_ms", "status_code", "error", "response_excerpt") '
    f'SELECT "id", "attempts", %s, %s, %s, \'\', %s FROM {_MESSAGES} WHERE "id" = %s'
)
_MARK_DELIVERED_SQL = (
    f'UPDATE {_MESSAGES} SET "status" = %s, "delivered_at" = %s, "last_error" = \'\' '  # noqa: S608
    'WHERE "id" = %s RETURNING "id"'
)
# On PostgreSQL, any number of delivered attempts in one statement (arrays unnested into rows,
# a data-modifying WITH for the attempts): the messages marked delivered come back.
_RECORD_DELIVERED_MANY_SQL = (
    "WITH sent AS (SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::integer[], "  # noqa: S608
    "%s::integer[], %s::text[], %s::timestamptz[]) "
    "AS s(message_id, started_at, duration_ms, status_code, excerpt, finished_at)), "
    f'attempt AS (INSERT INTO "{DeliveryAttempt._meta.db_table}" ("message_id", "number", '
    '"started_at", "duration_ms", "status_code", "error", "response_excerpt") '
    'SELECT m."id", m."attempts", s.started_at, s.duration_ms, s.status_code, \'\', s.excerpt '
    f'FROM {_MESSAGES} m JOIN sent s ON s.message_id = m."id") '
    f'UPDATE {_MESSAGES} m SET "status" = %s, "delivered_at" = s.finished_at, "last_error" = \'\' '
    'FROM sent s WHERE m."id" = s.message_id RETURNING m."id"'
)


def outbox_enqueue(
    *,
    topic: str,
    url: str,
    payload: dict | list | bytes,
    organization: Organization | None = None,
    headers: dict[str, str] | None = None,
    signing_secret: str = "",
    deliver_in_process: bool = False,
) -> OutboxMessage:
    """Store an outbound message in the current transaction; it is sent after commit.

    Call it inside the transaction that makes the change the message reports. A Celery task
    that writes the message may pass deliver_in_process=True: the first attempt is then made by
    that worker right after commit (no second task, no trip through the broker); a failed or
    interrupted attempt is retried exactly as a dispatched one (countdown, then the sweeper).
    Never from a web request: it would wait for the receiver.
    """
    return outbox_enqueue_many(
        [
            OutboxSpec(
                topic=topic,
                url=url,
                payload=payload,
                organization=organization,
                headers=headers,
                signing_secret=signing_secret,
            )
        ],
        deliver_in_process=deliver_in_process,
    )[0]


@dataclass(frozen=True)
class OutboxSpec:
    """One message for outbox_enqueue_many (the arguments of outbox_enqueue)."""

    topic: str
    url: str
    payload: dict | list | bytes
    organization: Organization | None = None
    headers: dict[str, str] | None = None
    signing_secret: str = ""


def outbox_enqueue_many(
    specs: list[OutboxSpec], *, deliver_in_process: bool = False
) -> list[OutboxMessage]:
    """outbox_enqueue for several messages, written by one batched INSERT."""
    messages = [_new_message(spec, deliver_in_process=deliver_in_process) for spec in specs]
    _insert_messages(messages)
    if deliver_in_process:
        transaction.on_commit(lambda: _deliver_in_process(messages))
        return messages
    for message in messages:
        message_id = str(message.pk)
        transaction.on_commit(lambda message_id=message_id: dispatch_delivery(message_id))
    return messages


def _new_message(spec: OutboxSpec, *, deliver_in_process: bool) -> OutboxMessage:
    payload, headers = spec.payload, spec.headers
    body = (
        payload
        if isinstance(payload, bytes)
        else json.dumps(payload, separators=(",", ":")).encode()
    )
    now = timezone.now()
    message = OutboxMessage(
        organization=spec.organization,
        topic=spec.topic,
        url=spec.url,
        body=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        signing_secret=spec.signing_secret,
        next_attempt_at=now,
        give_up_at=now + dt.timedelta(seconds=settings.OUTBOX_RETRY_WINDOW_SECONDS),
    )
    if deliver_in_process:
        # Written leased to this worker for its first attempt (no lease statement after
        # commit); if the worker dies before recording it, the sweeper sends the message once
        # the lease runs out, as after any interrupted attempt.
        message.next_attempt_at = now + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
        message.attempts = 1
    return message


def _insert_messages(messages: list[OutboxMessage]) -> None:
    """INSERT the new messages (their ids are made here) as the ORM's create() would; several
    go in one batch (pipelined on PostgreSQL)."""
    rows = [
        [
            field.get_db_prep_save(field.pre_save(message, True), connection)
            for field in _MESSAGE_FIELDS
        ]
        for message in messages
    ]
    sql.execute_many(_INSERT_MESSAGE_SQL, rows)
    for message in messages:
        message._state.adding = False
        message._state.db = connection.alias


def _deliver_in_process(messages: list[OutboxMessage]) -> None:
    """First attempts, in the process that wrote the (leased) messages, one after the other.

    The delivered ones are recorded together at the end (one statement), the others each as it
    fails. Anything unexpected leaves a message to the sweeper: a delivery not recorded because
    this process died first is sent again once its lease runs out (at least once; receivers
    de-duplicate with webhook-id).
    """
    delivered: list[_Sent] = []
    for message in messages:
        try:
            sent = _send(message)
            if sent.delivered:
                delivered.append(sent)
            else:
                _record_attempt(sent)
        except Exception:  # the message is safe in the database, pending
            logger.warning("outbox: in-process delivery of %s failed", message.pk, exc_info=True)
    if delivered:
        try:
            _record_delivered(delivered)
        except Exception:
            logger.warning(
                "outbox: could not record %s delivered messages; the sweeper resends them",
                len(delivered),
                exc_info=True,
            )


def dispatch_delivery(message_id: str, countdown: int | None = None) -> None:
    """Hand the message to a worker. A broker outage is logged, not raised: the sweeper resends."""
    from integrations.tasks import outbox_deliver_task

    try:
        if countdown and not outbox_deliver_task.app.conf.task_always_eager:
            outbox_deliver_task.apply_async(args=[message_id], countdown=countdown)
        elif not countdown:
            outbox_deliver_task.delay(message_id)
    except Exception:  # the broker may be down: the message is safe in the database
        logger.warning(
            "outbox: could not publish %s; the sweeper will send it", message_id, exc_info=True
        )


@dataclass(frozen=True)
class DeliveryOutcome:
    message_id: str
    sent: bool  # False when another worker holds the message or it is not due
    status: str
    status_code: int | None = None
    error: str = ""
    retry_in: int | None = None


def backoff_seconds(attempt: int) -> int:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times a random 0.5..1."""
    base = settings.OUTBOX_BACKOFF_BASE_SECONDS
    ceiling = settings.OUTBOX_BACKOFF_MAX_SECONDS
    delay = min(ceiling, base * 2 ** min(attempt - 1, 30))
    return max(1, round(delay * random.uniform(0.5, 1.0)))


def _retry_after_seconds(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return None


def outbox_deliver(*, message_id: str, now: dt.datetime | None = None) -> DeliveryOutcome:
    """Make one delivery attempt of a due message and record it.

    Takes a lease on the message first (a conditional UPDATE), so the on-commit task, a
    countdown retry and the sweeper never send the same message at the same time.
    """
    now = now or timezone.now()
    lease_until = now + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    # One second of tolerance: a countdown task may run a moment before its next_attempt_at.
    leased = sql.fetch_one(
        _LEASE_SQL,
        [
            sql.param(OutboxMessage, "next_attempt_at", lease_until),
            sql.param(OutboxMessage, "id", message_id),
            OutboxStatus.PENDING,
            sql.param(OutboxMessage, "next_attempt_at", now + dt.timedelta(seconds=1)),
        ],
    )
    if leased is None:
        status = (
            OutboxMessage.objects.filter(pk=message_id).values_list("status", flat=True).first()
        )
        return DeliveryOutcome(message_id=message_id, sent=False, status=status or "missing")
    return _attempt(_LEASED_COLUMNS.instance(leased))


@dataclass(frozen=True)
class _Sent:
    """One delivery attempt made, not yet recorded."""

    message_id: object
    finished_at: dt.datetime
    duration_ms: int
    status_code: int | None
    error: str
    excerpt: str
    retry_after: int | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def started_at(self) -> dt.datetime:
        return self.finished_at - dt.timedelta(milliseconds=self.duration_ms)


def _attempt(message: OutboxMessage) -> DeliveryOutcome:
    """Sign and send a message this process holds the lease of, and record the attempt."""
    return _record_attempt(_send(message))


def _send(message: OutboxMessage) -> _Sent:
    """Sign and send a message this process holds the lease of."""
    body = bytes(message.body)
    headers = dict(message.headers)
    if message.signing_secret:
        headers.update(
            sign_webhook(
                secret=message.signing_secret,
                msg_id=message.webhook_id,
                timestamp=int(time.time()),
                body=body,
            )
        )
    started = time.monotonic()
    status_code, error, excerpt, retry_after = None, "", "", None
    try:
        response = post_json_safely(
            message.url,
            body=body,
            headers=headers,
            timeout=settings.OUTBOX_DELIVERY_TIMEOUT_SECONDS,
            allow_insecure=settings.LOYALTY_ALLOW_INSECURE_CALLBACKS,
        )
        status_code = response.status_code
        excerpt = response.text[:500]
        retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
    except UnsafeURLError as exc:
        error = f"unsafe url: {exc}"[:500]
    except Exception as exc:  # network errors of every kind are retried
        error = f"{type(exc).__name__}: {exc}"[:500]
    return _Sent(
        message_id=message.pk,
        finished_at=timezone.now(),
        duration_ms=int((time.monotonic() - started) * 1000),
        status_code=status_code,
        error=error,
        excerpt=excerpt,
        retry_after=retry_after,
    )


def _record_attempt(sent: _Sent) -> DeliveryOutcome:
    """Record an attempt; a failed one schedules the retry (or gives the message up)."""
    message_id, now, status_code, error = (
        sent.message_id,
        sent.finished_at,
        sent.status_code,
        sent.error,
    )
    if sent.delivered:
        _record_delivered([sent])
        return DeliveryOutcome(
            message_id=str(message_id),
            sent=True,
            status=OutboxStatus.DELIVERED,
            status_code=status_code,
        )
    with transaction.atomic():
        row = sql.fetch_one(_LOCK_FOR_RECORD_SQL, [sql.param(OutboxMessage, "id", message_id)])
        if row is None:
            raise OutboxMessage.DoesNotExist(f"outbox message {message_id} is gone")
        message = _RECORD_COLUMNS.instance(row)
        sql.execute(
            _INSERT_ATTEMPT_SQL,
            [
                sql.param(DeliveryAttempt, "message", message.pk),
                message.attempts,
                sql.param(DeliveryAttempt, "started_at", sent.started_at),
                sent.duration_ms,
                status_code,
                error,
                sent.excerpt,
            ],
        )
        retry_in = None
        if status_code == 410 or error.startswith("unsafe url"):
            # 410: the receiver asks us to stop; an unsafe URL will not become safe by waiting.
            message.status = OutboxStatus.DEAD
            message.last_error = error or f"HTTP {status_code}: receiver gone"
        else:
            retry_in = max(backoff_seconds(message.attempts), sent.retry_after or 0)
            retry_in = min(retry_in, settings.OUTBOX_BACKOFF_MAX_SECONDS)
            message.last_error = error or f"HTTP {status_code}"
            if now + dt.timedelta(seconds=retry_in) > message.give_up_at:
                message.status = OutboxStatus.DEAD
                retry_in = None
            else:
                message.next_attempt_at = now + dt.timedelta(seconds=retry_in)
        sql.execute(
            _RECORD_SQL,
            [
                message.status,
                sql.param(OutboxMessage, "delivered_at", message.delivered_at),
                message.last_error,
                sql.param(OutboxMessage, "next_attempt_at", message.next_attempt_at),
                sql.param(OutboxMessage, "id", message.pk),
            ],
        )
        if retry_in is not None and retry_in <= settings.OUTBOX_COUNTDOWN_MAX_SECONDS:
            message_id = str(message.pk)
            transaction.on_commit(lambda: dispatch_delivery(message_id, countdown=retry_in))
    return DeliveryOutcome(
        message_id=str(message.pk),
        sent=True,
        status=message.status,
        status_code=status_code,
        error=error,
        retry_in=retry_in,
    )


def _record_delivered(sent: list[_Sent]) -> None:
    """Record delivered attempts: on PostgreSQL one statement for all of them."""
    if connection.vendor == "postgresql":
        marked = sql.fetch_all(
            _RECORD_DELIVERED_MANY_SQL,
            [
                [attempt.message_id for attempt in sent],
                [attempt.started_at for attempt in sent],
                [attempt.duration_ms for attempt in sent],
                [attempt.status_code for attempt in sent],
                [attempt.excerpt for attempt in sent],
                [attempt.finished_at for attempt in sent],
                OutboxStatus.DELIVERED,
            ],
        )
        missing = {attempt.message_id for attempt in sent} - {row[0] for row in marked}
    else:
        missing = set()
        with transaction.atomic():
            for attempt in sent:
                message_id = sql.param(OutboxMessage, "id", attempt.message_id)
                sql.execute(
                    _INSERT_DELIVERED_ATTEMPT_SQL,
                    [
                        sql.param(DeliveryAttempt, "started_at", attempt.started_at),
                        attempt.duration_ms,
                        attempt.status_code,
                        attempt.excerpt,
                        message_id,
                    ],
                )
                mark = [
                    OutboxStatus.DELIVERED,
                    sql.param(OutboxMessage, "delivered_at", attempt.finished_at),
                    message_id,
                ]
                if sql.fetch_one(_MARK_DELIVERED_SQL, mark) is None:
                    missing.add(attempt.message_id)
    if missing:
        raise OutboxMessage.DoesNotExist(f"outbox messages {sorted(map(str, missing))} are gone")


def outbox_due_message_ids(*, now: dt.datetime | None = None, limit: int = 500) -> list[str]:
    now = now or timezone.now()
    return [
        str(pk)
        for pk in OutboxMessage.objects.filter(
            status=OutboxStatus.PENDING, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    ]


def outbox_sweep(*, now: dt.datetime | None = None) -> int:
    """Dispatch every due message (lost broker messages, retries beyond the countdown limit)."""
    due = outbox_due_message_ids(now=now)
    for message_id in due:
        dispatch_delivery(message_id)
    return len(due)


def outbox_retry_now(*, message: OutboxMessage) -> None:
    """Operator action: send now, also a dead message (its retry window starts again)."""
    now = timezone.now()
    with transaction.atomic():
        OutboxMessage.objects.filter(pk=message.pk).exclude(status=OutboxStatus.DELIVERED).update(
            status=OutboxStatus.PENDING,
            next_attempt_at=now,
            give_up_at=now + dt.timedelta(seconds=settings.OUTBOX_RETRY_WINDOW_SECONDS),
        )
        message_id = str(message.pk)
        transaction.on_commit(lambda: dispatch_delivery(message_id))
