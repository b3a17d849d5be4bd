"""Refusals of the partner Point API (seed 001), each with its HTTP status and machine code.

The seed's table decides the statuses: 400 for invalid parameters, a rule that is not found,
inactive or outside its period, an invalid user and insufficient balance; 401 for a missing or
invalid token and for a token lacking the scope; 403 for a client not authorised for the rule or
organisation. `stored` marks refusals that judge the request itself: they are kept with the
requestId and repeated to every retry. Refusals about the caller's credentials or permissions
(401, 403) are not stored, so a partner whose access is fixed can retry with the same requestId.
"""

from __future__ import annotations


class PartnerApiError(Exception):
    status_code = 400
    code = "invalid_request"
    default_message = "the request was refused"
    stored = False

    def __init__(self, message: str = "", **details):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details


# --- stored refusals (400): the request itself is not acceptable -------------------------------


class RuleNotFound(PartnerApiError):
    code = "rule_not_found"
    default_message = "ruleId: rule not found"
    stored = True


class RuleInactive(PartnerApiError):
    code = "rule_inactive"
    default_message = "ruleId: the rule is inactive"
    stored = True


class RuleOutsidePeriod(PartnerApiError):
    code = "rule_outside_period"
    default_message = "ruleId: the rule is outside its active period"
    stored = True


class RuleProgramIsFollower(PartnerApiError):
    code = "program_is_follower"
    default_message = "ruleId: the rule's points are owned by an external point master"
    stored = True


class UserInvalid(PartnerApiError):
    code = "user_invalid"
    default_message = "userId: the user is invalid"
    stored = True


class InsufficientBalance(PartnerApiError):
    code = "insufficient_balance"
    default_message = "amount: insufficient balance"
    stored = True


# --- not stored: who is calling, and what it may do ----------------------------------------------


class InsufficientScope(PartnerApiError):
    status_code = 401
    code = "insufficient_scope"
    default_message = "lacks sufficient scope permissions"


class RuleForbidden(PartnerApiError):
    status_code = 403
    code = "rule_forbidden"
    default_message = "ruleId: this client is not authorised to use the rule"


class OrganizationForbidden(PartnerApiError):
    status_code = 403
    code = "organization_forbidden"
    default_message = "orgId: this client is not authorised for the organisation"


class RequestIdConflict(PartnerApiError):
    status_code = 409
    code = "request_id_conflict"
    default_message = (
        "requestId was already used with a different userId, ruleId, amount or callbackUrl"
    )


class ProgramNotFound(PartnerApiError):
    status_code = 404
    code = "program_not_found"
    default_message = "programKey: no such point program"


class UserNotFound(PartnerApiError):
    status_code = 404
    code = "user_not_found"
    default_message = "userId: no such user"
