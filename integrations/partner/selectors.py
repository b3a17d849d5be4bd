"""Reads of the partner Point API (seed 001): a member's balance, as the client's organisation
sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import OuterRef, Subquery

from integrations.models import ApiClient
from integrations.partner.exceptions import OrganizationForbidden, ProgramNotFound, UserNotFound
from loyalty.models import Member
from points.models import PointAccount, PointProgram


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
    # One query: the program, the member beside it and their account (if any). A missing
    # program gives no row; a missing member gives a row without one; no account reads as zeros.
    account = PointAccount.objects.filter(
        program_id=OuterRef("pk"),
        member__organization_id=client.organization_id,
        member__external_id=user_id,
    )
    row = (
        PointProgram.objects.filter(organization_id=client.organization_id, key=program_key)
        .annotate(
            member_id=Subquery(
                Member.objects.filter(
                    organization_id=client.organization_id, external_id=user_id
                ).values("pk")[:1]
            ),
            account_balance=Subquery(account.values("balance")[:1]),
            account_held=Subquery(account.values("held")[:1]),
            account_pending=Subquery(account.values("pending")[:1]),
        )
        .values("key", "member_id", "account_balance", "account_held", "account_pending")
        .first()
    )
    if row is None:
        raise ProgramNotFound()
    if row["member_id"] is None:
        raise UserNotFound()
    balance = row["account_balance"] or 0
    held = row["account_held"] or 0
    return MemberBalance(
        user_id=user_id,
        program_key=row["key"],
        balance=balance,
        available=balance - held,
        held=held,
        pending=row["account_pending"] or 0,
        # Tiers are not modelled yet; the contract's field is there, null until they are.
        tier=None,
    )
