"""WSGI entry point: `granian --interface wsgi loyalty.wsgi:application` (README), or any WSGI
server (`gunicorn loyalty.wsgi:application`).

The hottest contract calls go through the fast lane first (loyalty/fast_lane.py); everything
else, and whatever the lane does not answer itself, is Django's.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty.settings.base")

django_application = get_wsgi_application()

from integrations.eai.fast_lane import ROUTES as EAI_ROUTES  # noqa: E402 (needs Django set up)
from integrations.partner.fast_lane import ROUTES as PARTNER_ROUTES  # noqa: E402
from loyalty.fast_lane import FastLane  # noqa: E402

application = FastLane(django_application, routes=[*EAI_ROUTES, *PARTNER_ROUTES])
