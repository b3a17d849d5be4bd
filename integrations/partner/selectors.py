"""Reads of the partner Point API (seed 001): a member's balance, as the client's organisation
sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from integrations.clients import (
    TOKEN_FROM_SQL,
    TOKEN_ROW_LENGTH,
    TOKEN_SELECT_SQL,
    TOKEN_WHERE_SQL,
    bearer_checksum,
    valid_token_of_row,
)
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


def same_organization(client: ApiClient, org_id: str) -> bool:
    try:
        return uuid.UUID(org_id) == client.organization_id
    except ValueError:
        return False


# The program p's member with the given external id, their account and their tier (the recorded
# one, else the entry tier at threshold 0, as loyalty.engagement.selectors.member_tiers_get). A
# missing member gives member id null; no account reads as zeros. Follower-balance programs
# have no tiers.
_BALANCE_COLUMNS_SQL = f"""p."key", m."id", pa."balance", pa."held", pa."pending",
       CASE WHEN p."mode" = '{ProgramMode.FOLLOWER_BALANCE}' THEN NULL
            WHEN mt."id" IS NOT NULL THEN recorded."name"
            ELSE entry."name" END"""
_MEMBER_OF_PROGRAM_SQL = f"""
LEFT JOIN "{Member._meta.db_table}" m
       ON m."organization_id" = p."organization_id" AND m."external_id" = %s
LEFT JOIN "{PointAccount._meta.db_table}" pa
       ON pa."program_id" = p."id" AND pa."member_id" = m."id"
LEFT JOIN "{MemberTier._meta.db_table}" mt
       ON mt."program_id" = p."id" AND mt."member_id" = m."id"
LEFT JOIN "{Tier._meta.db_table}" recorded ON recorded."id" = mt."tier_id"
LEFT JOIN "{Tier._meta.db_table}" entry ON entry."program_id" = p."id" AND entry."threshold" = 0
"""

# One statement: the program of an organisation and its member (no row: no such program).
_BALANCE_SQL = f"""
SELECT {_BALANCE_COLUMNS_SQL}
FROM "{PointProgram._meta.db_table}" p {_MEMBER_OF_PROGRAM_SQL}
WHERE p."organization_id" = %s AND p."key" = %s
"""  # noqa: S608 (identifiers from the models, values bound)

# One statement: a bearer token (as integrations.clients reads it, aliases t, a, c and o) and
# the balance in the program of its client's organisation (program key null: no such program).
# Only the token's own organisation is ever read.
_TOKEN_AND_BALANCE_SQL = f"""
SELECT {TOKEN_SELECT_SQL}, {_BALANCE_COLUMNS_SQL}
{TOKEN_FROM_SQL}
LEFT JOIN "{PointProgram._meta.db_table}" p
       ON p."organization_id" = c."organization_id" AND p."key" = %s {_MEMBER_OF_PROGRAM_SQL}
{TOKEN_WHERE_SQL}
"""


def _member_balance(row, user_id: str) -> MemberBalance:
    """The balance of a row of _BALANCE_COLUMNS_SQL; raises ProgramNotFound, UserNotFound."""
    key, member_id, balance, held, pending, tier = row
    if key is None:
        raise ProgramNotFound()
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


def token_and_balance_get(*, request, program_key: str, user_id: str) -> tuple:
    """The request's bearer token as integrations.clients.valid_bearer_token gives it (None:
    no such token, or not valid as it stands), and the member's balance in the program of the
    token's organisation, read with it in one statement (None: no such program or member)."""
    checksum = bearer_checksum(request)
    if checksum is None:
        return None, None
    row = sql.fetch_one(_TOKEN_AND_BALANCE_SQL, [program_key, user_id, checksum])
    if row is None:
        return None, None
    token = valid_token_of_row(row, request)
    try:
        balance = _member_balance(row[TOKEN_ROW_LENGTH:], user_id)
    except (ProgramNotFound, UserNotFound):
        balance = None
    return token, balance


def member_balance_get(
    *, client: ApiClient, org_id: str, program_key: str, user_id: str
) -> MemberBalance:
    """The member's balance and tier in the program of the client's organisation.

    Raises OrganizationForbidden when orgId is not the client's organisation (another tenant's
    data is never read), ProgramNotFound and UserNotFound.
    """
    if not same_organization(client, org_id):
        raise OrganizationForbidden()
    organization_id = sql.param(PointProgram, "organization", client.organization_id)
    row = sql.fetch_one(_BALANCE_SQL, [user_id, organization_id, program_key])
    if row is None:
        raise ProgramNotFound()
    return _member_balance(row, user_id)
