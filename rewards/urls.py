"""URLs of the rewards API (mounted under /rewards/ by loyalty/urls.py)."""

urlpatterns: list = []
