"""How a rewards vendor proves who it is on the EAI API: HTTP Basic, then active and IP checks.

Order of refusals: no or wrong credentials -> 401 with `WWW-Authenticate: Basic`; an inactive
vendor or an address outside its allowlist -> 403. Both answers come only after the credentials
were checked, so a stranger learns nothing about vendors from a 403.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import HTTP_HEADER_ENCODING, exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from integrations.eai import selectors
from integrations.eai.exceptions import InvalidRequest
from integrations.eai.models import Vendor
from integrations.eai.payload import json_object
from loyalty.models import Member

REALM = "eai"


@dataclass(frozen=True)
class VendorPrincipal:
    """request.user on the EAI API: the vendor, not a person."""

    vendor: Vendor
    # The member the body's userid names, read with the credentials: {external_id: member or
    # None}. Empty when the body named none.
    members_read: dict[str, Member | None] = field(default_factory=dict, compare=False)

    is_authenticated = True
    is_anonymous = False
    is_active = True
    pk = None

    def member(self, external_id: str) -> Member | None:
        """The vendor's organisation's member with this external id, or None."""
        if external_id in self.members_read:
            return self.members_read[external_id]
        return selectors.member_for_vendor(vendor=self.vendor, external_id=external_id)


class VendorBasicAuthentication(BaseAuthentication):
    """HTTP Basic with a vendor's EAI username and secret."""

    def authenticate(self, request):
        # From META, as DRF's get_authorization_header reads it, without building
        # request.headers (every header of the request, on each call) for one of them.
        header = request.META.get("HTTP_AUTHORIZATION", "").encode(HTTP_HEADER_ENCODING).split()
        if not header or header[0].lower() != b"basic":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Basic credentials")
        try:
            decoded = base64.b64decode(header[1], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise exceptions.AuthenticationFailed("malformed Basic credentials") from None
        username, separator, secret = decoded.partition(":")
        if not separator:
            raise exceptions.AuthenticationFailed("malformed Basic credentials")
        external_id = _userid_in_body(request)
        if external_id is None:
            vendor = selectors.vendor_for_credentials(username=username, secret=secret)
            members_read = {}
        else:
            vendor, member = selectors.vendor_and_member_for_credentials(
                username=username, secret=secret, external_id=external_id
            )
            members_read = {external_id: member}
        if vendor is None:
            raise exceptions.AuthenticationFailed("invalid vendor credentials")
        return VendorPrincipal(vendor=vendor, members_read=members_read), None

    def authenticate_header(self, request):
        return f'Basic realm="{REALM}", charset="UTF-8"'


def _userid_in_body(request) -> str | None:
    """The userid the body names, or None: a look ahead, so that the member is read with the
    credentials. A body the view will refuse names none here; the view refuses it, with its
    own message, once the caller has proven who it is."""
    try:
        userid = json_object(request).get("userid")
    except InvalidRequest:
        return None
    return userid if isinstance(userid, str) else None


class VendorAllowed(BasePermission):
    """The authenticated vendor is active and calls from an allowed address."""

    def has_permission(self, request, view):
        principal = request.user
        if not isinstance(principal, VendorPrincipal):
            raise exceptions.NotAuthenticated("vendor credentials required")
        vendor = principal.vendor
        if not vendor.active:
            raise exceptions.PermissionDenied("vendor is inactive", code="vendor_inactive")
        address = selectors.client_ip(request)
        if not selectors.vendor_ip_allowed(vendor=vendor, address=address):
            raise exceptions.PermissionDenied("IP address not allowed", code="ip_not_allowed")
        return True


class VendorBasicAuthenticationScheme(OpenApiAuthenticationExtension):
    """Tells drf-spectacular that the EAI API uses HTTP Basic."""

    target_class = "integrations.eai.auth.VendorBasicAuthentication"
    name = "eaiBasicAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "The vendor's EAI username and secret (from the operator console).",
        }
