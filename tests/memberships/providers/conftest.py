"""Payment providers under test: local stand-ins for YooKassa and Stripe, the sandbox.

Fixtures (each test gets fresh ones):

``yookassa`` -> ``YooKassaStandIn`` (``tests.memberships.providers.yookassa_stand_in``)
    A YooKassa API v3 on 127.0.0.1. ``yookassa.config()`` is a tenant's
    ``provider_config`` pointing at it (``config(timeout_ms="200")`` to override).
    Play the client and YooKassa: ``pay(payment_id, notify=url)`` (the notification is
    POSTed to ``url`` before ``pay`` returns, so before the client's redirect),
    ``cancel(payment_id, reason=..., notify=url)``; ``notify(url, payment_id,
    times=3)`` sends the payment's notification again; ``notification(payment_id,
    event="payment.succeeded")`` is a body to hand to ``verify_notification`` (with an
    ``event`` the payment's state does not justify, a lying one);
    ``forged_notification()`` names a payment YooKassa never had. Look:
    ``payments``, ``refunds``, ``receipts`` (by payment or refund id), ``requests``
    (every ``Seen`` request), ``paths()``, ``deliveries`` (every notification it
    POSTed). Misbehave: ``fail(500)``, ``fail(429)``, ``fail(401)``, ``fail(500,
    after_processing=True)``, ``slow(seconds)``, ``drop()``.
    A browser gets YooKassa's confirmation page at the payment's ``confirmation_url``
    (the client pays with 4242 4242 4242 4242, is declined with 4000 0000 0000 0002, or
    cancels; then the browser is sent to the ``return_url``).

``stripe_api`` -> ``StripeStandIn`` (``tests.memberships.providers.stripe_stand_in``)
    Stripe's API on 127.0.0.1 for the official SDK. ``stripe_api.config()`` is a
    tenant's ``provider_config``. ``pay(session_id, notify=url)`` (or ``delayed=True``
    then ``settle(session_id, succeeded=..., notify=url)``), ``expire(session_id,
    notify=url)``; ``send_event(url, "checkout.session.completed", session_id,
    times=3)``; ``event(kind, session_id)`` is a signed (body, headers);
    ``event(..., secret="whsec_other")`` a forgery, ``event(..., timestamp=old)`` a
    stale one, ``event(..., signed=False)`` an unsigned one. Look: ``sessions``,
    ``payment_intents``, ``refunds``, ``requests``, ``deliveries``. Misbehave as above.
    A browser gets the Checkout page at the session's ``url`` (4242 4242 4242 4242
    pays and goes to the ``success_url``; 4000 0000 0000 0002 is declined on the page;
    "Cancel" goes to the ``cancel_url``).

For both, what the card page notifies, and when, is set before the browser pays:
``notify_on_pay(url)`` (once, before the browser's redirect), ``notify_on_pay(url,
times=3)`` (three times), ``notify_on_pay(url, times=0)`` or none set (never),
``notify_on_pay(url, when="held")`` (kept until ``release_held()``, after the client's
return). ``tests.memberships.providers.stand_in_server`` has the details.

``receiver`` -> ``tests.events.receiver.Receiver``
    A URL (``receiver.url``) that answers 200 and keeps what is POSTed to it
    (``receiver.received``: path, headers, body), to watch what the stand-ins send.

``sandbox`` -> ``SandboxProvider`` of the test's ``tenant`` (on SQLite and PostgreSQL),
    with a secret and ``PUBLIC_BASE`` as Kopilka's address.

``payment_request`` -> ``make_request(**fields)``: a ``PaymentRequest`` for "8 занятий в
    месяц" at 4 120.00 RUB (4 000.00 and a 3 % commission) with a fresh order id and
    idempotency key, its 54-FZ receipt of one line; any field may be replaced.

End-to-end tests in other folders can use the stand-ins without these fixtures::

    from tests.memberships.providers.yookassa_stand_in import yookassa_stand_in

    with yookassa_stand_in() as yookassa:
        ...

or re-export the fixtures in their own ``conftest.py``::

    from tests.memberships.providers.conftest import yookassa, stripe_api  # noqa: F401
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from kopilka.memberships.providers import sandbox as sandbox_module
from kopilka.memberships.providers.base import PaymentRequest, ReceiptLine
from kopilka.memberships.providers.sandbox import SandboxProvider
from kopilka.tenancy.actions import Tenant
from tests.events.receiver import Receiver, webhook_receiver
from tests.memberships.providers.stripe_stand_in import StripeStandIn, stripe_stand_in
from tests.memberships.providers.yookassa_stand_in import YooKassaStandIn, yookassa_stand_in

PUBLIC_BASE = "https://studio.example.ru"
_orders = itertools.count(1001)


@pytest.fixture
def yookassa() -> Iterator[YooKassaStandIn]:
    with yookassa_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def stripe_api() -> Iterator[StripeStandIn]:
    with stripe_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as stand_in:
        yield stand_in


@pytest.fixture
def sandbox(engine: Engine, tenant: Tenant) -> SandboxProvider:
    return sandbox_module.provider(
        sandbox_module.new_config(), engine=engine, tenant_id=tenant.id, public_base=PUBLIC_BASE
    )


def make_request(**fields: Any) -> PaymentRequest:
    order_id = fields.pop("order_id", next(_orders))
    amount = fields.pop("amount_minor", 412_000)
    values: dict[str, Any] = {
        "order_id": order_id,
        "idempotency_key": f"kopilka-order-{uuid.uuid4().hex[:8]}-{order_id}",
        "amount_minor": amount,
        "currency": "RUB",
        "exponent": 2,
        "description": "8 занятий в месяц",
        "customer_email": "client@example.ru",
        "return_url": f"{PUBLIC_BASE}/pay/studio/return/{order_id}",
        "cancel_url": f"{PUBLIC_BASE}/pay/studio/cancel/{order_id}",
        "receipt": (ReceiptLine("8 занятий в месяц", amount),),
        "metadata": {"tenant_id": "7"},
    }
    values.update(fields)
    return PaymentRequest(**values)


@pytest.fixture
def payment_request() -> Callable[..., PaymentRequest]:
    return make_request
