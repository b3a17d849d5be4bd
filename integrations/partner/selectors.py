"""Reads of the partner Point API (seed 001): a member's balance, as the client's organisation
sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from integrations.models import ApiClient
from integrations.partner.exceptions import OrganizationForbidden, ProgramNotFound, UserNotFound
from loyalty.models import Member
from points.models import PointProgram
from points.selectors import balance_get


@dataclass(frozen=True)
class MemberBalance:
    user_id: str
    program_key: str
    balance: int
    available: int
    held: int
    pending: int
    tier: str | None


def _same_organization(client: ApiClient, org_id: str) -> bool:
    try:
        return uuid.UUID(org_id) == client.organization_id
    except ValueError:
        return False


def member_balance_get(
    *, client: ApiClient, org_id: str, program_key: str, user_id: str
) -> MemberBalance:
    """The member's balance in the program of the client's organisation.

    Raises OrganizationForbidden when orgId is not the client's organisation (another tenant's
    data is never read), ProgramNotFound and UserNotFound.
    """
    if not _same_organization(client, org_id):
        raise OrganizationForbidden()
    program = PointProgram.objects.filter(
        organization_id=client.organization_id, key=program_key
    ).first()
    if program is None:
        raise ProgramNotFound()
    member = Member.objects.filter(
        organization_id=client.organization_id, external_id=user_id
    ).first()
    if member is None:
        raise UserNotFound()
    balance = balance_get(program=program, member=member)
    return MemberBalance(
        user_id=member.external_id,
        program_key=program.key,
        balance=balance.balance,
        available=balance.available,
        held=balance.held,
        pending=balance.pending,
        # Tiers are not modelled yet; the contract's field is there, null until they are.
        tier=None,
    )
