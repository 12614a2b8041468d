"""Room charge from the POS (SPEC P-7, P-8; seed 001), with a terminal key.

1. ``GET /api/v1/pos/rooms/{room}/guests``: who is staying in the room now (the cashier
   picks one); 422 ``no_guest_in_room`` when nobody is.
2. ``POST /api/v1/pos/room-charges``: the closed order (check id, closing time, lines,
   the payment code the cashier pressed) charged to the chosen guest's folio as an
   unpaid invoice (a code of a ``deposit`` type pays it at once from the guest's
   deposit). Once per terminal and check id: the same check again answers as the first
   time (``Idempotent-Replayed: true``), another body for it is 409.
3. ``POST /api/v1/pos/room-charges/{check_id}/cancel``: only the terminal that posted
   the order cancels it, and only while unpaid (422 ``invoice_paid``: the hotel refunds).

Not loyalty's: these answer whether the tenant's loyalty module is on or off.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import Field
from sqlalchemy import Connection

from kopilka.api.deps import MAX_ID, EngineDep, Principal, require_roles
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.hotel import InvoiceOut, LineIn, Strict, _lines_in, _replied, invoice_out
from kopilka.core.db import read_only
from kopilka.hotel import folios, room_charge
from kopilka.ledger.posting import run_transaction

router = APIRouter(prefix=f"{API_PREFIX}/pos", tags=["pos: room charge"])
TerminalPrincipal = Annotated[Principal, Depends(require_roles("terminal"))]
Room = Annotated[str, Path(min_length=1, max_length=20, examples=["90", "12A"])]
CheckId = Annotated[str, Path(min_length=1, max_length=100)]


def _terminal_id(principal: Principal) -> int:
    assert principal.actor.id is not None
    return int(principal.actor.id)


class RoomGuestOut(Strict):
    guest_id: int
    name: str
    stay_id: int
    room: str
    property: str
    departure: date


class RoomGuestsOut(Strict):
    room: str
    guests: list[RoomGuestOut]


class RoomChargeIn(Strict):
    check_id: str = Field(min_length=1, max_length=100)
    room: str = Field(min_length=1, max_length=20)
    guest_id: int = Field(ge=1, le=MAX_ID)
    payment_code: str = Field(min_length=1, max_length=32, examples=["12"])
    closed_at: datetime | None = Field(default=None, description="when the order closed")
    description: str | None = Field(default=None, min_length=1, max_length=200)
    lines: list[LineIn] = Field(min_length=1, max_length=folios.MAX_LINES)


@router.get("/rooms/{room}/guests", responses=problem_responses(401, 403, 422, 503))
def room_guests(room: Room, principal: TerminalPrincipal, engine: EngineDep) -> RoomGuestsOut:
    """The guests staying in ``room`` now, to pick the one the order is charged to."""
    with read_only(engine) as conn:
        found = room_charge.room_guests(conn, tenant_id=principal.tenant_id, room=room)
    return RoomGuestsOut(
        room=found[0].room.number,
        guests=[
            RoomGuestOut(
                guest_id=g.guest.id,
                name=g.guest.full_name,
                stay_id=g.stay_id,
                room=g.room.number,
                property=g.room.property_name,
                departure=g.departure,
            )
            for g in found
        ],
    )


@router.post(
    "/room-charges",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def room_charge_post(
    body: RoomChargeIn, principal: TerminalPrincipal, engine: EngineDep, response: Response
) -> InvoiceOut:
    """Charge the closed order to the guest's folio: an unpaid invoice with its lines."""
    t = principal.tenant_id

    def work(conn: Connection) -> tuple[InvoiceOut, bool]:
        invoice = room_charge.post_room_charge(
            conn,
            tenant_id=t,
            terminal_id=_terminal_id(principal),
            room=body.room,
            guest_id=body.guest_id,
            check_id=body.check_id,
            lines=_lines_in(conn, t, body.lines),
            payment_code=body.payment_code,
            actor=principal.actor,
            closed_at=body.closed_at,
            description=body.description,
        )
        currency, exponent = folios._currency(conn, t)
        return invoice_out(invoice, currency, exponent), invoice.replayed

    out, replayed = run_transaction(engine, work)
    _replied(response, replayed)
    return out


@router.get("/room-charges/{check_id}", responses=problem_responses(401, 403, 404, 422, 503))
def room_charge_get(
    check_id: CheckId, principal: TerminalPrincipal, engine: EngineDep
) -> InvoiceOut:
    """The order this terminal charged to a room, with its status (paid yet?)."""
    with read_only(engine) as conn:
        invoice = room_charge.get_room_charge(
            conn,
            tenant_id=principal.tenant_id,
            terminal_id=_terminal_id(principal),
            check_id=check_id,
        )
        currency, exponent = folios._currency(conn, principal.tenant_id)
        return invoice_out(invoice, currency, exponent)


@router.post(
    "/room-charges/{check_id}/cancel", responses=problem_responses(401, 403, 404, 422, 503)
)
def room_charge_cancel(
    check_id: CheckId, principal: TerminalPrincipal, engine: EngineDep
) -> InvoiceOut:
    """Cancel the order (only this terminal, only while unpaid)."""
    t = principal.tenant_id

    def work(conn: Connection) -> InvoiceOut:
        invoice = room_charge.cancel_room_charge(
            conn,
            tenant_id=t,
            terminal_id=_terminal_id(principal),
            check_id=check_id,
            actor=principal.actor,
        )
        currency, exponent = folios._currency(conn, t)
        return invoice_out(invoice, currency, exponent)

    return run_transaction(engine, work)
