"""The EAI request body: one JSON object whose keys may come in any case, parsed once a request.

The authentication looks ahead at its userid (to read the member with the credentials) and the
view reads all of it; both take it from here.
"""

from __future__ import annotations

import json

from integrations.eai.exceptions import InvalidRequest

BODY_KEYS = ("userid", "pointstodeduct", "transactionid", "description")


def json_object(request) -> dict:
    """The body's known keys, lower-cased, with their values (unknown keys are ignored, so
    vendors may send more than we read). Raises InvalidRequest. A body that parses is kept on
    the request, so a second call costs nothing."""
    http_request = getattr(request, "_request", request)  # DRF's Request wraps Django's
    payload = getattr(http_request, "_eai_json_object", None)
    if payload is None:
        payload = http_request._eai_json_object = _normalised(http_request.body)
    return payload


def _normalised(body: bytes) -> dict:
    # Parsed here rather than by DRF's parser so that a vendor sending JSON with a wrong or
    # missing Content-Type is still understood, and anything that is not JSON is a plain 400.
    try:
        payload = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the body must be a JSON object")
    normalised: dict = {}
    for key, value in payload.items():
        canonical = key.lower()
        if canonical not in BODY_KEYS:
            continue
        if canonical in normalised and normalised[canonical] != value:
            raise InvalidRequest(f"{canonical} is given twice with different values")
        normalised[canonical] = value
    return normalised
