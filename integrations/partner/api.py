"""The partner Point API (seed 001): the whole wire contract in one module.

    POST /api/v1/points                                                   earn or burn, async
    GET  /api/v1/orgs/{orgId}/point-programs/{programKey}/balances/{userId}   balance
    GET  /latitude-points/orgs/{orgId}/point-programs/{programKey}/balances/{userId}

Clients authenticate with OAuth2 client-credentials tokens (/o/token/ or the seed's
/realms/partner/protocol/openid-connect/token). The seed's table decides the statuses: a token
lacking the scope is 401 here, not django-oauth-toolkit's 403. Errors are the platform's /api/v1
shape, `{"code", "message", "details"}`, from `partner_exception_handler`. A request carrying a
`Signature` header (or from a client that requires one) is verified against the client's
registered RSA key before anything else is read from it.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView, set_rollback

from integrations.clients import ApiClientAuthentication
from integrations.http_signatures import SignatureError, verify_request
from integrations.models import ApiClient
from integrations.partner.exceptions import PartnerApiError
from integrations.partner.selectors import member_balance_get
from integrations.partner.services import PointRequestInput, error_body, partner_request_submit
from integrations.url_safety import UnsafeURLError, validate_callback_url
from loyalty.api_fields import StrictCharField, StrictIntegerField
from loyalty.validators import EXTERNAL_ID_MAX_LENGTH, external_id_problem
from points.services import MAX_POINTS_PER_OPERATION

logger = logging.getLogger(__name__)

DEFAULT_RATE = "50/s"
DEFAULT_SIGNATURE_WINDOW_SECONDS = 300
SCOPE_CHALLENGE = 'Bearer realm="api",error="insufficient_scope"'


# --- errors -------------------------------------------------------------------------------------


class MissingToken(exceptions.NotAuthenticated):
    default_detail = "missing bearer token"
    default_code = "missing_token"


class InvalidToken(exceptions.AuthenticationFailed):
    default_detail = "invalid or expired token"
    default_code = "invalid_token"


class ScopeRefused(exceptions.AuthenticationFailed):
    default_detail = "lacks sufficient scope permissions"
    default_code = "insufficient_scope"


class SignatureRefused(exceptions.AuthenticationFailed):
    default_detail = "the request signature was refused"
    default_code = "invalid_signature"


def _validation_message(detail) -> tuple[str, dict]:
    if not isinstance(detail, dict):
        detail = {"non_field_errors": detail if isinstance(detail, list) else [detail]}
    fields = {
        name: [str(item) for item in (errors if isinstance(errors, list) else [errors])]
        for name, errors in detail.items()
    }
    parts = [f"{name}: {errors[0]}" if errors else name for name, errors in fields.items()]
    return "invalid parameters: " + "; ".join(parts), {"fields": fields}


def partner_exception_handler(exc, context):
    """Map refusals to `{"code", "message", "details"}` with the seed's statuses."""
    headers: dict[str, str] = {}
    if isinstance(exc, PartnerApiError):
        status_code = exc.status_code
        body = error_body(exc.code, exc.message, exc.details)
        if status_code == 401:
            headers["WWW-Authenticate"] = SCOPE_CHALLENGE
    elif isinstance(exc, exceptions.ValidationError):
        status_code = 400
        message, details = _validation_message(exc.detail)
        body = error_body("invalid_parameters", message, details)
    elif isinstance(exc, Http404):
        status_code, body = 404, error_body("not_found", "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        status_code, body = 403, error_body("permission_denied", "permission denied")
    elif isinstance(exc, exceptions.APIException):
        status_code = exc.status_code
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        message = str(exc.detail)
        if isinstance(exc, exceptions.Throttled):
            retry_after = max(1, math.ceil(exc.wait or 1))
            headers["Retry-After"] = str(retry_after)
            message = f"rate limit exceeded for this client; retry after {retry_after} s"
            body = error_body(code, message, {"retryAfter": retry_after})
        else:
            body = error_body(code, message)
        if auth_header := getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = auth_header
        elif isinstance(exc, ScopeRefused):
            headers["WWW-Authenticate"] = SCOPE_CHALLENGE
    else:
        return None
    set_rollback()
    return Response(body, status=status_code, headers=headers)


# --- authentication, scopes, signatures, rate limits -------------------------------------------


class PartnerTokenRequired(BasePermission):
    """A valid bearer token of an active client: 401 naming what is wrong otherwise."""

    def has_permission(self, request, view):
        if request.auth is not None:
            return True
        if request.headers.get("Authorization"):
            raise InvalidToken()
        raise MissingToken()


def holds_any_scope(token, wanted: tuple[str, ...]) -> bool:
    return not set(token.scope.split()).isdisjoint(wanted)


class PartnerScopes(BasePermission):
    """The token holds one of view.required_any_scope; seed 001 answers 401 when it does not."""

    def has_permission(self, request, view):
        wanted = view.required_any_scope
        if holds_any_scope(request.auth, wanted):
            return True
        raise ScopeRefused(f"lacks sufficient scope permissions: needs {' or '.join(wanted)}")


class ValidRequestSignature(BasePermission):
    """Seed 001 request signatures: verified when present, required when the client says so.

    An identical replay inside the window passes here on purpose: it carries the same requestId,
    and the API answers it with the stored reply (nothing happens twice).
    """

    def has_permission(self, request, view):
        client = request.api_client
        # META, not request.headers: that would build a mapping of every header on each accept.
        if "HTTP_SIGNATURE" not in request.META and not client.require_signature:
            return True
        if not client.signing_public_key_pem:
            raise SignatureRefused("no public key is registered for this client")
        try:
            verify_request(
                method=request.method,
                path_with_query=request.get_full_path(),
                headers=request.headers,
                body=request.body,
                public_key_for=lambda key_id: (
                    client.signing_public_key_pem if key_id == client.signing_key_id else None
                ),
                window_seconds=getattr(
                    settings, "PARTNER_SIGNATURE_WINDOW_SECONDS", DEFAULT_SIGNATURE_WINDOW_SECONDS
                ),
            )
        except SignatureError as exc:
            raise SignatureRefused(exc.reason) from exc
        return True


def _parse_rate(rate: str) -> tuple[int, int]:
    number, period = rate.split("/")
    return int(number), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0]]


