"""Hotel folios over HTTP (SPEC H-1, H-2, H-4, H-5, H-6) for the front desk and a PMS.

Staff tokens: owners, administrators and front desk work with stays and folios;
properties and rooms are set up by owners and administrators. Amounts are decimal
strings in the tenant's currency (points in their unit); quantities decimal strings
with at most 3 places. Every money-moving POST takes an ``Idempotency-Key``: the same
key and body again answers as the first time (``Idempotent-Replayed: true``), the same
key with another body is 409 ``hotel_operation_conflict``.

A payment or refund may ask for a fiscal receipt (``receipt``: the cash register and
where the electronic copy goes). The receipt is written with the payment and sent to the
register after it; a register that fails never undoes the payment: the receipt stays
``pending`` or ``failed``, is shown, and is retried (``/api/v1/receipts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from kopilka.api.deps import (
    MAX_ID,
    EngineDep,
    IdempotencyKey,
    ManagerPrincipal,
    Principal,
    require_roles,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.core.money import format_amount, parse_amount
from kopilka.hotel import folios, points, stays
from kopilka.hotel import receipts as hotel_receipts
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.ledger.posting import run_transaction

log = logging.getLogger(__name__)
router = APIRouter(prefix=f"{API_PREFIX}/hotel", tags=["hotel"])
DeskPrincipal = Annotated[Principal, Depends(require_roles("owner", "administrator", "front_desk"))]
ObjectId = Annotated[int, Path(ge=1, le=MAX_ID)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Amount = Annotated[str, Field(min_length=1, max_length=40, examples=["1500.00"])]
T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _write(engine: Engine, work: Callable[[Connection], T]) -> T:
    return run_transaction(engine, work)


def _replied(response: Response, replayed: bool) -> None:
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
        response.status_code = status.HTTP_200_OK


def _money(conn: Connection, tenant_id: int, text: str) -> int:
    currency, exponent = folios._currency(conn, tenant_id)
    return parse_amount(text, exponent, unit_code=currency, positive=True)


def quantity_milli(text: str) -> int:
    """``"1.5"`` -> 1500: a quantity with at most 3 decimals, above zero."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"{text!r} is not a quantity") from None
    milli = value * 1000
    if not value.is_finite() or milli != milli.to_integral_value() or value <= 0:
        raise InvalidInput(
            E.INVALID_HOTEL_INPUT, f"{text!r}: a quantity above zero with at most 3 decimals"
        )
    return int(milli)


def format_quantity(milli: int) -> str:
    return format_amount(milli, 3).rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- shapes


class PropertyIn(Strict):
    name: str = Field(min_length=1, max_length=200)


class PropertyOut(Strict):
    id: int
    name: str


class RoomIn(Strict):
    property_id: Id
    number: str = Field(min_length=1, max_length=20, examples=["90", "12A"])
    description: str = Field(default="", max_length=200)


class RoomOut(Strict):
    id: int
    property_id: int
    property_name: str
    number: str
    description: str


class GuestIn(Strict):
    full_name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)


class GuestOut(Strict):
    id: int
    full_name: str
    phone: str | None
    email: str | None


class StayIn(Strict):
    room_id: Id
    arrival: date
    departure: date
    guest_ids: list[Id] = Field(min_length=1, max_length=stays.MAX_GUESTS)
    note: str = Field(default="", max_length=500)
    check_in: bool = False


class FolioRefOut(Strict):
    id: int
    guest_id: int | None
    balance: str


class StayOut(Strict):
    id: int
    room: RoomOut
    arrival: date
    departure: date
    status: Literal["booked", "checked_in", "checked_out", "cancelled"]
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    note: str
    guests: list[GuestOut]
    folios: list[FolioRefOut]
    currency: str


class StayList(Strict):
    items: list[StayOut]


class GuestRef(Strict):
    guest_id: Id


class LineIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    quantity: str = Field(default="1", min_length=1, max_length=20)
    price: Amount | None = Field(default=None, description="per one; default amount / quantity")
    amount: Amount = Field(description="the line's sum (after its discounts)")


