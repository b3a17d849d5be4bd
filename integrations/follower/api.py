"""The follower API of seed 002, as the point master calls it.

    POST /api/v2/point-accounts/balances             -> 202 {"id", "status": "queued", "timeStamp"}
    GET  /api/v2/point-accounts/balances/status/{id} -> 200 {"messages", "id", "status",
                                                             "timeStamp"}
    POST /api/v2/point-accounts/transactions         -> 202 summary (below)

Authentication: an OAuth2 client-credentials token of an ApiClient holding `follower:write`
(401 without a valid token, 403 without the scope). Everything is scoped to the client's
organisation: `definitionId` names a program of that organisation, and a job id of another
organisation is 404 like an unknown one.

Request bodies are JSON arrays of at most 1000 items (seed 002 states the limit for
transactions; balances get the same one). Every item is validated before anything is stored.

Errors. Seed 002 names only "400 Too many items, New point system not active", so this contract
answers every refusal as::

    {"message": "<what went wrong>", "errors": [{"index": 3, "field": "amount",
                                                 "message": "A valid integer is required."}]}

`errors` lists per-item problems (index in the array, field name as sent) and is empty for
refusals of the whole request. Statuses: 400 invalid body or items, "Too many items" (more than
1000), "New point system not active" (transactions naming a program that is not in
follower_transactions mode; its items listed in `errors`); 401 no or bad token; 403 token lacks
follower:write; 404 unknown balance job; 409 Idempotency-Key reused with a different request.

Transactions reply (202)::

    {"id", "status": "applied", "timeStamp", "items", "credited", "pendingCredited", "debited",
     "accountsCreated", "clamped": [{"index", "contactId", "requested", "applied"}]}

`clamped` lists debits larger than the balance: the account went to zero (the master is the
truth and a follower never goes negative) and `applied` says how much was taken. With an
`Idempotency-Key` header (scoped to the client) a repeat of the same request gets the first
reply again (header `Idempotent-Replayed: true`) and applies nothing; the same key with other
contacts, amounts, definitions or dates is 409.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import ISO_8601, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, exception_handler, set_rollback

from integrations.clients import ApiClientAuthentication, HasScopes
from integrations.follower import services
from integrations.follower.exceptions import (
    BalanceJobNotFound,
    FollowerError,
    InvalidItems,
    TooManyItems,
)
from integrations.follower.selectors import balance_job_get
from loyalty.api_fields import StrictCharField, StrictIntegerField
from loyalty.validators import (
    EXTERNAL_ID_MAX_LENGTH,
    UNSTORABLE_TEXT_RE,
    external_id_problem,
)
from points.exceptions import PointsError
from points.services import MAX_POINTS_PER_OPERATION

FOLLOWER_SCOPE = "follower:write"
IDEMPOTENCY_KEY_MAX_LENGTH = 200


# --- errors ------------------------------------------------------------------------------------


def follower_exception_handler(exc, context):
    """Render every refusal of this contract as {"message", "errors"}; roll back the request."""
    if isinstance(exc, FollowerError):
        set_rollback()
        return Response({"message": exc.message, "errors": exc.errors}, status=exc.status_code)
    if isinstance(exc, PointsError):
        set_rollback()
        return Response({"message": exc.message, "errors": []}, status=400)
    response = exception_handler(exc, context)  # DRF's: auth headers, 404, 405, parse errors
    if response is None:
        return None
    data = response.data
    message = data.get("detail") if isinstance(data, dict) else None
    response.data = {"message": str(message or "invalid request"), "errors": []}
    return response


@extend_schema_serializer(component_name="FollowerItemError")
class ItemErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(required=False)
    field = serializers.CharField()
    message = serializers.CharField()


@extend_schema_serializer(component_name="FollowerError")
class ErrorSerializer(serializers.Serializer):
    message = serializers.CharField()
    errors = ItemErrorSerializer(many=True)


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid items, Too many items, ..."),
    401: OpenApiResponse(ErrorSerializer, description="No or invalid token."),
    403: OpenApiResponse(ErrorSerializer, description="The token lacks follower:write."),
}


# --- item fields -------------------------------------------------------------------------------


class ContactIdField(StrictCharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=EXTERNAL_ID_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        problem = external_id_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


def validate_items(data, item_serializer_class) -> list[dict]:
    """Validate the body as an array of items; raise naming each bad item's index and field."""
    if not isinstance(data, list):
        raise InvalidItems(
            "the body must be a JSON array of items",
            errors=[{"field": "body", "message": "expected an array"}],
        )
    if len(data) > services.MAX_ITEMS_PER_REQUEST:
        raise TooManyItems(
            errors=[
                {
                    "field": "body",
                    "message": f"at most {services.MAX_ITEMS_PER_REQUEST} items per request, "
                    f"got {len(data)}",
                }
            ]
        )
    if not data:
        raise InvalidItems(
            "the array has no items", errors=[{"field": "body", "message": "expected items"}]
        )
    serializer = item_serializer_class(data=data, many=True)
    if serializer.is_valid():
        return serializer.validated_data
    # DRF lists one error dict per item, or (3.16+) maps only the bad items' indexes to theirs.
    raw_errors = serializer.errors
    by_index = raw_errors.items() if isinstance(raw_errors, dict) else enumerate(raw_errors)
    errors = []
    for index, item_errors in by_index:
        if not isinstance(index, int) or not isinstance(item_errors, dict):  # list-level error
            errors.append({"field": "body", "message": " ".join(map(str, item_errors))})
            continue
        for field, messages in item_errors.items():
            field_name = "item" if field == "non_field_errors" else field
            errors.append({"index": index, "field": field_name, "message": " ".join(messages)})
    errors.sort(key=lambda error: error.get("index", -1))
    raise InvalidItems.naming_first(errors)


