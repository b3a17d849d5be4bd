"""URLs of the follower contract (seed 002), mounted at the site root by loyalty/urls.py."""

from django.urls import path

from integrations.follower.api import BalanceJobStatusApi, BalancesCreateApi, TransactionsCreateApi

urlpatterns = [
    path(
        "api/v2/point-accounts/balances",
        BalancesCreateApi.as_view(),
        name="follower-balances",
    ),
    path(
        "api/v2/point-accounts/balances/status/<str:id>",
        BalanceJobStatusApi.as_view(),
        name="follower-balances-status",
    ),
    path(
        "api/v2/point-accounts/transactions",
        TransactionsCreateApi.as_view(),
        name="follower-transactions",
    ),
]
