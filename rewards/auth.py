"""Who may call the rewards API: building blocks by API key, members by session or OAuth token.

* Building blocks (services) send their key in `X-Api-Key` or, as Rokwire's services do, in
  `INTERNAL-API-KEY`. Keys are looked up by their prefix and compared by hash in constant time.
* Members use the portal session (DRF's SessionAuthentication: CSRF checked on writes) or an
  OAuth2 access token of the authorization-code flow (scope `member`); either way the member is
  the membership loyalty.selectors.member_for_request resolves for the person signed in.
* Administrators are API clients (integrations.clients.ApiClientAuthentication, scope
  `rewards:admin`); that is set up on the admin views.
"""

from __future__ import annotations

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.permissions import BasePermission

from loyalty.selectors import member_for_request
from rewards.models import RewardsService
from rewards.selectors import rewards_service_for_key

API_KEY_HEADERS = ("HTTP_X_API_KEY", "HTTP_INTERNAL_API_KEY")
MEMBER_SCOPE = "member"


@dataclass(frozen=True)
class ServicePrincipal:
    """request.user for a building block: the service, not a person."""

    service: RewardsService

    is_authenticated = True
    is_anonymous = False
    is_active = True
    pk = None


class RewardsServiceKeyAuthentication(BaseAuthentication):
    """`X-Api-Key` / `INTERNAL-API-KEY`; request.auth is the RewardsService."""

    def authenticate(self, request):
        raw_key = next((request.META[h] for h in API_KEY_HEADERS if request.META.get(h)), None)
        if raw_key is None:
            return None
        service = rewards_service_for_key(raw_key.strip())
        if service is None:
            raise exceptions.AuthenticationFailed("invalid API key")
        return ServicePrincipal(service=service), service

    def authenticate_header(self, request):
        return 'ApiKey header="X-Api-Key"'


class IsRewardsService(BasePermission):
    def has_permission(self, request, view):
        if not isinstance(request.auth, RewardsService):
            raise exceptions.NotAuthenticated("an API key is required (X-Api-Key)")
        return True


class MemberOAuth2Authentication(OAuth2Authentication):
    """A member app's access token; client-credentials tokens (no person) are not members."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, token = result
        if user is None:
            raise exceptions.AuthenticationFailed("this token does not belong to a member")
        return user, token


MEMBER_AUTHENTICATION = [MemberOAuth2Authentication, SessionAuthentication]


class IsSignedInMember(BasePermission):
    """A person with one active membership chosen; sets request.member.

    Tokens must carry the `member` scope; a session needs no scope (the person signed in).
    """

    message = "sign in as a member first"

    def has_permission(self, request, view):
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            raise exceptions.NotAuthenticated()
        token = request.auth
        is_token = token is not None and hasattr(token, "allow_scopes")
        if is_token and not token.allow_scopes([MEMBER_SCOPE]):
            raise exceptions.PermissionDenied(
                f"lacks sufficient scope permissions: needs {MEMBER_SCOPE}"
            )
        member = member_for_request(request)
        if member is None:
            raise exceptions.PermissionDenied(
                "no active membership is chosen for this login; choose one in the portal"
            )
        request.member = member
        return True


class RewardsServiceKeyScheme(OpenApiAuthenticationExtension):
    """Tells drf-spectacular how building blocks authenticate (X-Api-Key or INTERNAL-API-KEY)."""

    target_class = "rewards.auth.RewardsServiceKeyAuthentication"
    name = "rewardsServiceApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Api-Key",
            "description": (
                "A rewards service's API key; Rokwire's INTERNAL-API-KEY header works too."
            ),
        }


class MemberOAuth2Scheme(OpenApiAuthenticationExtension):
    """Member apps: OAuth2 authorization code with PKCE, scope `member`."""

    target_class = "rewards.auth.MemberOAuth2Authentication"
    name = "memberOAuth2"

    def get_security_definition(self, auto_schema):
        return {
            "type": "oauth2",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": "/o/authorize/",
                    "tokenUrl": "/o/token/",
                    "scopes": {MEMBER_SCOPE: "A member's own data"},
                }
            },
        }

    def get_security_requirement(self, auto_schema):
        return {self.name: [MEMBER_SCOPE]}
