"""Properties, rooms, guests, stays and their folios (SPEC H-1).

A **property** (a hotel) has **rooms**; a room's number is what the staff and the POS
say ("90", "12A", "Люкс-3"): 1 to 20 characters, unique in its property whatever the
letters' case. A **guest** is a person (name; phone and e-mail optional). A **stay** is a
room from the arrival date to the departure date with its guests (the first is the main
guest); it is booked, then checked in, then checked out (or cancelled before check-in).
One stay is checked in per room at a time.

Every stay has its own **folio**, opened with the stay: an account in the tenant's
currency whose balance is the guest's balance (below zero the guest owes: seed 000's
"отрицательное сальдо"). A guest of the stay may also get a folio of their own, so a
company's guest and their partner pay separately.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, or_, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound, Refused
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.hotel.schema import (
    hotel_folios,
    hotel_guests,
    hotel_properties,
    hotel_rooms,
    hotel_stay_guests,
    hotel_stays,
)
from kopilka.ledger.accounts import Policy, create_account
from kopilka.ledger.schema import accounts
from kopilka.loyalty.cards import normalise_email, normalise_phone
from kopilka.tenancy.audit import record_audit

MAX_NAME = 200
MAX_ROOM = 20
MAX_GUESTS = 20
MAX_NIGHTS = 366
_ROOM = re.compile(r"^[\w][\w\- /.]*$")

BOOKED, CHECKED_IN, CHECKED_OUT, CANCELLED = "booked", "checked_in", "checked_out", "cancelled"
OPEN_STATUSES = (BOOKED, CHECKED_IN)


@dataclass(frozen=True, slots=True)
class PropertyView:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class RoomView:
    id: int
    property_id: int
    property_name: str
    number: str
    description: str


@dataclass(frozen=True, slots=True)
class GuestView:
    id: int
    full_name: str
    phone: str | None
    email: str | None


@dataclass(frozen=True, slots=True)
class FolioRef:
    id: int
    guest_id: int | None  # None: the stay's own folio
    account_id: int


@dataclass(frozen=True, slots=True)
class StayView:
    id: int
    room: RoomView
    arrival: date
    departure: date
    status: str
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    note: str
    guests: tuple[GuestView, ...]  # the main guest first
    folios: tuple[FolioRef, ...]  # the stay's own folio first

    @property
    def main_guest(self) -> GuestView | None:
        return self.guests[0] if self.guests else None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def folio_of(self, guest_id: int | None) -> FolioRef:
        """The guest's own folio if they have one, else the stay's."""
        own = next((f for f in self.folios if guest_id and f.guest_id == guest_id), None)
        return own or self.folios[0]


# --------------------------------------------------------------------------- helpers


def _text(value: object, what: str, limit: int = MAX_NAME) -> str:
    cleaned = " ".join(value.split()) if isinstance(value, str) else ""
    if not 1 <= len(cleaned) <= limit:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"{what} of 1 to {limit} characters is required")
    return cleaned


def normalise_room_number(number: object) -> tuple[str, str]:
    """A room number as shown, and as matched (capitals): ``"12a "`` is ``("12a", "12A")``."""
    shown = " ".join(number.split()) if isinstance(number, str) else ""
    if not 1 <= len(shown) <= MAX_ROOM or not _ROOM.fullmatch(shown):
        raise InvalidInput(
            E.INVALID_HOTEL_INPUT,
            f"{number!r} is not a room number (1 to {MAX_ROOM} letters, digits, '-', '/', '.')",
        )
    return shown, shown.upper()


def _name_key(name: str) -> str:
    return name.casefold()


# --------------------------------------------------------------------------- properties, rooms


def create_property(conn: Connection, *, tenant_id: int, name: str, actor: Actor) -> PropertyView:
    name = _text(name, "a property's name")
    taken = conn.execute(
        select(hotel_properties.c.id).where(
            hotel_properties.c.tenant_id == tenant_id, hotel_properties.c.name == name
        )
    ).first()
    if taken:
        raise Conflict(E.PROPERTY_EXISTS, f"property {name!r} exists already")
    property_id = conn.execute(
        hotel_properties.insert().returning(hotel_properties.c.id),
        {"tenant_id": tenant_id, "name": name, "created_at": utcnow()},
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_property.create",
        object_type="hotel_property",
        object_id=property_id,
        details={"name": name},
    )
    return PropertyView(property_id, name)


def list_properties(conn: Connection, tenant_id: int) -> list[PropertyView]:
    rows = conn.execute(
        select(hotel_properties.c.id, hotel_properties.c.name)
        .where(hotel_properties.c.tenant_id == tenant_id)
        .order_by(hotel_properties.c.name)
    )
    return [PropertyView(r.id, r.name) for r in rows]


def get_property(conn: Connection, tenant_id: int, property_id: int) -> PropertyView:
    row = conn.execute(
        select(hotel_properties.c.id, hotel_properties.c.name).where(
            hotel_properties.c.tenant_id == tenant_id, hotel_properties.c.id == property_id
        )
    ).first()
    if row is None:
        raise NotFound(E.PROPERTY_NOT_FOUND, f"property {property_id} does not exist")
    return PropertyView(row.id, row.name)


def _rooms() -> Any:
    return select(
        hotel_rooms.c.id,
        hotel_rooms.c.property_id,
        hotel_properties.c.name.label("property_name"),
        hotel_rooms.c.number,
        hotel_rooms.c.description,
    ).join(hotel_properties, hotel_properties.c.id == hotel_rooms.c.property_id)


def _room(row: Any) -> RoomView:
    return RoomView(row.id, row.property_id, row.property_name, row.number, row.description)


def create_room(
    conn: Connection,
    *,
    tenant_id: int,
    property_id: int,
    number: str,
    description: str = "",
    actor: Actor,
) -> RoomView:
    get_property(conn, tenant_id, property_id)
    shown, key = normalise_room_number(number)
    description = " ".join(description.split()) if isinstance(description, str) else ""
    if len(description) > MAX_NAME:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "a room's description is at most 200 characters")
    taken = conn.execute(
        select(hotel_rooms.c.id).where(
            hotel_rooms.c.tenant_id == tenant_id,
            hotel_rooms.c.property_id == property_id,
            hotel_rooms.c.number_key == key,
        )
    ).first()
    if taken:
        raise Conflict(E.ROOM_EXISTS, f"room {shown} exists already in this property")
    room_id = conn.execute(
        hotel_rooms.insert().returning(hotel_rooms.c.id),
        {
            "tenant_id": tenant_id,
            "property_id": property_id,
            "number": shown,
            "number_key": key,
            "description": description,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_room.create",
        object_type="hotel_room",
        object_id=room_id,
        details={"property_id": property_id, "number": shown},
    )
    return get_room(conn, tenant_id, room_id)


def get_room(conn: Connection, tenant_id: int, room_id: int) -> RoomView:
    row = conn.execute(
        _rooms().where(hotel_rooms.c.tenant_id == tenant_id, hotel_rooms.c.id == room_id)
    ).first()
    if row is None:
        raise NotFound(E.ROOM_NOT_FOUND, f"room {room_id} does not exist")
    return _room(row)


def list_rooms(
    conn: Connection, tenant_id: int, *, property_id: int | None = None
) -> list[RoomView]:
    query = _rooms().where(hotel_rooms.c.tenant_id == tenant_id)
    if property_id is not None:
        query = query.where(hotel_rooms.c.property_id == property_id)
    rows = conn.execute(query.order_by(hotel_properties.c.name, hotel_rooms.c.number_key))
    return [_room(r) for r in rows]


# --------------------------------------------------------------------------- guests


def _guest(row: Any) -> GuestView:
    return GuestView(row.id, row.full_name, row.phone, row.email)


def create_guest(
    conn: Connection,
    *,
    tenant_id: int,
    full_name: str,
    phone: str | None = None,
    email: str | None = None,
    actor: Actor,
) -> GuestView:
    full_name = _text(full_name, "a guest's name")
    clean_phone = normalise_phone(phone) if phone and phone.strip() else None
    clean_email = normalise_email(email) if email and email.strip() else None
    guest_id = conn.execute(
        hotel_guests.insert().returning(hotel_guests.c.id),
        {
            "tenant_id": tenant_id,
            "full_name": full_name,
            "name_key": _name_key(full_name),
            "phone": clean_phone,
            "email": clean_email,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_guest.create",
        object_type="hotel_guest",
        object_id=guest_id,
    )
    return GuestView(guest_id, full_name, clean_phone, clean_email)


def get_guest(conn: Connection, tenant_id: int, guest_id: int) -> GuestView:
    row = conn.execute(
        select(hotel_guests).where(
            hotel_guests.c.tenant_id == tenant_id, hotel_guests.c.id == guest_id
        )
    ).first()
    if row is None:
        raise NotFound(E.GUEST_NOT_FOUND, f"guest {guest_id} does not exist")
    return _guest(row)


# --------------------------------------------------------------------------- stays


def _check_dates(arrival: object, departure: object) -> tuple[date, date]:
    if not isinstance(arrival, date) or not isinstance(departure, date):
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "arrival and departure are dates")
    if isinstance(arrival, datetime) or isinstance(departure, datetime):
        arrival, departure = (
            arrival.date() if isinstance(arrival, datetime) else arrival,
            departure.date() if isinstance(departure, datetime) else departure,
        )
    if departure <= arrival:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "the departure is after the arrival")
    if (departure - arrival).days > MAX_NIGHTS:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"a stay is at most {MAX_NIGHTS} nights")
    return arrival, departure


def _currency(conn: Connection, tenant_id: int) -> str:
    from kopilka.tenancy.actions import get_tenant  # tenancy sits above the ledger

    return get_tenant(conn, tenant_id).currency


def _open_folio(
    conn: Connection, tenant_id: int, stay_id: int, guest_id: int | None, actor: Actor
) -> int:
    label = f"stay {stay_id}" + ("" if guest_id is None else f", guest {guest_id}")
    account = create_account(
        conn,
        tenant_id=tenant_id,
        unit_code=_currency(conn, tenant_id),
        kind="hotel_folio",
        policy=Policy.UNLIMITED,
        name=f"Folio: {label}",
        owner_type="hotel_stay",
        owner_id=str(stay_id),
        actor=actor,
    )
    folio_id: int = conn.execute(
        hotel_folios.insert().returning(hotel_folios.c.id),
        {
            "tenant_id": tenant_id,
            "stay_id": stay_id,
            "guest_id": guest_id,
            "account_id": account.id,
            "created_at": utcnow(),
        },
    ).scalar_one()
    return folio_id


def create_stay(
    conn: Connection,
    *,
    tenant_id: int,
    room_id: int,
    arrival: date,
    departure: date,
    guest_ids: list[int],
    note: str = "",
    check_in: bool = False,
    actor: Actor,
) -> StayView:
    """A booked stay (checked in at once with ``check_in``) with its own folio."""
    room = get_room(conn, tenant_id, room_id)
    arrival, departure = _check_dates(arrival, departure)
    unique_guests = list(dict.fromkeys(guest_ids))
    if not 1 <= len(unique_guests) <= MAX_GUESTS:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"a stay has 1 to {MAX_GUESTS} guests")
    for guest_id in unique_guests:
        get_guest(conn, tenant_id, guest_id)
    note = " ".join(note.split()) if isinstance(note, str) else ""
    if len(note) > 500:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "a note is at most 500 characters")
    now = utcnow()
    stay_id: int = conn.execute(
        hotel_stays.insert().returning(hotel_stays.c.id),
        {
            "tenant_id": tenant_id,
            "property_id": room.property_id,
            "room_id": room.id,
            "arrival": arrival,
            "departure": departure,
            "status": BOOKED,
            "note": note,
            "created_at": now,
        },
    ).scalar_one()
    conn.execute(
        hotel_stay_guests.insert(),
        [
            {"tenant_id": tenant_id, "stay_id": stay_id, "guest_id": g, "is_main": n == 0}
            for n, g in enumerate(unique_guests)
        ],
    )
    _open_folio(conn, tenant_id, stay_id, None, actor)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_stay.create",
        object_type="hotel_stay",
        object_id=stay_id,
        details={
            "room": room.number,
            "arrival": arrival.isoformat(),
            "departure": departure.isoformat(),
            "guests": unique_guests,
        },
    )
    if check_in:
        return check_in_stay(conn, tenant_id=tenant_id, stay_id=stay_id, actor=actor)
    return get_stay(conn, tenant_id, stay_id)


def _stay_row(conn: Connection, tenant_id: int, stay_id: int, *, lock: bool = False) -> Any:
    query = select(hotel_stays).where(
        hotel_stays.c.tenant_id == tenant_id, hotel_stays.c.id == stay_id
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(E.STAY_NOT_FOUND, f"stay {stay_id} does not exist")
    return row


def get_stay(conn: Connection, tenant_id: int, stay_id: int) -> StayView:
    return _stays(conn, tenant_id, [_stay_row(conn, tenant_id, stay_id)])[0]


def _stays(conn: Connection, tenant_id: int, rows: list[Any]) -> list[StayView]:
    if not rows:
        return []
    ids = [r.id for r in rows]
    room_ids = sorted({r.room_id for r in rows})
    rooms = {
        r.id: _room(r)
        for r in conn.execute(
            _rooms().where(hotel_rooms.c.tenant_id == tenant_id, hotel_rooms.c.id.in_(room_ids))
        )
    }
    guests: dict[int, list[GuestView]] = {i: [] for i in ids}
    for g in conn.execute(
        select(hotel_stay_guests.c.stay_id, hotel_guests)
        .join(hotel_guests, hotel_guests.c.id == hotel_stay_guests.c.guest_id)
        .where(hotel_stay_guests.c.stay_id.in_(ids))
        .order_by(hotel_stay_guests.c.is_main.desc(), hotel_stay_guests.c.id)
    ):
        guests[g.stay_id].append(_guest(g))
    folios: dict[int, list[FolioRef]] = {i: [] for i in ids}
    for f in conn.execute(
        select(hotel_folios)
        .where(hotel_folios.c.stay_id.in_(ids))
        .order_by(hotel_folios.c.guest_id.is_not(None), hotel_folios.c.id)
    ):
        folios[f.stay_id].append(FolioRef(f.id, f.guest_id, f.account_id))
    return [
        StayView(
            r.id,
            rooms[r.room_id],
            r.arrival,
            r.departure,
            r.status,
            r.checked_in_at,
            r.checked_out_at,
            r.note,
            tuple(guests[r.id]),
            tuple(folios[r.id]),
        )
        for r in rows
    ]


def _set_status(
    conn: Connection,
    tenant_id: int,
    stay_id: int,
    status: str,
    actor: Actor,
    *,
    allowed_from: tuple[str, ...],
    **values: Any,
) -> StayView:
    row = _stay_row(conn, tenant_id, stay_id, lock=True)
    if row.status == status:
        return get_stay(conn, tenant_id, stay_id)  # asked again: done already
    if row.status not in allowed_from:
        raise Refused(
            E.STAY_STATE,
            f"stay {stay_id} is {row.status.replace('_', ' ')}; it cannot become "
            f"{status.replace('_', ' ')}",
            status=row.status,
        )
    conn.execute(
        update(hotel_stays).where(hotel_stays.c.id == stay_id).values(status=status, **values)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action=f"hotel_stay.{status}",
        object_type="hotel_stay",
        object_id=stay_id,
        details={"from": row.status},
    )
    return get_stay(conn, tenant_id, stay_id)


def check_in_stay(conn: Connection, *, tenant_id: int, stay_id: int, actor: Actor) -> StayView:
    row = _stay_row(conn, tenant_id, stay_id, lock=True)
    occupied = conn.execute(
        select(hotel_stays.c.id).where(
            hotel_stays.c.tenant_id == tenant_id,
            hotel_stays.c.room_id == row.room_id,
            hotel_stays.c.status == CHECKED_IN,
            hotel_stays.c.id != stay_id,
        )
    ).first()
    if occupied:
        raise Refused(
            E.ROOM_OCCUPIED,
            f"the room is taken by stay {occupied.id}; check that stay out first",
            stay_id=occupied.id,
        )
    return _set_status(
        conn, tenant_id, stay_id, CHECKED_IN, actor, allowed_from=(BOOKED,), checked_in_at=utcnow()
    )


def check_out_stay(conn: Connection, *, tenant_id: int, stay_id: int, actor: Actor) -> StayView:
    return _set_status(
        conn,
        tenant_id,
        stay_id,
        CHECKED_OUT,
        actor,
        allowed_from=(CHECKED_IN,),
        checked_out_at=utcnow(),
    )


def cancel_stay(conn: Connection, *, tenant_id: int, stay_id: int, actor: Actor) -> StayView:
    return _set_status(conn, tenant_id, stay_id, CANCELLED, actor, allowed_from=(BOOKED,))


def add_guest(
    conn: Connection, *, tenant_id: int, stay_id: int, guest_id: int, actor: Actor
) -> StayView:
    stay = get_stay(conn, tenant_id, stay_id)
    get_guest(conn, tenant_id, guest_id)
    if not stay.is_open:
        raise Refused(E.STAY_CLOSED, f"stay {stay_id} is {stay.status.replace('_', ' ')}")
    if any(g.id == guest_id for g in stay.guests):
        return stay
    if len(stay.guests) >= MAX_GUESTS:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, f"a stay has at most {MAX_GUESTS} guests")
    conn.execute(
        hotel_stay_guests.insert(),
        {"tenant_id": tenant_id, "stay_id": stay_id, "guest_id": guest_id, "is_main": False},
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="hotel_stay.add_guest",
        object_type="hotel_stay",
        object_id=stay_id,
        details={"guest_id": guest_id},
    )
    return get_stay(conn, tenant_id, stay_id)


def open_guest_folio(
    conn: Connection, *, tenant_id: int, stay_id: int, guest_id: int, actor: Actor
) -> FolioRef:
    """The guest's own folio in the stay (opened once; asked again, the same)."""
    stay = get_stay(conn, tenant_id, stay_id)
    if not any(g.id == guest_id for g in stay.guests):
        raise NotFound(E.GUEST_NOT_FOUND, f"guest {guest_id} is not a guest of stay {stay_id}")
    own = next((f for f in stay.folios if f.guest_id == guest_id), None)
    if own is not None:
        return own
    if not stay.is_open:
        raise Refused(E.STAY_CLOSED, f"stay {stay_id} is {stay.status.replace('_', ' ')}")
    folio_id = _open_folio(conn, tenant_id, stay_id, guest_id, actor)
    return next(f for f in get_stay(conn, tenant_id, stay_id).folios if f.id == folio_id)


