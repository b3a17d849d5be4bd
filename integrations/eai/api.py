"""Seed 000's EAI two-phase points API: `POST /eai/v1/points?commit|confirm|rollback`.

The whole wire contract is in this module, to be read side by side with the seed:

* Exactly one flag: the seed's bare `?commit`, `?confirm`, `?rollback`, or `?action=<flag>` (the
  same thing, spelled so that an OpenAPI client can send it). None or several: 400.
* Body keys in the seed's spelling (`userid`, `pointstodeduct`, `transactionid`, `description`)
  or camelCase (`userId`, `pointsToDeduct`, `transactionId`); keys are matched ignoring case.
* Replies: `{"status": "success"|"failed", "message", "code", "transactionid"}` with the seed's
  messages on success. 200 success; 400 malformed request, unknown user, insufficient points;
  401 missing or wrong credentials (`WWW-Authenticate: Basic`); 403 inactive vendor or address
  not allowed; 404 transaction not found (also another member's); 409 the opposite action on a
  resolved hold, an expired hold, a transaction id reused with another user or amount, a
  follower program.
* An identical repeat of a commit, confirm or rollback gets the same 200 again and changes
  nothing (header `Idempotent-Replayed: true`): vendors retry, and a lost reply must not turn
  into an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from integrations.eai import services
from integrations.eai.auth import VendorAllowed, VendorBasicAuthentication, VendorPrincipal
from integrations.eai.exceptions import (
    EaiError,
    InactiveUser,
    InvalidField,
    InvalidRequest,
    UnknownUser,
)
from integrations.eai.payload import json_object
from loyalty.models import Member
from loyalty.validators import EXTERNAL_ID_MAX_LENGTH, UNSTORABLE_TEXT_RE
from points.exceptions import (
    HoldAlreadyResolved,
    HoldConflict,
    HoldExpired,
    HoldNotFound,
    IdempotencyConflict,
    PointsError,
    ProgramIsFollower,
)
from points.models import HoldStatus
from points.services import MAX_POINTS_PER_OPERATION

COMMIT, CONFIRM, ROLLBACK = "commit", "confirm", "rollback"
ACTIONS = (COMMIT, CONFIRM, ROLLBACK)

# The seed's success messages, and our machine-readable codes beside them.
SUCCESS = {
    COMMIT: ("points committed for transaction", "committed"),
    CONFIRM: ("points successfully deducted", "deducted"),
    ROLLBACK: ("points successfully rolled back", "rolled_back"),
}

TRANSACTION_ID_MAX_LENGTH = 200  # points.models.Hold.transaction_id
DESCRIPTION_MAX_LENGTH = 500  # points.models.Hold.description


# --- request parsing ----------------------------------------------------------------------------


def _text(payload: dict, field: str, *, max_length: int, optional: bool = False) -> str | None:
    """A JSON string of 1..max_length characters. An optional field may be absent, null or
    empty (None). Checked by hand rather than by a DRF serializer: this is the hottest path of
    the platform, and a serializer's per-request field copies cost more than the whole check."""
    if field not in payload:
        if optional:
            return None
        raise InvalidField(field, "is required")
    value = payload[field]
    if value is None:
        if optional:
            return None
        raise InvalidField(field, "must not be null")
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    if not value:
        if optional:
            return None
        raise InvalidField(field, "must not be empty")
    if len(value) > max_length:
        raise InvalidField(field, f"must be at most {max_length} characters")
    # Refused here, not by the database as a 500.
    if UNSTORABLE_TEXT_RE.search(value):
        if "\x00" in value:
            raise InvalidField(field, "must not contain a null character")
        raise InvalidField(field, "must not contain an unpaired surrogate character")
    return value


def _points(payload: dict, field: str) -> int:
    """A JSON integer in 1..MAX_POINTS_PER_OPERATION: not a bool, float or numeric string."""
    if field not in payload:
        raise InvalidField(field, "is required")
    value = payload[field]
    if value is None:
        raise InvalidField(field, "must not be null")
    # bool is an int in Python, and true points are a bug, not one point.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(field, "must be a whole number")
    if value <= 0:
        raise InvalidField(field, "must be greater than zero")
    if value > MAX_POINTS_PER_OPERATION:
        raise InvalidField(field, f"must be at most {MAX_POINTS_PER_OPERATION}")
    return value


