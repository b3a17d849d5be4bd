"""The outbox: written with the change, delivered after commit, retried, swept, recorded."""

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from integrations import outbox
from integrations.models import DeliveryAttempt, OutboxMessage, OutboxStatus
from integrations.webhook_signing import new_webhook_secret
from tests.celery_support import purge_queue, real_broker, running_worker
from tests.http_support import ScriptedResponse

pytestmark = pytest.mark.django_db


def _deliver_until_done(message, max_attempts=5):
    now = timezone.now()
    for _ in range(max_attempts):
        result = outbox.outbox_deliver(message_id=str(message.pk), now=now)
        if result.status != OutboxStatus.PENDING:
            return result
        message.refresh_from_db()
        now = message.next_attempt_at
    return result


def test_message_failing_twice_is_delivered_on_the_third_attempt(insecure_callbacks, receiver):
    receiver.responses = [ScriptedResponse(500), ScriptedResponse(503)]
    secret = new_webhook_secret()
    message = outbox.outbox_enqueue(
        topic="test", url=f"{receiver.url}/cb", payload={"hello": 1}, signing_secret=secret
    )

    result = _deliver_until_done(message)

    assert result.status == OutboxStatus.DELIVERED
    message.refresh_from_db()
    assert message.attempts == 3
    assert [a.status_code for a in DeliveryAttempt.objects.filter(message=message)] == [
        500,
        503,
        200,
    ]
    requests = receiver.requests
    assert len(requests) == 3
    # Every attempt verifies with the reference library; the id stays, the timestamp is fresh.
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
    assert len({r.headers["webhook-id"] for r in requests}) == 1


def test_backoff_grows_and_honours_retry_after(insecure_callbacks, receiver):
    receiver.responses = [ScriptedResponse(429, headers={"Retry-After": "120"})]
    message = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})
    now = timezone.now()

    result = outbox.outbox_deliver(message_id=str(message.pk), now=now)

    assert result.status == OutboxStatus.PENDING
    assert result.retry_in >= 120
    message.refresh_from_db()
    assert message.next_attempt_at >= now + dt.timedelta(seconds=120)


def test_410_gone_stops_retrying(insecure_callbacks, receiver):
    receiver.responses = [ScriptedResponse(410)]
    message = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})

    assert outbox.outbox_deliver(message_id=str(message.pk)).status == OutboxStatus.DEAD
    assert outbox.outbox_deliver(message_id=str(message.pk)).sent is False
    assert len(receiver.requests) == 1


def test_gives_up_after_the_retry_window(insecure_callbacks, settings, receiver):
    settings.OUTBOX_RETRY_WINDOW_SECONDS = 3
    receiver.default = ScriptedResponse(500)
    message = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})

    result = _deliver_until_done(message, max_attempts=10)

    assert result.status == OutboxStatus.DEAD
    assert OutboxMessage.objects.get(pk=message.pk).last_error == "HTTP 500"


def test_loopback_url_is_refused_without_the_insecure_switch(receiver):
    message = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})

    result = outbox.outbox_deliver(message_id=str(message.pk))

    assert result.status == OutboxStatus.DEAD
    assert "unsafe url" in result.error
    assert receiver.requests == []


def test_a_message_is_not_sent_twice_while_leased(insecure_callbacks, receiver):
    message = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})
    now = timezone.now()
    OutboxMessage.objects.filter(pk=message.pk).update(
        next_attempt_at=now + dt.timedelta(seconds=60)
    )

    assert outbox.outbox_deliver(message_id=str(message.pk), now=now).sent is False
    assert receiver.requests == []


def test_messages_sent_in_process_are_recorded_together_and_a_failure_on_its_own(
    insecure_callbacks, receiver, django_capture_on_commit_callbacks
):
    # given a receiver that fails the second of three callbacks written in one transaction
    receiver.responses = [ScriptedResponse(200), ScriptedResponse(500), ScriptedResponse(200)]

    # when the transaction commits and its process makes the first attempts
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        messages = outbox.outbox_enqueue_many(
            [
                outbox.OutboxSpec(topic="test", url=f"{receiver.url}/cb", payload={"n": n})
                for n in range(3)
            ],
            deliver_in_process=True,
        )

    # then each was sent once, in order; the two answered 2xx are delivered, the other waits
    # for its retry
    assert [request.json()["n"] for request in receiver.requests] == [0, 1, 2]
    for message in messages:
        message.refresh_from_db()
    assert [message.status for message in messages] == [
        OutboxStatus.DELIVERED,
        OutboxStatus.PENDING,
        OutboxStatus.DELIVERED,
    ]
    assert [message.attempts for message in messages] == [1, 1, 1]
    assert messages[1].last_error == "HTTP 500"
    assert messages[1].next_attempt_at > timezone.now()
    assert messages[0].delivered_at is not None and messages[2].delivered_at is not None
    assert sorted(
        DeliveryAttempt.objects.filter(message__in=messages).values_list("number", "status_code")
    ) == [(1, 200), (1, 200), (1, 500)]
    # on PostgreSQL the delivered ones are recorded by one statement, the failure by its own
    recorded = [q for q in queries.captured_queries if "deliveryattempt" in q["sql"]]
    assert len(recorded) == (2 if connection.vendor == "postgresql" else 3)


def test_message_rolls_back_with_the_change_it_reports(insecure_callbacks, receiver):
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})
        raise RuntimeError("the change failed")
    assert not OutboxMessage.objects.exists()


def test_sweeper_dispatches_only_due_messages(insecure_callbacks, receiver):
    due = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/due", payload={})
    later = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/later", payload={})
    OutboxMessage.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + dt.timedelta(hours=1)
    )

    assert outbox.outbox_sweep() == 1

    assert [r.path for r in receiver.requests] == ["/due"]
    assert OutboxMessage.objects.get(pk=due.pk).status == OutboxStatus.DELIVERED
    assert OutboxMessage.objects.get(pk=later.pk).status == OutboxStatus.PENDING


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_real_worker_retries_and_delivers_on_the_third_attempt(insecure_callbacks, receiver):
    receiver.responses = [ScriptedResponse(500), ScriptedResponse(500)]
    with real_broker():
        purge_queue()
        with running_worker():
            message = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})
            receiver.wait_for(3, timeout=30)
            _wait_for_status(message, OutboxStatus.DELIVERED)

    assert DeliveryAttempt.objects.filter(message=message).count() == 3


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_message_written_with_no_worker_is_delivered_by_the_sweeper(insecure_callbacks, receiver):
    with real_broker():
        purge_queue()
        message = outbox.outbox_enqueue(topic="test", url=f"{receiver.url}/cb", payload={})
        # The broker message is lost (a Redis flush, a crashed publisher): only the row remains.
        purge_queue()
        assert OutboxMessage.objects.get(pk=message.pk).status == OutboxStatus.PENDING
        with running_worker():
            assert outbox.outbox_sweep() == 1
            receiver.wait_for(1)
            _wait_for_status(message, OutboxStatus.DELIVERED)


def _wait_for_status(message, status, timeout=30):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if OutboxMessage.objects.get(pk=message.pk).status == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"message never reached {status}")