def find_stays(
    conn: Connection,
    tenant_id: int,
    *,
    text: str = "",
    statuses: tuple[str, ...] = OPEN_STATUSES,
    limit: int = 50,
) -> list[StayView]:
    """Stays whose room number is ``text`` or whose guest's name contains it; newest
    arrival first. Empty ``text``: every stay in ``statuses``."""
    query = select(hotel_stays).where(hotel_stays.c.tenant_id == tenant_id)
    if statuses:
        query = query.where(hotel_stays.c.status.in_(statuses))
    wanted = " ".join(text.split()) if isinstance(text, str) else ""
    if wanted:
        by_guest = (
            select(hotel_stay_guests.c.stay_id)
            .join(hotel_guests, hotel_guests.c.id == hotel_stay_guests.c.guest_id)
            .where(
                hotel_stay_guests.c.tenant_id == tenant_id,
                hotel_guests.c.name_key.contains(_name_key(wanted), autoescape=True),
            )
        )
        by_room = select(hotel_rooms.c.id).where(
            hotel_rooms.c.tenant_id == tenant_id, hotel_rooms.c.number_key == wanted.upper()
        )
        query = query.where(or_(hotel_stays.c.id.in_(by_guest), hotel_stays.c.room_id.in_(by_room)))
    rows = conn.execute(
        query.order_by(hotel_stays.c.arrival.desc(), hotel_stays.c.id.desc()).limit(limit)
    ).all()
    return _stays(conn, tenant_id, list(rows))