@dataclass(frozen=True, slots=True)
class EaiRequestBody:
    """The body, checked field by field in the documented order (the first problem is
    reported). points and description are read on commit only."""

    userid: str
    transactionid: str
    points: int | None = None
    description: str = ""

    @classmethod
    def parse(cls, payload: dict, *, action: str) -> EaiRequestBody:
        userid = _text(payload, "userid", max_length=EXTERNAL_ID_MAX_LENGTH)
        if action != COMMIT:
            transactionid = _text(payload, "transactionid", max_length=TRANSACTION_ID_MAX_LENGTH)
            return cls(userid=userid, transactionid=transactionid)
        points = _points(payload, "pointstodeduct")
        transactionid = _text(payload, "transactionid", max_length=TRANSACTION_ID_MAX_LENGTH)
        description = _text(
            payload, "description", max_length=DESCRIPTION_MAX_LENGTH, optional=True
        )
        return cls(
            userid=userid, transactionid=transactionid, points=points, description=description or ""
        )


def requested_action(query) -> str:
    flags = {name for name in ACTIONS if name in query}
    for value in query.getlist("action"):
        if value not in ACTIONS:
            raise InvalidRequest("action must be one of commit, confirm, rollback")
        flags.add(value)
    if len(flags) != 1:
        raise InvalidRequest("exactly one of ?commit, ?confirm or ?rollback is required")
    return flags.pop()


# --- the view -----------------------------------------------------------------------------------


class EaiReplySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["success", "failed"])
    message = serializers.CharField()
    code = serializers.CharField(
        help_text="Machine-readable outcome, e.g. committed, hold_expired."
    )
    transactionid = serializers.CharField(allow_null=True)


class EaiPointsBodySerializer(serializers.Serializer):
    """The request body as documented (one schema for the three flags)."""

    userid = serializers.CharField(
        max_length=EXTERNAL_ID_MAX_LENGTH,
        help_text="The member's id on the platform (the SSO token's userid). Also userId.",
    )
    transactionid = serializers.CharField(
        max_length=TRANSACTION_ID_MAX_LENGTH,
        help_text="The vendor's id of this redemption, the idempotency key. Also transactionId.",
    )
    pointstodeduct = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_POINTS_PER_OPERATION,
        help_text="commit only, required there: a JSON integer. Also pointsToDeduct.",
    )
    description = serializers.CharField(
        required=False,
        max_length=DESCRIPTION_MAX_LENGTH,
        help_text='commit only: e.g. "redemption for [reward name]".',
    )


def _reply_example(name, status, message, code, status_codes, transactionid="order-1001"):
    return OpenApiExample(
        name,
        value={"status": status, "message": message, "code": code, "transactionid": transactionid},
        response_only=True,
        status_codes=status_codes,
    )


class EaiPointsApi(APIView):
    """Commit, confirm or roll back a vendor's deduction of a member's points."""

    authentication_classes = [VendorBasicAuthentication]
    permission_classes = [VendorAllowed]
    parser_classes = [JSONParser]  # documents the body; payload.json_object reads it

    # Set as soon as the body names one, so that error replies can carry it too.
    transaction_id: str | None = None

    def get_exception_handler(self):
        return eai_exception_handler

    @extend_schema(
        operation_id="eai_points",
        summary="Two-phase point deduction: commit, confirm or roll back (seed 000)",
        description=(
            "One operation, three flags. Send exactly one of the seed's bare query flags "
            "`?commit`, `?confirm`, `?rollback`, or the same as `?action=commit|confirm|rollback`."
            " `commit` holds `pointstodeduct` points of `userid` under `transactionid` until "
            "the program's hold time-to-live; `confirm` deducts them; `rollback` releases them. "
            "An identical repeat gets the same 200 again (header `Idempotent-Replayed: true`). "
            "Body keys may also be camelCase (`userId`, `pointsToDeduct`, `transactionId`)."
        ),
        tags=["EAI two-phase points (seed 000)"],
        parameters=[
            OpenApiParameter(
                "action",
                str,
                OpenApiParameter.QUERY,
                required=False,
                enum=list(ACTIONS),
                description=(
                    "The phase. The seed's bare flags `?commit`, `?confirm`, `?rollback` "
                    "are the same; exactly one flag in all, otherwise 400."
                ),
            ),
        ],
        request=EaiPointsBodySerializer,
        responses={
            200: EaiReplySerializer,
            400: EaiReplySerializer,
            401: EaiReplySerializer,
            403: EaiReplySerializer,
            404: EaiReplySerializer,
            409: EaiReplySerializer,
        },
        examples=[
            OpenApiExample(
                "commit",
                value={
                    "userid": "member-42",
                    "pointstodeduct": 500,
                    "transactionid": "order-1001",
                    "description": "redemption for Coffee mug",
                },
                request_only=True,
            ),
            OpenApiExample(
                "confirm or rollback",
                value={"userid": "member-42", "transactionid": "order-1001"},
                request_only=True,
            ),
            _reply_example("committed", "success", *SUCCESS[COMMIT], ["200"]),
            _reply_example("deducted", "success", *SUCCESS[CONFIRM], ["200"]),
            _reply_example("rolled back", "success", *SUCCESS[ROLLBACK], ["200"]),
            _reply_example(
                "insufficient points",
                "failed",
                "insufficient points",
                "insufficient_points",
                ["400"],
            ),
            _reply_example("invalid user", "failed", "user is invalid", "invalid_user", ["400"]),
            _reply_example(
                "wrong credentials",
                "failed",
                "invalid vendor credentials",
                "authentication_failed",
                ["401"],
                None,
            ),
            _reply_example(
                "address not allowed",
                "failed",
                "IP address not allowed",
                "ip_not_allowed",
                ["403"],
                None,
            ),
            _reply_example(
                "not found", "failed", "transaction not found", "transaction_not_found", ["404"]
            ),
            _reply_example(
                "already deducted",
                "failed",
                "points already deducted",
                "points_already_deducted",
                ["409"],
            ),
        ],
    )
    def post(self, request):
        action = requested_action(request.query_params)
        payload = json_object(request)
        if isinstance(payload.get("transactionid"), str):
            self.transaction_id = payload["transactionid"][:TRANSACTION_ID_MAX_LENGTH]
        reply, replayed = eai_points_perform(principal=request.user, action=action, payload=payload)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(reply, status=200, headers=headers)


