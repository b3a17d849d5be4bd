"""The portal in a real browser (Playwright driving Debian's Chromium against live_server)."""

import pytest

from loyalty.demo import demo_seed
from tests.browser_support import browser_page  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_member_signs_in_sees_the_balance_and_signs_out(live_server, browser_page):  # noqa: F811
    demo = demo_seed()
    alice = demo["members"][0]
    page = browser_page

    page.goto(f"{live_server.url}/portal/")
    assert "/portal/login/" in page.url
    page.get_by_label("E-mail").fill(alice["email"])
    page.get_by_label("Password").fill(alice["password"])
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(f"{live_server.url}/portal/")
    assert page.get_by_test_id("available-default").inner_text() == str(alice["points"])
    page.get_by_role("link", name="History", exact=True).click()
    assert page.get_by_text("Welcome points").first.is_visible()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/portal/login/")
    page.goto(f"{live_server.url}/portal/")
    assert "/portal/login/" in page.url