def _count_in_window(key: str, *, timeout: int, amount: int = 1) -> int:
    """Add `amount` to the window's counter and return the new total.

    On Redis: INCRBY and EXPIRE NX in one pipelined round trip (the key lives in Django's cache
    namespace, so cache.get still reads it). Other caches: add + incr through Django's API.
    """
    backend = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(backend, RedisCache):
        full_key = backend.make_and_validate_key(key)
        pipe = backend._cache.get_client(full_key, write=True).pipeline(transaction=False)
        pipe.incr(full_key, amount)
        pipe.expire(full_key, timeout, nx=True)
        return int(pipe.execute()[0])
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key, amount)
    except ValueError:  # the window's key expired between add and incr
        cache.add(key, amount, timeout=timeout)
        return amount


# A process takes a high limit's window in shares of 1/QUOTA_SHARES of it (at most
# QUOTA_SHARE_MAX requests): one INCRBY in Redis per share instead of one INCR per request. The
# shared counter still never grants more than the limit across all processes; what a process
# took and did not use is lost with the window (at most share - 1 requests per process), so
# limits below QUOTA_SHARES a window (the usual ones, 50/s) keep an exact count per request.
QUOTA_SHARES = 200
QUOTA_SHARE_MAX = 100
_quota_left: dict[str, tuple[int, int]] = {}  # client's window key -> (window, requests left)
_quota_lock = threading.Lock()