# --- the common case of a transactions body, without DRF's per-field machinery ------------------

_NOT_PLAIN = object()


def plain_transaction_items(data) -> list[dict] | None:
    """The validated items of a transactions body when every item is plainly valid, else None.

    A thousand items through DRF's serializer cost more than applying them. This accepts only
    items that TransactionsCreateApi.InputSerializer accepts unchanged (strings without
    surrounding whitespace, JSON integers in range, ISO 8601 times with an offset) and returns
    exactly what it would return. Anything else, a single doubtful item included, gives None
    and the caller validates with the serializer, so every refusal and its message stay DRF's.
    """
    if (
        not isinstance(data, list)
        or not 0 < len(data) <= services.MAX_ITEMS_PER_REQUEST
        or api_settings.DATETIME_INPUT_FORMATS != [ISO_8601]
        or not settings.USE_TZ
    ):
        return None
    zone = timezone.get_current_timezone()
    items = []
    for item in data:
        if not isinstance(item, dict):
            return None
        contact_id, amount = item.get("contactId"), item.get("amount")
        definition_id = item.get("definitionId")
        if not (
            isinstance(contact_id, str)
            and external_id_problem(contact_id) is None  # also: no whitespace, <= max length
            and type(amount) is int
            and amount != 0
            and -MAX_POINTS_PER_OPERATION <= amount <= MAX_POINTS_PER_OPERATION
            and type(definition_id) is int
            and definition_id >= 0
        ):
            return None
        validated = {
            "contactId": contact_id,
            "amount": amount,
            "definitionId": definition_id,
            "timeStamp": _plain_time(item.get("timeStamp"), zone),
            "source": _plain_text(item.get("source", "Master"), max_length=64, blank=False),
            "description": _plain_text(item.get("description", ""), max_length=500, blank=True),
            "validFrom": _plain_time(item.get("validFrom"), zone, null=True),
            "validTo": _plain_time(item.get("validTo"), zone, null=True),
        }
        if any(value is _NOT_PLAIN for value in validated.values()):
            return None
        items.append(validated)
    return items


