"""The profiles API (seed 004): the whole wire contract in one module.

    POST  /api/v1/customers                                        create a profile
    GET   /api/v1/customers/{customerId}[?include=wallet,tier,tags,campaigns]
    PATCH /api/v1/customers/{customerId}
    GET   /api/v1/customers/{customerId}/wallet
    GET   /api/v1/customers/{customerId}/tags
    POST  /api/v1/customers/{customerId}/tags                       add tags
    DELETE /api/v1/customers/{customerId}/tags/{tag}
    GET   /api/v1/tags/{tag}/customers                              profiles with a tag (keyset)
    POST  /api/v1/events                                            Idempotency-Key required
    GET   /api/v1/campaigns
    GET   /api/v1/customers/{customerId}/campaigns                  with progress
    POST  /api/v1/customers/{customerId}/campaigns/{campaignId}/opt-in
    GET   /api/v1/stores
    GET   /api/v1/stores/{storeKey}/offers[?customerId=]
    POST  /api/v1/customers/{customerId}/purchases                  buy an offer (and redeem it)
    POST  /api/v1/customers/{customerId}/redemptions                redeem a reward held
    GET   /api/v1/customers/{customerId}/point-log                  ledger transfers (keyset)
    GET   /api/v1/customers/{customerId}/activity-log               activity (keyset)

`customerId` is the external id or the platform's member id (UUID). Clients authenticate with
OAuth2 client-credentials tokens; reads need `customers:read`, writes `customers:write` (403
without). Every call is scoped to the client's organisation: another organisation's customer is
404, exactly like one that does not exist. JSON is camelCase; errors are the platform's /api/v1
shape `{"code", "message", "details"}` from `profiles_exception_handler`. Lists that grow
(logs, tag members) are keyset-paginated: `limit` (default 20, at most 100) and the opaque
`cursor` of the previous page's `nextCursor` (null on the last page).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from integrations.clients import ApiClientAuthentication, HasScopes
from loyalty.api_fields import StrictIntegerField
from loyalty.engagement import selectors, services
from loyalty.engagement.exceptions import (
    Conflict,
    CustomerBlocked,
    CustomerNotFound,
    EngagementError,
    ExternalIdTaken,
    InvalidInput,
    NotFound,
)
from loyalty.engagement.models import GoalType
from loyalty.engagement.pagination import limit_parse
from loyalty.validators import EXTERNAL_ID_MAX_LENGTH, external_id_problem
from points.exceptions import InvalidAmount, PointsError

READ = "customers:read"
WRITE = "customers:write"
IDEMPOTENCY_KEY_MAX_LENGTH = 150
INCLUDES = {
    "wallet": "wallet",
    "tier": "tiers",
    "tiers": "tiers",
    "tags": "tags",
    "campaigns": "campaigns",
}


# --- errors ------------------------------------------------------------------------------------


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"code": code, "message": message, "details": details or {}}


_STATUS = [
    (CustomerNotFound, 404),
    (NotFound, 404),
    (InvalidInput, 400),
    (ExternalIdTaken, 409),
    (CustomerBlocked, 409),
    (Conflict, 409),
]


def _status_of(exc: EngagementError) -> int:
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


def _rewards_status(exc) -> int:
    from rewards.exceptions import Conflict as RewardsConflict
    from rewards.exceptions import Forbidden
    from rewards.exceptions import InvalidInput as RewardsInvalidInput
    from rewards.exceptions import NotFound as RewardsNotFound

    for cls, status in (
        (RewardsInvalidInput, 400),
        (RewardsNotFound, 404),
        (Forbidden, 403),
        (RewardsConflict, 409),
    ):
        if isinstance(exc, cls):
            return status
    return 400


def _plain(details: dict) -> dict:
    return {
        key: value if isinstance(value, int | str | bool | type(None) | list) else str(value)
        for key, value in details.items()
    }


def _validation_body(detail) -> dict:
    if not isinstance(detail, dict):
        detail = {"non_field_errors": detail if isinstance(detail, list) else [detail]}
    fields = {
        name: [str(item) for item in (errors if isinstance(errors, list) else [errors])]
        for name, errors in detail.items()
    }
    message = "; ".join(
        f"{name}: {errors[0]}" if errors else name for name, errors in fields.items()
    )
    return error_body("invalid_parameters", f"invalid parameters: {message}", {"fields": fields})


def profiles_exception_handler(exc, context):
    """Map refusals to `{"code", "message", "details"}` (details name the field at fault)."""
    from rewards.exceptions import RewardsError

    headers: dict[str, str] = {}
    if isinstance(exc, EngagementError):
        status_code = _status_of(exc)
        details = _plain(exc.details)
        if exc.field:
            details["field"] = exc.field
        body = error_body(exc.code, exc.message, details)
    elif isinstance(exc, RewardsError):
        status_code = _rewards_status(exc)
        details = _plain(exc.details)
        if exc.field:
            details["field"] = exc.field
        body = error_body(exc.code, exc.message, details)
    elif isinstance(exc, PointsError):
        # A bad amount is the request's fault; anything else (not enough points, a follower
        # program) is the state's.
        status_code = 400 if isinstance(exc, InvalidAmount) else 409
        body = error_body(exc.code, exc.message, _plain(exc.details))
    elif isinstance(exc, exceptions.ValidationError):
        status_code, body = 400, _validation_body(exc.detail)
    elif isinstance(exc, Http404):
        status_code, body = 404, error_body("not_found", "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        status_code, body = 403, error_body("permission_denied", "permission denied")
    elif isinstance(exc, exceptions.APIException):
        status_code = exc.status_code
        codes = exc.get_codes()
        body = error_body(codes if isinstance(codes, str) else exc.default_code, str(exc.detail))
        if auth_header := getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = auth_header
    else:
        return None
    set_rollback()
    return Response(body, status=status_code, headers=headers)


@extend_schema_serializer(component_name="ProfilesError")
class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


def _errors(described: dict[int, str]) -> dict:
    base = {
        401: "missing, invalid or expired token",
        403: "the token lacks the scope",
    }
    return {
        status: OpenApiResponse(ErrorSerializer, description=text)
        for status, text in {**base, **described}.items()
    }


# --- shared pieces -----------------------------------------------------------------------------


class StrictSerializer(serializers.Serializer):
    """Unknown fields are refused by name (a typo must not be silently ignored), and so are
    values of the wrong JSON type (DRF would turn 42 into "42" and "yes" into true)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise exceptions.ValidationError({name: ["unknown field"] for name in unknown})
            wrong = {
                name: [f"must be a {kind}"]
                for name, value in data.items()
                if value is not None
                and (kind := _json_type_of(self.fields[name]))
                and not isinstance(value, _JSON_TYPES[kind])
            }
            if wrong:
                raise exceptions.ValidationError(wrong)
        return super().to_internal_value(data)


