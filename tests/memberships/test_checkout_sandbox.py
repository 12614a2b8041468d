"""The online sale with the built-in sandbox provider, through ``checkout``'s doors
(begin, the client's return, the provider's notifications) and a refund through the
provider: no transaction open while the provider is asked, each payment applied once."""

from __future__ import annotations

from typing import Any

import pytest

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.memberships import catalogue, checkout, refunds
from kopilka.memberships.catalogue import OnlineSettings
from kopilka.memberships.checkout import Urls
from kopilka.memberships.providers import sandbox
from kopilka.memberships.providers.registry import default_config
from kopilka.memberships.schema import memberships, provider_notifications
from tests.memberships.conftest import Studio

BASE = "http://127.0.0.1:8000"


def refused(code: str, work: Any) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


@pytest.fixture
def shop(studio: Studio) -> Studio:
    studio.tx(
        lambda c: catalogue.update_settings(
            c,
            tenant_id=studio.t,
            settings=OnlineSettings(
                online_enabled=True,
                commission_bp=300,
                provider="sandbox",
                provider_config=default_config("sandbox"),
            ),
            actor=studio.actor,
        )
    )
    return studio


def _urls(order: Any) -> Urls:
    return Urls(f"{BASE}/buy/x/orders/{order.token}", f"{BASE}/buy/x/orders/{order.token}/cancel")


def _begin(shop: Studio) -> tuple[Any, Any]:
    """The tenant's provider, and an order sent to it (the client at the card form)."""
    provider = checkout.provider_of(shop.engine, shop.t, BASE)
    order = checkout.begin(
        shop.engine,
        provider,
        tenant_id=shop.t,
        type_id=shop.eight.id,
        email="client@example.ru",
        locale="ru",
        urls_for=_urls,
    )
    return provider, order


def test_pay_in_the_sandbox_return_and_notifications_then_refund(shop: Studio) -> None:
    provider, order = _begin(shop)
    job = Actor.job("tests")
    assert order.status == "pending" and order.redirect_url
    assert order.redirect_url.startswith(f"{BASE}/sandbox/pay/")
    # The client returns before paying: still pending.
    assert (
        checkout.on_return(
            shop.engine, provider, tenant_id=shop.t, token=order.token, actor=job
        ).status
        == "pending"
    )
    paid = sandbox.pay_with_card(
        shop.engine,
        str(order.provider_payment_id),
        "4242 4242 4242 4242",
        expiry="12/30",
        cvc="123",
    )
    body, headers = provider.notification_for(paid)  # type: ignore[attr-defined]
    # The notification arrives first, then three times more, then the return.
    for _ in range(4):
        done = checkout.on_notification(
            shop.engine, provider, tenant_id=shop.t, body=body, headers=headers, actor=job
        )
        assert done is not None and done.status == "paid"
    back = checkout.on_return(shop.engine, provider, tenant_id=shop.t, token=order.token, actor=job)
    assert back.status == "paid" and shop.count(memberships) == 1
    # A forged one: refused and logged.
    forged = body.replace(b'"amount_minor":412000', b'"amount_minor":1')
    refused(
        "forged_notification",
        lambda: checkout.on_notification(
            shop.engine, provider, tenant_id=shop.t, body=forged, headers=headers, actor=job
        ),
    )
    with read_only(shop.engine) as conn:
        believed = [
            r.believed
            for r in conn.execute(
                provider_notifications.select()
                .where(provider_notifications.c.tenant_id == shop.t)
                .order_by(provider_notifications.c.id)
            )
        ]
    assert believed == [True, True, True, True, False]
    # A refund through the sandbox, never above what was paid.
    refused(
        "refund_too_large",
        lambda: refunds.refund_through_provider(
            shop.engine,
            provider,
            tenant_id=shop.t,
            order_id=order.id,
            amount_minor=412_001,
            operation_id="r-0",
            actor=shop.actor,
        ),
    )
    part = refunds.refund_through_provider(
        shop.engine,
        provider,
        tenant_id=shop.t,
        order_id=order.id,
        amount_minor=12_000,
        operation_id="r-1",
        actor=shop.actor,
    )
    assert part.status == "succeeded"
    again = refunds.refund_through_provider(
        shop.engine,
        provider,
        tenant_id=shop.t,
        order_id=order.id,
        amount_minor=12_000,
        operation_id="r-1",
        actor=shop.actor,
    )
    assert again.replayed and again.id == part.id
    rest = refunds.refund_through_provider(
        shop.engine,
        provider,
        tenant_id=shop.t,
        order_id=order.id,
        amount_minor=400_000,
        operation_id="r-2",
        actor=shop.actor,
    )
    assert rest.status == "succeeded"
    assert (
        sandbox.get_sandbox_payment(shop.engine, str(order.provider_payment_id)).refunded_minor
        == 412_000
    )
    shop.assert_clean()


def test_a_declined_card_cancels_and_sells_nothing(shop: Studio) -> None:
    provider, order = _begin(shop)
    job = Actor.job("tests")
    sandbox.pay_with_card(
        shop.engine,
        str(order.provider_payment_id),
        "4000 0000 0000 0002",
        expiry="12/30",
        cvc="123",
    )
    back = checkout.on_return(shop.engine, provider, tenant_id=shop.t, token=order.token, actor=job)
    assert back.status == "canceled" and shop.count(memberships) == 0


def test_a_refund_the_provider_refuses_for_good_is_canceled(shop: Studio) -> None:
    provider, order = _begin(shop)
    job = Actor.job("tests")
    paid = sandbox.pay_with_card(
        shop.engine, str(order.provider_payment_id), "4242424242424242", expiry="12/30", cvc="123"
    )
    checkout.on_return(shop.engine, provider, tenant_id=shop.t, token=order.token, actor=job)
    # Someone refunded part of it in the provider's own account, past Kopilka.
    provider.refund(paid, 100_000, idempotency_key="made-at-the-provider")
    refused(
        "provider_refused",
        lambda: refunds.refund_through_provider(
            shop.engine,
            provider,
            tenant_id=shop.t,
            order_id=order.id,
            amount_minor=412_000,
            operation_id="r-1",
            actor=shop.actor,
        ),
    )
    with read_only(shop.engine) as conn:
        (refund,) = refunds.list_refunds(conn, shop.t, order.id)
    assert refund.status == "canceled"
    done = refunds.refund_through_provider(
        shop.engine,
        provider,
        tenant_id=shop.t,
        order_id=order.id,
        amount_minor=312_000,
        operation_id="r-2",
        actor=shop.actor,
    )
    assert done.status == "succeeded"
    shop.assert_clean()
