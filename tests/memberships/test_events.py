"""The studio's other systems hear of a sale and a refund (SPEC X-3): signed webhooks to
a real receiver, one each however often the provider repeats itself."""

from __future__ import annotations

from kopilka.events import webhooks as wh
from kopilka.events.delivery import deliver_due
from kopilka.memberships import refunds
from kopilka.memberships.providers.base import PaymentState, ProviderRefund, RefundState
from tests.events.receiver import webhook_receiver
from tests.memberships.conftest import Studio


def test_sold_and_refunded_reach_a_webhook_once(studio: Studio) -> None:
    with webhook_receiver() as receiver:
        endpoint = studio.tx(
            lambda c: wh.create_endpoint(
                c,
                tenant_id=studio.t,
                url=receiver.url,
                actor=studio.actor,
                event_types=["membership.sold", "membership.refunded"],
            )
        )
        receiver.secrets = [endpoint.secret]
        order = studio.checkout()
        for _ in range(3):
            studio.provider_says(order, PaymentState.SUCCEEDED)
        asked = studio.tx(
            lambda c: refunds.request_refund(
                c,
                tenant_id=studio.t,
                order_id=order.id,
                amount_minor=order.total_minor,
                operation_id="r-1",
                actor=studio.actor,
            )
        )
        studio.tx(
            lambda c: refunds.complete_refund(
                c,
                tenant_id=studio.t,
                refund_id=asked.id,
                result=ProviderRefund("rf_1", RefundState.SUCCEEDED, order.total_minor),
                actor=studio.actor,
            )
        )
        counts = deliver_due(studio.engine, tenant_id=studio.t)
        assert counts.delivered == 2, counts
        bodies = [r.json for r in receiver.received]
        assert all(r.verified for r in receiver.received)
    sold, refunded = bodies
    assert sold["type"] == "membership.sold"
    assert (sold["data"]["price"], sold["data"]["commission"], sold["data"]["paid"]) == (
        "4000.00",
        "120.00",
        "4120.00",
    )
    assert refunded["type"] == "membership.refunded"
    assert (refunded["data"]["amount"], refunded["data"]["whole"]) == ("4120.00", True)