_JSON_TYPES = {"string": str, "boolean": bool}


def _json_type_of(field) -> str | None:
    if isinstance(field, serializers.BooleanField):
        return "boolean"
    if isinstance(field, serializers.CharField | serializers.DateTimeField | serializers.UUIDField):
        return "string"
    return None


class StrictSerializerScheme(OpenApiSerializerExtension):
    """In the schema, a StrictSerializer's request body admits no other properties."""

    target_class = "loyalty.engagement.api.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


def idempotency_key_get(request, *, required: bool) -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None or raw == "":
        if required:
            raise InvalidInput("Idempotency-Key: the header is required", field="Idempotency-Key")
        return None
    if len(raw) > IDEMPOTENCY_KEY_MAX_LENGTH or not raw.isprintable() or not raw.strip():
        raise InvalidInput(
            f"Idempotency-Key: must be printable text of at most {IDEMPOTENCY_KEY_MAX_LENGTH} "
            "characters",
            field="Idempotency-Key",
        )
    return raw


CUSTOMER_ID = OpenApiParameter(
    "customer_id",
    str,
    OpenApiParameter.PATH,
    description="The customer's external id, or the platform's member id (UUID).",
)
# What idempotency_key_get admits: printable, not only spaces, at most 150 characters.
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
    "pattern": "^(?=.*[^ ])[^\\x00-\\x1f\\x7f-\\xa0\\xad]+$",
}
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    IDEMPOTENCY_KEY_SCHEMA,
    OpenApiParameter.HEADER,
    required=False,
    description="Scoped to the client: a repeat of the same request gets the first reply "
    "(header Idempotent-Replayed: true); the same key with another request is 409.",
)
# What services.tag_name_clean admits (case-insensitive, surrounding spaces stripped).
TAG_SCHEMA = {"type": "string", "pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}\s*$"}
TAG_PARAMETER = OpenApiParameter("tag", TAG_SCHEMA, OpenApiParameter.PATH)


@extend_schema_field(TAG_SCHEMA)
class TagNameField(serializers.CharField):
    """A tag name in a request; services.tag_name_clean checks it (the schema states the rule)."""


PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1},
        description="Page size: default 20, at most 100 (larger values are capped).",
    ),
    OpenApiParameter(
        "cursor",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]{0,100}$"},
        description="`nextCursor` of the previous page (opaque).",
    ),
]


class ProfilesApi(APIView):
    authentication_classes = [ApiClientAuthentication]
    permission_classes = [HasScopes]
    required_scopes_by_method = {
        "GET": [READ],
        "HEAD": [READ],
        "POST": [WRITE],
        "PATCH": [WRITE],
        "DELETE": [WRITE],
    }
    scope_failure_status = 403

    def get_exception_handler(self):
        return profiles_exception_handler

    @property
    def organization_id(self):
        return self.request.api_client.organization_id

    @property
    def actor(self) -> str:
        return f"client:{self.request.api_client.pk}"

    def customer(self, customer_id: str):
        return selectors.customer_get(organization_id=self.organization_id, identifier=customer_id)

    def scoped_key(self, raw: str | None) -> str | None:
        """Idempotency keys of the rewards app are per member; ours are per client too."""
        return None if raw is None else f"client:{self.request.api_client.pk}:{raw}"


