"""Top-level URLs. Each wire contract mounts its own module."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from oauth2_provider.views import TokenView

from loyalty import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    # Seed 001's token endpoint, so clients written for it work unchanged.
    path(
        "realms/partner/protocol/openid-connect/token",
        TokenView.as_view(),
        name="seed-token",
    ),
    # One module per wire contract.
    path("", include("integrations.eai.urls")),
    path("", include("integrations.partner.urls")),
    path("", include("integrations.follower.urls")),
    path("", include("loyalty.engagement.urls")),
    path("rewards/", include("rewards.urls")),
    path("portal/", include("loyalty.portal.urls")),
]
