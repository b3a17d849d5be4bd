"""API clients: creation (OAuth2 client credentials), authentication and scope checks for DRF.

A token is resolved to its ApiClient and organisation once per request; views read
`request.api_client` and scope every query by `request.api_client.organization`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db import transaction
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_access_token_model, get_application_model
from oauth2_provider.scopes import SettingsScopes
from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from integrations.models import ApiClient
from integrations.webhook_signing import new_webhook_secret
from loyalty import sql
from loyalty.models import Organization


@dataclass(frozen=True)
class CreatedClient:
    client: ApiClient
    client_id: str
    client_secret: str  # shown once; only its hash is stored


def api_client_create(
    *,
    organization: Organization,
    name: str,
    scopes: list[str],
    client_id: str | None = None,
    client_secret: str | None = None,
    signing_key_id: str = "",
    signing_public_key_pem: str = "",
    require_signature: bool = False,
) -> CreatedClient:
    """Create a confidential client-credentials application and its ApiClient.

    The raw secret is returned once; the application stores only its hash.
    """
    Application = get_application_model()
    raw_secret = client_secret or generate_client_secret()
    with transaction.atomic():
        application = Application(
            name=f"{organization.slug}: {name}",
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            client_secret=raw_secret,
            hash_client_secret=True,
        )
        if client_id:
            application.client_id = client_id
        application.save()
        client = ApiClient.objects.create(
            organization=organization,
            application=application,
            name=name,
            scopes=" ".join(sorted(set(scopes))),
            webhook_secret=new_webhook_secret(),
            signing_key_id=signing_key_id,
            signing_public_key_pem=signing_public_key_pem,
            require_signature=require_signature,
        )
    return CreatedClient(client=client, client_id=application.client_id, client_secret=raw_secret)


def api_client_reset_secret(*, client: ApiClient, client_secret: str | None = None) -> str:
    """Give the client a new secret (old tokens stay valid until they expire); return it once."""
    raw_secret = client_secret or generate_client_secret()
    application = client.application
    application.client_secret = raw_secret
    application.save(update_fields=["client_secret"])
    return raw_secret


class ClientScopes(SettingsScopes):
    """django-oauth-toolkit scopes backend: a client may hold only its ApiClient's scopes."""

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        known = set(super().get_available_scopes(application, request, *args, **kwargs))
        client = _client_of(application)
        if client is None:
            return sorted(known)
        if not client.active:
            return []
        return sorted(known & client.scope_set)

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        return self.get_available_scopes(application, request, *args, **kwargs)


def _client_of(application) -> ApiClient | None:
    if application is None:
        return None
    try:
        return application.api_client
    except ApiClient.DoesNotExist:
        return None


@dataclass(frozen=True)
class ClientPrincipal:
    """request.user for a client-credentials token: the API client, not a person."""

    api_client: ApiClient

    is_authenticated = True
    is_anonymous = False
    is_active = True
    pk = None

    @property
    def organization(self) -> Organization:
        return self.api_client.organization


class ApiClientAuthentication(OAuth2Authentication):
    """Bearer tokens of active ApiClients. Sets request.api_client; the token is request.auth.

    The common case, a valid `Authorization: Bearer` token, is checked here in one query (the
    token by its SHA-256 checksum, with its application, ApiClient and organisation joined):
    the same checks django-oauth-toolkit makes, without building an oauthlib request. Anything
    else (no header, a token in the query string, an unknown, expired or resource-bound token)
    goes through django-oauth-toolkit unchanged, so refusals and their WWW-Authenticate details
    stay exactly its own.
    """

    def authenticate(self, request):
        token = valid_bearer_token(request)
        if token is None:
            result = super().authenticate(request)
            if result is None:
                return None
            _user, token = result
        client = _client_of(token.application) if token.application_id else None
        if client is None or not client.active:
            raise exceptions.AuthenticationFailed("this client is not active")
        request._request.api_client = client
        return ClientPrincipal(api_client=client), token


