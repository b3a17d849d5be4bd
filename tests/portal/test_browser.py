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


def _sign_in(page, live_server, member):
    page.goto(f"{live_server.url}/portal/login/")
    page.get_by_label("E-mail").fill(member["email"])
    page.get_by_label("Password").fill(member["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/portal/")


def test_member_buys_a_reward_and_is_told_when_one_is_too_expensive(live_server, browser_page):  # noqa: F811
    demo = demo_seed()
    alice = demo["members"][0]
    page = browser_page
    _sign_in(page, live_server, alice)
    before = int(page.get_by_test_id("available-default").inner_text())

    page.get_by_role("link", name="Store").click()
    page.get_by_role("link", name="Buy T-Shirt").click()
    page.get_by_role("button", name="Confirm purchase").click()

    page.wait_for_url("**/portal/rewards/")
    assert page.get_by_text("You bought T-Shirt for 500 points.").is_visible()
    assert page.get_by_test_id("reward-tshirt").is_visible()
    page.get_by_role("link", name="Dashboard").click()
    assert int(page.get_by_test_id("available-default").inner_text()) == before - 500

    page.get_by_role("link", name="Store").click()
    page.get_by_role("link", name="Buy Weekend trip").click()
    page.get_by_role("button", name="Confirm purchase").click()
    page.wait_for_url("**/portal/store/")
    assert page.get_by_text("You do not have enough points for this reward.").is_visible()
    page.get_by_role("link", name="Dashboard").click()
    assert int(page.get_by_test_id("available-default").inner_text()) == before - 500

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/portal/login/")