def _plain_text(value, *, max_length: int, blank: bool):
    """The string as DRF's CharField would return it, or _NOT_PLAIN when in doubt."""
    if (
        not isinstance(value, str)
        or len(value) > max_length
        or (not value and not blank)
        or value != value.strip()
        or UNSTORABLE_TEXT_RE.search(value)
    ):
        return _NOT_PLAIN
    return value


def _plain_time(value, zone, *, null: bool = False):
    """An aware ISO 8601 time in the current zone as DRF's DateTimeField would return it; None
    for a missing or null value where that is allowed; _NOT_PLAIN when in doubt."""
    if value is None:
        return None if null else _NOT_PLAIN
    if not isinstance(value, str):
        return _NOT_PLAIN
    try:
        parsed = parse_datetime(value)
        if parsed is None or timezone.is_naive(parsed):
            return _NOT_PLAIN
        return parsed.astimezone(zone)
    except (ValueError, TypeError, OverflowError):
        return _NOT_PLAIN


class FollowerApi(APIView):
    """Base of this contract's views: client tokens with follower:write, its own error shape."""

    authentication_classes = [ApiClientAuthentication]
    permission_classes = [HasScopes]
    required_scopes = [FOLLOWER_SCOPE]

    def get_exception_handler(self):
        return follower_exception_handler


# --- balances ----------------------------------------------------------------------------------


class BalancesCreateApi(FollowerApi):
    @extend_schema_serializer(component_name="FollowerBalanceItem")
    class InputSerializer(serializers.Serializer):
        contactId = ContactIdField()
        amount = StrictIntegerField(min_value=0, max_value=MAX_POINTS_PER_OPERATION)
        definitionId = StrictIntegerField(min_value=0)
        timeStamp = serializers.DateTimeField()

    @extend_schema_serializer(component_name="FollowerBalanceJobAccepted")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        status = serializers.CharField()
        timeStamp = serializers.DateTimeField(source="created_at")

    @extend_schema(
        operation_id="follower_balances_create",
        summary="Set point balances (balance-only follower mode)",
        description=(
            "Stores the balances as a queued job and answers at once; a worker sets each "
            "contact's account to its amount (creating unknown contacts). Follow the job at "
            "/api/v2/point-accounts/balances/status/{id}."
        ),
        request=InputSerializer(many=True),
        responses={202: OutputSerializer, **ERRORS},
        tags=["follower"],
    )
    def post(self, request):
        items = validate_items(request.data, self.InputSerializer)
        job = services.balance_job_create(
            client=request.api_client,
            items=[
                services.BalanceItem(
                    contact_id=item["contactId"],
                    amount=item["amount"],
                    definition_id=item["definitionId"],
                    time_stamp=item["timeStamp"],
                )
                for item in items
            ],
        )
        return Response(self.OutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class BalanceJobStatusApi(FollowerApi):
    @extend_schema_serializer(component_name="FollowerBalanceJobStatus")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="FollowerBalanceJobMessage")
        class MessageSerializer(serializers.Serializer):
            message = serializers.CharField()
            timeStamp = serializers.CharField()

        messages = MessageSerializer(many=True)
        id = serializers.UUIDField()
        status = serializers.ChoiceField(
            choices=["queued", "processing", "completed", "completed_with_errors", "failed"]
        )
        timeStamp = serializers.DateTimeField(source="updated_at")

    @extend_schema(
        operation_id="follower_balances_status",
        summary="Status of a balance job",
        description=(
            "queued / processing / completed (every item applied) / completed_with_errors "
            "(some items refused, each named in the messages) / failed (the job itself failed). "
            "timeStamp is the time of the last change."
        ),
        parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH, description="The job id.")],
        responses={
            200: OutputSerializer,
            401: ERRORS[401],
            403: ERRORS[403],
            404: OpenApiResponse(ErrorSerializer, description="Unknown job."),
        },
        tags=["follower"],
    )
    def get(self, request, id: str):
        job = balance_job_get(organization=request.api_client.organization, job_id=id)
        if job is None:
            raise BalanceJobNotFound()
        return Response(self.OutputSerializer(job).data)


