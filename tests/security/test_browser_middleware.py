"""The browser's middleware (session, CSRF, authentication, messages, framing) is skipped on the
credential-only contracts, and only there: no operation under those prefixes accepts a browser
session, a signed-in browser gets nothing from them, and the pages still get all of it.
"""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from loyalty.middleware import is_credential_only_path
from tests.security.conftest import Caller
from tests.security.test_tenant_isolation import schema_operations

pytestmark = pytest.mark.django_db

SESSION_SCHEME = "cookieAuth"  # drf-spectacular's name for DRF's SessionAuthentication


def test_no_operation_under_a_credential_only_prefix_takes_a_browser_session():
    operations = list(schema_operations())
    credential_only = [op for op in operations if is_credential_only_path(op[1])]
    takes_session = {
        f"{method} {path}"
        for method, path, requirements in operations
        if any(scheme == SESSION_SCHEME for scheme, _scopes in requirements)
    }

    assert len(credential_only) >= 15
    assert takes_session, "the schema names no session operation: the check would see nothing"
    assert {f"{method} {path}" for method, path, _ in credential_only} & takes_session == set()


def test_a_signed_in_browser_gets_no_cookie_and_no_session_write_from_a_contract(
    world_a, admin_user
):
    browser = Client()
    browser.force_login(admin_user)
    sessions_before = list(Session.objects.values_list("session_key", "expire_date"))
    caller = Caller(browser, Authorization=f"Bearer {world_a.partners[0][1]}")
    member = world_a.members[0].external_id
    path = f"/api/v1/orgs/{world_a.org.pk}/point-programs/default/balances/{member}"

    with_token = caller("GET", path)
    session_only = Caller(browser)("GET", path)

    assert with_token.status_code == 200
    assert session_only.status_code == 401  # a browser session is no credential here
    for response in (with_token, session_only):
        assert response.cookies == {}
        assert "X-Frame-Options" not in response
    assert list(Session.objects.values_list("session_key", "expire_date")) == sessions_before


def test_the_pages_still_get_sessions_csrf_and_framing_protection(admin_user):
    browser = Client(enforce_csrf_checks=True)

    login_page = browser.get("/portal/login/")
    refused = browser.post("/portal/login/", {"username": "x", "password": "y"})

    assert login_page.status_code == 200
    assert "csrftoken" in login_page.cookies
    assert login_page["X-Frame-Options"] == "DENY"
    assert refused.status_code == 403  # no CSRF token: still checked on the pages
    browser.force_login(admin_user)
    assert browser.get("/admin/").status_code == 200
