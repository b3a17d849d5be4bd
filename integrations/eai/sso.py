"""Seed 000's single sign-on to rewards vendors: the redeem hand-over and the published keys.

* `GET /portal/vendors/{vendor_id}/redeem/` (signed-in member): signs a short-lived JWT
  (integrations/eai/tokens.py) and sends the browser to the vendor's URL, as `?token=` in a 302
  or as an auto-submitted POST form, per vendor. A vendor of another organisation, inactive or
  without SSO is 404: members cannot probe other tenants' vendors.
* `GET /.well-known/jwks.json`: the platform's RS256 public keys with their `kid`, including a
  new key before it signs and a superseded one until its tokens have expired.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.eai import selectors
from integrations.eai.models import SsoMethod
from integrations.eai.tokens import sso_token_issue
from loyalty.selectors import member_for_request

# The JWKS may be cached briefly; a new key is published well before it signs
# (services.DEFAULT_PUBLISH_AHEAD_SECONDS), so caches never hide a key a token names.
JWKS_MAX_AGE_SECONDS = 60


def _url_with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _no_leaks(response):
    # The token must not reach a third party through the Referer header or a shared cache.
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
@never_cache
def vendor_redeem(request, vendor_id):
    """Hand the signed-in member over to the vendor with a signed token."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    member = member_for_request(request)
    if member is None:
        # Signed in, but no active membership chosen (or none at all).
        return _no_leaks(render(request, "eai/no_membership.html", status=403))
    vendor = (
        selectors.vendors_for_sso(organization=member.organization).filter(pk=vendor_id).first()
    )
    if vendor is None:
        raise Http404("No such vendor.")
    token = sso_token_issue(vendor=vendor, member=member)
    if vendor.sso_method == SsoMethod.POST:
        response = render(
            request,
            "eai/sso_post_form.html",
            {"vendor": vendor, "action": vendor.sso_redirect_url, "token": token},
        )
    else:
        response = HttpResponseRedirect(_url_with_token(vendor.sso_redirect_url, token))
    return _no_leaks(response)


class JwkSerializer(serializers.Serializer):
    kty = serializers.CharField(help_text="RSA")
    kid = serializers.CharField()
    use = serializers.CharField(help_text="sig")
    alg = serializers.CharField(help_text="RS256")
    n = serializers.CharField()
    e = serializers.CharField()


class JwksSerializer(serializers.Serializer):
    keys = JwkSerializer(many=True)


class JwksGetApi(APIView):
    """The platform's public keys for RS256 SSO tokens (RFC 7517 JWK Set)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    OutputSerializer = JwksSerializer

    @extend_schema(
        operation_id="sso_jwks",
        summary="Public keys of the vendor SSO tokens (JWKS)",
        description=(
            "Vendors verify RS256 SSO tokens with the key named by the token's `kid`. A new "
            "key appears here before it signs; a superseded one stays until its tokens expired."
        ),
        tags=["Vendor SSO (seed 000)"],
        responses={200: JwksSerializer},
    )
    def get(self, request):
        response = Response(self.OutputSerializer(selectors.published_jwks()).data)
        response["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
        return response