class LineOut(Strict):
    position: int
    name: str
    quantity: str
    price: str
    amount: str


class ChargeIn(Strict):
    kind: Literal["accommodation", "service"]
    description: str = Field(min_length=1, max_length=200)
    lines: list[LineIn] = Field(min_length=1, max_length=folios.MAX_LINES)
    payer_guest_id: Id | None = None


class InvoiceOut(Strict):
    id: int
    folio_id: int
    kind: str
    description: str
    status: Literal["unpaid", "partly_paid", "paid", "void"]
    payer: GuestOut | None
    total: str
    paid: str
    owed: str
    currency: str
    lines: list[LineOut]
    terminal_id: int | None
    check_id: str | None
    closed_at: datetime | None
    voided_at: datetime | None
    created_at: datetime


class ReceiptIn(Strict):
    register_id: Id
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


class ReceiptOut(Strict):
    id: int
    status: str
    register_id: int
    operation: str
    email: str | None
    phone: str | None
    error: str | None


class PaymentIn(Strict):
    payment_type_id: Id
    amount: Amount
    invoice_id: Id | None = Field(default=None, description="none: the folio's oldest first")
    payer: str = Field(default="", max_length=200)
    certificate: str | None = Field(
        default=None, min_length=1, max_length=64, description="gift certificate types: its number"
    )
    receipt: ReceiptIn | None = None


class PaymentOut(Strict):
    id: int
    folio_id: int
    invoice_id: int | None
    payment_type_id: int
    payment_kind: str
    payment_name: str
    amount: str
    refunded: str
    currency: str
    card_number: str | None
    points: str | None
    points_unit: str | None
    provider: str | None
    payer: str
    created_at: datetime
    receipt: ReceiptOut | None = None


class RefundIn(Strict):
    payment_id: Id
    amount: Amount
    payment_type_id: Id
    direction: Literal["cash", "card", "deposit", "bank_transfer"]
    invoice_id: Id | None = None
    reason: str = Field(default="", max_length=500)
    receipt: ReceiptIn | None = None


class RefundOut(Strict):
    id: int
    folio_id: int
    payment_id: int
    invoice_id: int | None
    payment_type_id: int
    payment_name: str
    direction: str
    amount: str
    currency: str
    points: str | None
    reason: str
    created_at: datetime
    receipt: ReceiptOut | None = None


class FolioOut(Strict):
    id: int
    stay_id: int
    room: str
    guest: GuestOut | None
    currency: str
    balance: str = Field(description="below zero: the guest owes")
    owed: str
    credit: str = Field(description="paid and not yet allocated to an invoice")
    invoices: list[InvoiceOut]
    payments: list[PaymentOut]
    refunds: list[RefundOut]


class PointsOfferOut(Strict):
    payment_type_id: int
    payment_type: str
    unit: str
    balance: str
    may_spend: str = Field(description="min(balance, N % of what is owed, converted)")
    pays: str = Field(description="what may_spend is worth in the folio's currency")
    max_share_percent: str
    exchange_rate: str


class PointsOffersOut(Strict):
    card: str
    holder: str | None
    card_status: str
    owed: str
    currency: str
    offers: list[PointsOfferOut]


class PointsPaymentIn(Strict):
    card: str = Field(min_length=1, max_length=64)
    payment_type_id: Id
    points: Amount
    invoice_id: Id | None = None
    payer: str = Field(default="", max_length=200, description="default: the card's holder")
    receipt: ReceiptIn | None = None


# --------------------------------------------------------------------------- conversion


def guest_out(g: stays.GuestView) -> GuestOut:
    return GuestOut(id=g.id, full_name=g.full_name, phone=g.phone, email=g.email)


def room_out(r: stays.RoomView) -> RoomOut:
    return RoomOut(
        id=r.id,
        property_id=r.property_id,
        property_name=r.property_name,
        number=r.number,
        description=r.description,
    )


