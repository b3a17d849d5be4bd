"""Domain exceptions of the points ledger. Each API contract maps them to its own error shape."""


class PointsError(Exception):
    """Base of every refusal by the ledger. `code` is machine-readable, the message is not."""

    code = "points_error"

    def __init__(self, message: str = "", **details):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details

    default_message = "the points operation was refused"


class InvalidAmount(PointsError):
    code = "invalid_amount"
    default_message = "points must be a positive whole number"


class InsufficientPoints(PointsError):
    code = "insufficient_points"
    default_message = "insufficient points"


class ProgramIsFollower(PointsError):
    code = "program_is_follower"
    default_message = "the point master owns this program's points"


class ProgramNotFollower(PointsError):
    code = "program_not_follower"
    default_message = "this program is not in a follower mode"


class IdempotencyConflict(PointsError):
    code = "idempotency_conflict"
    default_message = "this reference was already used with different details"


class HoldNotFound(PointsError):
    code = "transaction_not_found"
    default_message = "transaction not found"


class HoldAlreadyResolved(PointsError):
    """The opposite action was already applied to the hold (confirm after rollback, ...)."""

    code = "hold_already_resolved"
    default_message = "the hold is already resolved"

    def __init__(self, message: str = "", *, status: str, **details):
        super().__init__(message, status=status, **details)
        self.status = status


class HoldExpired(PointsError):
    code = "hold_expired"
    default_message = "the hold has expired"


class HoldConflict(PointsError):
    """A transaction id reused with another member or amount."""

    code = "transaction_conflict"
    default_message = "transaction id already used with a different user or amount"
