"""The receivers' view of callbacks and webhooks: what a partner's or fulfilment server sees.

Every delivery verifies with the `standardwebhooks` reference library; a retry keeps
`webhook-id` (the receiver's de-duplication key) and gets a new timestamp and signature;
Retry-After is honoured; 410 Gone stops the deliveries for good.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import TestCase
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.models import DeliveryAttempt, OutboxMessage, OutboxStatus
from integrations.outbox import outbox_deliver, outbox_sweep
from integrations.partner.services import PointRequestInput, partner_request_submit
from rewards import services as reward_services
from rewards.models import Fulfilment
from tests.celery_support import purge_queue, real_broker, running_worker
from tests.conftest import unique
from tests.http_support import ScriptedResponse

pytestmark = pytest.mark.usefixtures("insecure_callbacks")


def submit_earn(world, request_id: str):
    created, _token = world.partners[0]
    return partner_request_submit(
        client=created.client,
        scopes=frozenset({"points:earn"}),
        data=PointRequestInput(
            user_id=world.members[0].external_id,
            rule_id=str(world.earn_rule.pk),
            amount=30,
            request_id=request_id,
            callback_url=world.callback_url,
        ),
    )


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_retries_keep_the_webhook_id_change_the_timestamp_and_honour_retry_after(world, receiver):
    # Given a partner whose server fails, then asks us to come back in 2 s, then accepts
    receiver.responses.extend(
        [
            ScriptedResponse(500, b"oops"),
            ScriptedResponse(429, b"slow down", {"Retry-After": "2"}),
            ScriptedResponse(200),
        ]
    )
    secret = world.partners[0][0].client.webhook_secret

    # When a request is processed and called back by a real worker
    with real_broker():
        purge_queue()
        with running_worker():
            submit_earn(world, "retried-callback")
            deliveries = receiver.wait_for(3, timeout=60)
        purge_queue()

    # Then each attempt verifies with the reference library, under one webhook-id, each with a
    # newer timestamp and its own signature
    for delivery in deliveries:
        payload = Webhook(secret).verify(delivery.body, delivery.headers)
        assert payload["requestId"] == "retried-callback"
    assert len({delivery.headers["webhook-id"] for delivery in deliveries}) == 1
    stamps = [int(delivery.headers["webhook-timestamp"]) for delivery in deliveries]
    assert stamps == sorted(set(stamps)), stamps
    assert len({delivery.headers["webhook-signature"] for delivery in deliveries}) == 3
    assert len({delivery.body for delivery in deliveries}) == 1

    # ... the second retry waited at least Retry-After, and the message is delivered
    message = OutboxMessage.objects.get(topic="partner.callback")
    assert message.status == OutboxStatus.DELIVERED
    second, third = DeliveryAttempt.objects.filter(message=message).order_by("number")[1:3]
    assert second.status_code == 429
    assert third.started_at - second.started_at >= dt.timedelta(seconds=2)


@pytest.mark.django_db
def test_a_delivery_tampered_with_or_signed_with_another_secret_does_not_verify(world, receiver):
    # Given a callback delivered to the partner
    with TestCase.captureOnCommitCallbacks(execute=True):
        submit_earn(world, "tamper-me")
    (delivery,) = receiver.wait_for(1)
    secret = world.partners[0][0].client.webhook_secret
    Webhook(secret).verify(delivery.body, delivery.headers)

    # Then a changed body, a changed id, or another client's secret is refused by the library
    forged = delivery.body.replace(b'"point":30', b'"point":3000')
    assert forged != delivery.body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(forged, delivery.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(delivery.body, {**delivery.headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(world.partners[1][0].client.webhook_secret).verify(delivery.body, delivery.headers)


@pytest.mark.django_db
def test_claim_fulfilment_webhooks_verify_with_the_reward_types_secret(world, receiver, client):
    # Given a reward type fulfilled by a webhook, and a member holding one
    member = world.members[0]
    voucher = reward_services.reward_type_create(
        org=world.org,
        reward_type=unique("voucher"),
        display_name="Voucher",
        fulfilment=Fulfilment.WEBHOOK,
        webhook_url=f"{receiver.url}/fulfil",
    )
    reward_services.inventory_create(reward_type=voucher, amount_total=5)
    reward_services.reward_grant(
        member=member,
        reward_type=voucher,
        amount=1,
        source="operation",
        code="x",
        building_block="t",
    )

    # When the member claims it
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            "/rewards/user/claims",
            {"items": [{"reward_type": voucher.reward_type, "amount": 1}]},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {world.member_tokens[0]}",
        )
    assert response.status_code == 200, response.content

    # Then the fulfilment server gets it signed with the type's secret
    (delivery,) = receiver.wait_for(1)
    payload = Webhook(voucher.webhook_secret).verify(delivery.body, delivery.headers)
    assert payload["claim"]["id"] == response.json()["id"]


@pytest.mark.django_db
def test_410_gone_stops_the_deliveries_for_good(world, receiver):
    # Given a partner whose callback endpoint answers 410 Gone
    receiver.responses.append(ScriptedResponse(410, b"gone"))
    with TestCase.captureOnCommitCallbacks(execute=True):
        submit_earn(world, "gone-away")
    receiver.wait_for(1)
    message = OutboxMessage.objects.get(topic="partner.callback")

    # When the sweeper and a stray task come along later
    outbox_sweep(now=message.give_up_at - dt.timedelta(seconds=1))
    outcome = outbox_deliver(message_id=str(message.pk))

    # Then nothing is sent again: the message is dead after its one attempt
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxStatus.DEAD, 1)
    assert outcome.sent is False
    assert len(receiver.requests) == 1
