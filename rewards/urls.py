"""URLs of the rewards API (mounted under /rewards/ by loyalty/urls.py): Rokwire's paths."""

from django.urls import path

from rewards import api

app_name = "rewards"

urlpatterns = [
    path("admin/types", api.AdminRewardTypeListApi.as_view(), name="admin-types"),
    path("admin/types/<str:id>", api.AdminRewardTypeDetailApi.as_view(), name="admin-type"),
    path("admin/inventories", api.AdminInventoryListApi.as_view(), name="admin-inventories"),
    path(
        "admin/inventories/<str:id>",
        api.AdminInventoryDetailApi.as_view(),
        name="admin-inventory",
    ),
    path("admin/operations", api.AdminOperationListApi.as_view(), name="admin-operations"),
    path(
        "admin/operations/<str:id>",
        api.AdminOperationDetailApi.as_view(),
        name="admin-operation",
    ),
    path("admin/claims", api.AdminClaimListApi.as_view(), name="admin-claims"),
    path("admin/claims/<str:id>", api.AdminClaimDetailApi.as_view(), name="admin-claim"),
    path("int/reward", api.InternalRewardApi.as_view(), name="int-reward"),
    path("user/balance", api.UserBalanceApi.as_view(), name="user-balance"),
    path("user/history", api.UserHistoryApi.as_view(), name="user-history"),
    path("user/claims", api.UserClaimListApi.as_view(), name="user-claims"),
    path("user/claims/<str:id>", api.UserClaimDetailApi.as_view(), name="user-claim"),
    path("user/store", api.UserStoreApi.as_view(), name="user-store"),
    path("user/purchases", api.UserPurchaseListApi.as_view(), name="user-purchases"),
]
