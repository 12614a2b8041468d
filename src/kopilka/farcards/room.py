"""Room charge over FarCards (SPEC P-7, P-8, P-10; seed 001): the second interface.

r_keeper reaches a hotel through a FarCards interface of its own, pointed at
``.../farcards/<tenant>/<secret>/room/``; its "card" is what the cashier types after
pressing the currency "Закрытие на номер". This module translates those calls onto
``kopilka.hotel.room_charge`` (``room_guests``, ``post_room_charge``,
``cancel_room_charge``) and nothing below it; the folio, its invoice and the ledger are
the hotel's business.

* **GetCardInfoEx**: ``Card`` is a room number (digits: FarCards cards are integers, so
  a room with letters, ``12A``, cannot be typed) or a guest's code (``guest_code``).
  A room answers its stay's main guest (``PersonID`` the guest, ``Account`` the folio
  the charge goes to) and lists everyone staying with their codes in ``ScrMessage``, so
  the cashier can type another guest's code instead; a code answers that guest.
  ``Summa`` is ``MAY_CHARGE_KOPECKS``: a room charge has no limit of its own.
* **TransactionsEx**: one ``Kind=0`` payment from the "card's account", negative in a
  sale. A sale (chmode 1) posts the order of the check buffer (its lines, the time it
  was generated, the code of the payment that carries the charged sum) to the chosen
  guest's folio; a sale rollback (chmode 2, or a positive ``Summa``) cancels it, which
  the hotel refuses once the front desk took a payment. Returns are refused: a paid
  room charge is refunded at the front desk (P-7). Other kinds are refused.
* The check is identified as the loyalty interface does it (``service.plan``), so the
  hotel's idempotency by terminal and check id holds; each call applied is kept in
  ``farcards_calls`` under a key of its own (``room`` + the call's identity) and a
  repeat is answered with the very reply of the first time.

Room charge is the hotel's, not loyalty's: nothing here asks whether the tenant's
loyalty module is switched on.
"""

from __future__ import annotations

import logging
import re
import zoneinfo
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from xml.etree import ElementTree as ET

from sqlalchemy import Connection, Engine, select

from kopilka.core.actor import Actor
from kopilka.core.errors import InvalidInput, NotFound, Refused
from kopilka.core.money import currency_exponent
from kopilka.farcards import messages as m
from kopilka.farcards import service
from kopilka.farcards.error_codes import E
from kopilka.farcards.protocol import (
    MAX_LINES,
    CardQuery,
    ResultLine,
    TransactionsCall,
    _integer,
    parse_document,
    parse_transactions,
    render_card_info,
    render_transactions,
)
from kopilka.farcards.schema import farcards_calls
from kopilka.farcards.service import cut_utf8
from kopilka.farcards.terminals import Caller
from kopilka.hotel import room_charge
from kopilka.hotel.error_codes import HotelErrorCode
from kopilka.hotel.folios import InvoiceView, LineIn
from kopilka.hotel.schema import hotel_rooms, hotel_stay_guests, hotel_stays
from kopilka.hotel.stays import GuestInRoom
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import actor_for_terminal, get_tenant

log = logging.getLogger("kopilka.farcards")

# A guest's code: "9" and the stay-guest row's id in 8 digits. Nine digits starting with 9
# is no room number a hotel uses, so the two never meet (such a room cannot be typed).
GUEST_CODE_PREFIX = "9"
GUEST_CODE_DIGITS = 9
MAX_STAY_GUEST_ID = 10 ** (GUEST_CODE_DIGITS - len(GUEST_CODE_PREFIX)) - 1
# What a lookup says the "card" may pay, kopecks: the folio has no limit, and r_keeper
# refuses a payment above Summa, so a figure no restaurant bill reaches (and that fits
# the 32-bit integers FarCards uses).
MAY_CHARGE_KOPECKS = 999_999_999
HOLDER_BYTES = 40  # FarCards' Holder is at most 40 bytes
SCREEN_BYTES = 1000
STAND_IN_CARD = "0000"  # see _plan
_QUANTITY = re.compile(r"^[0-9]{1,9}([.,][0-9]{1,3})?$")


# --------------------------------------------------------------------------- guest codes


