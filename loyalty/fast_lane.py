"""A fast lane in front of Django for the platform's hottest contract calls.

A partner's balance read and a vendor's EAI call are the platform's most frequent requests, and
Django's request cycle around them (the middleware chain, URL resolution, DRF's request and
response wrapping) cost about as much CPU as their own work (bench/). A route of the lane takes
such a call when it is plain, answers it with the same authentication, checks, services and
selectors as the DRF view, and frames the reply as DRF and the middleware would.

The lane never decides a refusal. Anything it does not answer itself (a refusal of any kind, an
unusual header, a query string, an error) is declined and handed to Django unchanged, which
gives the contract's answer: every error reply stays the views' own. A write the lane started
and did not finish was rolled back by its transaction, so Django redoes it from the start
(refusals are rare; that costs them a second try, never a half-applied change). Tests hold the
lane and Django to the same answers (tests/eai/test_eai_fast_lane.py,
tests/partner/test_balance_fast_lane.py; the framing: tests/loyalty/test_fast_lane.py).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http.client import responses

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from rest_framework.renderers import JSONRenderer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer, as the DRF view would return it: status, JSON data, its headers."""

    status: int
    data: dict
    allow: str  # DRF's Allow header: the view's methods
    headers: tuple[tuple[str, str], ...] = ()


# A route's handler gets Django's request and the path's groups; it returns a Reply, or None
# to hand the request to Django.
Handler = Callable[..., Reply | None]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: re.Pattern
    handler: Handler


def _security_headers(*, secure: bool) -> tuple[tuple[str, str], ...]:
    """The headers Django's SecurityMiddleware adds to a JSON reply, for these settings."""
    request = HttpRequest()
    request.is_secure = lambda: secure
    middleware = SecurityMiddleware(get_response=HttpResponse)
    response = middleware.process_response(request, HttpResponse())
    return tuple((name, value) for name, value in response.items() if name != "Content-Type")


class FastLane:
    """WSGI application: the routes' plain calls answered here, everything else by `django`."""

    def __init__(self, django: Callable, routes: list[Route]):
        self.django = django
        self.routes = routes
        self.renderer = JSONRenderer()
        # Settings are read once, as Django's middleware reads them once per process.
        self.enabled = settings.LOYALTY_FAST_LANE
        self.redirects_to_https = settings.SECURE_SSL_REDIRECT
        # CommonMiddleware refuses some user agents or redirects to www: left to it.
        self.common_middleware_acts = bool(settings.DISALLOWED_USER_AGENTS) or settings.PREPEND_WWW
        self.body_limit = settings.LOYALTY_MAX_BODY_BYTES
        self.security_headers = {
            secure: _security_headers(secure=secure) for secure in (False, True)
        }

    def __call__(self, environ, start_response):
        route, match = self._route(environ) if self.enabled else (None, None)
        if route is not None:
            answered = self._answer(route, match, environ, start_response)
            if answered is not None:
                return answered
        return self.django(environ, start_response)

    def _route(self, environ):
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        for route in self.routes:
            if route.method == method and (match := route.path.fullmatch(path)):
                return route, match
        return None, None

    def _answer(self, route: Route, match: re.Match, environ, start_response):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if length > self.body_limit or self.common_middleware_acts:
            return None
        signals.request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it
            secure = request.is_secure()
            if self.redirects_to_https and not secure:
                return self._decline(request, environ)
            # Django's path (percent-decoded, broken UTF-8 re-escaped) must match too.
            if request.path_info != match.string:
                return self._decline(request, environ)
            reply = route.handler(request, *match.groups())
        except DisallowedHost:
            return self._decline(request, environ)
        except (OperationalError, InterfaceError):
            # Django's own try gets a checked connection, or answers its 503.
            return self._decline(request, environ)
        except Exception:
            self.route_failed(route, match)
            return self._decline(request, environ)
        if reply is None:
            return self._decline(request, environ)
        body = self.renderer.render(reply.data)
        headers = [
            ("Content-Type", "application/json"),
            *reply.headers,
            ("Allow", reply.allow),
            ("Content-Length", str(len(body))),
            *self.security_headers[secure],
        ]
        start_response(f"{reply.status} {responses[reply.status]}", headers)
        signals.request_finished.send(sender=self.__class__)
        return [body]

    def route_failed(self, route: Route, match: re.Match) -> None:
        """A route raised what it should not have: a bug, logged; Django answers the call."""
        logger.exception("fast lane: %s %s failed; Django answers it", route.method, match.string)

    def _decline(self, request: WSGIRequest, environ):
        if hasattr(request, "_body"):
            # The lane read the body; Django reads it again from the start.
            environ["wsgi.input"] = io.BytesIO(request._body)
        return None
