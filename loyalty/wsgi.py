"""WSGI entry point: `granian --interface wsgi loyalty.wsgi:application` (README), or any WSGI
server (`gunicorn loyalty.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty.settings.base")

application = get_wsgi_application()
