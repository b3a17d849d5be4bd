"""Callback URL safety without LOYALTY_ALLOW_INSECURE_CALLBACKS: https to public addresses only,
checked when the request arrives and again when the callback is delivered."""

import pytest

from integrations.models import OutboxMessage, OutboxStatus
from integrations.partner.models import PartnerRequest
from integrations.partner.services import partner_request_process
from tests.partner.conftest import point_body, post_points, snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("public_dns")]


@pytest.fixture(autouse=True)
def secure_callbacks(settings):
    settings.LOYALTY_ALLOW_INSECURE_CALLBACKS = False


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/cb", "loopback"),
        ("https://127.0.0.1:8443/cb", "loopback"),
        ("https://[::1]/cb", "loopback"),
        ("https://10.0.0.1/cb", "private"),
        ("https://192.168.1.20/cb", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:169.254.169.254]/cb", "link-local"),
        ("https://localhost/cb", "loopback"),
        ("https://internal.partner.example/cb", "private"),
        ("file:///etc/passwd", "file://"),
        ("http://partner.example/cb", "http://"),
        ("gopher://partner.example/cb", "gopher://"),
    ],
)
def test_unsafe_callback_urls_are_400_naming_callbackUrl_and_change_nothing(
    client, token, earn_rule, program, member, public_dns, url, reason
):
    public_dns["internal.partner.example"] = "10.20.30.40"  # a name that resolves privately
    before = snapshot(program, member)

    response = post_points(
        client, token, point_body(user_id=member.external_id, rule=earn_rule, callback_url=url)
    )

    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == "invalid_parameters"
    assert error["message"].startswith("invalid parameters: callbackUrl:")
    assert reason in error["message"]
    assert snapshot(program, member) == before


def test_an_https_url_of_a_public_host_is_accepted(client, token, earn_rule, member):
    response = post_points(client, token, point_body(user_id=member.external_id, rule=earn_rule))

    assert response.status_code == 202


def test_a_host_that_turns_private_after_acceptance_gets_no_callback(
    client, token, earn_rule, member, public_dns, django_capture_on_commit_callbacks
):
    # Accepted while partner.example resolved to a public address...
    assert (
        post_points(
            client, token, point_body(user_id=member.external_id, rule=earn_rule)
        ).status_code
        == 202
    )
    with django_capture_on_commit_callbacks() as worker_after_commit:
        processed = partner_request_process(partner_request_id=PartnerRequest.objects.get().pk)
    # ...then it is rebound to loopback: delivery checks again and refuses, sending nothing.
    public_dns["partner.example"] = "127.0.0.1"

    for callback in worker_after_commit:  # the worker's own first attempt
        callback()

    message = OutboxMessage.objects.get()
    assert processed.status == "succeeded"
    assert message.status == OutboxStatus.DEAD
    assert "loopback" in message.last_error
    assert list(message.attempt_log.values_list("status_code", flat=True)) == [None]
