"""Domain exceptions of rewards. The Rokwire contract (rewards/api.py) maps them to HTTP.

Every refusal leaves the database as it was: services raise inside their transaction, so the
whole transaction rolls back.
"""


class RewardsError(Exception):
    """Base of every refusal. `code` is machine-readable; `field` names the input at fault."""

    code = "rewards_error"
    default_message = "the rewards operation was refused"

    def __init__(self, message: str = "", *, field: str | None = None, **details):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.field = field
        self.details = details


class InvalidInput(RewardsError):
    code = "invalid_input"
    default_message = "the request is not valid"


class NotFound(RewardsError):
    code = "not_found"
    default_message = "not found"


class Forbidden(RewardsError):
    code = "forbidden"
    default_message = "not allowed"


class OperationOfAnotherBuildingBlock(Forbidden):
    code = "building_block_mismatch"
    default_message = "this operation belongs to another building block"


class Conflict(RewardsError):
    """The request is well formed but the current state refuses it."""

    code = "conflict"
    default_message = "the request conflicts with the current state"


class DuplicateKey(Conflict):
    code = "duplicate"
    default_message = "an item with this key already exists"


class RowReferenced(Conflict):
    code = "referenced"
    default_message = "this item is referenced by other records and cannot be deleted"


class ReadOnlyField(InvalidInput):
    code = "read_only_field"
    default_message = "this field is read-only"


class RewardTypeInactive(Conflict):
    code = "reward_type_inactive"
    default_message = "the reward type is not active"


class InventoryDepleted(Conflict):
    code = "inventory_depleted"
    default_message = "no inventory of this reward type is available"


class InsufficientRewardBalance(Conflict):
    code = "insufficient_balance"
    default_message = "the reward balance is too low"


class CodePoolExhausted(Conflict):
    code = "code_pool_exhausted"
    default_message = "no digital codes of this reward type are left"


class InvalidStatusTransition(Conflict):
    code = "invalid_status_transition"
    default_message = "the claim cannot move to this status"


class NotForSale(Conflict):
    code = "not_for_sale"
    default_message = "this reward type has no points price"


class InsufficientPointsForPurchase(Conflict):
    code = "insufficient_points"
    default_message = "not enough points for this purchase"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    default_message = "this Idempotency-Key was already used with different details"
