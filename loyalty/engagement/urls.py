"""URLs of the profiles API (seed 004), mounted at the site root by loyalty/urls.py."""

from django.urls import path

from loyalty.engagement import api

CUSTOMER = "api/v1/customers/<str:customer_id>"

urlpatterns = [
    path("api/v1/customers", api.CustomerCreateApi.as_view(), name="customers-create"),
    path(CUSTOMER, api.CustomerDetailApi.as_view(), name="customers-detail"),
    path(f"{CUSTOMER}/wallet", api.CustomerWalletApi.as_view(), name="customers-wallet"),
    path(f"{CUSTOMER}/tags", api.CustomerTagsApi.as_view(), name="customers-tags"),
    path(f"{CUSTOMER}/tags/<str:tag>", api.CustomerTagDeleteApi.as_view(), name="customers-tag"),
    path(
        f"{CUSTOMER}/campaigns",
        api.CustomerCampaignListApi.as_view(),
        name="customers-campaigns",
    ),
    path(
        f"{CUSTOMER}/campaigns/<str:campaign_id>/opt-in",
        api.CampaignOptInApi.as_view(),
        name="customers-campaign-opt-in",
    ),
    path(f"{CUSTOMER}/purchases", api.OfferPurchaseApi.as_view(), name="customers-purchases"),
    path(f"{CUSTOMER}/redemptions", api.RewardRedeemApi.as_view(), name="customers-redemptions"),
    path(f"{CUSTOMER}/point-log", api.PointLogApi.as_view(), name="customers-point-log"),
    path(f"{CUSTOMER}/activity-log", api.ActivityLogApi.as_view(), name="customers-activity-log"),
    path(
        "api/v1/tags/<str:tag>/customers", api.TagCustomerListApi.as_view(), name="tags-customers"
    ),
    path("api/v1/events", api.EventCreateApi.as_view(), name="events-create"),
    path("api/v1/campaigns", api.CampaignListApi.as_view(), name="campaigns-list"),
    path("api/v1/stores", api.StoreListApi.as_view(), name="stores-list"),
    path(
        "api/v1/stores/<str:store_key>/offers",
        api.StoreOfferListApi.as_view(),
        name="stores-offers",
    ),
]
