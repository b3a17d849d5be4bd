"""Refusals of the EAI API that are not the ledger's (those are in points/exceptions.py)."""


class EaiError(Exception):
    """Base: `code` is machine-readable and `status` the HTTP status of the EAI contract."""

    code = "eai_error"
    status = 400
    default_message = "the request was refused"

    def __init__(self, message: str = ""):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


class InvalidRequest(EaiError):
    """A malformed request: flag, JSON or a field (the message names it)."""

    code = "invalid_request"


class InvalidField(InvalidRequest):
    """One body field is missing or malformed: "<field> <problem>", code invalid_<field>."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.code = f"invalid_{field}"


class UnknownUser(EaiError):
    code = "invalid_user"
    default_message = "user is invalid"


class InactiveUser(EaiError):
    code = "user_inactive"
    default_message = "user is not active"
