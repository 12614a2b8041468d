"""Refunds through the payment provider (SPEC M-7).

A refund is asked in three steps, so no database transaction waits on the provider:

1. ``request_refund`` (one transaction, under the order's lock): the order is paid, the
   amount is no more than what was paid less what is refunded or being refunded; a
   pending refund row is written under the staff's operation id (asked again: the same
   refund).
2. The provider is asked with Kopilka's idempotency key for that refund (a retry after
   a timeout never refunds twice).
3. ``complete_refund`` (one transaction): the provider's answer. A succeeded refund is
   one ledger transfer that reverses the sale's in proportion (the price part to the
   sales account, the commission part to the commission account: the client gets back
   what they paid, commission included, in the same proportion), the order's refunded
   sum grows; refunded whole, the order and its membership are ``refunded`` (an attached
   membership leaves the visitor's profile as refunded) and ``membership.refunded`` is
   written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused, Unavailable
from kopilka.core.idempotency import request_hash
from kopilka.core.money import currency_exponent, format_amount
from kopilka.events.outbox import emit
from kopilka.ledger.accounts import system_account_id
from kopilka.ledger.posting import EntrySpec, TransferSpec, post_transfers, run_transaction
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.providers.base import (
    PaymentProvider,
    PaymentState,
    ProviderError,
    ProviderPayment,
    ProviderRefund,
    RefundState,
)
from kopilka.memberships.sales import COMMISSION, SALES, provider_account
from kopilka.memberships.schema import membership_orders, membership_refunds, memberships
from kopilka.tenancy.audit import record_audit


@dataclass(frozen=True, slots=True)
class RefundView:
    id: int
    order_id: int
    amount_minor: int
    operation_id: str
    provider_refund_id: str | None
    status: str
    created_at: datetime
    replayed: bool = False


def _view(row: Any, *, replayed: bool = False) -> RefundView:
    return RefundView(
        row.id,
        row.order_id,
        int(row.amount_minor),
        row.operation_id,
        row.provider_refund_id,
        row.status,
        as_utc(row.created_at),
        replayed,
    )


def _refund_row(conn: Connection, refund_id: int) -> Any:
    return conn.execute(
        select(membership_refunds).where(membership_refunds.c.id == refund_id)
    ).one()


def list_refunds(conn: Connection, tenant_id: int, order_id: int) -> list[RefundView]:
    rows = conn.execute(
        select(membership_refunds)
        .where(
            membership_refunds.c.tenant_id == tenant_id, membership_refunds.c.order_id == order_id
        )
        .order_by(membership_refunds.c.id)
    )
    return [_view(r) for r in rows]


def refundable(conn: Connection, order: Any) -> int:
    """What may still be refunded: paid, less refunded, less refunds under way."""
    pending = conn.execute(
        select(func.coalesce(func.sum(membership_refunds.c.amount_minor), 0)).where(
            membership_refunds.c.order_id == order.id, membership_refunds.c.status == "pending"
        )
    ).scalar_one()
    return int(order.total_minor) - int(order.refunded_minor) - int(pending)


def request_refund(
    conn: Connection,
    *,
    tenant_id: int,
    order_id: int,
    amount_minor: int,
    operation_id: str,
    actor: Actor,
    now: datetime | None = None,
) -> RefundView:
    moment = as_utc(now) if now else utcnow()
    key = operation_id.strip() if isinstance(operation_id, str) else ""
    if not 1 <= len(key) <= 100:
        raise InvalidInput(E.INVALID_MEMBERSHIP_INPUT, "an operation id of 1 to 100 characters")
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise InvalidInput(E.INVALID_MEMBERSHIP_INPUT, "a refund is more than zero", field="amount")
    digest = request_hash({"order": order_id, "amount": amount_minor})
    order = conn.execute(
        select(membership_orders)
        .where(membership_orders.c.tenant_id == tenant_id, membership_orders.c.id == order_id)
        .with_for_update()
    ).first()
    if order is None:
        raise NotFound(E.ORDER_NOT_FOUND, f"order {order_id} does not exist")
    known = conn.execute(
        select(membership_refunds).where(
            membership_refunds.c.tenant_id == tenant_id, membership_refunds.c.operation_id == key
        )
    ).first()
    if known is not None:
        if known.request_hash != digest:
            raise Conflict(
                E.MEMBERSHIP_OPERATION_CONFLICT,
                f"operation {key!r} was made already with other content",
            )
        return _view(known, replayed=True)
    if order.status not in ("paid",):
        raise Refused(E.ORDER_NOT_PAID, f"order {order_id} is {order.status}, not paid")
    left = refundable(conn, order)
    if amount_minor > left:
        exponent = currency_exponent(order.currency)
        raise Refused(
            E.REFUND_TOO_LARGE,
            f"at most {format_amount(max(left, 0), exponent)} {order.currency} may be refunded",
            available=format_amount(max(left, 0), exponent),
        )
    refund_id = conn.execute(
        membership_refunds.insert().returning(membership_refunds.c.id),
        {
            "tenant_id": tenant_id,
            "order_id": order_id,
            "amount_minor": amount_minor,
            "operation_id": key,
            "request_hash": digest,
            "status": "pending",
            "actor_type": actor.type.value,
            "actor_id": actor.id,
            "created_at": moment,
            "updated_at": moment,
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="membership_refund.request",
        object_type="membership_order",
        object_id=order_id,
        details={"refund_id": refund_id, "amount_minor": amount_minor},
    )
    return _view(
        conn.execute(select(membership_refunds).where(membership_refunds.c.id == refund_id)).one()
    )


def complete_refund(
    conn: Connection,
    *,
    tenant_id: int,
    refund_id: int,
    result: ProviderRefund,
    actor: Actor,
    now: datetime | None = None,
) -> RefundView:
    """Apply the provider's answer to a pending refund (again: nothing more)."""
    moment = as_utc(now) if now else utcnow()
    refund = conn.execute(
        select(membership_refunds).where(
            membership_refunds.c.tenant_id == tenant_id, membership_refunds.c.id == refund_id
        )
    ).one()
    order = conn.execute(
        select(membership_orders).where(membership_orders.c.id == refund.order_id).with_for_update()
    ).one()
    refund = conn.execute(
        select(membership_refunds).where(membership_refunds.c.id == refund_id)
    ).one()
    if refund.status != "pending" or result.state == RefundState.PENDING:
        return _view(refund)
    if result.state == RefundState.CANCELED:
        conn.execute(
            update(membership_refunds)
            .where(membership_refunds.c.id == refund_id)
            .values(
                status="canceled", provider_refund_id=result.provider_refund_id, updated_at=moment
            )
        )
        return _view(
            conn.execute(
                select(membership_refunds).where(membership_refunds.c.id == refund_id)
            ).one()
        )
    amount = int(refund.amount_minor)
    total, refunded, commission = (
        int(order.total_minor),
        int(order.refunded_minor),
        int(order.commission_minor),
    )
    # The commission's share of what is refunded, so that whole refunds return it whole.
    commission_back = commission * (refunded + amount) // total - commission * refunded // total
    price_back = amount - commission_back

    def account(purpose: str) -> int:
        return system_account_id(
            conn, tenant_id=tenant_id, unit_code=order.currency, purpose=purpose, actor=actor
        )

    entries = [EntrySpec(account(provider_account(order.provider)), amount)]
    if price_back:
        entries.append(EntrySpec(account(SALES), -price_back))
    if commission_back:
        entries.append(EntrySpec(account(COMMISSION), -commission_back))
    (posted,) = post_transfers(
        conn,
        tenant_id=tenant_id,
        specs=[
            TransferSpec(
                f"membership-refund:{refund_id}",
                tuple(entries),
                kind="membership_refund",
                description=f"refund of order {order.id}",
                corrects_transfer_id=order.transfer_id,
                meta={"order": order.id, "refund": refund_id},
            )
        ],
        actor=actor,
        now=moment,
    )
    if isinstance(posted, KopilkaError):
        raise posted
    whole = refunded + amount == total
    conn.execute(
        update(membership_refunds)
        .where(membership_refunds.c.id == refund_id)
        .values(
            status="succeeded",
            provider_refund_id=result.provider_refund_id,
            transfer_id=posted.id,
            updated_at=moment,
        )
    )
    conn.execute(
        update(membership_orders)
        .where(membership_orders.c.id == order.id)
        .values(
            refunded_minor=refunded + amount,
            status="refunded" if whole else order.status,
            updated_at=moment,
        )
    )
    if whole and order.membership_id is not None:
        conn.execute(
            update(memberships)
            .where(memberships.c.id == order.membership_id)
            .values(status="refunded", refunded_at=moment)
        )
    exponent = currency_exponent(order.currency)
    emit(
        conn,
        tenant_id=tenant_id,
        type="membership.refunded",
        subject_type="membership",
        subject_id=order.membership_id or order.id,
        payload={
            "membership_id": order.membership_id,
            "order_id": order.id,
            "amount": format_amount(amount, exponent),
            "refunded": format_amount(refunded + amount, exponent),
            "whole": whole,
            "unit": order.currency,
        },
        now=moment,
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="membership_refund.complete",
        object_type="membership_order",
        object_id=order.id,
        details={"refund_id": refund_id, "amount_minor": amount, "whole": whole},
    )
    return _view(
        conn.execute(select(membership_refunds).where(membership_refunds.c.id == refund_id)).one()
    )