def stay_out(conn: Connection, tenant_id: int, s: stays.StayView) -> StayOut:
    currency, exponent = folios._currency(conn, tenant_id)
    balances = stays.folio_balances(conn, [f.account_id for f in s.folios])
    return StayOut(
        id=s.id,
        room=room_out(s.room),
        arrival=s.arrival,
        departure=s.departure,
        status=s.status,  # type: ignore[arg-type]
        checked_in_at=s.checked_in_at,
        checked_out_at=s.checked_out_at,
        note=s.note,
        guests=[guest_out(g) for g in s.guests],
        folios=[
            FolioRefOut(
                id=f.id,
                guest_id=f.guest_id,
                balance=format_amount(balances.get(f.account_id, 0), exponent),
            )
            for f in s.folios
        ],
        currency=currency,
    )


def invoice_out(i: folios.InvoiceView, currency: str, exponent: int) -> InvoiceOut:
    def fmt(value: int) -> str:
        return format_amount(value, exponent)

    return InvoiceOut(
        id=i.id,
        folio_id=i.folio_id,
        kind=i.kind,
        description=i.description,
        status=i.status,  # type: ignore[arg-type]
        payer=None if i.payer is None else guest_out(i.payer),
        total=fmt(i.total_minor),
        paid=fmt(i.paid_minor),
        owed=fmt(i.owed_minor),
        currency=currency,
        lines=[
            LineOut(
                position=x.position,
                name=x.name,
                quantity=format_quantity(x.quantity_milli),
                price=fmt(x.price_minor),
                amount=fmt(x.amount_minor),
            )
            for x in i.lines
        ],
        terminal_id=i.terminal_id,
        check_id=i.check_id,
        closed_at=i.closed_at,
        voided_at=i.voided_at,
        created_at=i.created_at,
    )


def _points_text(
    conn: Connection, tenant_id: int, unit: str | None, value: int | None
) -> str | None:
    if unit is None or value is None:
        return None
    from kopilka.ledger.accounts import get_unit

    return format_amount(value, get_unit(conn, tenant_id, unit).exponent)


def receipt_out(r: Any) -> ReceiptOut | None:
    if r is None:
        return None
    return ReceiptOut(
        id=r.id,
        status=r.status,
        register_id=r.register_id,
        operation=r.operation,
        email=r.contact_email,
        phone=r.contact_phone,
        error=r.last_error,
    )


def payment_out(
    conn: Connection, tenant_id: int, p: folios.PaymentView, receipt: Any = None
) -> PaymentOut:
    currency, exponent = folios._currency(conn, tenant_id)
    return PaymentOut(
        id=p.id,
        folio_id=p.folio_id,
        invoice_id=p.invoice_id,
        payment_type_id=p.payment_type_id,
        payment_kind=p.payment_kind,
        payment_name=p.payment_name,
        amount=format_amount(p.amount_minor, exponent),
        refunded=format_amount(p.refunded_minor, exponent),
        currency=currency,
        card_number=p.card_number,
        points=_points_text(conn, tenant_id, p.points_unit, p.points_minor),
        points_unit=p.points_unit,
        provider=p.provider,
        payer=p.payer,
        created_at=p.created_at,
        receipt=receipt_out(receipt),
    )


def refund_out(
    conn: Connection,
    tenant_id: int,
    r: folios.RefundView,
    points_unit: str | None,
    receipt: Any = None,
) -> RefundOut:
    currency, exponent = folios._currency(conn, tenant_id)
    return RefundOut(
        id=r.id,
        folio_id=r.folio_id,
        payment_id=r.payment_id,
        invoice_id=r.invoice_id,
        payment_type_id=r.payment_type_id,
        payment_name=r.payment_name,
        direction=r.direction,
        amount=format_amount(r.amount_minor, exponent),
        currency=currency,
        points=_points_text(conn, tenant_id, points_unit, r.points_minor),
        reason=r.reason,
        created_at=r.created_at,
        receipt=receipt_out(receipt),
    )


