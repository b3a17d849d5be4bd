"""The loyalty platform's project package and core domain (organisations, members, portal).

The Celery app is imported here so that `@shared_task` binds to it whenever Django loads.
"""

from loyalty.celery import app as celery_app

__all__ = ("celery_app",)