def refund_through_provider(
    engine: Engine,
    provider: PaymentProvider,
    *,
    tenant_id: int,
    order_id: int,
    amount_minor: int,
    operation_id: str,
    actor: Actor,
) -> RefundView:
    """The three steps. A provider that does not answer leaves the refund pending
    (``provider_unavailable``); asking again with the same operation id asks the provider
    again with the same key."""
    asked = run_transaction(
        engine,
        lambda conn: request_refund(
            conn,
            tenant_id=tenant_id,
            order_id=order_id,
            amount_minor=amount_minor,
            operation_id=operation_id,
            actor=actor,
        ),
    )
    if asked.status != "pending":
        return asked
    with engine.connect() as conn:
        order = conn.execute(
            select(membership_orders).where(membership_orders.c.id == order_id)
        ).one()
    payment = ProviderPayment(
        provider_payment_id=str(order.provider_payment_id),
        state=PaymentState.SUCCEEDED,
        amount_minor=int(order.total_minor),
        currency=order.currency,
        order_id=order.id,
    )
    try:
        result = provider.refund(
            payment, asked.amount_minor, idempotency_key=f"kopilka-refund-{tenant_id}-{asked.id}"
        )
    except ProviderError as error:
        if not error.retryable:
            # The provider says no for good (more than is left at its end, a payment it
            # cannot refund): the refund is canceled, its amount free again.
            refused = ProviderRefund("", RefundState.CANCELED, asked.amount_minor)
            run_transaction(
                engine,
                lambda conn: complete_refund(
                    conn, tenant_id=tenant_id, refund_id=asked.id, result=refused, actor=actor
                ),
            )
            raise Refused(
                E.PROVIDER_REFUSED,
                f"the payment provider refused the refund: {error}",
                refund_id=asked.id,
            ) from error
        raise Unavailable(
            E.PROVIDER_UNAVAILABLE,
            f"the payment provider did not refund: {error}; the refund stays pending, ask again",
            refund_id=asked.id,
        ) from error
    done = run_transaction(
        engine,
        lambda conn: complete_refund(
            conn, tenant_id=tenant_id, refund_id=asked.id, result=result, actor=actor
        ),
    )
    return replace(done, replayed=True) if asked.replayed else done