def folio_out(conn: Connection, tenant_id: int, f: folios.FolioView) -> FolioOut:
    units = {p.id: p.points_unit for p in f.payments}
    receipts = hotel_receipts.receipts_of(conn, tenant_id, f)
    return FolioOut(
        id=f.id,
        stay_id=f.stay.id,
        room=f.stay.room.number,
        guest=None if f.guest is None else guest_out(f.guest),
        currency=f.currency,
        balance=f.fmt(f.balance_minor),
        owed=f.fmt(f.owed_minor),
        credit=f.fmt(f.credit_minor),
        invoices=[invoice_out(i, f.currency, f.exponent) for i in f.invoices],
        payments=[
            payment_out(conn, tenant_id, p, receipts.get(("hotel_payment", p.id)))
            for p in f.payments
        ],
        refunds=[
            refund_out(
                conn, tenant_id, r, units.get(r.payment_id), receipts.get(("hotel_refund", r.id))
            )
            for r in f.refunds
        ],
    )


def _lines_in(conn: Connection, tenant_id: int, lines: list[LineIn]) -> list[folios.LineIn]:
    currency, exponent = folios._currency(conn, tenant_id)
    return [
        folios.LineIn(
            name=x.name,
            amount_minor=parse_amount(x.amount, exponent, unit_code=currency),
            quantity_milli=quantity_milli(x.quantity),
            price_minor=None
            if x.price is None
            else parse_amount(x.price, exponent, unit_code=currency),
        )
        for x in lines
    ]


# --------------------------------------------------------------------------- set-up


@router.get("/properties", responses=problem_responses(401, 403, 503))
def properties_list(principal: DeskPrincipal, engine: EngineDep) -> list[PropertyOut]:
    with read_only(engine) as conn:
        return [
            PropertyOut(id=p.id, name=p.name)
            for p in stays.list_properties(conn, principal.tenant_id)
        ]


