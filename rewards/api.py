"""The Rokwire Rewards Building Block contract (seed 003), under /rewards/.

Paths and shapes follow Rokwire's public API (1.0.10) where it is sound: snake_case fields as
the seed's tables, ids as `id`, single items as objects, create answered 200,
`/user/balance` an array of `{reward_type, amount}`, `/int/reward` an array of
`{reward_type, grantable_quantity, claimable_quantity}`. Deliberate deviations (DESIGN.md):

* counters (`amount_granted`, `amount_claimed`) are read-only: a request that sends other values
  than the stored ones is 400; the same values (a client sending an object back) are accepted;
* a claim's status moves only along the state machine (pending -> fulfilled | rejected |
  cancelled), through `claim_set_status`; another move is 409;
* deleting a row that other records refer to is 409 (claims are records: always 409);
* inventories and claims carry read-only extras: `depleted` (all of amount_total granted),
  `grant_overdraw` / `claim_overdraw`, and per claim item `overdrawn` and the digital `codes`.

Who calls what: `/admin/*` an organisation's API client with scope `rewards:admin` (rows of
other organisations are 404); `/int/reward` a building block with its API key (`X-Api-Key` or
`INTERNAL-API-KEY`); `/user/*` a signed-in member (portal session, CSRF on writes, or an OAuth
token with scope `member`). Writes accept an optional `Idempotency-Key` header where a repeat
would otherwise do the work twice (`/int/reward`, `/user/claims`, `/user/purchases`).

Errors. Rokwire answers errors as text/plain with the status code. This contract keeps the
status codes (400 bad input, 401 no or bad credentials, 403 not allowed, 404 not found, plus 409
for a refusal by the current state: depleted inventory, too low a balance, an illegal status
move, a referenced row, a reused Idempotency-Key) and answers one JSON shape, produced by
`rokwire_exception_handler`:

    {"status": 409, "code": "insufficient_balance", "message": "...", "field": "items",
     "details": {...}}

`field` names the input at fault (null when none); nothing is changed by a refused request.
"""

from __future__ import annotations

import uuid

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler, set_rollback

from integrations.clients import ApiClientAuthentication, HasScopes
from loyalty.models import Member
from points.models import PointProgram
from rewards import selectors, services
from rewards.auth import (
    MEMBER_AUTHENTICATION,
    IsRewardsService,
    IsSignedInMember,
    RewardsServiceKeyAuthentication,
)
from rewards.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ReadOnlyField,
    RewardsError,
)
from rewards.models import Claim, ClaimStatus, Inventory, Operation, RewardType

ADMIN_MAX_LIMIT = 1000
MEMBER_MAX_LIMIT = 100
MAX_OFFSET = 1_000_000_000
DEFAULT_LIMIT = 50


# --- errors -----------------------------------------------------------------------------------

_STATUS_OF = ((InvalidInput, 400), (NotFound, 404), (Forbidden, 403), (Conflict, 409))


def _error(status: int, code: str, message: str, field=None, details=None) -> Response:
    body = {
        "status": status,
        "code": code,
        "message": message,
        "field": field,
        "details": details or {},
    }
    return Response(body, status=status)


def rokwire_exception_handler(exc, context):
    """Map domain and DRF exceptions to this contract's error shape; roll back the request."""
    set_rollback()
    if isinstance(exc, RewardsError):
        status = next((code for kind, code in _STATUS_OF if isinstance(exc, kind)), 400)
        return _error(status, exc.code, exc.message, exc.field, exc.details)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        name, problem = _first_problem(fields) or ("non_field_errors", "invalid input")
        return _error(400, "invalid_input", f"{name}: {problem}", name, {"fields": fields})
    code = getattr(exc, "default_code", "error")
    detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
    error = _error(response.status_code, str(code), str(detail))
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            error[header] = response[header]
    return error


def _first_problem(detail, path: str = "") -> tuple[str, str] | None:
    """The first error in DRF's nested detail and where it is: `items[0].amount`."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):
                inner = f"{path}[{key}]"
            elif key == "non_field_errors" and path:
                inner = path  # an error of the whole list or object: name the object
            else:
                inner = f"{path}.{key}" if path else str(key)
            found = _first_problem(value, inner)
            if found:
                return found
        return None
    if isinstance(detail, list):
        if detail and all(isinstance(item, str) for item in detail):
            return path, str(detail[0])
        for index, item in enumerate(detail):
            found = _first_problem(item, f"{path}[{index}]")
            if found:
                return found
        return None
    return (path, str(detail)) if detail else None


class ErrorSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField(allow_null=True)
    details = serializers.DictField()


def _errors(*codes: int) -> dict:
    texts = {
        400: "Bad request (the field is named)",
        401: "No or invalid credentials",
        403: "Not allowed",
        404: "Not found (also another organisation's or member's id)",
        409: "Refused by the current state",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=texts[code]) for code in codes}


class RokwireApi(APIView):
    """Base of this contract's views: one exception handler, JSON only."""

    def get_exception_handler(self):
        return rokwire_exception_handler