def _take_from_window(key: str, *, window: int, limit: int, timeout: int) -> bool:
    """Count one request in `key`'s window; False when the window's limit is used up."""
    share = max(1, min(QUOTA_SHARE_MAX, limit // QUOTA_SHARES))
    if share == 1:
        return _count_in_window(f"{key}:{window}", timeout=timeout) <= limit
    with _quota_lock:
        taken_window, left = _quota_left.get(key, (window, 0))
        if taken_window == window and left > 0:
            _quota_left[key] = (window, left - 1)
            return True
    total = _count_in_window(f"{key}:{window}", timeout=timeout, amount=share)
    granted = max(0, min(share, limit - (total - share)))
    if granted == 0:
        return False
    with _quota_lock:
        taken_window, left = _quota_left.get(key, (window, 0))
        _quota_left[key] = (window, (left if taken_window == window else 0) + granted - 1)
    return True


def client_rate_take(client: ApiClient) -> tuple[bool, float | None]:
    """Count one request of the client in its window (settings.PARTNER_API_RATE): whether it
    may go ahead, and the seconds until the window's end."""
    limit, seconds = _parse_rate(getattr(settings, "PARTNER_API_RATE", DEFAULT_RATE))
    now = time.time()
    window = int(now // seconds)
    key = f"partner-rate:{client.client_id}:{seconds}"
    try:
        allowed = _take_from_window(key, window=window, limit=limit, timeout=seconds + 1)
    except Exception:
        # The limiter's cache (Redis) is down: let the request through rather than stop the
        # partners' traffic; requests stay idempotent and are stored in the database.
        logger.warning("partner: rate limit not applied, the cache is down", exc_info=True)
        return True, None
    return allowed, (window + 1) * seconds - now


class PartnerClientThrottle(BaseThrottle):
    """Per-client rate limit (settings.PARTNER_API_RATE, e.g. "50/s"), shared by every web node.

    A fixed-window counter in the default cache (Redis in production): atomic INCRs, so
    concurrent requests on several nodes are all counted (high limits in shares, see
    _take_from_window).
    """

    def allow_request(self, request, view):
        client = getattr(request, "api_client", None)
        if client is None:
            return True
        allowed, self._wait = client_rate_take(client)
        return allowed

    def wait(self):
        return self._wait


class ApiClientAuthenticationScheme(OpenApiAuthenticationExtension):
    """OpenAPI security of every ApiClientAuthentication view (this contract's and others')."""

    target_class = "integrations.clients.ApiClientAuthentication"
    name = "clientCredentials"

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/o/token/",
                    "scopes": dict(settings.OAUTH2_PROVIDER.get("SCOPES", {})),
                }
            },
        }

    def get_security_requirement(self, auto_schema):
        view = auto_schema.view
        if any_of := getattr(view, "required_any_scope", ()):
            return [{self.name: [scope]} for scope in any_of]
        by_method = getattr(view, "required_scopes_by_method", None)
        scopes = (
            by_method.get(auto_schema.method, [])
            if by_method
            else getattr(view, "required_scopes", [])
        )
        return {self.name: list(scopes)}


class PartnerApi(APIView):
    authentication_classes = [ApiClientAuthentication]
    permission_classes = [PartnerTokenRequired, PartnerScopes]
    throttle_classes = [PartnerClientThrottle]
    required_any_scope: tuple[str, ...] = ()

    def get_exception_handler(self):
        return partner_exception_handler


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()

    class Meta:
        ref_name = "PartnerError"


def _errors(described: dict[int, str]) -> dict:
    return {
        status: OpenApiResponse(ErrorSerializer, description=text)
        for status, text in described.items()
    }


# --- POST /api/v1/points ------------------------------------------------------------------------


# The body of POST /api/v1/points is checked by hand, with PointRequestCreateApi.InputSerializer's
# rules and DRF's messages, field by field in its order (tests/partner/test_points_api.py holds
# the two to the same answers): building the serializer's fields costs a tenth of an accept. The
# serializer stays the schema's description of the body.
_REQUIRED, _NULL, _BLANK = (
    "This field is required.",
    "This field may not be null.",
    "This field may not be blank.",
)
_NOT_A_STRING = "Not a valid string."
_AMOUNT_MESSAGES = {
    "invalid": "must be a whole number",
    "min_value": "must be a positive whole number",
    "max_value": f"must be at most {MAX_POINTS_PER_OPERATION}",
}
_MISSING = object()


