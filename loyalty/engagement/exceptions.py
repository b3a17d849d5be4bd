"""Refusals of customer engagement. The profiles API (loyalty/engagement/api.py) maps them to HTTP.

Services raise them inside their transaction, so a refused request leaves nothing behind.
`field` names the input at fault (in the contract's camelCase spelling).
"""

from __future__ import annotations


class EngagementError(Exception):
    code = "engagement_error"
    default_message = "the request was refused"

    def __init__(self, message: str = "", *, field: str | None = None, **details):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.field = field
        self.details = details


class InvalidInput(EngagementError):
    code = "invalid_parameters"
    default_message = "invalid parameters"


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    default_message = "cursor: not a cursor of this list"


class CustomerNotFound(EngagementError):
    code = "customer_not_found"
    default_message = "no such customer"


class UnknownCustomer(InvalidInput):
    """A body names a customer that does not exist (a path naming one is CustomerNotFound)."""

    code = "unknown_customer"
    default_message = "userId: no such customer"


class CustomerBlocked(EngagementError):
    code = "customer_blocked"
    default_message = "the customer is blocked"


class ExternalIdTaken(EngagementError):
    code = "external_id_taken"
    default_message = "externalId: a customer with this external id already exists"


class NotFound(EngagementError):
    code = "not_found"
    default_message = "not found"


class Conflict(EngagementError):
    code = "conflict"
    default_message = "the request conflicts with the current state"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    default_message = "Idempotency-Key was already used with a different request"


class TiersNotOffered(Conflict):
    code = "tiers_not_offered"
    default_message = (
        "a balance-only follower program has no tiers (the point master keeps member levels)"
    )


class TierBasisMismatch(Conflict):
    code = "tier_basis_mismatch"
    default_message = "every tier of a program must have the same basis"


class CampaignClosed(Conflict):
    code = "campaign_closed"
    default_message = "the campaign has ended or is not active"


class OfferUnavailable(Conflict):
    code = "offer_unavailable"
    default_message = "the offer is not on sale now"
