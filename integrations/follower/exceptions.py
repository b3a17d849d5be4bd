"""Refusals of the follower contract (seed 002). The contract's exception handler renders them."""

from __future__ import annotations


class FollowerError(Exception):
    """Base: an HTTP status, a human message and the per-item errors behind it."""

    status_code = 400
    default_message = "the request was refused"

    def __init__(self, message: str = "", *, errors: list[dict] | None = None):
        self.message = message or self.default_message
        self.errors = errors or []
        super().__init__(self.message)


class InvalidItems(FollowerError):
    """One or more items are malformed; each error names its index and field."""

    default_message = "Invalid items"

    @classmethod
    def naming_first(cls, errors: list[dict]) -> InvalidItems:
        """The refusal whose message names the first bad item's index and field."""
        first = errors[0]
        where = f"item at index {first['index']}" if "index" in first else "request"
        return cls(f"Invalid {where}: {first['field']}: {first['message']}", errors=errors)


class TooManyItems(FollowerError):
    default_message = "Too many items"


class NewPointSystemNotActive(FollowerError):
    """The items name a program that is not in follower_transactions mode (seed 002's words)."""

    default_message = "New point system not active"


class IdempotencyKeyReused(FollowerError):
    status_code = 409
    default_message = "this Idempotency-Key was already used with a different request"


class BalanceJobNotFound(FollowerError):
    status_code = 404
    default_message = "balance job not found"
