"""Edge protections shared by every contract: body size limit, and database outages as 503;
and the browser's middleware kept off the machine-to-machine contracts.

A body larger than LOYALTY_MAX_BODY_BYTES is refused with 413 before anything reads it. A lost
database connection (a failover, a terminated backend) answers 503 with Retry-After and a JSON
body instead of an HTML 500; the transaction was rolled back, so nothing is half-applied, and
the next request gets a fresh connection.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import CsrfViewMiddleware

logger = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/eai/", "/rewards/", "/o/", "/realms/", "/latitude-points/")


# The contracts whose every request carries its own credentials (an OAuth2 bearer token, a
# vendor's Basic credentials): never a session cookie, a CSRF token, flash messages or a page
# to frame. /rewards/ and /o/ are not here: members' sessions and the OAuth2 consent page use
# them.
CREDENTIAL_ONLY_PREFIXES = ("/api/v1/", "/api/v2/", "/eai/v1/", "/latitude-points/")


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def is_credential_only_path(path: str) -> bool:
    return path.startswith(CREDENTIAL_ONLY_PREFIXES)


class _BrowserOnly:
    """Mixed into a browser middleware: skipped on the credential-only contracts, which are the
    platform's hottest paths (bench/: about 6% of an EAI call's CPU went to the five). Subclasses
    of Django's own, so the admin's checks still find them in MIDDLEWARE."""

    def __call__(self, request):
        if is_credential_only_path(request.path_info):
            return self.get_response(request)
        return super().__call__(request)


class BrowserSessionMiddleware(_BrowserOnly, SessionMiddleware):
    pass


class BrowserCsrfViewMiddleware(_BrowserOnly, CsrfViewMiddleware):
    # Its process_view still runs there, and passes: every view under those prefixes is a DRF
    # view, exempt from Django's CSRF check.
    pass


class BrowserAuthenticationMiddleware(_BrowserOnly, AuthenticationMiddleware):
    pass


class BrowserMessageMiddleware(_BrowserOnly, MessageMiddleware):
    pass


class BrowserXFrameOptionsMiddleware(_BrowserOnly, XFrameOptionsMiddleware):
    pass


class RequestSizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.LOYALTY_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(
                {"code": "invalid_content_length", "message": "Content-Length is not a number"},
                status=400,
            )
        if length > limit:
            return JsonResponse(
                {
                    "code": "payload_too_large",
                    "message": f"the request body is larger than {limit} bytes",
                    "status": "failed",
                },
                status=413,
            )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, exception)
        for connection in connections.all(initialized_only=True):
            # Drop a broken connection now so the next request opens a fresh one.
            connection.close_if_unusable_or_obsolete()
            if connection.connection is not None and not connection.is_usable():
                connection.close()
        message = "the database is unavailable; nothing was changed, try again"
        if is_api_path(request.path):
            response = JsonResponse(
                {"code": "service_unavailable", "message": message, "status": "failed"},
                status=503,
            )
        else:
            response = HttpResponse(
                "<!doctype html><title>Try again</title>"
                f"<h1>Please try again</h1><p>{message}.</p>",
                status=503,
            )
        response["Retry-After"] = "2"
        return response
