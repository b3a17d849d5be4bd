"""Reads of the core domain: which member a signed-in person is acting as."""

from __future__ import annotations

from loyalty.models import Member

# The portal stores the chosen membership here when one login belongs to several organisations.
SESSION_MEMBER_KEY = "portal_member_id"


def memberships_for_user(user) -> list[Member]:
    if user is None or not user.is_authenticated:
        return []
    return list(
        Member.objects.filter(user=user, status=Member.Status.ACTIVE)
        .select_related("organization")
        .order_by("organization__name")
    )


def member_for_request(request) -> Member | None:
    """The member the signed-in person acts as: the one chosen in the session, or the only one.

    Works for portal sessions and for members' OAuth tokens (request.user is the person).
    Returns None when the person has no active membership or must still choose one.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    session = getattr(request, "session", None)
    chosen = session.get(SESSION_MEMBER_KEY) if session is not None else None
    members = Member.objects.filter(user=user, status=Member.Status.ACTIVE).select_related(
        "organization"
    )
    if chosen:
        member = members.filter(pk=chosen).first()
        if member is not None:
            return member
    candidates = list(members[:2])
    return candidates[0] if len(candidates) == 1 else None