@router.post(
    "/properties",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def property_create(
    body: PropertyIn, principal: ManagerPrincipal, engine: EngineDep
) -> PropertyOut:
    made = _write(
        engine,
        lambda c: stays.create_property(
            c, tenant_id=principal.tenant_id, name=body.name, actor=principal.actor
        ),
    )
    return PropertyOut(id=made.id, name=made.name)


@router.get("/rooms", responses=problem_responses(401, 403, 422, 503))
def rooms_list(
    principal: DeskPrincipal,
    engine: EngineDep,
    property_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[RoomOut]:
    with read_only(engine) as conn:
        return [
            room_out(r)
            for r in stays.list_rooms(conn, principal.tenant_id, property_id=property_id)
        ]


@router.post(
    "/rooms",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def room_create(body: RoomIn, principal: ManagerPrincipal, engine: EngineDep) -> RoomOut:
    return room_out(
        _write(
            engine,
            lambda c: stays.create_room(
                c,
                tenant_id=principal.tenant_id,
                property_id=body.property_id,
                number=body.number,
                description=body.description,
                actor=principal.actor,
            ),
        )
    )


@router.post(
    "/guests", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 422, 503)
)
def guest_create(body: GuestIn, principal: DeskPrincipal, engine: EngineDep) -> GuestOut:
    return guest_out(
        _write(
            engine,
            lambda c: stays.create_guest(
                c,
                tenant_id=principal.tenant_id,
                full_name=body.full_name,
                phone=body.phone,
                email=body.email,
                actor=principal.actor,
            ),
        )
    )


@router.get("/guests/{guest_id}", responses=problem_responses(401, 403, 404, 422, 503))
def guest_get(guest_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> GuestOut:
    with read_only(engine) as conn:
        return guest_out(stays.get_guest(conn, principal.tenant_id, guest_id))


# --------------------------------------------------------------------------- stays


@router.post(
    "/stays",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def stay_create(body: StayIn, principal: DeskPrincipal, engine: EngineDep) -> StayOut:
    def work(conn: Connection) -> StayOut:
        stay = stays.create_stay(
            conn,
            tenant_id=principal.tenant_id,
            room_id=body.room_id,
            arrival=body.arrival,
            departure=body.departure,
            guest_ids=list(body.guest_ids),
            note=body.note,
            check_in=body.check_in,
            actor=principal.actor,
        )
        return stay_out(conn, principal.tenant_id, stay)

    return _write(engine, work)


@router.get("/stays", responses=problem_responses(401, 403, 422, 503))
def stays_find(
    principal: DeskPrincipal,
    engine: EngineDep,
    q: Annotated[str, Query(max_length=200, description="a room number or part of a name")] = "",
    status_: Annotated[
        list[Literal["booked", "checked_in", "checked_out", "cancelled"]] | None,
        Query(alias="status"),
    ] = None,
) -> StayList:
    """Stays by room number or guest's name, newest arrival first (booked and checked
    in unless ``status`` says)."""
    with read_only(engine) as conn:
        found = stays.find_stays(
            conn,
            principal.tenant_id,
            text=q,
            statuses=tuple(status_) if status_ else stays.OPEN_STATUSES,
        )
        return StayList(items=[stay_out(conn, principal.tenant_id, s) for s in found])


@router.get("/stays/{stay_id}", responses=problem_responses(401, 403, 404, 422, 503))
def stay_get(stay_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> StayOut:
    with read_only(engine) as conn:
        return stay_out(
            conn, principal.tenant_id, stays.get_stay(conn, principal.tenant_id, stay_id)
        )


def _stay_action(
    engine: Engine, principal: Principal, work: Callable[[Connection], stays.StayView]
) -> StayOut:
    def run(conn: Connection) -> StayOut:
        return stay_out(conn, principal.tenant_id, work(conn))

    return _write(engine, run)


@router.post("/stays/{stay_id}/check-in", responses=problem_responses(401, 403, 404, 422, 503))
def stay_check_in(stay_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> StayOut:
    return _stay_action(
        engine,
        principal,
        lambda c: stays.check_in_stay(
            c, tenant_id=principal.tenant_id, stay_id=stay_id, actor=principal.actor
        ),
    )


@router.post("/stays/{stay_id}/check-out", responses=problem_responses(401, 403, 404, 422, 503))
def stay_check_out(stay_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> StayOut:
    return _stay_action(
        engine,
        principal,
        lambda c: stays.check_out_stay(
            c, tenant_id=principal.tenant_id, stay_id=stay_id, actor=principal.actor
        ),
    )


@router.post("/stays/{stay_id}/cancel", responses=problem_responses(401, 403, 404, 422, 503))
def stay_cancel(stay_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> StayOut:
    return _stay_action(
        engine,
        principal,
        lambda c: stays.cancel_stay(
            c, tenant_id=principal.tenant_id, stay_id=stay_id, actor=principal.actor
        ),
    )


@router.post("/stays/{stay_id}/guests", responses=problem_responses(401, 403, 404, 422, 503))
def stay_add_guest(
    stay_id: ObjectId, body: GuestRef, principal: DeskPrincipal, engine: EngineDep
) -> StayOut:
    return _stay_action(
        engine,
        principal,
        lambda c: stays.add_guest(
            c,
            tenant_id=principal.tenant_id,
            stay_id=stay_id,
            guest_id=body.guest_id,
            actor=principal.actor,
        ),
    )


@router.post("/stays/{stay_id}/folios", responses=problem_responses(401, 403, 404, 422, 503))
def stay_guest_folio(
    stay_id: ObjectId, body: GuestRef, principal: DeskPrincipal, engine: EngineDep
) -> FolioOut:
    """The guest's own folio in the stay (opened on first ask)."""

    def work(conn: Connection) -> FolioOut:
        ref = stays.open_guest_folio(
            conn,
            tenant_id=principal.tenant_id,
            stay_id=stay_id,
            guest_id=body.guest_id,
            actor=principal.actor,
        )
        return folio_out(
            conn, principal.tenant_id, folios.get_folio(conn, principal.tenant_id, ref.id)
        )

    return _write(engine, work)


# --------------------------------------------------------------------------- folios


@router.get("/folios/{folio_id}", responses=problem_responses(401, 403, 404, 422, 503))
def folio_get(folio_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> FolioOut:
    """The folio: its balance, invoices with their lines, payments, refunds, receipts."""
    with read_only(engine) as conn:
        return folio_out(
            conn, principal.tenant_id, folios.get_folio(conn, principal.tenant_id, folio_id)
        )


@router.post(
    "/folios/{folio_id}/charges",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def folio_charge(
    folio_id: ObjectId,
    body: ChargeIn,
    principal: DeskPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> InvoiceOut:
    """Charge accommodation or services: an unpaid invoice with its lines."""

    def work(conn: Connection) -> tuple[InvoiceOut, bool]:
        invoice = folios.charge(
            conn,
            tenant_id=principal.tenant_id,
            folio_id=folio_id,
            kind=body.kind,
            description=body.description,
            lines=_lines_in(conn, principal.tenant_id, body.lines),
            operation_id=key,
            actor=principal.actor,
            payer_guest_id=body.payer_guest_id,
        )
        currency, exponent = folios._currency(conn, principal.tenant_id)
        return invoice_out(invoice, currency, exponent), invoice.replayed

    out, replayed = _write(engine, work)
    _replied(response, replayed)
    return out


@router.get("/invoices/{invoice_id}", responses=problem_responses(401, 403, 404, 422, 503))
def invoice_get(invoice_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> InvoiceOut:
    """An invoice with its lines (a POS order: its check, time and what was ordered)."""
    with read_only(engine) as conn:
        currency, exponent = folios._currency(conn, principal.tenant_id)
        return invoice_out(
            folios.get_invoice(conn, principal.tenant_id, invoice_id), currency, exponent
        )


@router.post("/invoices/{invoice_id}/void", responses=problem_responses(401, 403, 404, 422, 503))
def invoice_void(invoice_id: ObjectId, principal: DeskPrincipal, engine: EngineDep) -> InvoiceOut:
    """Void an unpaid charge made at the desk (a POS order is cancelled at its terminal)."""

    def work(conn: Connection) -> InvoiceOut:
        invoice = folios.void_invoice(
            conn, tenant_id=principal.tenant_id, invoice_id=invoice_id, actor=principal.actor
        )
        currency, exponent = folios._currency(conn, principal.tenant_id)
        return invoice_out(invoice, currency, exponent)

    return _write(engine, work)


def _send_receipt(engine: Engine, tenant_id: int, receipt: Any) -> Any:
    """Hand a fresh receipt to its register after the payment is committed; whatever
    happens there, the payment stands (the receipt is retried later)."""
    if receipt is None:
        return None
    return hotel_receipts.send_now(engine, tenant_id, receipt)


@router.post(
    "/folios/{folio_id}/payments",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def folio_pay(
    folio_id: ObjectId,
    body: PaymentIn,
    principal: DeskPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> PaymentOut:
    """Take a payment by a payment type: for an invoice (at most what it owes) or for
    the folio (oldest invoices first; the rest is the guest's credit)."""
    t = principal.tenant_id

    def work(conn: Connection) -> tuple[folios.PaymentView, Any]:
        payment = folios.pay(
            conn,
            tenant_id=t,
            folio_id=folio_id,
            payment_type_id=body.payment_type_id,
            amount_minor=_money(conn, t, body.amount),
            operation_id=key,
            actor=principal.actor,
            invoice_id=body.invoice_id,
            payer=body.payer,
            certificate=body.certificate,
        )
        receipt = hotel_receipts.for_payment(conn, t, payment, body.receipt, principal.actor)
        return payment, receipt

    payment, receipt = _write(engine, work)
    if not payment.replayed:
        receipt = _send_receipt(engine, t, receipt)
    _replied(response, payment.replayed)
    with read_only(engine) as conn:
        return payment_out(conn, t, payment, receipt)


@router.post(
    "/folios/{folio_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def folio_refund(
    folio_id: ObjectId,
    body: RefundIn,
    principal: DeskPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> RefundOut:
    """Refund (part of) a payment: by a payment type, in a direction; never more than the
    payment less its refunds. A points payment goes back to the card in points."""
    t = principal.tenant_id

    def work(conn: Connection) -> tuple[folios.RefundView, Any, str | None]:
        payment = folios.get_payment(conn, t, body.payment_id)
        give_back = None
        if payment.points_unit is not None and payment.provider_ref is not None:
            provider = points.tenant_provider(conn, t, principal.actor)
            give_back = points.points_back(provider, payment.provider_ref, t)
        done = folios.refund(
            conn,
            tenant_id=t,
            folio_id=folio_id,
            payment_id=body.payment_id,
            amount_minor=_money(conn, t, body.amount),
            payment_type_id=body.payment_type_id,
            direction=body.direction,
            operation_id=key,
            actor=principal.actor,
            invoice_id=body.invoice_id,
            reason=body.reason,
            points_back=give_back,
        )
        receipt = hotel_receipts.for_refund(conn, t, done, body.receipt, principal.actor)
        return done, receipt, payment.points_unit

    done, receipt, unit = _write(engine, work)
    if not done.replayed:
        receipt = _send_receipt(engine, t, receipt)
    _replied(response, done.replayed)
    with read_only(engine) as conn:
        return refund_out(conn, t, done, unit, receipt)


# --------------------------------------------------------------------------- points (H-4)


@router.get("/folios/{folio_id}/points", responses=problem_responses(401, 403, 404, 422, 503))
def folio_points_offers(
    folio_id: ObjectId,
    principal: DeskPrincipal,
    engine: EngineDep,
    card: Annotated[str, Query(min_length=1, max_length=64)],
) -> PointsOffersOut:
    """Ask the card's balances: per points payment type, what may be spent on this folio
    now (seed 000's "Запросить"). 422 ``folio_not_in_debt`` while the guest owes nothing."""
    t = principal.tenant_id
    with read_only(engine) as conn:
        provider = points.tenant_provider(conn, t, principal.actor)
        found = points.points_offers(
            conn, tenant_id=t, folio_id=folio_id, card_number=card, provider=provider
        )
        from kopilka.payments.types import format_percent, format_rate

        return PointsOffersOut(
            card=found.card.number,
            holder=found.card.holder,
            card_status=found.card.status,
            owed=format_amount(found.owed_minor, found.exponent),
            currency=found.currency,
            offers=[
                PointsOfferOut(
                    payment_type_id=o.payment_type.id,
                    payment_type=o.payment_type.name,
                    unit=o.unit_code,
                    balance=o.fmt(o.balance_minor),
                    may_spend=o.fmt(o.cap_minor),
                    pays=format_amount(o.cap_money_minor, found.exponent),
                    max_share_percent=format_percent(o.payment_type.max_share_bp or 0),
                    exchange_rate=format_rate(o.payment_type.rate_micro or 0),
                )
                for o in found.offers
            ],
        )


@router.post(
    "/folios/{folio_id}/points/payments",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def folio_pay_with_points(
    folio_id: ObjectId,
    body: PointsPaymentIn,
    principal: DeskPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> PaymentOut:
    """Pay with the card's points, no more than may be spent (422 ``points_above_cap``);
    the points are written off the card and their worth is paid on the folio."""
    t = principal.tenant_id

    def work(conn: Connection) -> tuple[folios.PaymentView, Any]:
        from kopilka.payments.types import get_payment_type

        provider = points.tenant_provider(conn, t, principal.actor)
        payment_type = get_payment_type(conn, t, body.payment_type_id)
        if payment_type.unit is None:
            raise InvalidInput(E.PAYMENT_TYPE_NOT_USABLE, "not a points payment type")
        payment = points.pay_with_points(
            conn,
            tenant_id=t,
            folio_id=folio_id,
            payment_type_id=body.payment_type_id,
            card_number=body.card,
            points_minor=parse_amount(
                body.points,
                payment_type.unit.exponent,
                unit_code=payment_type.unit.code,
                positive=True,
            ),
            operation_id=key,
            provider=provider,
            actor=principal.actor,
            invoice_id=body.invoice_id,
            payer=body.payer,
        )
        receipt = hotel_receipts.for_payment(conn, t, payment, body.receipt, principal.actor)
        return payment, receipt

    payment, receipt = points.with_points_undo(engine, t, principal.actor, key, work)
    if not payment.replayed:
        receipt = _send_receipt(engine, t, receipt)
    _replied(response, payment.replayed)
    with read_only(engine) as conn:
        return payment_out(conn, t, payment, receipt)
