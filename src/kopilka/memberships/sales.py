"""Selling a membership online, exactly once (SPEC M-3, M-4, M-5, X-3).

**Checkout.** ``start_checkout`` writes an **order** for a type sold online: the client's
e-mail and language, the price, the commission the client pays on top (M-5) and the
total, as they are now. The order is then sent to the provider (``attach_payment``): its
payment id and card-form address are kept, and the client is redirected there.

**Fulfilment.** The provider's answer reaches Kopilka two ways: the client's return (the
redirect) and the provider's notification. Either may arrive zero, one or many times, in
any order; each ends in ``record_payment`` with a payment the provider vouches for
(asked of it by id, or signed by it). Under the order's row lock, a succeeded payment of
exactly the order's amount and currency makes the order paid, the **membership** (its
number and activation code), one ledger transfer, one confirmation e-mail (queued in the
same transaction, in the client's language) and one ``membership.sold`` event; every
later arrival finds the order paid and changes nothing. A payment whose amount, currency
or order differs from the order's is refused (``payment_mismatch``): a tampered amount
buys nothing.

**Money.** The sale is one transfer from the provider's clearing account
(``membership_provider_<name>:RUB``: what the provider owes the studio) to the sales
account (the price) and the commission account (what the client paid on top). A refund
(``kopilka.memberships.refunds``) reverses it, never more than was paid.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.money import currency_exponent, format_amount
from kopilka.events.outbox import emit
from kopilka.ledger.accounts import system_account_id
from kopilka.ledger.posting import EntrySpec, TransferSpec, post_transfers
from kopilka.loyalty.cards import normalise_email
from kopilka.mail.outbox import clean_address, queue_mail
from kopilka.memberships.catalogue import commission_of, get_settings, get_type
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.mail_text import sold_mail
from kopilka.memberships.providers.base import PaymentState, ProviderPayment
from kopilka.memberships.schema import membership_orders, memberships
from kopilka.tenancy.audit import record_audit

log = logging.getLogger(__name__)

SALES = "membership_sales"
COMMISSION = "membership_commission"
LOCALES = ("ru", "en")
# Activation codes: no 0/O, 1/I/L, so a code read aloud at the desk is typed right.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8


def provider_account(name: str) -> str:
    return f"membership_provider_{name}"


@dataclass(frozen=True, slots=True)
class OrderView:
    id: int
    token: str
    type_id: int
    type_name: str
    email: str
    locale: str
    price_minor: int
    commission_bp: int
    commission_minor: int
    total_minor: int
    currency: str
    provider: str
    provider_payment_id: str | None
    redirect_url: str | None
    status: str
    membership_id: int | None
    refunded_minor: int
    created_at: datetime
    paid_at: datetime | None


def _order(conn: Connection, row: Any) -> OrderView:
    type_name = get_type(conn, row.tenant_id, row.type_id).name
    return OrderView(
        id=row.id,
        token=row.token,
        type_id=row.type_id,
        type_name=type_name,
        email=row.email,
        locale=row.locale,
        price_minor=int(row.price_minor),
        commission_bp=row.commission_bp,
        commission_minor=int(row.commission_minor),
        total_minor=int(row.total_minor),
        currency=row.currency,
        provider=row.provider,
        provider_payment_id=row.provider_payment_id,
        redirect_url=row.redirect_url,
        status=row.status,
        membership_id=row.membership_id,
        refunded_minor=int(row.refunded_minor),
        created_at=as_utc(row.created_at),
        paid_at=as_utc(row.paid_at) if row.paid_at else None,
    )


def get_order(conn: Connection, tenant_id: int, order_id: int) -> OrderView:
    row = conn.execute(
        select(membership_orders).where(
            membership_orders.c.tenant_id == tenant_id, membership_orders.c.id == order_id
        )
    ).first()
    if row is None:
        raise NotFound(E.ORDER_NOT_FOUND, f"order {order_id} does not exist")
    return _order(conn, row)


def order_by_token(conn: Connection, tenant_id: int, token: str) -> OrderView:
    row = conn.execute(
        select(membership_orders).where(
            membership_orders.c.tenant_id == tenant_id, membership_orders.c.token == token
        )
    ).first()
    if row is None:
        raise NotFound(E.ORDER_NOT_FOUND, "no such order")
    return _order(conn, row)


def start_checkout(
    conn: Connection,
    *,
    tenant_id: int,
    type_id: int,
    email: str,
    locale: str,
    checkout_key: str | None = None,
    source_ip: str | None = None,
    limit: CheckoutLimit | None = None,
    now: datetime | None = None,
) -> OrderView:
    """An order for a type sold online, priced now: the price, the commission the client
    pays on top, the total. ``checkout_key`` (the form's own, made when it was shown):
    the same form sent again is the same order. ``limit``: how many new orders one
    ``source_ip`` may begin in a window (``TooManyCheckouts`` past it)."""
    from kopilka.tenancy.actions import get_tenant

    if checkout_key is not None:
        if not isinstance(checkout_key, str) or not 8 <= len(checkout_key) <= 64:
            raise InvalidInput(E.INVALID_MEMBERSHIP_INPUT, "a checkout key of 8 to 64 characters")
        known = conn.execute(
            select(membership_orders).where(
                membership_orders.c.tenant_id == tenant_id,
                membership_orders.c.checkout_key == checkout_key,
            )
        ).first()
        if known is not None:
            if known.type_id != type_id:
                raise Refused(E.PAYMENT_MISMATCH, "this checkout form was for another type")
            return _order(conn, known)
    moment = as_utc(now) if now else utcnow()
    if limit is not None and source_ip:
        _check_limit(conn, tenant_id, source_ip, limit, moment)
    settings = get_settings(conn, tenant_id)
    if not settings.online_enabled:
        raise Refused(E.ONLINE_SALE_OFF, "the studio does not sell memberships online")
    kind = get_type(conn, tenant_id, type_id)
    if not (kind.sell_online and kind.is_permanent and kind.is_active):
        raise Refused(E.NOT_SOLD_ONLINE, f"{kind.name!r} is not sold online")
    try:
        # The mail queue's rule (stricter than a card holder's): the address the
        # confirmation will go to must be one it takes, checked before anything is sold.
        address = clean_address(normalise_email(email))
    except InvalidInput as error:
        raise InvalidInput(E.INVALID_EMAIL, f"{email!r} is not an e-mail address") from error
    currency = get_tenant(conn, tenant_id).currency
    commission = commission_of(kind.price_minor, settings.commission_bp)
    order_id = conn.execute(
        membership_orders.insert().returning(membership_orders.c.id),
        {
            "tenant_id": tenant_id,
            "token": secrets.token_urlsafe(24),
            "checkout_key": checkout_key,
            "type_id": kind.id,
            "email": address,
            "locale": locale if locale in LOCALES else "ru",
            "price_minor": kind.price_minor,
            "commission_bp": settings.commission_bp,
            "commission_minor": commission,
            "total_minor": kind.price_minor + commission,
            "currency": currency,
            "provider": settings.provider,
            "status": "created",
            "created_at": moment,
            "updated_at": moment,
            "source_ip": source_ip[:64] if source_ip else None,
        },
    ).scalar_one()
    return get_order(conn, tenant_id, order_id)


@dataclass(frozen=True)
class CheckoutLimit:
    per_address: int
    window: timedelta


class TooManyCheckouts(KopilkaError):
    status = 429
    title = "Too many checkouts"

    def __init__(self, retry_after: timedelta) -> None:
        seconds = max(1, int(retry_after.total_seconds()) + 1)
        super().__init__(
            E.TOO_MANY_CHECKOUTS,
            f"too many checkouts from this address; try again in {seconds} s",
            retry_after_seconds=seconds,
        )


def _check_limit(
    conn: Connection, tenant_id: int, source_ip: str, limit: CheckoutLimit, moment: datetime
) -> None:
    """A public form that makes an order and asks a payment provider for a payment each
    time it is sent: one address may begin ``per_address`` of them in ``window``."""
    since = moment - limit.window
    count, first = conn.execute(
        select(func.count(), func.min(membership_orders.c.created_at)).where(
            membership_orders.c.tenant_id == tenant_id,
            membership_orders.c.source_ip == source_ip[:64],
            membership_orders.c.created_at > since,
        )
    ).one()
    if count >= limit.per_address:
        raise TooManyCheckouts(as_utc(first) + limit.window - moment)


def attach_payment(
    conn: Connection, *, tenant_id: int, order_id: int, payment: ProviderPayment
) -> OrderView:
    """Keep the provider's payment of an order (its id and card form); the order is
    pending from now on. Called again with the same payment (a retry): nothing new."""
    row = _lock_order(conn, tenant_id, order_id)
    if row.provider_payment_id not in (None, payment.provider_payment_id):
        raise Refused(E.PAYMENT_MISMATCH, f"order {order_id} has a payment already")
    if row.status == "created":
        conn.execute(
            update(membership_orders)
            .where(membership_orders.c.id == order_id)
            .values(
                provider_payment_id=payment.provider_payment_id,
                redirect_url=payment.redirect_url,
                status="pending",
                updated_at=utcnow(),
            )
        )
    return get_order(conn, tenant_id, order_id)


def _lock_order(conn: Connection, tenant_id: int, order_id: int) -> Any:
    row = conn.execute(
        select(membership_orders)
        .where(membership_orders.c.tenant_id == tenant_id, membership_orders.c.id == order_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.ORDER_NOT_FOUND, f"order {order_id} does not exist")
    return row


def order_of_payment(conn: Connection, tenant_id: int, provider: str, payment_id: str) -> int:
    found = conn.execute(
        select(membership_orders.c.id).where(
            membership_orders.c.tenant_id == tenant_id,
            membership_orders.c.provider == provider,
            membership_orders.c.provider_payment_id == payment_id,
        )
    ).scalar()
    if found is None:
        raise NotFound(E.PAYMENT_NOT_FOUND, f"no order has {provider} payment {payment_id!r}")
    return int(found)


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def record_payment(
    conn: Connection,
    *,
    tenant_id: int,
    provider: str,
    payment: ProviderPayment,
    actor: Actor,
    now: datetime | None = None,
) -> OrderView:
    """What the provider vouches for, applied to its order once (see the module's
    docstring). Returns the order as it is now."""
    moment = as_utc(now) if now else utcnow()
    order_id = order_of_payment(conn, tenant_id, provider, payment.provider_payment_id)
    row = _lock_order(conn, tenant_id, order_id)
    if payment.state == PaymentState.SUCCEEDED:
        if (
            payment.amount_minor != int(row.total_minor)
            or payment.currency.upper() != row.currency
            or (payment.order_id is not None and payment.order_id != row.id)
        ):
            raise Refused(
                E.PAYMENT_MISMATCH,
                f"{provider} payment {payment.provider_payment_id} is not order {row.id}'s "
                f"({payment.amount_minor} {payment.currency}, not {row.total_minor} "
                f"{row.currency})",
            )
        if row.status in ("created", "pending", "canceled"):
            _fulfil(conn, row, provider, actor, moment)
    elif payment.state == PaymentState.CANCELED and row.status in ("created", "pending"):
        conn.execute(
            update(membership_orders)
            .where(membership_orders.c.id == row.id)
            .values(status="canceled", updated_at=moment)
        )
    return get_order(conn, tenant_id, order_id)


def _fulfil(conn: Connection, row: Any, provider: str, actor: Actor, moment: datetime) -> None:
    tenant_id = row.tenant_id
    kind = get_type(conn, tenant_id, row.type_id)
    code = _new_code()
    while conn.execute(
        select(memberships.c.id).where(
            memberships.c.tenant_id == tenant_id, memberships.c.activation_code == code
        )
    ).first():
        code = _new_code()
    number = f"M-{row.id:06d}"
    membership_id = conn.execute(
        memberships.insert().returning(memberships.c.id),
        {
            "tenant_id": tenant_id,
            "number": number,
            "activation_code": code,
            "type_id": kind.id,
            "order_id": row.id,
            "status": "unattached",
            "classes": kind.classes,
            "sold_at": moment,
        },
    ).scalar_one()
    currency = row.currency

    def account(purpose: str) -> int:
        return system_account_id(
            conn, tenant_id=tenant_id, unit_code=currency, purpose=purpose, actor=actor
        )

    entries = [
        EntrySpec(account(provider_account(provider)), -int(row.total_minor)),
        EntrySpec(account(SALES), int(row.price_minor)),
    ]
    if row.commission_minor:
        entries.append(EntrySpec(account(COMMISSION), int(row.commission_minor)))
    (posted,) = post_transfers(
        conn,
        tenant_id=tenant_id,
        specs=[
            TransferSpec(
                f"membership-sale:{row.id}",
                tuple(entries),
                kind="membership_sale",
                description=f"{number}: {kind.name}",
                meta={"order": row.id, "membership": membership_id},
            )
        ],
        actor=actor,
        now=moment,
    )
    if isinstance(posted, KopilkaError):
        raise posted
    conn.execute(
        update(membership_orders)
        .where(membership_orders.c.id == row.id)
        .values(
            status="paid",
            membership_id=membership_id,
            transfer_id=posted.id,
            paid_at=moment,
            updated_at=moment,
        )
    )
    exponent = currency_exponent(currency)
    subject, text, html = sold_mail(
        locale=row.locale,
        studio=_tenant_name(conn, tenant_id),
        type_name=kind.name,
        number=number,
        code=code,
        paid=format_amount(int(row.total_minor), exponent),
        currency=currency,
        classes=kind.classes,
        validity_days=kind.validity_days,
    )
    try:
        queue_mail(
            conn,
            tenant_id=tenant_id,
            kind="membership_sold",
            ref=f"order:{row.id}",
            to_addr=row.email,
            subject=subject,
            body_text=text,
            body_html=html,
            now=moment,
        )
    except InvalidInput as error:  # never lose the sale for its e-mail (checked at checkout)
        log.error("order %s: the confirmation was not queued: %s", row.id, error.detail)
    emit(
        conn,
        tenant_id=tenant_id,
        type="membership.sold",
        subject_type="membership",
        subject_id=membership_id,
        payload={
            "membership_id": membership_id,
            "number": number,
            "type": kind.name,
            "price": format_amount(int(row.price_minor), exponent),
            "commission": format_amount(int(row.commission_minor), exponent),
            "paid": format_amount(int(row.total_minor), exponent),
            "unit": currency,
            "email": row.email,
            "order_id": row.id,
        },
        now=moment,
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="membership.sell",
        object_type="membership",
        object_id=membership_id,
        details={"order_id": row.id, "provider": provider, "total_minor": int(row.total_minor)},
    )


def _tenant_name(conn: Connection, tenant_id: int) -> str:
    from kopilka.tenancy.actions import get_tenant

    return get_tenant(conn, tenant_id).name