# --- transactions ------------------------------------------------------------------------------


class TransactionsCreateApi(FollowerApi):
    @extend_schema_serializer(component_name="FollowerTransactionItem")
    class InputSerializer(serializers.Serializer):
        contactId = ContactIdField()
        amount = StrictIntegerField(
            min_value=-MAX_POINTS_PER_OPERATION,
            max_value=MAX_POINTS_PER_OPERATION,
            help_text="Positive: a credit (a lot); negative: a debit.",
        )
        definitionId = StrictIntegerField(min_value=0)
        timeStamp = serializers.DateTimeField()
        source = StrictCharField(max_length=64, required=False, default="Master")
        description = StrictCharField(max_length=500, required=False, allow_blank=True, default="")
        validFrom = serializers.DateTimeField(required=False, allow_null=True, default=None)
        validTo = serializers.DateTimeField(required=False, allow_null=True, default=None)

        def validate_amount(self, value):
            if value == 0:
                raise serializers.ValidationError("must not be zero")
            return value

    @extend_schema_serializer(component_name="FollowerTransactionsApplied")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="FollowerClampedDebit")
        class ClampedSerializer(serializers.Serializer):
            index = serializers.IntegerField()
            contactId = serializers.CharField()
            requested = serializers.IntegerField()
            applied = serializers.IntegerField()

        id = serializers.UUIDField()
        status = serializers.CharField()
        timeStamp = serializers.CharField()
        items = serializers.IntegerField()
        credited = serializers.IntegerField()
        pendingCredited = serializers.IntegerField()
        debited = serializers.IntegerField()
        accountsCreated = serializers.IntegerField()
        clamped = ClampedSerializer(many=True)

    @extend_schema(
        operation_id="follower_transactions_create",
        summary="Add point transactions (all-transaction follower mode)",
        description=(
            "At most 1000 items, applied together in one database transaction or not at all. "
            "A credit is a lot, pending until validFrom and expiring at validTo; a debit beyond "
            "the balance takes the account to zero and is listed in `clamped`."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                # What _idempotency_key admits: printable, not only spaces, at most 200.
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
                    "pattern": "^(?=.*[^ ])[^\\x00-\\x1f\\x7f-\\xa0\\xad]+$",
                },
                OpenApiParameter.HEADER,
                required=False,
                description="A repeat with the same key and request gets the first reply.",
            )
        ],
        request=InputSerializer(many=True),
        responses={
            202: OutputSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Idempotency-Key reused."),
            **ERRORS,
        },
        tags=["follower"],
    )
    def post(self, request):
        idempotency_key = self._idempotency_key(request)
        items = plain_transaction_items(request.data)
        if items is None:
            items = validate_items(request.data, self.InputSerializer)
        outcome = services.transactions_apply(
            client=request.api_client,
            idempotency_key=idempotency_key,
            items=[
                services.TransactionItem(
                    contact_id=item["contactId"],
                    amount=item["amount"],
                    definition_id=item["definitionId"],
                    time_stamp=item["timeStamp"],
                    source=item["source"],
                    description=item["description"],
                    valid_from=item["validFrom"],
                    valid_to=item["validTo"],
                )
                for item in items
            ],
        )
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        return Response(outcome.batch.reply, status=status.HTTP_202_ACCEPTED, headers=headers)

    @staticmethod
    def _idempotency_key(request) -> str | None:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return None
        key = key.strip()
        if not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not key.isprintable():
            raise InvalidItems(
                "invalid Idempotency-Key header",
                errors=[
                    {
                        "field": "Idempotency-Key",
                        "message": f"1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable characters",
                    }
                ],
            )
        return key