@dataclass(frozen=True, slots=True)
class GuestInRoom:
    """A guest staying in a room now, as a POS is shown them (P-7)."""

    stay_id: int
    guest: GuestView
    room: RoomView
    departure: date
    folio_id: int


def guests_in_room(
    conn: Connection, tenant_id: int, number: str, *, property_id: int | None = None
) -> list[GuestInRoom]:
    """The guests of the checked-in stays in rooms numbered ``number`` (in every
    property of the tenant, or one), each with the folio a charge of theirs goes to."""
    _, key = normalise_room_number(number)
    query = (
        select(hotel_stays)
        .join(hotel_rooms, hotel_rooms.c.id == hotel_stays.c.room_id)
        .where(
            hotel_stays.c.tenant_id == tenant_id,
            hotel_rooms.c.number_key == key,
            hotel_stays.c.status == CHECKED_IN,
        )
    )
    if property_id is not None:
        query = query.where(hotel_rooms.c.property_id == property_id)
    stays = _stays(conn, tenant_id, list(conn.execute(query.order_by(hotel_stays.c.id)).all()))
    return [
        GuestInRoom(s.id, g, s.room, s.departure, s.folio_of(g.id).id)
        for s in stays
        for g in s.guests
    ]


def folio_balances(conn: Connection, account_ids: list[int]) -> dict[int, int]:
    """Each folio account's balance (below zero: the guest owes)."""
    if not account_ids:
        return {}
    rows = conn.execute(
        select(accounts.c.id, accounts.c.balance_minor).where(accounts.c.id.in_(account_ids))
    )
    return {r.id: int(r.balance_minor) for r in rows}