def guest_code(stay_guest_id: int) -> str:
    """The code a cashier types for one guest of a stay: ``900000042`` for row 42."""
    assert 0 < stay_guest_id <= MAX_STAY_GUEST_ID, stay_guest_id
    code = f"{GUEST_CODE_PREFIX}{stay_guest_id:0{GUEST_CODE_DIGITS - 1}d}"
    assert len(code) == GUEST_CODE_DIGITS
    return code


def parse_guest_code(card: str) -> int | None:
    """The stay-guest row id a typed ``card`` names, or None when it is a room number."""
    if len(card) != GUEST_CODE_DIGITS or not card.startswith(GUEST_CODE_PREFIX):
        return None
    if not card.isascii() or not card.isdigit():
        return None
    stay_guest_id = int(card[len(GUEST_CODE_PREFIX) :])
    return stay_guest_id or None


# --------------------------------------------------------------------------- who is charged


def _codes(
    conn: Connection, tenant_id: int, staying: list[GuestInRoom]
) -> dict[tuple[int, int], str]:
    """Each staying guest's code, by (stay, guest) (one query)."""
    stay_ids = sorted({g.stay_id for g in staying})
    rows = conn.execute(
        select(hotel_stay_guests.c.id, hotel_stay_guests.c.stay_id, hotel_stay_guests.c.guest_id)
        .where(
            hotel_stay_guests.c.tenant_id == tenant_id,
            hotel_stay_guests.c.stay_id.in_(stay_ids),
        )
        .order_by(hotel_stay_guests.c.id)
    ).all()
    return {(r.stay_id, r.guest_id): guest_code(r.id) for r in rows}


def _by_code(conn: Connection, tenant_id: int, code: str, stay_guest_id: int) -> GuestInRoom:
    """The guest a code names, while their stay is checked in."""
    row = conn.execute(
        select(hotel_stay_guests.c.stay_id, hotel_stay_guests.c.guest_id, hotel_rooms.c.number)
        .join(hotel_stays, hotel_stays.c.id == hotel_stay_guests.c.stay_id)
        .join(hotel_rooms, hotel_rooms.c.id == hotel_stays.c.room_id)
        .where(hotel_stay_guests.c.tenant_id == tenant_id, hotel_stay_guests.c.id == stay_guest_id)
    ).first()
    staying: list[GuestInRoom] = []
    if row is not None:
        try:
            staying = room_charge.room_guests(conn, tenant_id=tenant_id, room=row.number)
        except Refused as error:
            if error.code != HotelErrorCode.NO_GUEST_IN_ROOM:
                raise
    found = next(
        (g for g in staying if row and (g.stay_id, g.guest.id) == (row.stay_id, row.guest_id)),
        None,
    )
    if found is None:
        raise NotFound(
            E.ROOM_GUEST_CODE_UNKNOWN, f"no guest with code {code} stays now", typed=code
        )
    return found


def _staying(conn: Connection, tenant_id: int, card: str) -> list[GuestInRoom]:
    """Who ``card`` names: the guest of a code, or everyone in a room (main guest first)."""
    stay_guest_id = parse_guest_code(card)
    if stay_guest_id is not None:
        return [_by_code(conn, tenant_id, card, stay_guest_id)]
    return room_charge.room_guests(conn, tenant_id=tenant_id, room=card)


def _chosen(conn: Connection, tenant_id: int, card: str, person_id: int | None) -> GuestInRoom:
    """The guest a transaction charges: the one answered (``PersonID``), or without it the
    room's main guest (a code names its guest)."""
    staying = _staying(conn, tenant_id, card)
    if person_id is None:
        return staying[0]
    found = next((g for g in staying if g.guest.id == person_id), None)
    if found is None:
        raise NotFound(
            HotelErrorCode.GUEST_NOT_FOUND,
            f"guest {person_id} is not staying in room {staying[0].room.number}",
            room=staying[0].room.number,
        )
    return found


# --------------------------------------------------------------------------- lookup


