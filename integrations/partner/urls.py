"""URLs of the partner Point API (seed 001), mounted at the site root by loyalty/urls.py."""

from django.urls import path

from integrations.partner.api import PointBalanceDetailApi, PointRequestCreateApi

BALANCE = "orgs/<str:orgId>/point-programs/<str:programKey>/balances/<str:userId>"

urlpatterns = [
    path("api/v1/points", PointRequestCreateApi.as_view(), name="partner-points"),
    path(f"api/v1/{BALANCE}", PointBalanceDetailApi.as_view(), name="partner-balance"),
    # The seed's own prefix, so partners' clients written for it work unchanged.
    path(
        f"latitude-points/{BALANCE}",
        PointBalanceDetailApi.as_view(),
        name="partner-balance-seed",
    ),
]
