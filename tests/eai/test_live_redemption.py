"""Must-show 1 over real HTTP: a member is handed over to a vendor with a signed token, and the
vendor deducts points with the shipped EAIClient against the live server."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings
from django.test import Client

from integrations.vendor_kit import EAIClient, EAIResult, verify_vendor_token_with_jwks
from points import services as point_services
from points.models import Hold, HoldStatus, Transfer, TransferKind
from points.selectors import balance_get, ledger_verify
from tests.http_support import RecordingServer, ScriptedResponse

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in_browser(user) -> requests.Session:
    """A requests session carrying a real portal session cookie of `user`."""
    django_client = Client()
    django_client.force_login(user)  # a session row in the database, as the login form makes
    browser = requests.Session()
    browser.cookies.set(
        settings.SESSION_COOKIE_NAME, django_client.cookies[settings.SESSION_COOKIE_NAME].value
    )
    return browser


@pytest.fixture
def vendor_site():
    server = RecordingServer(
        default=ScriptedResponse(200, b"<h1>Rewards</h1>", {"Content-Type": "text/html"})
    ).start()
    yield server
    server.stop()


def test_a_member_redeems_at_a_vendor_and_the_vendor_deducts_points_over_http(
    live_server,
    settings,
    org,
    program,
    make_member,
    make_vendor,
    django_user_model,
    vendor_site,
):
    # given a member with 1200 points who is signed in to the portal, and an RS256 vendor
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = True  # the vendor's site is local http here
    created = make_vendor(
        org,
        program,
        sso_redirect_url=f"{vendor_site.url}/redeem?campaign=spring",
        sso_audience="acme-rewards",
    )
    vendor = created.vendor
    user = django_user_model.objects.create_user("ada@example.test", "ada@example.test", "pw")
    member = make_member(
        org,
        external_id="ada-1815",
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.test",
        user=user,
    )
    point_services.earn(program=program, member=member, amount=1200, description="Purchase")
    browser = signed_in_browser(user)

    # when the member clicks "Redeem at <vendor>"
    landing = browser.get(f"{live_server.url}/portal/vendors/{vendor.pk}/redeem/", timeout=10)

    # then the browser lands on the vendor's page with a token the vendor kit accepts
    assert landing.status_code == 200
    assert [r.status_code for r in landing.history] == [302]
    arrival = vendor_site.requests[-1]
    query = parse_qs(urlsplit(arrival.path).query)
    assert urlsplit(arrival.path).path == "/redeem"
    assert query["campaign"] == ["spring"]
    claims = verify_vendor_token_with_jwks(
        query["token"][0],
        jwks_url=f"{live_server.url}/.well-known/jwks.json",
        audience="acme-rewards",
        issuer=settings.LOYALTY_ISSUER,
    )
    assert {k: claims[k] for k in ("firstname", "lastname", "points", "email", "userid")} == {
        "firstname": "Ada",
        "lastname": "Lovelace",
        "points": 1200,
        "email": "ada@example.test",
        "userid": "ada-1815",
    }
    assert claims["exp"] - claims["iat"] == 60
    assert claims["aud"] == "acme-rewards"
    assert claims["iss"] == settings.LOYALTY_ISSUER
    assert claims["jti"]

    # when the vendor commits and confirms a checkout with the shipped client
    eai = EAIClient(live_server.url, created.eai_username, created.eai_secret, timeout=10)
    committed = eai.commit(claims["userid"], 500, "order-77", "redemption for a telescope")
    held = balance_get(program=program, member=member)
    confirmed = eai.confirm(claims["userid"], "order-77")
    confirmed_again = eai.confirm(claims["userid"], "order-77")  # a retry after a lost reply

    # then the points leave the balance exactly once, by a transfer naming vendor and transaction
    assert committed == EAIResult(
        status="success",
        message="points committed for transaction",
        code="committed",
        transaction_id="order-77",
        http_status=200,
    )
    assert (held.balance, held.held, held.available) == (1200, 500, 700)
    assert confirmed.message == "points successfully deducted"
    assert confirmed_again == confirmed
    after_confirm = balance_get(program=program, member=member)
    assert (after_confirm.balance, after_confirm.held) == (700, 0)
    burn = Transfer.objects.get(kind=TransferKind.BURN)
    assert (burn.amount, burn.reference, burn.actor) == (500, "order-77", f"vendor:{vendor.pk}")
    assert burn.description == "redemption for a telescope"

    # and a second checkout that the vendor cannot fulfil is rolled back
    eai.commit(claims["userid"], 200, "order-78", "redemption for a sold-out kite")
    assert balance_get(program=program, member=member).available == 500
    rolled_back = eai.rollback(claims["userid"], "order-78")

    assert rolled_back.message == "points successfully rolled back"
    after_rollback = balance_get(program=program, member=member)
    assert (after_rollback.balance, after_rollback.held, after_rollback.available) == (700, 0, 700)
    assert Transfer.objects.filter(kind=TransferKind.BURN).count() == 1
    assert not Transfer.objects.filter(reference="order-78").exists()
    assert Hold.objects.get(transaction_id="order-78").status == HoldStatus.ROLLED_BACK
    assert ledger_verify().ok, ledger_verify().mismatches