def card_info(conn: Connection, caller: Caller, query: CardQuery) -> bytes:
    """GetCardInfoEx on the room interface: the guest a charge would go to."""
    service._check_place(caller, query.restaurant, query.station)
    tenant_id, lang = caller.link.tenant_id, m.language(caller.locale)
    staying = _staying(conn, tenant_id, query.card)
    main = staying[0]
    codes = _codes(conn, tenant_id, staying)
    assert all((g.stay_id, g.guest.id) in codes for g in staying), "each has a stay-guest row"
    listed = [
        m.room_guest_text(lang, g.guest.full_name, codes[(g.stay_id, g.guest.id)]) for g in staying
    ]
    info = m.room_info_text(
        lang, main.room.property_name, main.room.number, main.departure.strftime("%d.%m.%Y")
    )
    attributes = {
        "Result": "0",
        "Deleted": "0",
        "Seize": "0",
        "StopDate": "0",
        "Holy": "0",
        "Manager": "0",
        "Locked": "0",
        "WhyLock": "",
        "Holder": cut_utf8(main.guest.full_name, HOLDER_BYTES),
        "PersonID": str(main.guest.id),
        "Account": str(main.folio_id),
        "Unpay": "0",
        "Bonus": "0",
        "Discount": "0",
        "Summa": str(MAY_CHARGE_KOPECKS),
        "DopInfo": cut_utf8(info, SCREEN_BYTES),
        "ScrMessage": cut_utf8("\n".join([info, *listed]), SCREEN_BYTES),
    }
    return render_card_info(attributes)


# --------------------------------------------------------------------------- the check buffer


@dataclass(frozen=True, slots=True)
class OrderLine:
    """A line of r_keeper's check, as the folio will show it (money in kopecks)."""

    name: str | None
    code: str
    quantity_milli: int
    price_kopecks: int | None
    sum_kopecks: int


@dataclass(frozen=True, slots=True)
class RoomCall:
    """What the room interface reads of a TransactionsEx beyond the loyalty interface."""

    call: TransactionsCall
    person_id: int | None
    lines: tuple[OrderLine, ...]
    payments: tuple[tuple[str, int], ...]  # (currency code, kopecks) of the PAYMENT elements
    generated: str | None  # the buffer's generateddatetime, as sent


def _quantity(value: str | None) -> int:
    """r_keeper's ``quantity`` (``1``, ``0.5``, ``2,000``) in thousandths; absent: one."""
    if value is None or not value.strip():
        return 1000
    text = value.strip()
    try:
        milli = Decimal(text.replace(",", ".")) * 1000 if _QUANTITY.match(text) else None
    except InvalidOperation:  # pragma: no cover - the pattern admits decimals only
        milli = None
    if milli is None or milli <= 0:
        raise InvalidInput(
            E.INVALID_NUMBER,
            f"quantity={value!r} is not a quantity",
            attribute="LINE quantity",
            value=value,
        )
    return int(milli)


def _line(element: ET.Element, position: int) -> OrderLine:
    name = " ".join((element.get("name") or "").split())[:200] or None
    code = (element.get("code") or element.get("id") or str(position)).strip()[:40]
    price = element.get("price")
    return OrderLine(
        name=name,
        code=code,
        quantity_milli=_quantity(element.get("quantity")),
        price_kopecks=None if price in (None, "") else _integer(price, "LINE price"),
        sum_kopecks=_integer(element.get("sum") or "", "LINE sum"),
    )


def read_call(body: bytes) -> RoomCall:
    """The call as the loyalty interface reads it (strictly), plus ``PersonID``, the check
    buffer's lines with their names, quantities and prices, its payments and the time it
    was generated (read leniently, as the rest of r_keeper's buffer)."""
    call = parse_transactions(body)
    root = parse_document(body)
    people = set()
    for item in root.iterfind("Transactions/TransactionsEx"):
        person = (item.get("PersonID") or "").strip()
        people.add(_integer(person, "PersonID") if person else None)
    if len(people) > 1:
        raise InvalidInput(E.MIXED_CALL, "transactions of different guests")
    check = root.find("INPBUF/CHECK")
    data = check.find("CHECKDATA") if check is not None else None
    lines: list[OrderLine] = []
    payments: list[tuple[str, int]] = []
    if data is not None:
        found = data.findall("LINE")
        assert len(found) <= MAX_LINES, "parse_transactions refuses more"
        lines = [_line(line, n) for n, line in enumerate(found, start=1)]
        for payment in data.findall("PAYMENT"):
            code, paid = (payment.get("code") or "").strip(), payment.get("sum")
            if code and paid:
                payments.append((code[:40], _integer(paid, "PAYMENT sum")))
    generated = check.get("generateddatetime") if check is not None else None
    return RoomCall(call, people.pop(), tuple(lines), tuple(payments), generated or None)