# --- output shapes -----------------------------------------------------------------------------


@extend_schema_serializer(component_name="ProfilesProgramBalance")
class ProgramBalanceSerializer(serializers.Serializer):
    programKey = serializers.CharField(source="program_key")
    programName = serializers.CharField(source="program_name")
    mode = serializers.CharField()
    balance = serializers.IntegerField(help_text="Posted points, held ones included.")
    available = serializers.IntegerField(help_text="balance - held: what can be spent.")
    held = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Earned points not active yet.")
    expiringSoon = serializers.IntegerField(source="expiring_soon")
    lifetimeEarned = serializers.IntegerField(source="lifetime_earned")


@extend_schema_serializer(component_name="ProfilesRewardBalance")
class RewardBalanceSerializer(serializers.Serializer):
    rewardType = serializers.CharField(source="reward_type")
    displayName = serializers.CharField(source="display_name")
    amount = serializers.IntegerField()


@extend_schema_serializer(component_name="ProfilesOffer")
class OfferSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    storeKey = serializers.CharField(source="store_key")
    programKey = serializers.CharField(source="program_key")
    rewardType = serializers.CharField(source="reward_type")
    displayName = serializers.CharField(source="display_name")
    headline = serializers.CharField()
    description = serializers.CharField()
    pointsPrice = serializers.IntegerField(source="points_price")
    affordable = serializers.BooleanField(
        allow_null=True, help_text="Whether the customer can pay for one now (null: not asked)."
    )


@extend_schema_serializer(component_name="ProfilesWallet")
class WalletSerializer(serializers.Serializer):
    expiringWithinDays = serializers.IntegerField(source="expiring_within_days")
    points = ProgramBalanceSerializer(many=True)
    rewards = RewardBalanceSerializer(many=True)
    affordableOffers = OfferSerializer(many=True, source="affordable_offers")


@extend_schema_serializer(component_name="ProfilesTier")
class TierSerializer(serializers.Serializer):
    name = serializers.CharField()
    threshold = serializers.IntegerField()
    earnMultiplier = serializers.DecimalField(
        source="earn_multiplier", max_digits=6, decimal_places=3, coerce_to_string=True
    )


@extend_schema_serializer(component_name="ProfilesTierStatus")
class TierStatusSerializer(serializers.Serializer):
    programKey = serializers.CharField(source="program_key")
    basis = serializers.CharField()
    qualifyingPoints = serializers.IntegerField(source="qualifying_points")
    tier = TierSerializer(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    nextTier = TierSerializer(source="next_tier", allow_null=True)
    pointsToNextTier = serializers.IntegerField(source="points_to_next_tier", allow_null=True)
    progressPercent = serializers.IntegerField(source="progress_percent")


@extend_schema_serializer(component_name="ProfilesCampaignGoal")
class GoalSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=GoalType.values)
    eventName = serializers.CharField(allow_null=True)
    programKey = serializers.CharField(allow_null=True)
    target = serializers.IntegerField()


@extend_schema_serializer(component_name="ProfilesCampaignReward")
class CampaignRewardSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["points", "reward"])
    points = serializers.IntegerField(allow_null=True)
    programKey = serializers.CharField(allow_null=True)
    rewardType = serializers.CharField(allow_null=True)
    quantity = serializers.IntegerField(allow_null=True)


@extend_schema_serializer(component_name="ProfilesCampaign")
class CampaignSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    startsAt = serializers.DateTimeField()
    endsAt = serializers.DateTimeField()
    optInRequired = serializers.BooleanField()
    goal = GoalSerializer()
    reward = CampaignRewardSerializer()


@extend_schema_serializer(component_name="ProfilesCustomerCampaign")
class CustomerCampaignSerializer(CampaignSerializer):
    status = serializers.CharField(help_text="upcoming, active, completed or ended")
    optedIn = serializers.BooleanField()
    optedInAt = serializers.DateTimeField(allow_null=True)
    progress = serializers.IntegerField(help_text="Events counted or points earned so far.")
    completedAt = serializers.DateTimeField(allow_null=True)


def campaign_data(campaign) -> dict:
    points = campaign.reward_points is not None
    return {
        "id": campaign.pk,
        "key": campaign.key,
        "name": campaign.name,
        "description": campaign.description,
        "startsAt": campaign.starts_at,
        "endsAt": campaign.ends_at,
        "optInRequired": campaign.opt_in_required,
        "goal": {
            "type": campaign.goal_type,
            "eventName": campaign.goal_event_name or None,
            "programKey": campaign.goal_program.key if campaign.goal_program_id else None,
            "target": campaign.goal_target,
        },
        "reward": {
            "type": "points" if points else "reward",
            "points": campaign.reward_points,
            "programKey": campaign.reward_program.key if points else None,
            "rewardType": None if points else campaign.reward_type.reward_type,
            "quantity": campaign.reward_quantity,
        },
    }


def customer_campaign_data(item: selectors.MemberCampaign) -> dict:
    return {
        **campaign_data(item.campaign),
        "status": item.status,
        "optedIn": item.opted_in,
        "optedInAt": item.opted_in_at,
        "progress": item.progress,
        "completedAt": item.completed_at,
    }


