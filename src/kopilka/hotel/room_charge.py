"""Charging a restaurant order to a guest's room (SPEC P-7, P-8; seed 001).

At the POS the cashier presses the payment of the "room charge" kind (r_keeper:
"Закрытие на номер"), enters the room number, is shown the guests staying there, picks
one and closes the order. The terminal then posts the closed order (its check id, the
time it closed, its lines) and Kopilka charges it to that guest's folio as an unpaid
invoice with the guest as its payer. The payment code the terminal sends is mapped to a
payment type (P-8): a ``room_charge`` type leaves the invoice unpaid for the front desk;
a ``deposit`` type pays it at once from the guest's deposit (the folio's credit), or is
refused when the deposit does not cover it.

Only the terminal cancels such an order, and only while no payment touches it: once
paid, the hotel refunds (H-2). Posting the same check again answers as the first time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from kopilka.core.actor import Actor
from kopilka.core.errors import NotFound, Refused
from kopilka.core.money import format_amount
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.hotel.folios import (
    InvoiceView,
    LineIn,
    _currency,
    charge,
    get_invoice,
    operation_id_of,
    settle_from_credit,
    void_invoice,
)
from kopilka.hotel.schema import hotel_invoices
from kopilka.hotel.stays import GuestInRoom, guests_in_room
from kopilka.payments.codes import resolve_payment_code
from kopilka.payments.types import PaymentKind


def room_guests(conn: Connection, *, tenant_id: int, room: str) -> list[GuestInRoom]:
    """The guests a terminal may charge in ``room``; refused when nobody stays there."""
    found = guests_in_room(conn, tenant_id, room)
    if not found:
        raise Refused(
            E.NO_GUEST_IN_ROOM, f"nobody is staying in room {room.strip()} now", room=room.strip()
        )
    return found


def post_room_charge(
    conn: Connection,
    *,
    tenant_id: int,
    terminal_id: int,
    room: str,
    guest_id: int,
    check_id: str,
    lines: list[LineIn],
    payment_code: str,
    actor: Actor,
    closed_at: datetime | None = None,
    description: str | None = None,
    now: datetime | None = None,
) -> InvoiceView:
    check_id = operation_id_of(check_id, "a check id")
    payment_type = resolve_payment_code(
        conn, tenant_id=tenant_id, terminal_id=terminal_id, code=payment_code
    )
    if payment_type.kind not in (PaymentKind.ROOM_CHARGE, PaymentKind.DEPOSIT):
        from kopilka.core.errors import InvalidInput

        raise InvalidInput(
            E.NOT_ROOM_CHARGE,
            f"payment code {payment_code!r} means {payment_type.name!r}, which is neither a room "
            "charge nor a deposit",
            payment_code=payment_code,
        )
    known = _posted(conn, tenant_id, terminal_id, check_id)
    if known is None:
        staying = room_guests(conn, tenant_id=tenant_id, room=room)
        chosen = next((g for g in staying if g.guest.id == guest_id), None)
        if chosen is None:
            raise NotFound(
                E.GUEST_NOT_FOUND,
                f"guest {guest_id} is not staying in room {room.strip()}",
                room=room.strip(),
            )
        folio_id, stay_room = chosen.folio_id, chosen.room.number
    else:  # asked again: judged against the order as it was posted
        folio_id, stay_room = known.folio_id, room.strip()
        description = description or known.description
    invoice = charge(
        conn,
        tenant_id=tenant_id,
        folio_id=folio_id,
        kind="pos_order",
        description=description or _order_name(conn, tenant_id, check_id, stay_room),
        lines=lines,
        operation_id=check_id,
        actor=actor,
        payer_guest_id=guest_id,
        terminal_id=terminal_id,
        check_id=check_id,
        closed_at=closed_at,
        now=now,
    )
    if invoice.replayed or payment_type.kind != PaymentKind.DEPOSIT:
        return invoice
    paid = settle_from_credit(
        conn, tenant_id=tenant_id, folio_id=folio_id, invoice_id=invoice.id, now=now
    )
    if paid < invoice.total_minor:
        currency, exponent = _currency(conn, tenant_id)
        raise Refused(
            E.DEPOSIT_INSUFFICIENT,
            f"the guest's deposit covers {format_amount(paid, exponent)} {currency} of "
            f"{format_amount(invoice.total_minor, exponent)}; charge the room instead",
            deposit=format_amount(paid, exponent),
        )
    return get_invoice(conn, tenant_id, invoice.id)


def _order_name(conn: Connection, tenant_id: int, check_id: str, room: str) -> str:
    """What the folio calls an order, in the tenant's language (its screens' and
    receipts')."""
    from kopilka.tenancy.actions import get_tenant

    if get_tenant(conn, tenant_id).locale.lower().startswith("ru"):
        return f"Заказ {check_id}, номер {room}"[:200]
    return f"Order {check_id}, room {room}"[:200]


def _posted(
    conn: Connection, tenant_id: int, terminal_id: int, check_id: str
) -> InvoiceView | None:
    row = conn.execute(
        select(hotel_invoices.c.id).where(
            hotel_invoices.c.tenant_id == tenant_id,
            hotel_invoices.c.terminal_id == terminal_id,
            hotel_invoices.c.check_id == check_id,
        )
    ).first()
    return None if row is None else get_invoice(conn, tenant_id, row.id)


def get_room_charge(
    conn: Connection, *, tenant_id: int, terminal_id: int, check_id: str
) -> InvoiceView:
    found = _posted(conn, tenant_id, terminal_id, operation_id_of(check_id, "a check id"))
    if found is None:
        raise NotFound(E.INVOICE_NOT_FOUND, f"check {check_id} was not charged to a room here")
    return found


def cancel_room_charge(
    conn: Connection,
    *,
    tenant_id: int,
    terminal_id: int,
    check_id: str,
    actor: Actor,
    now: datetime | None = None,
) -> InvoiceView:
    """The terminal cancels its order: refused (``invoice_paid``) once a payment touches
    it. Cancelling again answers as the first time."""
    invoice = get_room_charge(conn, tenant_id=tenant_id, terminal_id=terminal_id, check_id=check_id)
    return void_invoice(
        conn,
        tenant_id=tenant_id,
        invoice_id=invoice.id,
        actor=actor,
        terminal_id=terminal_id,
        now=now,
    )
