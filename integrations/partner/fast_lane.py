"""The partner balance read in the fast lane (loyalty/fast_lane.py): PointBalanceDetailApi's
plain call, answered with its checks, without Django's request cycle, and with the token and
the balance read in one statement instead of two.

Anything PointBalanceDetailApi would refuse, and anything out of the ordinary (a query string,
another Accept, a HEAD request), is handed to the view, which answers it.
"""

from __future__ import annotations

import re

from rest_framework.settings import api_settings

from integrations.partner.api import PointBalanceDetailApi, client_rate_take, holds_any_scope
from integrations.partner.selectors import same_organization, token_and_balance_get
from loyalty.fast_lane import Reply, Route
from loyalty.negotiation import wants_plain_json

# The paths of integrations/partner/urls.py (`<str:...>` matches any text without a slash).
_BALANCE = r"orgs/([^/]+)/point-programs/([^/]+)/balances/([^/]+)"
_ALLOW = "GET, HEAD, OPTIONS"


def balance_read(request, org_id: str, program_key: str, user_id: str) -> Reply | None:
    meta = request.META
    if meta.get("QUERY_STRING") or not wants_plain_json(meta, api_settings.URL_FORMAT_OVERRIDE):
        return None
    # The token and the balance in one statement (the view reads them in two).
    token, balance = token_and_balance_get(
        request=request, program_key=program_key, user_id=user_id
    )
    if token is None or balance is None:
        return None
    client = token.application.api_client
    if not client.active:
        return None
    if not holds_any_scope(token, PointBalanceDetailApi.required_any_scope):
        return None
    if not same_organization(client, org_id):
        return None
    # Counted last: a call the view would refuse before its throttle is not counted twice.
    allowed, _wait = client_rate_take(client)
    if not allowed:
        return None
    return Reply(status=200, data=balance.reply_data(), allow=_ALLOW)


ROUTES = [
    Route("GET", re.compile(rf"/api/v1/{_BALANCE}"), balance_read),
    Route("GET", re.compile(rf"/latitude-points/{_BALANCE}"), balance_read),
]
