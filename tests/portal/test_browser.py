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


class _VendorSite:
    """A rewards vendor's landing page: verifies the SSO token with the shipped kit."""

    def __init__(self, jwks_url, audience, issuer):
        import html
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        from integrations.vendor_kit import VendorTokenError, verify_vendor_token_with_jwks

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                token = parse_qs(urlparse(self.path).query).get("token", [""])[0]
                try:
                    claims = verify_vendor_token_with_jwks(
                        token, jwks_url=jwks_url, audience=audience, issuer=issuer
                    )
                    body = (
                        f"<h1>Welcome {html.escape(claims['firstname'])}</h1>"
                        f"<p id='points'>You have {int(claims['points'])} points</p>"
                    )
                    status = 200
                except VendorTokenError as exc:
                    body, status = f"<h1>Refused: {html.escape(str(exc))}</h1>", 401
                data = f"<!doctype html><title>Vendor</title>{body}".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/redeem"

    def stop(self):
        self.server.shutdown()


def test_redeem_at_a_vendor_lands_on_its_page_with_a_verified_token(
    live_server,
    browser_page,  # noqa: F811
    settings,
):
    from integrations import vendor_kit
    from integrations.eai.models import Vendor

    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True
    vendor_kit._jwks_clients.clear()  # a fresh live server may reuse an earlier test's URL
    demo = demo_seed()
    alice = demo["members"][0]
    vendor = Vendor.objects.get(pk=demo["eai_vendor"]["vendor_id"])
    site = _VendorSite(
        jwks_url=f"{live_server.url}/.well-known/jwks.json",
        audience=vendor.sso_audience,
        issuer=settings.LOYALTY_ISSUER,
    )
    Vendor.objects.filter(pk=vendor.pk).update(sso_redirect_url=site.url)
    page = browser_page
    try:
        _sign_in(page, live_server, alice)
        page.get_by_role("link", name="Redeem at partners").click()
        page.get_by_role("link", name=f"Redeem at {vendor.name}").click()

        page.wait_for_url(f"{site.url}?token=*")
        assert page.get_by_role("heading", name="Welcome Alice").is_visible()
        assert page.locator("#points").inner_text() == f"You have {alice['points']} points"
    finally:
        site.stop()