# The token with its application, ApiClient and organisation: only the columns requests use.
_TOKEN_COLUMNS = sql.Columns(
    get_access_token_model(), ["id", "application", "expires", "scope", "resource"]
)
_APPLICATION_COLUMNS = sql.Columns(get_application_model(), ["id", "client_id", "name"])
_CLIENT_COLUMNS = sql.Columns(ApiClient)
_ORGANIZATION_COLUMNS = sql.Columns(Organization)
# Other statements may read the token this way and more beside it (the partner balance read).
TOKEN_SELECT_SQL = (
    f"{_TOKEN_COLUMNS.select('t')}, {_APPLICATION_COLUMNS.select('a')}, "
    f"{_CLIENT_COLUMNS.select('c')}, {_ORGANIZATION_COLUMNS.select('o')}"
)
TOKEN_FROM_SQL = (
    f'FROM "{get_access_token_model()._meta.db_table}" t '
    f'JOIN "{get_application_model()._meta.db_table}" a ON a."id" = t."application_id" '
    f'JOIN "{ApiClient._meta.db_table}" c ON c."application_id" = a."id" '
    f'JOIN "{Organization._meta.db_table}" o ON o."id" = c."organization_id"'
)
TOKEN_WHERE_SQL = 'WHERE t."token_checksum" = %s'  # noqa: S105 (a statement, not a secret)
TOKEN_ROW_LENGTH = sum(
    len(columns)
    for columns in (_TOKEN_COLUMNS, _APPLICATION_COLUMNS, _CLIENT_COLUMNS, _ORGANIZATION_COLUMNS)
)
_TOKEN_SQL = f"SELECT {TOKEN_SELECT_SQL} {TOKEN_FROM_SQL} {TOKEN_WHERE_SQL}"


def bearer_checksum(request) -> str | None:
    """The SHA-256 checksum of the request's `Authorization: Bearer` token, as stored; None
    when the request has no such header."""
    header = request.META.get("HTTP_AUTHORIZATION", "").split()
    if len(header) != 2 or header[0].lower() != "bearer":
        return None
    return hashlib.sha256(header[1].encode("utf-8")).hexdigest()


def valid_bearer_token(request):
    """The request's bearer token when it is valid as it stands, else None (caller falls back).

    One prepared statement: the token by its SHA-256 checksum, with its application, ApiClient
    and organisation loaded into `token.application.api_client.organization`.
    """
    checksum = bearer_checksum(request)
    if checksum is None:
        return None
    row = sql.fetch_one(_TOKEN_SQL, [checksum])
    return None if row is None else valid_token_of_row(row, request)


def valid_token_of_row(row, request):
    """The token of a row read by TOKEN_SELECT_SQL (its first TOKEN_ROW_LENGTH columns), linked
    to its application, client and organisation, when it is valid as it stands; else None."""
    token, application, client, organization = sql.instances(
        row, _TOKEN_COLUMNS, _APPLICATION_COLUMNS, _CLIENT_COLUMNS, _ORGANIZATION_COLUMNS
    )
    if not token.is_valid() or token.resource:
        return None
    if not application.is_usable(request):
        return None
    client.organization = organization
    client.application = application
    application.api_client = client
    token.application = application
    return token


class HasScopes(BasePermission):
    """The token holds every scope in view.required_scopes (or required_scopes_by_method).

    Seed 001's table answers a token lacking scope with 401; other contracts use 403. A view
    chooses with `scope_failure_status`.
    """

    message = "lacks sufficient scope permissions"

    def has_permission(self, request, view):
        token = request.auth
        if token is None or not hasattr(token, "scope"):
            raise exceptions.NotAuthenticated()
        by_method = getattr(view, "required_scopes_by_method", None)
        required = (
            by_method.get(request.method, []) if by_method else getattr(view, "required_scopes", [])
        )
        if token.allow_scopes(required):
            return True
        missing = sorted(set(required) - set(token.scope.split()))
        detail = f"{self.message}: needs {' '.join(missing)}"
        if getattr(view, "scope_failure_status", 403) == 401:
            raise exceptions.NotAuthenticated(detail)
        raise exceptions.PermissionDenied(detail)
