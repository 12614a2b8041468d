"""The network side learns what happened to a subscriber (SPEC X-3): the events the
domain writes reach a real webhook receiver, signed, with the facts in the tenant's
money."""

from __future__ import annotations

from kopilka.events import webhooks as wh
from kopilka.events.delivery import deliver_due
from tests.events.receiver import webhook_receiver
from tests.subscribers.conftest import Isp, at


def test_a_blocked_subscribers_promised_payment_reaches_the_network(isp: Isp) -> None:
    tariff = isp.tariff(price=20, method="daily")
    service = isp.service(amount=600, days=5, connection_price=200, commission_bp=100)
    sub = isp.subscriber(tariff)
    with webhook_receiver() as receiver:
        endpoint = isp.tx(
            lambda c: wh.create_endpoint(
                c,
                tenant_id=isp.t,
                url=receiver.url,
                actor=isp.actor,
                event_types=["subscriber.status_changed", "promised_payment.taken"],
            )
        )
        receiver.secrets = [endpoint.secret]
        isp.activate(sub, at(2026, 4, 1, 9))
        isp.take(sub, service, at(2026, 4, 2, 10))
        counts = deliver_due(isp.engine, tenant_id=isp.t)
        assert counts.delivered == 4, counts
        bodies = [r.json for r in receiver.received]
        assert all(r.verified for r in receiver.received)
    assert [(b["type"], b["data"].get("status")) for b in bodies] == [
        ("subscriber.status_changed", "active"),
        ("subscriber.status_changed", "blocked"),
        ("promised_payment.taken", None),
        ("subscriber.status_changed", "active"),
    ]
    blocked, taken, back = bodies[1]["data"], bodies[2]["data"], bodies[3]["data"]
    assert (blocked["reason"], blocked["balance"], blocked["threshold"]) == ("debt", "0.00", "0.00")
    assert taken["account_no"] == sub.account_no
    assert (taken["amount"], taken["connection_price"], taken["unit"]) == (
        "600.00",
        "200.00",
        "RUB",
    )
    assert (taken["days"], taken["ends_at"]) == (5, "2026-04-06T21:00:00+00:00")
    assert (back["reason"], back["balance"], back["threshold"]) == (
        "promised_payment",
        "-200.00",
        "-600.00",
    )
