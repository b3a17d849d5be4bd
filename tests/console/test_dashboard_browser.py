"""The operator dashboard in a real browser, with a screenshot kept for people to look at."""

import pytest

from loyalty.demo import demo_seed
from tests.browser_support import browser_page  # noqa: F401 - fixture
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_dashboard_renders_charts_for_the_demo_organisation(live_server, browser_page):  # noqa: F811
    demo = demo_seed()
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill(demo["admin"]["username"])
    page.get_by_label("Password").fill(demo["admin"]["password"])
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("link", name="Dashboard").click()

    chart = page.locator("svg.console-chart")
    assert chart.is_visible()
    assert chart.locator("rect").count() > 0  # the demo's welcome points are bars
    assert int(page.get_by_test_id("total-issued").inner_text()) > 0
    assert page.get_by_role("heading", name="Inventory levels").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "operator-dashboard.png"), full_page=True)
