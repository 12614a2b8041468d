"""Deliveries to a real receiver (SPEC X-3): signed, retried with back-off, logged, given
up on after the last try, redelivered by hand; only the types an endpoint wants."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from datetime import timedelta

import pytest
from sqlalchemy import select

from kopilka.core.db import read_only
from kopilka.core.errors import Refused
from kopilka.events import webhooks as wh
from kopilka.events.delivery import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    WebhookScheduler,
    deliver_due,
    retry_delay,
)
from kopilka.tenancy.schema import audit_events
from tests.events.conftest import TIMEOUT, Hooks
from tests.events.receiver import Receiver, webhook_receiver


def test_a_delivery_fails_twice_then_arrives_signed_with_every_attempt_logged(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.script = [500, "hang"]
    hooks.endpoint(receiver.url, receiver=receiver)
    event_id = hooks.emit("promised_payment.taken", subscriber_id=7, amount="500.00")
    (delivery,) = hooks.deliveries()
    assert delivery.status == "pending" and delivery.event_id == event_id

    first = hooks.run(0)
    assert (first.due, first.retrying) == (1, 1)
    after_500 = hooks.delivery(delivery.id)
    assert after_500.status == "pending" and after_500.attempts == 1
    assert after_500.last_status_code == 500 and after_500.last_error == "HTTP 500"
    assert after_500.next_attempt_at is not None
    wait = after_500.next_attempt_at - hooks.at(0)
    assert RETRY_DELAYS[0] * 0.9 <= wait <= RETRY_DELAYS[0] * 1.1
    assert hooks.run(0).due == 0  # not due again before its wait

    second = hooks.run(1)
    assert second.retrying == 1
    after_hang = hooks.delivery(delivery.id)
    assert after_hang.last_status_code is None
    assert after_hang.last_error == f"no answer within {TIMEOUT:g} s"

    third = hooks.run(2)
    assert third.delivered == 1
    done = hooks.delivery(delivery.id)
    assert done.status == "delivered" and done.attempts == 3
    assert done.delivered_at == hooks.at(2) and done.next_attempt_at is None

    attempts = hooks.attempts(delivery.id)
    assert [a.status_code for a in attempts] == [500, None, 200]
    assert [a.at for a in attempts] == [hooks.at(0), hooks.at(1), hooks.at(2)]
    assert attempts[0].response_excerpt == ("answer 500 " + "x" * 900)[:500]
    assert attempts[1].error.startswith("no answer") and attempts[1].response_excerpt == ""
    assert attempts[1].duration_ms >= TIMEOUT * 1000 * 0.9
    assert attempts[2].error == "" and attempts[2].succeeded

    # Three requests, each signed with the endpoint's secret, all under the event's id.
    assert [r.verified for r in receiver.received] == [True, True, True]
    assert {r.headers["webhook-id"] for r in receiver.received} == {f"evt_{event_id}"}
    assert {r.path for r in receiver.received} == {"/hooks?token=receiver-own"}
    body = receiver.received[-1].json
    assert body["id"] == f"evt_{event_id}" and body["type"] == "promised_payment.taken"
    assert body["tenant"] == hooks.tenant.slug
    assert body["data"] == {"subscriber_id": 7, "amount": "500.00"}
    assert body["occurred_at"].endswith("+00:00")
    assert receiver.received[-1].headers["content-type"] == "application/json"
    assert receiver.received[-1].headers["user-agent"].startswith("Kopilka-Webhooks/")
    assert all("token" not in a.error for a in attempts)


def test_an_endpoint_that_never_answers_ends_failed_after_the_last_attempt(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.then = "hang"
    endpoint = hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    (delivery,) = hooks.deliveries()
    for step in range(MAX_ATTEMPTS - 1):
        assert hooks.run(step).retrying == 1
        assert hooks.delivery(delivery.id).status == "pending"
    last = hooks.run(MAX_ATTEMPTS - 1)
    assert last.failed == 1
    failed = hooks.delivery(delivery.id)
    assert failed.status == "failed" and failed.attempts == MAX_ATTEMPTS
    assert failed.next_attempt_at is None and failed.delivered_at is None
    assert len(hooks.attempts(delivery.id)) == MAX_ATTEMPTS
    assert hooks.run(MAX_ATTEMPTS + 5).due == 0  # given up on
    assert hooks.read(lambda conn: wh.failed_by_endpoint(conn, hooks.tenant.id)) == {endpoint.id: 1}


def test_a_failed_delivery_is_redelivered_by_hand_and_arrives(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.then = 503
    hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    (delivery,) = hooks.deliveries()
    for step in range(MAX_ATTEMPTS):
        hooks.run(step)
    assert hooks.delivery(delivery.id).status == "failed"

    receiver.then = 204
    again = hooks.tx(
        lambda conn: wh.redeliver(
            conn,
            tenant_id=hooks.tenant.id,
            delivery_id=delivery.id,
            actor=hooks.actor,
            now=hooks.at(MAX_ATTEMPTS),
        )
    )
    assert again.status == "pending" and again.attempts == 0
    assert again.next_attempt_at == hooks.at(MAX_ATTEMPTS)
    assert hooks.run(MAX_ATTEMPTS).delivered == 1
    arrived = hooks.delivery(delivery.id)
    assert arrived.status == "delivered" and arrived.last_status_code == 204
    assert len(hooks.attempts(delivery.id)) == MAX_ATTEMPTS + 1  # the log keeps them all

    with pytest.raises(Refused) as refused:
        hooks.tx(
            lambda conn: wh.redeliver(
                conn, tenant_id=hooks.tenant.id, delivery_id=delivery.id, actor=hooks.actor
            )
        )
    assert refused.value.code == "delivery_not_redeliverable"
    audit = hooks.read(
        lambda conn: conn.execute(
            select(audit_events.c.action, audit_events.c.details).where(
                audit_events.c.tenant_id == hooks.tenant.id,
                audit_events.c.object_type == "webhook_delivery",
            )
        ).all()
    )
    assert [(a.action, a.details["status_was"]) for a in audit] == [
        ("webhook_delivery.redeliver", "failed")
    ]


def test_an_endpoint_gets_only_the_types_it_wants(hooks: Hooks, receiver: Receiver) -> None:
    with webhook_receiver() as everything:
        picky = hooks.endpoint(
            receiver.url,
            ["subscriber.status_changed", "subscriber.activated"],
            receiver=receiver,
        )
        hooks.endpoint(everything.url, receiver=everything)
        hooks.endpoint(everything.url, is_active=False)  # switched off: gets nothing
        hooks.emit("subscriber.activated", subscriber_id=1)
        hooks.emit("promised_payment.taken", subscriber_id=1)
        hooks.emit("subscriber.status_changed", subscriber_id=1, status="blocked")
        assert hooks.run(0).delivered == 5
    assert [r.json["type"] for r in receiver.received] == [
        "subscriber.activated",
        "subscriber.status_changed",
    ]
    assert [r.json["type"] for r in everything.received] == [
        "subscriber.activated",
        "promised_payment.taken",
        "subscriber.status_changed",
    ]
    assert all(r.verified for r in receiver.received + everything.received)
    assert {d.endpoint_id for d in hooks.deliveries(status="delivered")} >= {picky.id}


def test_a_switched_off_endpoint_keeps_its_deliveries_until_switched_on(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    hooks.tx(
        lambda conn: wh.update_endpoint(
            conn,
            tenant_id=hooks.tenant.id,
            endpoint_id=endpoint.id,
            is_active=False,
            actor=hooks.actor,
        )
    )
    hooks.emit()  # no delivery: the endpoint is off
    assert hooks.run(0).due == 0 and receiver.received == []
    (waiting,) = hooks.deliveries()
    with pytest.raises(Refused) as refused:
        hooks.tx(
            lambda conn: wh.redeliver(
                conn, tenant_id=hooks.tenant.id, delivery_id=waiting.id, actor=hooks.actor
            )
        )
    assert refused.value.code == "webhook_endpoint_disabled"
    hooks.tx(
        lambda conn: wh.update_endpoint(
            conn,
            tenant_id=hooks.tenant.id,
            endpoint_id=endpoint.id,
            is_active=True,
            actor=hooks.actor,
        )
    )
    assert hooks.run(0).delivered == 1


def test_410_gone_fails_the_delivery_and_switches_the_endpoint_off(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.then = 410
    endpoint = hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    hooks.emit()
    counts = hooks.run(0, limit=1)
    assert counts.failed == 1
    assert hooks.read(lambda c: wh.get_endpoint(c, hooks.tenant.id, endpoint.id)).is_active is False
    assert hooks.run(1).due == 0  # the other waits for the endpoint to be switched on
    assert [d.status for d in hooks.deliveries()] == ["failed", "pending"]


def test_redirects_are_not_followed_and_retry_after_is_honoured(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.script = [
        (302, {"Location": receiver.url + "&moved=1"}),
        (429, {"Retry-After": "7200"}),
    ]
    hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    (delivery,) = hooks.deliveries()
    hooks.run(0)
    assert hooks.delivery(delivery.id).last_status_code == 302
    assert len(receiver.received) == 1  # the redirect was not followed
    hooks.run(1)
    waiting = hooks.delivery(delivery.id)
    assert waiting.last_status_code == 429
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at - hooks.at(1) >= timedelta(hours=2)  # not 2 minutes


def test_a_dead_endpoint_costs_one_timeout_a_run_and_others_still_get_theirs(
    hooks: Hooks, receiver: Receiver
) -> None:
    receiver.then = "hang"
    with webhook_receiver() as alive:
        hooks.endpoint(receiver.url, receiver=receiver)
        hooks.endpoint(alive.url, receiver=alive)
        for _ in range(3):
            hooks.emit()
        counts = hooks.run(0)
    assert counts.due == 6 and counts.delivered == 3
    assert counts.retrying == 1 and counts.put_off == 2
    assert len(receiver.received) == 1 and len(alive.received) == 3
    # Those put off are due again at once, untried.
    assert sorted(d.attempts for d in hooks.deliveries(status="pending")) == [0, 0, 1]
    assert hooks.run(0, limit=10).due == 2


def test_a_rotated_secret_signs_beside_the_new_one_for_a_day(
    hooks: Hooks, receiver: Receiver
) -> None:
    endpoint = hooks.endpoint(receiver.url)
    old = endpoint.secret
    rotated = hooks.tx(
        lambda conn: wh.rotate_secret(
            conn,
            tenant_id=hooks.tenant.id,
            endpoint_id=endpoint.id,
            actor=hooks.actor,
            now=hooks.at(0),
        )
    )
    assert rotated.secret != old and rotated.secret.startswith("whsec_")
    receiver.secrets = [old]  # the receiver has not switched yet
    hooks.emit()
    hooks.run(0)
    assert receiver.received[-1].verified and len(receiver.received[-1].signatures) == 2
    receiver.secrets = [rotated.secret]  # switched: fine too
    hooks.emit()
    hooks.run(0)
    assert receiver.received[-1].verified
    receiver.secrets = [old]  # a day later the old secret signs no more
    hooks.emit()
    hooks.run(1)
    assert len(receiver.received[-1].signatures) == 1
    assert not receiver.received[-1].verified


def test_retry_delays_grow_with_jitter_and_respect_the_longest() -> None:
    assert [retry_delay(n, rand=lambda: 0.5) for n in range(1, MAX_ATTEMPTS)] == list(RETRY_DELAYS)
    assert retry_delay(1, rand=lambda: 0.0) == RETRY_DELAYS[0] * 0.9
    assert retry_delay(1, rand=lambda: 1.0) == RETRY_DELAYS[0] * 1.1
    assert retry_delay(2, retry_after=timedelta(days=30), rand=lambda: 0.5) == RETRY_DELAYS[-1]


def test_no_secret_url_or_token_reaches_the_log(
    hooks: Hooks, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [500]
    endpoint = hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    with caplog.at_level(logging.DEBUG):
        hooks.run(0)
        hooks.run(1)
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "webhook delivery" in logged
    assert endpoint.secret not in logged and endpoint.secret.removeprefix("whsec_") not in logged
    assert "receiver-own" not in logged
    assert "webhook-signature" not in logged.lower()
    assert endpoint.secret not in repr(endpoint)


def test_two_workers_at_once_send_each_delivery_once(hooks: Hooks, receiver: Receiver) -> None:
    if hooks.engine.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite writes one at a time anyway")
    hooks.endpoint(receiver.url, receiver=receiver)
    for _ in range(20):
        hooks.emit()
    counts = []
    go = threading.Barrier(2)

    def worker() -> None:
        go.wait()
        counts.append(
            deliver_due(
                hooks.engine, tenant_id=hooks.tenant.id, now=hooks.at(0), timeout_seconds=TIMEOUT
            )
        )

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(c.delivered for c in counts) == 20
    assert len(receiver.received) == 20
    assert len({r.body for r in receiver.received}) == 20
    with read_only(hooks.engine) as conn:
        assert wh.count_deliveries(conn, hooks.tenant.id, status="delivered") == 20


def test_the_servers_clock_sends_deliveries_by_itself(hooks: Hooks, receiver: Receiver) -> None:
    hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit()
    (delivery,) = hooks.deliveries()
    clock = WebhookScheduler(hooks.engine, every_seconds=0.05)
    clock.start()
    try:
        deadline = time.monotonic() + 20
        while hooks.delivery(delivery.id).status == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        clock.stop()
    assert hooks.delivery(delivery.id).status == "delivered"
    assert receiver.received[0].verified


def test_kopilka_serve_starts_and_stops_the_clock(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.exceptions import StarletteDeprecationWarning

    from kopilka.api.app import create_app
    from kopilka.core.settings import get_settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    def running() -> bool:
        return any(t.name == "kopilka-webhooks" and t.is_alive() for t in threading.enumerate())

    url = hooks.engine.url.render_as_string(hide_password=False)
    for enabled in (False, True):
        monkeypatch.setenv("KOPILKA_NIGHTLY_SCHEDULER", "true" if enabled else "false")
        get_settings.cache_clear()
        try:
            app = create_app(url)
            with TestClient(app):
                assert running() is enabled
            assert not running(), "stopped with the server"
            app.state.engine.dispose()
        finally:
            get_settings.cache_clear()