@extend_schema_serializer(component_name="ProfilesCustomer")
class CustomerSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The platform's member id.")
    externalId = serializers.CharField(source="external_id")
    firstName = serializers.CharField(source="first_name")
    lastName = serializers.CharField(source="last_name")
    email = serializers.CharField()
    status = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


@extend_schema_serializer(component_name="ProfilesCustomerDetail")
class CustomerDetailSerializer(CustomerSerializer):
    wallet = WalletSerializer(required=False, help_text="With include=wallet.")
    tiers = TierStatusSerializer(many=True, required=False, help_text="With include=tier.")
    tags = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="With include=tags."
    )
    campaigns = CustomerCampaignSerializer(
        many=True, required=False, help_text="With include=campaigns."
    )


def customer_data(member, *, include: set[str] = frozenset()) -> dict:
    data = dict(CustomerSerializer(member).data)
    if "wallet" in include:
        data["wallet"] = WalletSerializer(selectors.wallet_get(member=member)).data
    if "tiers" in include:
        data["tiers"] = TierStatusSerializer(
            selectors.member_tiers_get(member=member), many=True
        ).data
    if "tags" in include:
        data["tags"] = selectors.member_tags_get(member=member)
    if "campaigns" in include:
        data["campaigns"] = CustomerCampaignSerializer(
            [customer_campaign_data(c) for c in selectors.member_campaigns_get(member=member)],
            many=True,
        ).data
    return data


# What include_parse admits, for the schema: known parts, commas, spaces around them.
_PART = "(?:wallet|tiers?|tags|campaigns)"
INCLUDE_PATTERN = rf"^\s*(?:{_PART}\s*)?(?:,\s*(?:{_PART}\s*)?)*$"


def include_parse(raw: str | None) -> set[str]:
    if not raw:
        return set()
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = sorted(wanted - set(INCLUDES))
    if unknown:
        raise InvalidInput(
            f"include: unknown part {', '.join(unknown)} (one of wallet, tier, tags, campaigns)",
            field="include",
        )
    return {INCLUDES[part] for part in wanted}


# --- profiles ------------------------------------------------------------------------------------


