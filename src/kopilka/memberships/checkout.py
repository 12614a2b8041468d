"""The online sale's doors meet the provider here (SPEC M-3, M-4): no database
transaction is open while a provider is asked.

* ``begin`` — the checkout form was sent: an order is written, the provider is asked for a
  payment (with the order's own idempotency key: a retry creates no second payment), the
  payment is kept on the order, and the client is sent to ``redirect_url``.
* ``on_return`` — the client came back: the provider is *asked* for the payment's state
  (a return URL proves nothing) and the answer recorded.
* ``on_notification`` — the provider's notification: verified by the adapter (signature,
  or asking the provider), logged believed or not, and recorded.

Each of the last two ends in ``sales.record_payment``, which applies a payment once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import Refused, Unavailable
from kopilka.ledger.posting import run_transaction
from kopilka.memberships import sales
from kopilka.memberships.catalogue import get_settings
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.providers.base import (
    ForgedNotification,
    IgnoredNotification,
    PaymentProvider,
    PaymentRequest,
    ProviderError,
    ReceiptLine,
)
from kopilka.memberships.sales import OrderView
from kopilka.memberships.schema import provider_notifications


@dataclass(frozen=True, slots=True)
class Urls:
    """Where the client comes back to, built by the public pages."""

    return_url: str
    cancel_url: str


def provider_of(engine: Engine, tenant_id: int, public_base: str) -> PaymentProvider:
    """The tenant's provider, as its settings say."""
    from kopilka.memberships.providers.registry import provider_for

    with read_only(engine) as conn:
        settings = get_settings(conn, tenant_id)
    return provider_for(
        settings.provider,
        settings.provider_config,
        engine=engine,
        public_base=public_base,
        tenant_id=tenant_id,
    )


def begin(
    engine: Engine,
    provider: PaymentProvider,
    *,
    tenant_id: int,
    type_id: int,
    email: str,
    locale: str,
    urls_for: Callable[[OrderView], Urls],
    checkout_key: str | None = None,
    source_ip: str | None = None,
    limit: sales.CheckoutLimit | None = None,
) -> OrderView:
    """The order and its payment at the provider. The same form sent again
    (``checkout_key``) answers with the order it made, its payment asked for once; one
    address begins at most ``limit`` new orders (``sales.TooManyCheckouts``)."""
    order = run_transaction(
        engine,
        lambda conn: sales.start_checkout(
            conn,
            tenant_id=tenant_id,
            type_id=type_id,
            email=email,
            locale=locale,
            checkout_key=checkout_key,
            source_ip=source_ip,
            limit=limit,
        ),
    )
    if order.status != "created":
        return order
    urls = urls_for(order)
    request = PaymentRequest(
        order_id=order.id,
        idempotency_key=f"kopilka-order-{tenant_id}-{order.id}",
        amount_minor=order.total_minor,
        currency=order.currency,
        exponent=_exponent(order.currency),
        description=order.type_name,
        customer_email=order.email,
        return_url=urls.return_url,
        cancel_url=urls.cancel_url,
        receipt=(ReceiptLine(order.type_name, order.total_minor),),
        metadata={"order_id": str(order.id), "tenant_id": str(tenant_id)},
    )
    try:
        payment = provider.create_payment(request)
    except ProviderError as error:
        raise Unavailable(
            E.PROVIDER_UNAVAILABLE, f"the payment provider did not answer: {error}"
        ) from error
    return run_transaction(
        engine,
        lambda conn: sales.attach_payment(
            conn, tenant_id=tenant_id, order_id=order.id, payment=payment
        ),
    )


def _exponent(currency: str) -> int:
    from kopilka.core.money import currency_exponent

    return currency_exponent(currency)


def on_return(
    engine: Engine, provider: PaymentProvider, *, tenant_id: int, token: str, actor: Actor
) -> OrderView:
    """The client is back: ask the provider, record what it says."""
    with read_only(engine) as conn:
        order = sales.order_by_token(conn, tenant_id, token)
    if order.provider_payment_id is None or order.status in ("paid", "refunded"):
        return order
    try:
        payment = provider.get_payment(order.provider_payment_id)
    except ProviderError as error:
        raise Unavailable(
            E.PROVIDER_UNAVAILABLE, f"the payment provider did not answer: {error}"
        ) from error
    return run_transaction(
        engine,
        lambda conn: sales.record_payment(
            conn, tenant_id=tenant_id, provider=order.provider, payment=payment, actor=actor
        ),
    )


def on_notification(
    engine: Engine,
    provider: PaymentProvider,
    *,
    tenant_id: int,
    body: bytes,
    headers: Mapping[str, str],
    actor: Actor,
    source_ip: str | None = None,
) -> OrderView | None:
    """A notification: believed only once the adapter verified it; every one is logged.
    None: the provider's, but about nothing Kopilka sells (answer 200, do nothing)."""

    def log(believed: bool, event: str, payment_id: str | None, error: str) -> None:
        def work(conn: Connection) -> None:
            conn.execute(
                provider_notifications.insert(),
                {
                    "tenant_id": tenant_id,
                    "provider": provider.name,
                    "received_at": utcnow(),
                    "believed": believed,
                    "event": event[:64],
                    "provider_payment_id": payment_id,
                    "error": error[:1000],
                    "source_ip": source_ip,
                },
            )

        run_transaction(engine, work)

    try:
        notification = provider.verify_notification(body, headers)
    except IgnoredNotification as error:
        log(True, "ignored", None, str(error))
        return None
    except ForgedNotification as error:
        log(False, "", None, str(error))
        raise Refused(E.FORGED_NOTIFICATION, f"not believed: {error}") from error
    except ProviderError as error:
        log(False, "", None, f"could not verify: {error}")
        raise Unavailable(
            E.PROVIDER_UNAVAILABLE, f"the payment provider did not answer: {error}"
        ) from error
    payment = notification.payment
    log(True, notification.event, payment.provider_payment_id, "")
    return run_transaction(
        engine,
        lambda conn: sales.record_payment(
            conn, tenant_id=tenant_id, provider=provider.name, payment=payment, actor=actor
        ),
    )