def eai_points_perform(
    *, principal: VendorPrincipal, action: str, payload: dict
) -> tuple[dict, bool]:
    """Check the body and perform the action for the authenticated vendor: the success reply
    and whether it repeats an earlier call. Raises the refusals eai_exception_handler maps."""
    vendor = principal.vendor
    body = EaiRequestBody.parse(payload, action=action)
    member = principal.member(body.userid)
    if member is None:
        raise UnknownUser()
    if action == COMMIT:
        if member.status != Member.Status.ACTIVE:
            raise InactiveUser()
        result = services.vendor_points_commit(
            vendor=vendor,
            member=member,
            points=body.points,
            transaction_id=body.transactionid,
            description=body.description,
        )
    elif action == CONFIRM:
        result = services.vendor_points_confirm(
            vendor=vendor, member=member, transaction_id=body.transactionid
        )
    else:
        result = services.vendor_points_rollback(
            vendor=vendor, member=member, transaction_id=body.transactionid
        )
    message, code = SUCCESS[action]
    # EaiReplySerializer documents this shape; a test holds the two together.
    reply = {
        "status": "success",
        "message": message,
        "code": code,
        "transactionid": result.hold.transaction_id,
    }
    return reply, result.replayed


# --- errors: one handler maps every refusal to the contract's reply -------------------------------


def _ledger_refusal(exc: PointsError) -> tuple[int, str]:
    if isinstance(exc, HoldAlreadyResolved):
        if exc.status == HoldStatus.CONFIRMED:
            return 409, "points_already_deducted"
        return 409, "points_already_rolled_back"
    if isinstance(exc, HoldNotFound):
        return 404, exc.code
    if isinstance(exc, HoldExpired | HoldConflict | IdempotencyConflict | ProgramIsFollower):
        return 409, exc.code
    # InsufficientPoints, InvalidAmount and any other refusal of the request's content.
    return 400, exc.code


def eai_exception_handler(exc, context):
    """Map every refusal on the EAI API to `{"status": "failed", "message", "code", ...}`."""
    headers = {}
    if isinstance(exc, PointsError):
        status, code = _ledger_refusal(exc)
        message = exc.message
    elif isinstance(exc, EaiError):
        status, code, message = exc.status, exc.code, exc.message
    elif isinstance(exc, drf_exceptions.APIException):
        status = exc.status_code
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "request_refused"
        message = str(exc.detail)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
    else:
        return None  # a bug: Django's 500, which the vendor kit retries
    set_rollback()
    view = context.get("view")
    body = {
        "status": "failed",
        "message": message,
        "code": code,
        "transactionid": getattr(view, "transaction_id", None),
    }
    return Response(body, status=status, headers=headers or None)
