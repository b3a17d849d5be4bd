"""URLs of this contract (mounted at the site root by loyalty/urls.py)."""

urlpatterns: list = []