# --- shared parsing ---------------------------------------------------------------------------


def _page(request, *, maximum: int) -> tuple[int, int]:
    values = {}
    for name, default in (("limit", DEFAULT_LIMIT), ("offset", 0)):
        raw = request.query_params.get(name)
        if raw in (None, ""):
            values[name] = default
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be a whole number", field=name) from None
        if values[name] < 0:
            raise InvalidInput(f"{name} must not be negative", field=name)
    if values["offset"] > MAX_OFFSET:
        # Beyond any real list, and past what the database's 64-bit OFFSET takes.
        raise InvalidInput(f"offset must be at most {MAX_OFFSET}", field="offset")
    if values["limit"] == 0 or values["limit"] > maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}", field="limit")
    return values["limit"], values["offset"]


def _paged(queryset, request, *, maximum: int):
    limit, offset = _page(request, maximum=maximum)
    return queryset[offset : offset + limit]


def _bool_param(request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidInput(f"{name} must be true or false", field=name)


def _text_param(request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return raw if raw not in (None, "") else None


def _ids_param(request) -> list[str] | None:
    raw = request.query_params.get("ids")
    if raw in (None, ""):
        return None
    ids = []
    for part in raw.split(","):
        try:
            ids.append(str(uuid.UUID(part.strip())))
        except ValueError:
            raise InvalidInput(f"ids: {part.strip()!r} is not an id", field="ids") from None
    return ids


def _status_param(request) -> str | None:
    status = _text_param(request, "status")
    if status is not None and status not in ClaimStatus.values:
        raise InvalidInput(f"status must be one of {', '.join(ClaimStatus.values)}", field="status")
    return status


def _uuid_or_404(value, label: str):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{label} not found") from None


def _check_org_id(data: dict, org) -> None:
    org_id = data.get("org_id")
    if org_id not in (None, "") and str(org_id) != str(org.pk):
        raise ReadOnlyField("org_id is the caller's organisation", field="org_id")


def _admin_input(serializer_class, request, org) -> dict:
    """The validated body of a write; an org_id in it must be the caller's (then dropped)."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    _check_org_id(data, org)
    data.pop("org_id", None)
    return data


def _org_object_or_404(queryset, org, pk, label: str):
    """The organisation's object with this id, or 404 naming what was not found."""
    found = queryset.filter(org=org, pk=_uuid_or_404(pk, label)).first()
    if found is None:
        raise NotFound(f"{label} not found")
    return found


def _reward_type_or_404(org, name, field: str) -> RewardType:
    reward_type = selectors.reward_type_by_name(org=org, name=name)
    if reward_type is None:
        raise NotFound(f"reward type {name!r} not found", field=field)
    return reward_type


class StrictInput(serializers.Serializer):
    """Input whose values must have their JSON type: DRF alone turns 42 into "42", "7" into 7
    and "yes" into true. Other keys are ignored (a client may send an object back)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            wrong = {
                name: [f"must be a {kind}"]
                for name, field in self.fields.items()
                if name in data
                and data[name] is not None
                and (kind := _json_type_of(field))
                and not _has_json_type(data[name], kind)
            }
            if wrong:
                raise exceptions.ValidationError(wrong)
        return super().to_internal_value(data)


def _json_type_of(field) -> str | None:
    if isinstance(field, serializers.BooleanField):
        return "boolean"
    if isinstance(field, serializers.IntegerField):
        return "whole number"
    if isinstance(field, serializers.CharField | serializers.ChoiceField | serializers.UUIDField):
        return "string"
    return None


def _has_json_type(value, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "whole number":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _or_empty(schema: dict) -> dict:
    """A query parameter sent empty (`?status=`) is the same as one left out."""
    return {"anyOf": [schema, {"type": "string", "enum": [""]}]}


def _limit(maximum: int) -> OpenApiParameter:
    return OpenApiParameter(
        "limit",
        _or_empty({"type": "integer", "minimum": 1, "maximum": maximum}),
        description=f"1..{maximum}",
    )


OFFSET = OpenApiParameter(
    "offset", _or_empty({"type": "integer", "minimum": 0, "maximum": MAX_OFFSET})
)
STATUS = OpenApiParameter("status", _or_empty({"type": "string", "enum": ClaimStatus.values}))


def _flag(name: str) -> OpenApiParameter:
    # What _bool_param admits: true/false or 1/0, in any case.
    return OpenApiParameter(
        name, {"type": "string", "pattern": "^(|[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"}
    )


_UUID = "[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}"
# What _ids_param admits: nothing, or ids separated by commas.
IDS = OpenApiParameter(
    "ids",
    {"type": "string", "pattern": rf"^$|^\s*{_UUID}\s*(,\s*{_UUID}\s*)*$"},
    description="Comma-separated ids",
)
# What _idempotency_key admits: 1 to 200 characters once surrounding spaces are stripped.
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
    OpenApiParameter.HEADER,
)


def _idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200:
        raise InvalidInput("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
    return key


def _deleted() -> HttpResponse:
    # Rokwire answers a delete with the text "Success".
    return HttpResponse("Success", content_type="text/plain", status=200)


_DELETED_SCHEMA = {200: OpenApiResponse(OpenApiTypes.STR, description="text/plain: Success")}


@extend_schema_field(
    {"type": "string", "enum": ClaimStatus.values, "description": "pending, then one of the rest"}
)
class ClaimStatusField(serializers.ChoiceField):
    """A claim status; inlined in the schema (other contracts have their own `status` enums)."""

    def __init__(self, **kwargs):
        super().__init__(choices=ClaimStatus.values, **kwargs)


class _ClaimItemInput(StrictInput):
    reward_type = serializers.CharField(max_length=100)
    amount = serializers.IntegerField(min_value=1, max_value=services.MAX_AMOUNT)
    inventory_id = serializers.UUIDField(required=False, allow_null=True)


def _claim_items(org, items_data: list[dict]) -> list[services.ClaimItemRequest]:
    items = []
    for index, data in enumerate(items_data):
        reward_type = _reward_type_or_404(org, data["reward_type"], f"items[{index}].reward_type")
        inventory = None
        if data.get("inventory_id"):
            inventory = Inventory.objects.filter(org=org, pk=data["inventory_id"]).first()
            if inventory is None:
                raise NotFound("inventory not found", field=f"items[{index}].inventory_id")
        items.append(
            services.ClaimItemRequest(
                reward_type=reward_type, amount=data["amount"], inventory=inventory
            )
        )
    return items


# --- output shapes ----------------------------------------------------------------------------


class RewardTypeOutput(serializers.Serializer):
    id = serializers.UUIDField()
    org_id = serializers.UUIDField()
    reward_type = serializers.CharField()
    display_name = serializers.CharField()
    active = serializers.BooleanField()
    description = serializers.CharField()
    points_price = serializers.IntegerField(allow_null=True)
    fulfilment = serializers.ChoiceField(choices=["manual", "code_pool", "webhook"])
    webhook_url = serializers.CharField()
    webhook_secret = serializers.CharField(
        help_text="Standard Webhooks secret that signs this type's fulfilment webhooks."
    )
    date_created = serializers.DateTimeField()
    date_updated = serializers.DateTimeField()


class InventoryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    org_id = serializers.UUIDField()
    reward_type = serializers.CharField(source="reward_type.reward_type")
    in_stock = serializers.BooleanField()
    amount_total = serializers.IntegerField()
    amount_granted = serializers.IntegerField(read_only=True)
    amount_claimed = serializers.IntegerField(read_only=True)
    grant_depleted = serializers.BooleanField(help_text="Permission to grant past amount_total.")
    claim_depleted = serializers.BooleanField(help_text="Permission to claim past amount_total.")
    depleted = serializers.BooleanField(
        read_only=True, help_text="State: everything in amount_total has been granted."
    )
    grant_overdraw = serializers.SerializerMethodField()
    claim_overdraw = serializers.SerializerMethodField()
    description = serializers.CharField()
    date_created = serializers.DateTimeField()
    date_updated = serializers.DateTimeField()

    def get_grant_overdraw(self, obj) -> int:
        return max(0, obj.amount_granted - obj.amount_total)

    def get_claim_overdraw(self, obj) -> int:
        return max(0, obj.amount_claimed - obj.amount_total)


class OperationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    org_id = serializers.UUIDField()
    reward_type = serializers.CharField(source="reward_type.reward_type")
    code = serializers.CharField()
    building_block = serializers.CharField()
    amount = serializers.IntegerField()
    description = serializers.CharField()
    date_created = serializers.DateTimeField()
    date_updated = serializers.DateTimeField()


class ClaimItemOutput(serializers.Serializer):
    reward_type = serializers.CharField(source="reward_type.reward_type")
    inventory_id = serializers.UUIDField()
    amount = serializers.IntegerField()
    overdrawn = serializers.IntegerField(help_text="The part claimed past the inventory's total.")
    codes = serializers.SerializerMethodField(help_text="Digital codes handed out for this item.")

    def get_codes(self, obj) -> list[str]:
        return [code.code for code in obj.digital_codes.all()]


class ClaimOutput(serializers.Serializer):
    id = serializers.UUIDField()
    org_id = serializers.UUIDField()
    user_id = serializers.CharField(source="member.external_id")
    items = ClaimItemOutput(many=True, source="items.all")
    status = ClaimStatusField()
    description = serializers.CharField()
    date_created = serializers.DateTimeField()
    date_updated = serializers.DateTimeField()


class RewardHistoryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    org_id = serializers.UUIDField()
    user_id = serializers.CharField(source="member.external_id")
    reward_type = serializers.CharField(source="reward_type.reward_type")
    code = serializers.CharField()
    building_block = serializers.CharField()
    amount = serializers.IntegerField()
    description = serializers.CharField()
    date_created = serializers.DateTimeField()
    date_updated = serializers.DateTimeField()


class RewardQuantityStateOutput(serializers.Serializer):
    reward_type = serializers.CharField()
    grantable_quantity = serializers.IntegerField()
    claimable_quantity = serializers.IntegerField()


class RewardTypeAmountOutput(serializers.Serializer):
    reward_type = serializers.CharField()
    amount = serializers.IntegerField()


def _claim_queryset():
    return Claim.objects.select_related("member").prefetch_related(
        "items__reward_type", "items__digital_codes"
    )


def _claim_out(claim: Claim) -> dict:
    return ClaimOutput(_claim_queryset().get(pk=claim.pk)).data


# --- admin: reward types ----------------------------------------------------------------------


class AdminApi(RokwireApi):
    authentication_classes = [ApiClientAuthentication]
    permission_classes = [HasScopes]
    required_scopes = ["rewards:admin"]

    @property
    def org(self):
        return self.request.api_client.organization

    @property
    def actor(self) -> str:
        return f"client:{self.request.api_client.pk}"


class RewardTypeInput(StrictInput):
    org_id = serializers.CharField(required=False, allow_blank=True)
    reward_type = serializers.CharField(max_length=100)
    display_name = serializers.CharField(max_length=200)
    active = serializers.BooleanField(required=False, default=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    points_price = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=services.MAX_AMOUNT
    )
    fulfilment = serializers.ChoiceField(
        choices=["manual", "code_pool", "webhook"], required=False, default="manual"
    )
    webhook_url = serializers.CharField(required=False, allow_blank=True, default="")


class RewardTypeUpdateInput(RewardTypeInput):
    reward_type = serializers.CharField(max_length=100, required=False)
    display_name = serializers.CharField(max_length=200, required=False)
    active = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    fulfilment = serializers.ChoiceField(choices=["manual", "code_pool", "webhook"], required=False)
    webhook_url = serializers.CharField(required=False, allow_blank=True)


class AdminRewardTypeListApi(AdminApi):
    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_types_list",
        parameters=[
            _limit(ADMIN_MAX_LIMIT),
            OFFSET,
        ],
        responses={200: RewardTypeOutput(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        rows = _paged(selectors.reward_types_of(org=self.org), request, maximum=ADMIN_MAX_LIMIT)
        return Response(RewardTypeOutput(rows, many=True).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_types_create",
        request=RewardTypeInput,
        responses={200: RewardTypeOutput, **_errors(400, 401, 403, 409)},
    )
    def post(self, request):
        data = _admin_input(RewardTypeInput, request, self.org)
        reward_type = services.reward_type_create(org=self.org, **data)
        return Response(RewardTypeOutput(reward_type).data)


class AdminRewardTypeDetailApi(AdminApi):
    def _get(self, pk) -> RewardType:
        return _org_object_or_404(RewardType.objects.all(), self.org, pk, "reward type")

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_types_get",
        responses={200: RewardTypeOutput, **_errors(401, 403, 404)},
    )
    def get(self, request, id):
        return Response(RewardTypeOutput(self._get(id)).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_types_update",
        request=RewardTypeUpdateInput,
        responses={200: RewardTypeOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def put(self, request, id):
        reward_type = self._get(id)
        data = _admin_input(RewardTypeUpdateInput, request, self.org)
        reward_type = services.reward_type_update(reward_type=reward_type, **data)
        return Response(RewardTypeOutput(reward_type).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_types_delete",
        responses={**_DELETED_SCHEMA, **_errors(401, 403, 404, 409)},
    )
    def delete(self, request, id):
        services.reward_type_delete(reward_type=self._get(id))
        return _deleted()


# --- admin: inventories ------------------------------------------------------------------------


class InventoryInput(StrictInput):
    org_id = serializers.CharField(required=False, allow_blank=True)
    reward_type = serializers.CharField(max_length=100)
    in_stock = serializers.BooleanField(required=False, default=True)
    amount_total = serializers.IntegerField(min_value=0, max_value=services.MAX_AMOUNT)
    amount_granted = serializers.IntegerField(
        required=False, help_text="Read-only: only the stored value is accepted."
    )
    amount_claimed = serializers.IntegerField(
        required=False, help_text="Read-only: only the stored value is accepted."
    )
    grant_depleted = serializers.BooleanField(required=False, default=False)
    claim_depleted = serializers.BooleanField(required=False, default=False)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class InventoryUpdateInput(InventoryInput):
    reward_type = serializers.CharField(max_length=100, required=False)
    in_stock = serializers.BooleanField(required=False)
    amount_total = serializers.IntegerField(
        min_value=0, max_value=services.MAX_AMOUNT, required=False
    )
    grant_depleted = serializers.BooleanField(required=False)
    claim_depleted = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)


def _refuse_counter_changes(data: dict, *, granted: int, claimed: int) -> None:
    for name, stored in (("amount_granted", granted), ("amount_claimed", claimed)):
        if name in data and data.pop(name) != stored:
            raise ReadOnlyField(f"{name} is counted by the platform and cannot be set", field=name)


class AdminInventoryListApi(AdminApi):
    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_inventories_list",
        parameters=[
            IDS,
            OpenApiParameter("reward_type", str),
            _flag("in_stock"),
            _flag("grant_depleted"),
            _flag("claim_depleted"),
            _limit(ADMIN_MAX_LIMIT),
            OFFSET,
        ],
        responses={200: InventoryOutput(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        rows = selectors.inventories_of(
            org=self.org,
            ids=_ids_param(request),
            reward_type=_text_param(request, "reward_type"),
            in_stock=_bool_param(request, "in_stock"),
            grant_depleted=_bool_param(request, "grant_depleted"),
            claim_depleted=_bool_param(request, "claim_depleted"),
        )
        rows = _paged(rows, request, maximum=ADMIN_MAX_LIMIT)
        return Response(InventoryOutput(rows, many=True).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_inventories_create",
        request=InventoryInput,
        responses={200: InventoryOutput, **_errors(400, 401, 403, 404)},
    )
    def post(self, request):
        data = _admin_input(InventoryInput, request, self.org)
        _refuse_counter_changes(data, granted=0, claimed=0)
        reward_type = _reward_type_or_404(self.org, data.pop("reward_type"), "reward_type")
        inventory = services.inventory_create(reward_type=reward_type, **data)
        return Response(InventoryOutput(inventory).data)


class AdminInventoryDetailApi(AdminApi):
    def _get(self, pk) -> Inventory:
        inventories = Inventory.objects.select_related("reward_type")
        return _org_object_or_404(inventories, self.org, pk, "inventory")

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_inventories_get",
        responses={200: InventoryOutput, **_errors(401, 403, 404)},
    )
    def get(self, request, id):
        return Response(InventoryOutput(self._get(id)).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_inventories_update",
        request=InventoryUpdateInput,
        responses={200: InventoryOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def put(self, request, id):
        inventory = self._get(id)
        data = _admin_input(InventoryUpdateInput, request, self.org)
        _refuse_counter_changes(
            data, granted=inventory.amount_granted, claimed=inventory.amount_claimed
        )
        name = data.pop("reward_type", None)
        if name is not None and name != inventory.reward_type.reward_type:
            raise ReadOnlyField(
                "an inventory's reward_type cannot change; create a new inventory",
                field="reward_type",
            )
        inventory = services.inventory_update(inventory=inventory, **data)
        return Response(InventoryOutput(inventory).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_inventories_delete",
        responses={**_DELETED_SCHEMA, **_errors(401, 403, 404, 409)},
    )
    def delete(self, request, id):
        services.inventory_delete(inventory=self._get(id))
        return _deleted()


# --- admin: operations ---------------------------------------------------------------------------


class OperationInput(StrictInput):
    org_id = serializers.CharField(required=False, allow_blank=True)
    reward_type = serializers.CharField(max_length=100)
    code = serializers.CharField(max_length=100)
    building_block = serializers.CharField(max_length=100)
    amount = serializers.IntegerField(min_value=1, max_value=services.MAX_AMOUNT)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class OperationUpdateInput(OperationInput):
    reward_type = serializers.CharField(max_length=100, required=False)
    code = serializers.CharField(max_length=100, required=False)
    building_block = serializers.CharField(max_length=100, required=False)
    amount = serializers.IntegerField(min_value=1, max_value=services.MAX_AMOUNT, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class AdminOperationListApi(AdminApi):
    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_operations_list",
        parameters=[
            OpenApiParameter("building_block", str),
            OpenApiParameter("reward_type", str),
            _limit(ADMIN_MAX_LIMIT),
            OFFSET,
        ],
        responses={200: OperationOutput(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        rows = selectors.operations_of(
            org=self.org,
            building_block=_text_param(request, "building_block"),
            reward_type=_text_param(request, "reward_type"),
        )
        rows = _paged(rows, request, maximum=ADMIN_MAX_LIMIT)
        return Response(OperationOutput(rows, many=True).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_operations_create",
        request=OperationInput,
        responses={200: OperationOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def post(self, request):
        data = _admin_input(OperationInput, request, self.org)
        data["reward_type"] = _reward_type_or_404(self.org, data["reward_type"], "reward_type")
        operation = services.operation_create(**data)
        return Response(OperationOutput(operation).data)


class AdminOperationDetailApi(AdminApi):
    def _get(self, pk) -> Operation:
        operations = Operation.objects.select_related("reward_type")
        return _org_object_or_404(operations, self.org, pk, "operation")

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_operations_get",
        responses={200: OperationOutput, **_errors(401, 403, 404)},
    )
    def get(self, request, id):
        return Response(OperationOutput(self._get(id)).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_operations_update",
        request=OperationUpdateInput,
        responses={200: OperationOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def put(self, request, id):
        operation = self._get(id)
        data = _admin_input(OperationUpdateInput, request, self.org)
        if "reward_type" in data:
            data["reward_type"] = _reward_type_or_404(self.org, data["reward_type"], "reward_type")
        operation = services.operation_update(operation=operation, **data)
        return Response(OperationOutput(operation).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_operations_delete",
        responses={**_DELETED_SCHEMA, **_errors(401, 403, 404, 409)},
    )
    def delete(self, request, id):
        services.operation_delete(operation=self._get(id))
        return _deleted()


# --- admin: claims ------------------------------------------------------------------------------


class AdminClaimInput(StrictInput):
    org_id = serializers.CharField(required=False, allow_blank=True)
    user_id = serializers.CharField(max_length=128)
    items = serializers.ListField(
        child=_ClaimItemInput(), min_length=1, max_length=services.MAX_CLAIM_ITEMS
    )
    status = ClaimStatusField(required=False)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class AdminClaimUpdateInput(StrictInput):
    org_id = serializers.CharField(required=False, allow_blank=True)
    user_id = serializers.CharField(required=False, help_text="Read-only.")
    items = _ClaimItemInput(many=True, required=False, help_text="Read-only.")
    status = ClaimStatusField(
        required=False, help_text="Moves along pending -> fulfilled | rejected | cancelled only."
    )
    description = serializers.CharField(required=False, allow_blank=True)
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="Kept in the status audit."
    )


class AdminClaimListApi(AdminApi):
    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_claims_list",
        parameters=[
            IDS,
            OpenApiParameter("user_id", str),
            STATUS,
            _limit(ADMIN_MAX_LIMIT),
            OFFSET,
        ],
        responses={200: ClaimOutput(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        rows = selectors.claims_of(
            org=self.org,
            ids=_ids_param(request),
            user_id=_text_param(request, "user_id"),
            status=_status_param(request),
        )
        rows = _paged(rows, request, maximum=ADMIN_MAX_LIMIT)
        return Response(ClaimOutput(rows, many=True).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_claims_create",
        request=AdminClaimInput,
        responses={200: ClaimOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def post(self, request):
        data = _admin_input(AdminClaimInput, request, self.org)
        member = Member.objects.filter(organization=self.org, external_id=data["user_id"]).first()
        if member is None:
            raise NotFound("user not found", field="user_id")
        claim = services.claim_record(
            member=member,
            items=_claim_items(self.org, data["items"]),
            actor=self.actor,
            description=data["description"],
            status=data.get("status"),
        )
        return Response(_claim_out(claim))


def _same_items(claim: Claim, items_data: list[dict]) -> bool:
    stored = sorted(
        (item.reward_type.reward_type, item.amount, str(item.inventory_id))
        for item in claim.items.all()
    )
    sent = sorted(
        (data["reward_type"], data["amount"], str(data.get("inventory_id") or ""))
        for data in items_data
    )
    return stored == sent


class AdminClaimDetailApi(AdminApi):
    def _get(self, pk) -> Claim:
        return _org_object_or_404(_claim_queryset(), self.org, pk, "claim")

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_claims_get",
        responses={200: ClaimOutput, **_errors(401, 403, 404)},
    )
    def get(self, request, id):
        return Response(ClaimOutput(self._get(id)).data)

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_claims_update",
        request=AdminClaimUpdateInput,
        responses={200: ClaimOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def put(self, request, id):
        claim = self._get(id)
        data = _admin_input(AdminClaimUpdateInput, request, self.org)
        if "user_id" in data and data["user_id"] != claim.member.external_id:
            raise ReadOnlyField("a claim's user_id cannot change", field="user_id")
        if "items" in data and not _same_items(claim, data["items"]):
            raise ReadOnlyField("a claim's items cannot change", field="items")
        claim = services.claim_update(
            claim=claim,
            actor=self.actor,
            description=data.get("description"),
            status=data.get("status"),
            note=data.get("note", ""),
        )
        return Response(_claim_out(claim))

    @extend_schema(
        tags=["rewards admin"],
        operation_id="rewards_admin_claims_delete",
        responses={**_DELETED_SCHEMA, **_errors(401, 403, 404, 409)},
    )
    def delete(self, request, id):
        self._get(id)
        raise Conflict(
            "claims are records and cannot be deleted; reject or cancel the claim instead",
            field="id",
        )


# --- internal: building blocks grant rewards ------------------------------------------------------


class InternalRewardInput(StrictInput):
    org_id = serializers.CharField(required=False, allow_blank=True)
    user_id = serializers.CharField(max_length=200)
    code = serializers.CharField(max_length=100)
    building_block = serializers.CharField(max_length=100, required=False, allow_blank=True)
    reward_type = serializers.CharField(
        max_length=100, required=False, allow_blank=True, help_text="Ignored: the operation's."
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


class InternalRewardApi(RokwireApi):
    authentication_classes = [RewardsServiceKeyAuthentication]
    permission_classes = [IsRewardsService]

    @extend_schema(
        tags=["rewards internal"],
        operation_id="rewards_int_reward",
        summary="Grant the reward of an operation to a user",
        description=(
            "Authenticated by the building block's API key (`X-Api-Key` or `INTERNAL-API-KEY`). "
            "The operation must belong to the calling building block (else 403). Unknown users "
            "become members of the service's organisation. Optional `Idempotency-Key` header."
        ),
        parameters=[
            OpenApiParameter("X-Api-Key", str, OpenApiParameter.HEADER),
            OpenApiParameter("INTERNAL-API-KEY", str, OpenApiParameter.HEADER),
            IDEMPOTENCY_KEY,
        ],
        request=InternalRewardInput,
        responses={200: RewardQuantityStateOutput(many=True), **_errors(400, 401, 403, 404, 409)},
    )
    def post(self, request):
        service = request.auth
        data = _admin_input(InternalRewardInput, request, service.org)
        result = services.reward_grant_for_operation(
            service=service,
            user_id=data["user_id"],
            code=data["code"],
            building_block=data.get("building_block") or None,
            description=data["description"],
            idempotency_key=_idempotency_key(request),
        )
        state = selectors.quantity_state(reward_type=result.grant.reward_type)
        return Response([state])


# --- members --------------------------------------------------------------------------------------


class MemberApi(RokwireApi):
    authentication_classes = MEMBER_AUTHENTICATION
    permission_classes = [IsSignedInMember]

    @property
    def member(self) -> Member:
        return self.request.member

    @property
    def actor(self) -> str:
        return f"member:{self.request.member.pk}"


class UserBalanceApi(MemberApi):
    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_balance",
        responses={200: RewardTypeAmountOutput(many=True), **_errors(401, 403)},
    )
    def get(self, request):
        return Response(selectors.balances_of_member(member=self.member))


class UserHistoryApi(MemberApi):
    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_history",
        parameters=[
            OpenApiParameter("reward_type", str),
            OpenApiParameter("code", str),
            OpenApiParameter("building_block", str),
            _limit(MEMBER_MAX_LIMIT),
            OFFSET,
        ],
        responses={200: RewardHistoryOutput(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        rows = selectors.history_of_member(
            member=self.member,
            reward_type=_text_param(request, "reward_type"),
            code=_text_param(request, "code"),
            building_block=_text_param(request, "building_block"),
        )
        rows = _paged(rows, request, maximum=MEMBER_MAX_LIMIT)
        return Response(RewardHistoryOutput(rows, many=True).data)


class UserClaimInput(StrictInput):
    items = serializers.ListField(
        child=_ClaimItemInput(),
        min_length=1,
        max_length=services.MAX_CLAIM_ITEMS,
        help_text="Without inventory_id the platform allocates, oldest in-stock inventory first.",
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


class UserClaimListApi(MemberApi):
    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_claims_list",
        parameters=[
            STATUS,
            _limit(MEMBER_MAX_LIMIT),
            OFFSET,
        ],
        responses={200: ClaimOutput(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        rows = selectors.claims_of_member(member=self.member, status=_status_param(request))
        rows = _paged(rows, request, maximum=MEMBER_MAX_LIMIT)
        return Response(ClaimOutput(rows, many=True).data)

    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_claims_create",
        parameters=[IDEMPOTENCY_KEY],
        request=UserClaimInput,
        responses={200: ClaimOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def post(self, request):
        serializer = UserClaimInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.claim_create(
            member=self.member,
            items=_claim_items(self.member.organization, data["items"]),
            actor=self.actor,
            description=data["description"],
            idempotency_key=_idempotency_key(request),
        )
        return Response(_claim_out(result.claim))


class UserClaimDetailApi(MemberApi):
    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_claims_get",
        responses={200: ClaimOutput, **_errors(401, 403, 404)},
    )
    def get(self, request, id):
        claim = (
            selectors.claims_of_member(member=self.member)
            .filter(pk=_uuid_or_404(id, "claim"))
            .first()
        )
        if claim is None:
            raise NotFound("claim not found")
        return Response(ClaimOutput(claim).data)


# --- members: the reward store -------------------------------------------------------------


class StoreItemOutput(serializers.Serializer):
    reward_type = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    points_price = serializers.IntegerField()
    fulfilment = serializers.CharField()


class PurchaseInput(StrictInput):
    reward_type = serializers.CharField(max_length=100)
    quantity = serializers.IntegerField(
        min_value=1, max_value=services.MAX_AMOUNT, required=False, default=1
    )
    program = serializers.CharField(
        max_length=64, required=False, default="default", help_text="The point program's key."
    )
    claim_now = serializers.BooleanField(
        required=False, default=False, help_text="Also claim the bought rewards at once."
    )


class PurchaseOutput(serializers.Serializer):
    id = serializers.UUIDField()
    org_id = serializers.UUIDField()
    user_id = serializers.CharField(source="member.external_id")
    reward_type = serializers.CharField(source="reward_type.reward_type")
    program = serializers.CharField(source="program.key")
    quantity = serializers.IntegerField()
    unit_price = serializers.IntegerField()
    points = serializers.IntegerField()
    transaction_id = serializers.IntegerField(
        source="transfer_id", help_text="The ledger transfer that burned the points."
    )
    grant_id = serializers.UUIDField()
    claim = serializers.SerializerMethodField()
    date_created = serializers.DateTimeField()

    @extend_schema_field(ClaimOutput(allow_null=True))
    def get_claim(self, obj) -> dict | None:
        return _claim_out(obj.claim) if obj.claim_id else None


class UserStoreApi(MemberApi):
    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_store",
        responses={200: StoreItemOutput(many=True), **_errors(401, 403)},
    )
    def get(self, request):
        rows = selectors.store_items(org=self.member.organization)
        return Response(StoreItemOutput(rows, many=True).data)


class UserPurchaseListApi(MemberApi):
    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_purchases_list",
        parameters=[
            _limit(MEMBER_MAX_LIMIT),
            OFFSET,
        ],
        responses={200: PurchaseOutput(many=True), **_errors(400, 401, 403)},
    )
    def get(self, request):
        rows = selectors.purchases_of_member(member=self.member)
        rows = _paged(rows, request, maximum=MEMBER_MAX_LIMIT)
        return Response(PurchaseOutput(rows, many=True).data)

    @extend_schema(
        tags=["rewards user"],
        operation_id="rewards_user_purchases_create",
        summary="Buy a reward with points",
        description=(
            "Burns quantity x points_price points and grants the reward in one transaction "
            "(and, with claim_now, claims it). Idempotent on the optional Idempotency-Key "
            "header: a repeat returns the first purchase; other details with the same key: 409."
        ),
        parameters=[IDEMPOTENCY_KEY],
        request=PurchaseInput,
        responses={200: PurchaseOutput, **_errors(400, 401, 403, 404, 409)},
    )
    def post(self, request):
        serializer = PurchaseInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        org = self.member.organization
        reward_type = _reward_type_or_404(org, data["reward_type"], "reward_type")
        program = PointProgram.objects.filter(organization=org, key=data["program"]).first()
        if program is None:
            raise NotFound(f"program {data['program']!r} not found", field="program")
        result = services.store_purchase(
            member=self.member,
            reward_type=reward_type,
            quantity=data["quantity"],
            program=program,
            idempotency_key=_idempotency_key(request),
            claim_now=data["claim_now"],
            actor=self.actor,
        )
        return Response(PurchaseOutput(result.purchase).data)