class CustomerCreateApi(ProfilesApi):
    @extend_schema_serializer(component_name="ProfilesCustomerCreate")
    class InputSerializer(StrictSerializer):
        externalId = serializers.CharField(
            max_length=EXTERNAL_ID_MAX_LENGTH,
            trim_whitespace=False,
            help_text="Your id for the customer: unique in your organisation, never personal "
            "data (no e-mail address, phone number or national id).",
        )
        firstName = serializers.CharField(required=False, allow_blank=True, default="")
        lastName = serializers.CharField(required=False, allow_blank=True, default="")
        email = serializers.CharField(required=False, allow_blank=True, default="")

        def validate_externalId(self, value):
            if problem := external_id_problem(value):
                raise serializers.ValidationError(problem)
            return value

    @extend_schema(
        operation_id="customers_create",
        summary="Create a customer profile",
        tags=["profiles"],
        request=InputSerializer,
        responses={
            201: CustomerSerializer,
            **_errors(
                {
                    400: "invalid parameters; externalId is personal data (e-mail, phone "
                    "number, national id) or has characters other than letters, digits and "
                    ". _ : -",
                    409: "a customer with this externalId exists",
                }
            ),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = services.profile_create(
            organization=request.api_client.organization,
            external_id=data["externalId"],
            first_name=data["firstName"],
            last_name=data["lastName"],
            email=data["email"],
            actor=self.actor,
        )
        return Response(customer_data(member), status=201)


class CustomerDetailApi(ProfilesApi):
    """GET and PATCH of one profile (one URL, so one view with two operations)."""

    @extend_schema_serializer(component_name="ProfilesCustomerUpdate")
    class UpdateInputSerializer(StrictSerializer):
        firstName = serializers.CharField(required=False, allow_blank=True)
        lastName = serializers.CharField(required=False, allow_blank=True)
        email = serializers.CharField(required=False, allow_blank=True)
        status = serializers.ChoiceField(choices=["active", "blocked"], required=False)
        externalId = serializers.CharField(
            required=False, help_text="Read-only: accepted only with its current value."
        )

    @extend_schema(
        operation_id="customers_retrieve",
        summary="A customer profile (light; heavier parts with include)",
        tags=["profiles"],
        parameters=[
            CUSTOMER_ID,
            OpenApiParameter(
                "include",
                {"type": "string", "pattern": INCLUDE_PATTERN},
                description="Comma-separated heavier parts: wallet, tier, tags, campaigns. "
                "Ask only for what the page shows.",
            ),
        ],
        responses={
            200: CustomerDetailSerializer,
            **_errors({400: "unknown include part", 404: "no such customer"}),
        },
    )
    def get(self, request, customer_id):
        include = include_parse(request.query_params.get("include"))
        member = self.customer(customer_id)
        return Response(customer_data(member, include=include))

    @extend_schema(
        operation_id="customers_partial_update",
        summary="Change a customer profile",
        tags=["profiles"],
        parameters=[CUSTOMER_ID],
        request=UpdateInputSerializer,
        responses={
            200: CustomerSerializer,
            **_errors({400: "invalid parameters, or externalId changed", 404: "no such customer"}),
        },
    )
    def patch(self, request, customer_id):
        serializer = self.UpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        member = self.customer(customer_id)
        external_id = data.pop("externalId", member.external_id)
        if external_id != member.external_id:
            raise InvalidInput("externalId: cannot be changed", field="externalId")
        names = {
            "firstName": "first_name",
            "lastName": "last_name",
            "email": "email",
            "status": "status",
        }
        member = services.profile_update(
            member=member,
            changes={names[key]: value for key, value in data.items()},
            actor=self.actor,
        )
        return Response(customer_data(member))


class CustomerWalletApi(ProfilesApi):
    @extend_schema(
        operation_id="customers_wallet",
        summary="The customer's wallet: points per program, rewards, affordable offers",
        tags=["profiles"],
        parameters=[CUSTOMER_ID],
        responses={200: WalletSerializer, **_errors({404: "no such customer"})},
    )
    def get(self, request, customer_id):
        member = self.customer(customer_id)
        return Response(WalletSerializer(selectors.wallet_get(member=member)).data)


# --- tags ----------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="ProfilesTags")
class TagsSerializer(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField())


class CustomerTagsApi(ProfilesApi):
    @extend_schema_serializer(component_name="ProfilesTagsAdd")
    class InputSerializer(StrictSerializer):
        tags = serializers.ListField(
            child=TagNameField(max_length=64),
            allow_empty=False,
            min_length=1,
            max_length=50,
            help_text="Tags to add (case-insensitive; letters, digits and . _ : -).",
        )

    @extend_schema_serializer(component_name="ProfilesTagsAdded")
    class OutputSerializer(serializers.Serializer):
        tags = serializers.ListField(child=serializers.CharField(), help_text="All tags now.")
        added = serializers.ListField(child=serializers.CharField(), help_text="Added now.")

    @extend_schema(
        operation_id="customers_tags_list",
        summary="The customer's tags",
        tags=["profiles"],
        parameters=[CUSTOMER_ID],
        responses={200: TagsSerializer, **_errors({404: "no such customer"})},
    )
    def get(self, request, customer_id):
        member = self.customer(customer_id)
        return Response({"tags": selectors.member_tags_get(member=member)})

    @extend_schema(
        operation_id="customers_tags_add",
        summary="Add tags to the customer (tags already there stay)",
        tags=["profiles"],
        parameters=[CUSTOMER_ID],
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            **_errors({400: "not a tag", 404: "no such customer"}),
        },
    )
    def post(self, request, customer_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member = self.customer(customer_id)
        added = services.member_tags_add(
            member=member, names=serializer.validated_data["tags"], actor=self.actor
        )
        return Response({"tags": selectors.member_tags_get(member=member), "added": added})


class CustomerTagDeleteApi(ProfilesApi):
    @extend_schema(
        operation_id="customers_tags_remove",
        summary="Remove a tag from the customer (204 also when it was not there)",
        tags=["profiles"],
        parameters=[CUSTOMER_ID, TAG_PARAMETER],
        responses={204: None, **_errors({400: "not a tag", 404: "no such customer"})},
    )
    def delete(self, request, customer_id, tag):
        member = self.customer(customer_id)
        services.member_tag_remove(member=member, name=tag, actor=self.actor)
        return Response(status=204)


@extend_schema_serializer(component_name="ProfilesCustomerPage")
class CustomerPageSerializer(serializers.Serializer):
    results = CustomerSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class TagCustomerListApi(ProfilesApi):
    @extend_schema(
        operation_id="tags_customers_list",
        summary="Customers with a tag, most recently tagged first",
        tags=["profiles"],
        parameters=[TAG_PARAMETER, *PAGE_PARAMETERS],
        responses={200: CustomerPageSerializer, **_errors({400: "bad limit or cursor"})},
    )
    def get(self, request, tag):
        page = selectors.customers_by_tag_page(
            organization_id=self.organization_id,
            tag=services.tag_name_clean(tag, field="tag"),
            cursor=request.query_params.get("cursor"),
            limit=limit_parse(request.query_params.get("limit")),
        )
        return Response(
            {
                "results": CustomerSerializer(page.results, many=True).data,
                "nextCursor": page.next_cursor,
            }
        )


# --- events --------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="ProfilesEventPoints")
class EventPointsSerializer(serializers.Serializer):
    programKey = serializers.CharField()
    ruleId = serializers.UUIDField()
    points = serializers.IntegerField()
    multiplier = serializers.CharField(help_text="The tier's earn multiplier applied.")
    status = serializers.CharField(help_text="earned, sent_to_master or skipped")
    reason = serializers.CharField(
        allow_null=True, help_text="Why skipped: member_limit_reached, budget_exhausted, ..."
    )
    transferId = serializers.IntegerField(allow_null=True)


@extend_schema_serializer(component_name="ProfilesEventReward")
class EventRewardSerializer(serializers.Serializer):
    operation = serializers.CharField()
    rewardType = serializers.CharField()
    amount = serializers.IntegerField()
    status = serializers.CharField(help_text="granted or skipped")
    reason = serializers.CharField(allow_null=True)
    grantId = serializers.UUIDField(allow_null=True)


@extend_schema_serializer(component_name="ProfilesEventCampaign")
class EventCampaignSerializer(serializers.Serializer):
    campaignId = serializers.UUIDField()
    key = serializers.CharField()
    progress = serializers.IntegerField()
    target = serializers.IntegerField()
    completed = serializers.BooleanField()
    completedNow = serializers.BooleanField(help_text="This event completed the campaign.")


class EventCreateApi(ProfilesApi):
    @extend_schema_serializer(component_name="ProfilesEvent")
    class InputSerializer(StrictSerializer):
        userId = serializers.CharField(
            max_length=EXTERNAL_ID_MAX_LENGTH,
            trim_whitespace=False,
            help_text="The customer's external id or platform id.",
        )
        name = serializers.CharField(max_length=100, help_text="e.g. app_open, survey_completed")
        properties = serializers.DictField(required=False, default=dict)
        occurredAt = serializers.DateTimeField(
            required=False, allow_null=True, default=None, help_text="Default: now."
        )

        def validate_name(self, value):
            if not value.isprintable():
                raise serializers.ValidationError("must be printable text")
            return value

    @extend_schema_serializer(component_name="ProfilesEventRecorded")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        userId = serializers.CharField()
        customerId = serializers.UUIDField()
        name = serializers.CharField()
        occurredAt = serializers.DateTimeField()
        receivedAt = serializers.DateTimeField()
        points = EventPointsSerializer(many=True)
        rewards = EventRewardSerializer(many=True)
        campaigns = EventCampaignSerializer(many=True)

    @extend_schema(
        operation_id="events_create",
        summary="Send an event: earning rules, operations and campaigns bound to its name run",
        description=(
            "`Idempotency-Key` is required and scoped to the client: a repeat with the same "
            "userId, name, properties and occurredAt gets the first reply (header "
            "`Idempotent-Replayed: true`) and changes nothing; another request with the same "
            "key is 409. In a follower program the points go to the point master as an "
            "Automation adjustment (`status: sent_to_master`). `points`, `rewards` and "
            "`campaigns` list what the event did; a rule or operation that could not apply "
            "(limit reached, budget or inventory exhausted) is listed as skipped with the reason."
        ),
        tags=["profiles"],
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                IDEMPOTENCY_KEY_SCHEMA,
                OpenApiParameter.HEADER,
                required=True,
                description="Your id of this event, unique per client.",
            )
        ],
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            **_errors(
                {
                    400: "invalid parameters; unknown userId; missing Idempotency-Key; "
                    "occurredAt in the future",
                    409: "Idempotency-Key reused with another event; customer blocked",
                }
            ),
        },
    )
    def post(self, request):
        key = idempotency_key_get(request, required=True)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.event_record(
            client=request.api_client,
            data=services.EventInput(
                user_id=data["userId"],
                name=data["name"],
                properties=data["properties"],
                occurred_at=data["occurredAt"],
            ),
            idempotency_key=key,
        )
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(result.event.reply, status=201, headers=headers)