def _text_errors(value, *, max_length: int) -> list[str]:
    """A strict CharField's errors (no trimming, blank not allowed), all of them, in DRF's
    order: its type, then its validators (length, null characters, surrogates)."""
    if value is _MISSING:
        return [_REQUIRED]
    if value == "":
        return [_BLANK]
    if value is None:
        return [_NULL]
    if not isinstance(value, str):
        return [_NOT_A_STRING]
    errors = []
    if len(value) > max_length:
        errors.append(f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in value:
        errors.append("Null characters are not allowed.")
    if surrogate := next((c for c in value if "\ud800" <= c <= "\udfff"), None):
        errors.append(f"Surrogate characters are not allowed: U+{ord(surrogate):X}.")
    return errors


def _amount_errors(value) -> list[str]:
    if value is _MISSING:
        return [_REQUIRED]
    if value is None:
        return [_NULL]
    if isinstance(value, bool) or not isinstance(value, int):
        return [_AMOUNT_MESSAGES["invalid"]]
    if value > MAX_POINTS_PER_OPERATION:
        return [_AMOUNT_MESSAGES["max_value"]]
    if value < 1:
        return [_AMOUNT_MESSAGES["min_value"]]
    return []


def _user_id_errors(value: str) -> list[str]:
    problem = external_id_problem(value)
    return [problem] if problem else []


def _request_id_errors(value: str) -> list[str]:
    return [] if value.strip() and value.isprintable() else ["must be printable text"]


def _callback_url_errors(value: str) -> list[str]:
    try:
        validate_callback_url(value, allow_insecure=settings.LOYALTY_ALLOW_INSECURE_CALLBACKS)
    except UnsafeURLError as exc:
        return [exc.reason]
    return []


# name, its own check, and the check that runs once that passed (the serializer's validate_*)
_POINT_REQUEST_FIELDS = (
    ("userId", lambda v: _text_errors(v, max_length=EXTERNAL_ID_MAX_LENGTH), _user_id_errors),
    ("ruleId", lambda v: _text_errors(v, max_length=64), None),
    ("amount", _amount_errors, None),
    ("requestId", lambda v: _text_errors(v, max_length=200), _request_id_errors),
    ("callbackUrl", lambda v: _text_errors(v, max_length=2000), _callback_url_errors),
)


def point_request_input(data) -> PointRequestInput:
    """The POST /api/v1/points body as PointRequestInput; a ValidationError naming every field
    that is wrong (as the serializer would) otherwise."""
    if data is None:  # a JSON null
        raise exceptions.ValidationError({"non_field_errors": ["No data provided"]})
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise exceptions.ValidationError(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
        )
    values, errors = {}, {}
    for name, check, then in _POINT_REQUEST_FIELDS:
        value = data.get(name, _MISSING)
        problems = check(value) or (then(value) if then else [])
        if problems:
            errors[name] = problems
        values[name] = value
    if errors:
        raise exceptions.ValidationError(errors)
    return PointRequestInput(
        user_id=values["userId"],
        rule_id=values["ruleId"],
        amount=values["amount"],
        request_id=values["requestId"],
        callback_url=values["callbackUrl"],
    )


class PointRequestCreateApi(PartnerApi):
    permission_classes = [PartnerTokenRequired, PartnerScopes, ValidRequestSignature]
    required_any_scope = ("points:earn", "points:burn")

    class InputSerializer(serializers.Serializer):
        userId = StrictCharField(max_length=EXTERNAL_ID_MAX_LENGTH, trim_whitespace=False)
        ruleId = StrictCharField(max_length=64, trim_whitespace=False)
        amount = StrictIntegerField(
            min_value=1,
            max_value=MAX_POINTS_PER_OPERATION,
            error_messages={
                "invalid": "must be a whole number",
                "min_value": "must be a positive whole number",
                "max_value": f"must be at most {MAX_POINTS_PER_OPERATION}",
            },
        )
        requestId = StrictCharField(max_length=200, trim_whitespace=False)
        callbackUrl = StrictCharField(max_length=2000, trim_whitespace=False)

        class Meta:
            ref_name = "PartnerPointRequest"

        def validate_userId(self, value):
            if problem := external_id_problem(value):
                raise serializers.ValidationError(problem)
            return value

        def validate_requestId(self, value):
            if not value.strip() or not value.isprintable():
                raise serializers.ValidationError("must be printable text")
            return value

        def validate_callbackUrl(self, value):
            try:
                validate_callback_url(
                    value, allow_insecure=settings.LOYALTY_ALLOW_INSECURE_CALLBACKS
                )
            except UnsafeURLError as exc:
                raise serializers.ValidationError(exc.reason) from exc
            return value

    class OutputSerializer(serializers.Serializer):
        requestId = serializers.CharField()
        status = serializers.CharField(help_text='Always "accepted".')

        class Meta:
            ref_name = "PartnerPointRequestAccepted"

    @extend_schema(
        operation_id="partner_points_create",
        summary="Earn or redeem points (asynchronous; the result comes as a signed callback)",
        description=(
            "Accepted requests are processed by a worker; the callback (Standard Webhooks "
            "signed with the client's webhook secret) reports `success` with `point` and "
            "`transactionId`, or `failed` with `errorMessage`. `requestId` is idempotent per "
            "client: a repeat with the same userId, ruleId, amount and callbackUrl gets the "
            "first reply (header `Idempotent-Replayed: true`), a repeat with other values 409. "
            "Optional request signature: `Digest: SHA-512=...` and `Signature: keyId=...,"
            'algorithm="RSA-SHA256",created=...,headers="(created) digest (request-target)",'
            "signature=...`."
        ),
        tags=["partner"],
        request=InputSerializer,
        responses={
            202: OutputSerializer,
            **_errors(
                {
                    400: "invalid parameters; rule not found, inactive or outside its period; "
                    "invalid user; insufficient balance for a burn",
                    401: "missing, invalid or expired token; token lacking the scope; "
                    "refused request signature",
                    403: "client not authorised for the rule or organisation",
                    409: "requestId already used with different values",
                    429: "rate limit exceeded (Retry-After)",
                }
            ),
        },
    )
    def post(self, request):
        result = partner_request_submit(
            client=request.api_client,
            scopes=frozenset(request.auth.scope.split()),
            data=point_request_input(request.data),
        )
        headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
        return Response(
            result.request.reply_body, status=result.request.reply_status, headers=headers
        )


# --- GET .../balances/{userId} ------------------------------------------------------------------


class PointBalanceDetailApi(PartnerApi):
    required_any_scope = ("points:read",)

    class OutputSerializer(serializers.Serializer):
        userId = serializers.CharField(source="user_id")
        programKey = serializers.CharField(source="program_key")
        balance = serializers.IntegerField(help_text="Posted points, held ones included.")
        available = serializers.IntegerField(help_text="balance - held: what can be spent.")
        held = serializers.IntegerField(help_text="Points in open holds.")
        pending = serializers.IntegerField(help_text="Earned points not active yet.")
        tier = serializers.CharField(allow_null=True, help_text="Tier name, or null.")

        class Meta:
            ref_name = "PartnerPointBalance"

    @extend_schema(
        summary="A member's point balance",
        tags=["partner"],
        parameters=[
            OpenApiParameter("orgId", str, OpenApiParameter.PATH, description="Organisation id"),
            OpenApiParameter("programKey", str, OpenApiParameter.PATH, description="e.g. default"),
            OpenApiParameter("userId", str, OpenApiParameter.PATH, description="Member's id"),
        ],
        responses={
            200: OutputSerializer,
            **_errors(
                {
                    401: "missing, invalid or expired token; token lacking points:read",
                    403: "orgId is not the client's organisation",
                    404: "no such program or user",
                    429: "rate limit exceeded (Retry-After)",
                }
            ),
        },
    )
    def get(self, request, orgId, programKey, userId):  # the seed's path names
        balance = member_balance_get(
            client=request.api_client, org_id=orgId, program_key=programKey, user_id=userId
        )
        return Response(balance.reply_data())
