"""Outbound calls to the point master: its points log (seed 002, part 3).

`GET <master_points_log_url>?id=<contactId>` with a short timeout. The URL is the master's, set
by an operator; it is still called through the SSRF guard of integrations.url_safety (https to
public addresses only, unless LOYALTY_ALLOW_INSECURE_CALLBACKS), without redirects or proxies,
and the answer is read up to a size bound.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings

# The peer check after connect (DNS rebinding) lives in url_safety's adapter; it has no public
# GET helper yet, so we mount its adapter the way post_json_safely does.
from integrations.url_safety import UnsafeURLError, _PeerCheckingAdapter, validate_callback_url

MAX_LOG_BYTES = 1024 * 1024


class MasterUnavailable(Exception):
    """The master could not be asked, or its answer was not a points log; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def points_log_url(base_url: str, contact_id: str) -> str:
    """The base URL with `id=<contactId>` set (any query the master put in it is kept)."""
    parts = urlsplit(base_url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "id"]
    query.append(("id", contact_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


def points_log_fetch(*, base_url: str, contact_id: str, timeout: float) -> object:
    """The master's decoded JSON answer for the contact. Raises MasterUnavailable."""
    allow_insecure = getattr(settings, "LOYALTY_ALLOW_INSECURE_CALLBACKS", False)
    url = points_log_url(base_url, contact_id)
    try:
        validate_callback_url(url, allow_insecure=allow_insecure)
    except UnsafeURLError as exc:
        raise MasterUnavailable(f"the points log URL may not be called: {exc.reason}") from exc
    try:
        with requests.Session() as session:
            session.trust_env = False
            if not allow_insecure:
                adapter = _PeerCheckingAdapter(max_retries=0)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
            response = session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=timeout,
                allow_redirects=False,
                stream=True,
            )
            try:
                body = response.raw.read(MAX_LOG_BYTES + 1, decode_content=True) or b""
            finally:
                response.close()
    except UnsafeURLError as exc:
        raise MasterUnavailable(f"the points log URL may not be called: {exc.reason}") from exc
    except requests.RequestException as exc:
        raise MasterUnavailable(f"the master did not answer ({type(exc).__name__})") from exc
    except Exception as exc:  # urllib3 read errors and timeouts surface as other types too
        raise MasterUnavailable(f"the master did not answer ({type(exc).__name__})") from exc
    if not 200 <= response.status_code < 300:
        raise MasterUnavailable(f"the master answered HTTP {response.status_code}")
    if len(body) > MAX_LOG_BYTES:
        raise MasterUnavailable("the master's answer is too large")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MasterUnavailable("the master's answer is not JSON") from exc