# --- campaigns -----------------------------------------------------------------------------------


def results_list_serializer(item_serializer, component_name: str) -> type[serializers.Serializer]:
    """The OpenAPI shape of an unpaged list reply, `{"results": [item, ...]}`."""
    fields = {"results": item_serializer(many=True)}
    return extend_schema_serializer(component_name=component_name)(
        type(component_name, (serializers.Serializer,), fields)
    )


def results_reply(item_serializer, items) -> Response:
    return Response({"results": item_serializer(items, many=True).data})


CampaignListSerializer = results_list_serializer(CampaignSerializer, "ProfilesCampaignList")
CustomerCampaignListSerializer = results_list_serializer(
    CustomerCampaignSerializer, "ProfilesCustomerCampaignList"
)


class CampaignListApi(ProfilesApi):
    @extend_schema(
        operation_id="campaigns_list",
        summary="Running and upcoming campaigns",
        tags=["profiles"],
        responses={200: CampaignListSerializer, **_errors({})},
    )
    def get(self, request):
        campaigns = selectors.campaigns_live(organization_id=self.organization_id)
        return results_reply(CampaignSerializer, [campaign_data(c) for c in campaigns])


class CustomerCampaignListApi(ProfilesApi):
    @extend_schema(
        operation_id="customers_campaigns_list",
        summary="The customer's campaigns with progress (running, upcoming and taken part in)",
        tags=["profiles"],
        parameters=[CUSTOMER_ID],
        responses={200: CustomerCampaignListSerializer, **_errors({404: "no such customer"})},
    )
    def get(self, request, customer_id):
        member = self.customer(customer_id)
        items = selectors.member_campaigns_get(member=member)
        return results_reply(
            CustomerCampaignSerializer, [customer_campaign_data(item) for item in items]
        )


