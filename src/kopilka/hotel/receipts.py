"""Fiscal receipts of folio payments and refunds (SPEC H-6; seed 001 "Печатать чек").

A payment or refund taken with "print receipt" names a cash register and where the
electronic copy goes (the payer's e-mail or phone). The receipt is asked for in the
payment's own transaction (``kopilka.fiscal.receipts.request_receipt``: a ``pending``
row, no network) and handed to the register once the payment is committed
(``send_now``). Whatever the register says, the payment stands: a receipt that fails is
kept with its error, shown on the folio, and retried (by hand or by the job).

What the receipt says: a payment for one whole invoice lists the invoice's lines (an
order's dishes, the nights); any other payment is one line, "payment on invoice N" or
"payment on folio N" (an advance). A refund mirrors its payment the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from kopilka.core.actor import Actor
from kopilka.core.money import format_amount
from kopilka.fiscal import receipts as fiscal
from kopilka.hotel.folios import FolioView, PaymentView, RefundView, _currency, get_invoice

log = logging.getLogger(__name__)
PAYMENT, REFUND = "hotel_payment", "hotel_refund"


class ReceiptAsk(Protocol):
    register_id: int
    email: str | None
    phone: str | None


def _russian(conn: Connection, tenant_id: int) -> bool:
    from kopilka.tenancy.actions import get_tenant

    return get_tenant(conn, tenant_id).locale.lower().startswith("ru")


NAME_LIMIT = fiscal.MAX_ITEM_NAME  # a receipt line's name (FFD: tag 1030)


def _item(name: str, quantity_milli: int, amount_minor: int) -> dict[str, Any]:
    """A receipt line. Its price is the price after the line's discounts (what a fiscal
    drive checks: price × quantity = sum, to a kopeck); where no price comes that near
    (10.00 for 30 portions), the line is one of "name × 30" at its sum."""
    price = (amount_minor * 1000 + quantity_milli // 2) // quantity_milli
    if (
        abs(price * quantity_milli - amount_minor * 1000) > 1000
        or price > fiscal.MAX_AMOUNT_MINOR
        or quantity_milli > fiscal.MAX_QUANTITY_MILLI
    ):
        shown = format_amount(quantity_milli, 3).rstrip("0").rstrip(".")
        name, price, quantity_milli = f"{name} × {shown}", amount_minor, 1000
    if len(name) > NAME_LIMIT:
        name = name[: NAME_LIMIT - 1] + "…"
    return {
        "name": name,
        "price_minor": price,
        "quantity_milli": quantity_milli,
        "amount_minor": amount_minor,
        "payment_object": "service",
        "vat": "none",
    }


def _payload(
    conn: Connection,
    tenant_id: int,
    *,
    folio_id: int,
    invoice_id: int | None,
    amount_minor: int,
    kind: str,
) -> dict[str, Any]:
    _, exponent = _currency(conn, tenant_id)
    ru = _russian(conn, tenant_id)
    items: list[dict[str, Any]] = []
    if invoice_id is not None:
        invoice = get_invoice(conn, tenant_id, invoice_id)
        if invoice.total_minor == amount_minor:
            items = [
                _item(x.name, x.quantity_milli, x.amount_minor)
                for x in invoice.lines
                if x.amount_minor > 0
            ]
    if not items:
        if invoice_id is not None:
            name = f"Оплата по счёту № {invoice_id}" if ru else f"Payment on invoice {invoice_id}"
        else:
            name = (
                f"Оплата проживания и услуг, счёт гостя № {folio_id}"
                if ru
                else f"Payment for accommodation and services, folio {folio_id}"
            )
        items = [_item(name, 1000, amount_minor)]
    return {
        "items": items,
        "payments": [{"kind": kind, "amount_minor": amount_minor}],
        "total_minor": amount_minor,
        "exponent": exponent,
    }


def for_payment(
    conn: Connection, tenant_id: int, payment: PaymentView, ask: ReceiptAsk | None, actor: Actor
) -> Any:
    """The receipt of a payment: asked for now (``ask``), or the one it has already."""
    if ask is None or payment.replayed:
        return _existing(conn, tenant_id, PAYMENT, payment.id)
    return fiscal.request_receipt(
        conn,
        tenant_id=tenant_id,
        register_id=ask.register_id,
        operation="sell",
        source_type=PAYMENT,
        source_id=payment.id,
        payload=_payload(
            conn,
            tenant_id,
            folio_id=payment.folio_id,
            invoice_id=payment.invoice_id,
            amount_minor=payment.amount_minor,
            kind=payment.payment_kind,
        ),
        email=ask.email,
        phone=ask.phone,
        actor=actor,
    )


def for_refund(
    conn: Connection, tenant_id: int, refund: RefundView, ask: ReceiptAsk | None, actor: Actor
) -> Any:
    if ask is None or refund.replayed:
        return _existing(conn, tenant_id, REFUND, refund.id)
    from kopilka.payments.types import get_payment_type

    kind = get_payment_type(conn, tenant_id, refund.payment_type_id).kind.value
    return fiscal.request_receipt(
        conn,
        tenant_id=tenant_id,
        register_id=ask.register_id,
        operation="sell_refund",
        source_type=REFUND,
        source_id=refund.id,
        payload=_payload(
            conn,
            tenant_id,
            folio_id=refund.folio_id,
            invoice_id=refund.invoice_id,
            amount_minor=refund.amount_minor,
            kind=kind,
        ),
        email=ask.email,
        phone=ask.phone,
        actor=actor,
    )


def _existing(conn: Connection, tenant_id: int, source_type: str, source_id: int) -> Any:
    found = fiscal.list_receipts(conn, tenant_id, source_type=source_type, source_ids=[source_id])
    return found[0] if found else None


def receipts_of(conn: Connection, tenant_id: int, folio: FolioView) -> dict[tuple[str, int], Any]:
    """The receipts of a folio's payments and refunds, by (source type, id)."""
    result: dict[tuple[str, int], Any] = {}
    for source_type, ids in (
        (PAYMENT, [p.id for p in folio.payments]),
        (REFUND, [r.id for r in folio.refunds]),
    ):
        if ids:
            for receipt in fiscal.list_receipts(
                conn, tenant_id, source_type=source_type, source_ids=ids
            ):
                result[(source_type, receipt.source_id)] = receipt
    return result


def send_now(engine: Engine, tenant_id: int, receipt: Any) -> Any:
    """Hand the receipt to its register now; a failure there is the receipt's, never the
    payment's (it stays pending or failed, and is retried)."""
    try:
        return fiscal.send_receipt(engine, tenant_id, receipt.id)
    except Exception:
        log.exception(
            "a receipt could not be sent now; it will be retried", extra={"receipt": receipt.id}
        )
        from kopilka.core.db import read_only

        with read_only(engine) as conn:
            return fiscal.get_receipt(conn, tenant_id, receipt.id)
