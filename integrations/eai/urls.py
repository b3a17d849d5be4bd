"""URLs of seed 000 (mounted at the site root by loyalty/urls.py): EAI API, JWKS, SSO hand-over."""

from django.urls import path

from integrations.eai.api import EaiPointsApi
from integrations.eai.sso import JwksGetApi, vendor_redeem

urlpatterns = [
    path("eai/v1/points", EaiPointsApi.as_view(), name="eai-points"),
    path(".well-known/jwks.json", JwksGetApi.as_view(), name="sso-jwks"),
    path(
        "portal/vendors/<uuid:vendor_id>/redeem/",
        vendor_redeem,
        name="portal-vendor-redeem",
    ),
]
