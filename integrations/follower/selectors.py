"""Reads of the follower mode: balance jobs and the master's points log.

`points_log_for` is what the member admin page and the portal show for a follower program: the
master owns the history, so it is fetched from the master each time, and any failure becomes
"points log unavailable", never an error page.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from django.conf import settings

from integrations.follower.client import MasterUnavailable, points_log_fetch
from integrations.follower.models import BalanceJob
from loyalty.models import Member, Organization
from points.models import PointProgram

UNAVAILABLE = "points log unavailable"


def balance_job_get(*, organization: Organization, job_id: str) -> BalanceJob | None:
    """The organisation's balance job, or None (also for a malformed id or another's job)."""
    try:
        pk = uuid.UUID(str(job_id))
    except ValueError:
        return None
    return BalanceJob.objects.filter(organization=organization, pk=pk).first()


@dataclass(frozen=True)
class PointsLogEntry:
    transaction_date: dt.datetime
    amount: int
    description: str


@dataclass(frozen=True)
class PointsLog:
    entries: list[PointsLogEntry] = field(default_factory=list)
    available: bool = True
    error: str = ""


def _entry(raw: object, index: int) -> PointsLogEntry:
    if not isinstance(raw, dict):
        raise MasterUnavailable(f"entry {index} is not an object")
    date, amount, description = (
        raw.get("transactionDate"),
        raw.get("amount"),
        raw.get("description", ""),
    )
    if not isinstance(date, str):
        raise MasterUnavailable(f"entry {index}: transactionDate is missing")
    try:
        when = dt.datetime.fromisoformat(date)
    except ValueError as exc:
        raise MasterUnavailable(f"entry {index}: transactionDate is not ISO 8601") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise MasterUnavailable(f"entry {index}: amount is not a whole number")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise MasterUnavailable(f"entry {index}: description is not text")
    return PointsLogEntry(transaction_date=when, amount=amount, description=description[:500])


def points_log_for(*, program: PointProgram, member: Member) -> PointsLog:
    """The master's points log of the member in a follower program, newest first.

    Never raises for the master's sake: an unconfigured URL, a master that is down, slow
    (FOLLOWER_POINTS_LOG_TIMEOUT_SECONDS, default 3 s), answers non-2xx or anything but an array
    of {transactionDate, amount, description} gives available=False with the reason in `error`.
    """
    if member.organization_id != program.organization_id:
        raise ValueError("member and program belong to different organisations")
    if not program.is_follower:
        return PointsLog(available=False, error=f"{UNAVAILABLE}: the platform is the master")
    if not program.master_points_log_url:
        return PointsLog(available=False, error=f"{UNAVAILABLE}: no points log URL is set")
    timeout = getattr(settings, "FOLLOWER_POINTS_LOG_TIMEOUT_SECONDS", 3)
    try:
        raw = points_log_fetch(
            base_url=program.master_points_log_url,
            contact_id=member.external_id,
            timeout=timeout,
        )
        if not isinstance(raw, list):
            raise MasterUnavailable("the master's answer is not an array")
        entries = [_entry(item, index) for index, item in enumerate(raw)]
    except MasterUnavailable as exc:
        return PointsLog(available=False, error=f"{UNAVAILABLE}: {exc.reason}")
    entries.sort(key=lambda entry: entry.transaction_date, reverse=True)
    return PointsLog(entries=entries, available=True)