class CampaignOptInApi(ProfilesApi):
    @extend_schema(
        operation_id="customers_campaigns_opt_in",
        summary="Opt the customer in to a campaign (a repeat changes nothing)",
        tags=["profiles"],
        parameters=[
            CUSTOMER_ID,
            OpenApiParameter(
                "campaignId", str, OpenApiParameter.PATH, description="Campaign id or key."
            ),
        ],
        request=None,
        responses={
            200: CustomerCampaignSerializer,
            **_errors(
                {404: "no such customer or campaign", 409: "the campaign has ended or is off"}
            ),
        },
    )
    def post(self, request, customer_id, campaign_id):
        member = self.customer(customer_id)
        campaign = selectors.campaign_get(
            organization_id=self.organization_id, campaign_id=campaign_id
        )
        progress = services.campaign_opt_in(campaign=campaign, member=member, actor=self.actor)
        item = selectors.MemberCampaign(
            campaign=campaign,
            opted_in=True,
            opted_in_at=progress.opted_in_at,
            progress=progress.progress,
            completed_at=progress.completed_at,
        )
        return Response(CustomerCampaignSerializer(customer_campaign_data(item)).data)


# --- stores, offers, purchases, redemptions ------------------------------------------------------


@extend_schema_serializer(component_name="ProfilesStore")
class StoreSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    programKey = serializers.CharField(source="program.key")


StoreListSerializer = results_list_serializer(StoreSerializer, "ProfilesStoreList")
OfferListSerializer = results_list_serializer(OfferSerializer, "ProfilesOfferList")


class StoreListApi(ProfilesApi):
    @extend_schema(
        operation_id="stores_list",
        summary="Reward stores",
        tags=["profiles"],
        responses={200: StoreListSerializer, **_errors({})},
    )
    def get(self, request):
        stores = selectors.stores_list(organization_id=self.organization_id)
        return results_reply(StoreSerializer, stores)


class StoreOfferListApi(ProfilesApi):
    @extend_schema(
        operation_id="stores_offers_list",
        summary="Offers on sale in a store",
        tags=["profiles"],
        parameters=[
            OpenApiParameter("storeKey", str, OpenApiParameter.PATH),
            OpenApiParameter(
                "customerId",
                str,
                description="With a customer, each offer says whether they can afford it.",
            ),
        ],
        responses={200: OfferListSerializer, **_errors({404: "no such store or customer"})},
    )
    def get(self, request, store_key):
        store = selectors.store_get(organization_id=self.organization_id, key=store_key)
        customer_id = request.query_params.get("customerId")
        member = self.customer(customer_id) if customer_id else None
        offers = selectors.store_offers_get(store=store, member=member)
        return results_reply(OfferSerializer, offers)


@extend_schema_serializer(component_name="ProfilesClaimItem")
class ClaimItemSerializer(serializers.Serializer):
    rewardType = serializers.CharField()
    amount = serializers.IntegerField()
    codes = serializers.ListField(child=serializers.CharField(), help_text="Digital codes.")


@extend_schema_serializer(component_name="ProfilesClaim")
class ClaimSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    items = ClaimItemSerializer(many=True)
    createdAt = serializers.DateTimeField()


def claim_data(claim) -> dict:
    items = claim.items.select_related("reward_type").prefetch_related("digital_codes")
    return {
        "id": claim.pk,
        "status": claim.status,
        "items": [
            {
                "rewardType": item.reward_type.reward_type,
                "amount": item.amount,
                "codes": [code.code for code in item.digital_codes.all()],
            }
            for item in items
        ],
        "createdAt": claim.date_created,
    }


class OfferPurchaseApi(ProfilesApi):
    @extend_schema_serializer(component_name="ProfilesPurchaseCreate")
    class InputSerializer(StrictSerializer):
        offerId = serializers.UUIDField()
        quantity = StrictIntegerField(min_value=1, max_value=1000, required=False, default=1)
        redeem = serializers.BooleanField(
            required=False, default=False, help_text="Claim the reward at once."
        )

    @extend_schema_serializer(component_name="ProfilesPurchase")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        offerId = serializers.UUIDField()
        rewardType = serializers.CharField()
        quantity = serializers.IntegerField()
        unitPrice = serializers.IntegerField()
        points = serializers.IntegerField(help_text="Points paid in all.")
        programKey = serializers.CharField()
        transferId = serializers.IntegerField()
        grantId = serializers.UUIDField()
        claim = ClaimSerializer(allow_null=True)
        createdAt = serializers.DateTimeField()

    @extend_schema(
        operation_id="customers_purchases_create",
        summary="Buy an offer with points (and redeem it at once with redeem: true)",
        tags=["profiles"],
        parameters=[CUSTOMER_ID, IDEMPOTENCY_KEY],
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            **_errors(
                {
                    400: "invalid parameters",
                    404: "no such customer or offer",
                    409: "not enough points; offer not on sale; inventory empty; "
                    "Idempotency-Key reused",
                }
            ),
        },
    )
    def post(self, request, customer_id):
        key = idempotency_key_get(request, required=False)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = self.customer(customer_id)
        offer = selectors.offer_get(organization_id=self.organization_id, offer_id=data["offerId"])
        result = services.offer_purchase(
            offer=offer,
            member=member,
            quantity=data["quantity"],
            redeem=data["redeem"],
            idempotency_key=self.scoped_key(key),
            actor=self.actor,
        )
        purchase = result.purchase
        body = {
            "id": purchase.pk,
            "offerId": offer.pk,
            "rewardType": offer.reward_type.reward_type,
            "quantity": purchase.quantity,
            "unitPrice": purchase.unit_price,
            "points": purchase.points,
            "programKey": offer.store.program.key,
            "transferId": purchase.transfer_id,
            "grantId": purchase.grant_id,
            "claim": claim_data(purchase.claim) if purchase.claim_id else None,
            "createdAt": purchase.date_created,
        }
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(self.OutputSerializer(body).data, status=201, headers=headers)


