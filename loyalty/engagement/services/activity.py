"""The activity log: one append-only row per thing that happened to a member.

Written by the engagement services in the transaction of the change they record, so the log
never shows what did not happen and never misses what did.
"""

from __future__ import annotations

from loyalty.engagement.models import ActivityEntry
from loyalty.models import Member


def activity_record(
    *,
    member: Member,
    kind: str,
    summary: str,
    data: dict | None = None,
    actor: str = "",
) -> ActivityEntry:
    """Append one entry to the member's activity log. Call it inside the changing transaction."""
    return ActivityEntry.objects.create(
        organization_id=member.organization_id,
        member=member,
        kind=kind,
        summary=summary[:300],
        data=data or {},
        actor=actor[:200],
    )
