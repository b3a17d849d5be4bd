"""Helpers shared by the engagement tests."""

from __future__ import annotations

from tests.conftest import unique


def event_body(user_id, name="app_open", **extra):
    return {"userId": user_id, "name": name, **extra}


def send_event(api, body, key=None):
    return api.post(
        "/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY=key or unique("event")
    )