class RewardRedeemApi(ProfilesApi):
    @extend_schema_serializer(component_name="ProfilesRedemptionCreate")
    class InputSerializer(StrictSerializer):
        rewardType = serializers.CharField(max_length=100)
        quantity = StrictIntegerField(min_value=1, max_value=1000, required=False, default=1)

    @extend_schema(
        operation_id="customers_redemptions_create",
        summary="Redeem (claim) a reward the customer holds",
        tags=["profiles"],
        parameters=[CUSTOMER_ID, IDEMPOTENCY_KEY],
        request=InputSerializer,
        responses={
            201: ClaimSerializer,
            **_errors(
                {
                    400: "invalid parameters",
                    404: "no such customer or reward type",
                    409: "reward balance too low; inventory empty; Idempotency-Key reused",
                }
            ),
        },
    )
    def post(self, request, customer_id):
        key = idempotency_key_get(request, required=False)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = self.customer(customer_id)
        result = services.reward_redeem(
            member=member,
            reward_type_key=data["rewardType"],
            quantity=data["quantity"],
            idempotency_key=self.scoped_key(key),
            actor=self.actor,
        )
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(ClaimSerializer(claim_data(result.claim)).data, status=201, headers=headers)


# --- logs ----------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="ProfilesPointLogEntry")
class PointLogEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The ledger transfer's id.")
    programKey = serializers.CharField(source="program_key")
    kind = serializers.CharField(help_text="earn, burn, expire, adjust, sync")
    source = serializers.CharField()
    points = serializers.IntegerField(help_text="Signed: positive credits, negative debits.")
    balanceAfter = serializers.IntegerField(source="balance_after")
    description = serializers.CharField()
    reference = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")


@extend_schema_serializer(component_name="ProfilesPointLogPage")
class PointLogPageSerializer(serializers.Serializer):
    results = PointLogEntrySerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


@extend_schema_serializer(component_name="ProfilesActivityEntry")
class ActivityEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField(source="kind")
    summary = serializers.CharField()
    data = serializers.DictField()
    createdAt = serializers.DateTimeField(source="created_at")


@extend_schema_serializer(component_name="ProfilesActivityPage")
class ActivityPageSerializer(serializers.Serializer):
    results = ActivityEntrySerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class PointLogApi(ProfilesApi):
    @extend_schema(
        operation_id="customers_point_log",
        summary="The customer's point audit log (ledger transfers), newest first",
        tags=["profiles"],
        parameters=[
            CUSTOMER_ID,
            *PAGE_PARAMETERS,
            OpenApiParameter("program", str, description="Only this program (its key)."),
        ],
        responses={
            200: PointLogPageSerializer,
            **_errors({400: "bad limit, cursor or program", 404: "no such customer"}),
        },
    )
    def get(self, request, customer_id):
        limit = limit_parse(request.query_params.get("limit"))
        member = self.customer(customer_id)
        page = selectors.point_log_page(
            member=member,
            program_key=request.query_params.get("program") or None,
            cursor=request.query_params.get("cursor"),
            limit=limit,
        )
        return Response(
            {
                "results": PointLogEntrySerializer(page.results, many=True).data,
                "nextCursor": page.next_cursor,
            }
        )


class ActivityLogApi(ProfilesApi):
    @extend_schema(
        operation_id="customers_activity_log",
        summary="The customer's activity log (events, rewards, claims, tiers, opt-ins), "
        "newest first",
        tags=["profiles"],
        parameters=[CUSTOMER_ID, *PAGE_PARAMETERS],
        responses={
            200: ActivityPageSerializer,
            **_errors({400: "bad limit or cursor", 404: "no such customer"}),
        },
    )
    def get(self, request, customer_id):
        limit = limit_parse(request.query_params.get("limit"))
        member = self.customer(customer_id)
        page = selectors.activity_log_page(
            member=member, cursor=request.query_params.get("cursor"), limit=limit
        )
        return Response(
            {
                "results": ActivityEntrySerializer(page.results, many=True).data,
                "nextCursor": page.next_cursor,
            }
        )