def _closed_at(generated: str | None, timezone: str) -> datetime | None:
    """When the order closed: the buffer's time, local to the restaurant unless it says
    otherwise. A time Kopilka cannot read is left out (the hotel then keeps the moment of
    posting, seconds later), since it must not cost the guest their charge."""
    if not generated:
        return None
    text = generated.strip()
    moment = None
    for parse in (datetime.fromisoformat, lambda v: datetime.strptime(v, "%d.%m.%Y %H:%M:%S")):
        try:
            moment = parse(text)
            break
        except ValueError:
            continue
    if moment is None:
        log.warning("farcards room: unreadable generateddatetime", extra={"value": text[:40]})
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zoneinfo.ZoneInfo(timezone))


# --------------------------------------------------------------------------- transactions


@dataclass(frozen=True, slots=True)
class RoomPlan:
    """One room TransactionsEx, checked: what it charges (or cancels) and to whom."""

    chmode: int
    card: str  # what the cashier typed: a room number or a guest's code
    person_id: int | None
    check_id: str
    call_key: str
    request_hash: str
    kopecks: int  # the order's total, sign removed
    place: str


def _plan(caller: Caller, room_call: RoomCall) -> RoomPlan:
    """The loyalty interface's planning (same card and check in every transaction, place,
    mode from ``chmode`` or the signs, signs per mode, check identity), so a check is the
    same check on both interfaces. ``service.plan`` reads the card as a loyalty card
    number (4 digits or more), which a room number such as 90 is not: it plans the call
    with a stand-in card, the typed one having been checked to be the same throughout."""
    call = room_call.call
    for t in call.transactions:
        if t.kind != 0:
            raise Refused(
                E.ROOM_KIND_NOT_ALLOWED, f"Kind={t.kind} is not a room charge", kind=t.kind
            )
    card = call.transactions[0].card
    if any(t.card != card for t in call.transactions):
        raise InvalidInput(E.MIXED_CALL, "transactions of different cards or checks")
    stand_in = tuple(replace(t, card=STAND_IN_CARD) for t in call.transactions)
    p = service.plan(caller, replace(call, transactions=stand_in))
    assert set(p.amounts) == {0}
    content = [
        card,
        room_call.person_id,
        sorted(t.summa for t in call.transactions),
        [
            (x.name, x.code, x.quantity_milli, x.price_kopecks, x.sum_kopecks)
            for x in room_call.lines
        ],
        sorted(room_call.payments),
        room_call.generated,
    ]
    return RoomPlan(
        chmode=p.chmode,
        card=card,
        person_id=room_call.person_id,
        check_id=p.check_id,
        # Its own key: the same check may also pay with points on the loyalty interface.
        call_key=service._digest(["room", p.call_key]),
        request_hash=service._digest(content),
        kopecks=p.amounts[0],
        place=f"{p.restaurant}:{p.station}",
    )


@dataclass(frozen=True, slots=True)
class Order:
    """A sale's order as the hotel takes it, still in kopecks."""

    lines: tuple[OrderLine, ...]
    payment_code: str
    closed_at: datetime | None


def _order(p: RoomPlan, room_call: RoomCall, caller: Caller) -> Order:
    """The order a sale charges: its lines add up to the sum charged, and one payment of
    the check carries that sum (its currency code says which payment type, P-8)."""
    shown = service._shown
    if not room_call.lines:
        raise InvalidInput(E.ROOM_CHECK_MISSING, "a room charge needs the check with its lines")
    lines_total = sum(x.sum_kopecks for x in room_call.lines)
    if lines_total != p.kopecks:
        raise InvalidInput(
            E.ROOM_LINES_MISMATCH,
            f"the lines add up to {lines_total} kopecks, the charge is {p.kopecks}",
            lines=shown(lines_total),
            amount=shown(p.kopecks),
        )
    codes = sorted({code for code, paid in room_call.payments if abs(paid) == p.kopecks})
    if len(codes) != 1:
        raise InvalidInput(
            E.ROOM_PAYMENT_MISSING,
            f"{len(codes)} payments of the check carry {p.kopecks} kopecks; one must",
            amount=shown(p.kopecks),
        )
    return Order(room_call.lines, codes[0], _closed_at(room_call.generated, caller.timezone))


def _lines(order: Order, exponent: int, lang: str) -> list[LineIn]:
    return [
        LineIn(
            name=x.name or m.item_text(lang, x.code),
            amount_minor=service.to_minor(x.sum_kopecks, exponent),
            quantity_milli=x.quantity_milli,
            price_minor=None
            if x.price_kopecks is None
            else service.to_minor(x.price_kopecks, exponent),
        )
        for x in order.lines
    ]


