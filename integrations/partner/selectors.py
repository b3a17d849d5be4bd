"""Reads of the partner Point API (seed 001): a member's balance, as the client's organisation
sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from integrations.models import ApiClient
from integrations.partner.exceptions import OrganizationForbidden, ProgramNotFound, UserNotFound
from loyalty import sql
from loyalty.engagement.models import MemberTier, Tier
from loyalty.models import Member
from points.models import PointAccount, PointProgram, ProgramMode


@dataclass(frozen=True)
class MemberBalance:
    user_id: str
    program_key: str
    balance: int
    available: int
    held: int
    pending: int
    tier: str | None

    def reply_data(self) -> dict:
        """The API's reply (PointBalanceDetailApi.OutputSerializer's fields, written out:
        building a serializer per request costs more than the balance's query on the
        platform's hottest read, bench/)."""
        return {
            "userId": self.user_id,
            "programKey": self.program_key,
            "balance": self.balance,
            "available": self.available,
            "held": self.held,
            "pending": self.pending,
            "tier": self.tier,
        }


def _same_organization(client: ApiClient, org_id: str) -> bool:
    try:
        return uuid.UUID(org_id) == client.organization_id
    except ValueError:
        return False


# One statement: the program, the member beside it, their account and their tier (the recorded
# one, else the entry tier at threshold 0, as loyalty.engagement.selectors.member_tiers_get).
# A missing program gives no row; a missing member gives a row with member id null; no account
# reads as zeros. Follower-balance programs have no tiers.
_BALANCE_SQL = f"""
SELECT p."key", m."id", a."balance", a."held", a."pending",
       CASE WHEN p."mode" = '{ProgramMode.FOLLOWER_BALANCE}' THEN NULL
            WHEN mt."id" IS NOT NULL THEN recorded."name"
            ELSE entry."name" END
FROM "{PointProgram._meta.db_table}" p
LEFT JOIN "{Member._meta.db_table}" m
       ON m."organization_id" = p."organization_id" AND m."external_id" = %s
LEFT JOIN "{PointAccount._meta.db_table}" a
       ON a."program_id" = p."id" AND a."member_id" = m."id"
LEFT JOIN "{MemberTier._meta.db_table}" mt
       ON mt."program_id" = p."id" AND mt."member_id" = m."id"
LEFT JOIN "{Tier._meta.db_table}" recorded ON recorded."id" = mt."tier_id"
LEFT JOIN "{Tier._meta.db_table}" entry ON entry."program_id" = p."id" AND entry."threshold" = 0
WHERE p."organization_id" = %s AND p."key" = %s
"""  # noqa: S608 (identifiers from the models, values bound)


def member_balance_get(
    *, client: ApiClient, org_id: str, program_key: str, user_id: str
) -> MemberBalance:
    """The member's balance and tier in the program of the client's organisation.

    Raises OrganizationForbidden when orgId is not the client's organisation (another tenant's
    data is never read), ProgramNotFound and UserNotFound.
    """
    if not _same_organization(client, org_id):
        raise OrganizationForbidden()
    organization_id = sql.param(PointProgram, "organization", client.organization_id)
    row = sql.fetch_one(_BALANCE_SQL, [user_id, organization_id, program_key])
    if row is None:
        raise ProgramNotFound()
    key, member_id, balance, held, pending, tier = row
    if member_id is None:
        raise UserNotFound()
    balance, held = balance or 0, held or 0
    return MemberBalance(
        user_id=user_id,
        program_key=key,
        balance=balance,
        available=balance - held,
        held=held,
        pending=pending or 0,
        tier=tier,
    )
