"""The EAI call in the fast lane (loyalty/fast_lane.py): EaiPointsApi's plain call (valid
credentials, an allowed vendor and address, a well-formed body, nothing refused), answered with
the view's own authentication, checks and services, without Django's request cycle.

A refusal of any kind is handed to the view, which answers it; a commit, confirm or rollback
the ledger refused was rolled back by its transaction and is redone there from the start.
"""

from __future__ import annotations

import re

from rest_framework.exceptions import APIException
from rest_framework.settings import api_settings

from integrations.eai.api import eai_points_perform, requested_action
from integrations.eai.auth import VendorAllowed, VendorBasicAuthentication
from integrations.eai.exceptions import EaiError
from integrations.eai.payload import json_object
from loyalty.fast_lane import Reply, Route
from loyalty.negotiation import wants_plain_json
from points.exceptions import PointsError

_ALLOW = "POST, OPTIONS"
_REPLAYED = (("Idempotent-Replayed", "true"),)


def points_call(request) -> Reply | None:
    if not wants_plain_json(request.META, api_settings.URL_FORMAT_OVERRIDE):
        return None
    try:
        authenticated = VendorBasicAuthentication().authenticate(request)
        if authenticated is None:
            return None
        request.user = authenticated[0]
        VendorAllowed().has_permission(request, view=None)
        action = requested_action(request.GET)
        reply, replayed = eai_points_perform(
            principal=request.user, action=action, payload=json_object(request)
        )
    except (APIException, EaiError, PointsError):
        return None
    return Reply(status=200, data=reply, allow=_ALLOW, headers=_REPLAYED if replayed else ())


ROUTES = [Route("POST", re.compile(r"/eai/v1/points"), points_call)]