def post_transactions(
    engine: Engine,
    caller: Caller,
    body: bytes,
    *,
    source_ip: str | None,
    now: datetime,
) -> bytes:
    """TransactionsEx on the room interface: the order charged to a guest's folio, or
    cancelled; applied in one database transaction, or nothing is."""
    room_call = read_call(body)
    p = _plan(caller, room_call)
    if p.chmode in service.NOTHING_TO_POST:
        return render_transactions(result=0, error_code=0, err_text="", moment=now, place=p.place)
    if p.chmode in (service.RETURN, service.RETURN_ROLLBACK):
        raise Refused(E.ROOM_RETURN_REFUSED, "a room charge is refunded at the front desk (P-7)")
    if p.chmode == service.EDITING:
        raise Refused(
            E.UNSUPPORTED_CHMODE,
            "editing is not posted",
            chmode=p.chmode,
            what="close the check and post it again",
        )
    order = _order(p, room_call, caller) if p.chmode == service.SALE else None
    actor = actor_for_terminal(caller.terminal, source_ip)
    lang = m.language(caller.locale)

    def work(conn: Connection) -> bytes:
        tenant_id, terminal_id = caller.link.tenant_id, caller.link.terminal_id
        known = service.known_reply(conn, caller, p.call_key, p.request_hash, "content")
        if known is not None:
            return known
        exponent = currency_exponent(get_tenant(conn, tenant_id).currency)
        if order is not None:
            line = _charge(conn, caller, p, order, actor, lang, exponent, now)
        else:
            line = _cancel(conn, caller, p, actor, lang, exponent, now)
        reply = render_transactions(
            result=0, error_code=0, err_text="", moment=now, place=p.place, lines=(line,)
        )
        conn.execute(
            farcards_calls.insert(),
            {
                "tenant_id": tenant_id,
                "terminal_id": terminal_id,
                "call_key": p.call_key,
                "request_hash": p.request_hash,
                "chmode": p.chmode,
                # No order key: a loyalty return must never find a room charge as its sale.
                "order_key": None,
                "card_number": p.card,
                "check_id": p.check_id,
                "refund_id": None,
                "response": reply.decode(),
                "created_at": now,
            },
        )
        return reply

    return run_transaction(engine, work)


def _charge(
    conn: Connection,
    caller: Caller,
    p: RoomPlan,
    order: Order,
    actor: Actor,
    lang: str,
    exponent: int,
    now: datetime,
) -> ResultLine:
    tenant_id = caller.link.tenant_id
    chosen = _chosen(conn, tenant_id, p.card, p.person_id)
    invoice = room_charge.post_room_charge(
        conn,
        tenant_id=tenant_id,
        terminal_id=caller.link.terminal_id,
        room=chosen.room.number,
        guest_id=chosen.guest.id,
        check_id=p.check_id,
        lines=_lines(order, exponent, lang),
        payment_code=order.payment_code,
        actor=actor,
        closed_at=order.closed_at,
        now=now,
    )
    charged = service.to_kopecks(invoice.total_minor, exponent)
    assert charged == p.kopecks, (charged, p.kopecks)
    slip = m.room_charged_text(
        lang, chosen.room.number, chosen.guest.full_name, service._shown(charged)
    )
    return ResultLine(_ext_id(invoice), p.card, 1, None, -charged, slip, "RoomCharge=1")


def _cancel(
    conn: Connection,
    caller: Caller,
    p: RoomPlan,
    actor: Actor,
    lang: str,
    exponent: int,
    now: datetime,
) -> ResultLine:
    invoice = room_charge.cancel_room_charge(
        conn,
        tenant_id=caller.link.tenant_id,
        terminal_id=caller.link.terminal_id,
        check_id=p.check_id,
        actor=actor,
        now=now,
    )
    assert invoice.voided_at is not None
    back = service.to_kopecks(invoice.total_minor, exponent)
    payer = invoice.payer.full_name if invoice.payer else ""
    slip = m.room_cancelled_text(lang, payer, service._shown(back))
    return ResultLine(_ext_id(invoice), p.card, 1, None, back, slip, "RoomCharge=0")


def _ext_id(invoice: InvoiceView) -> str:
    return f"hotel-invoice:{invoice.id}"
