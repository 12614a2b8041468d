"""Seed 001 through r_keeper: an order closed on "Закрытие на номер" and charged to a hotel
guest's folio over FarCards' second interface, ``.../room/`` (SPEC P-7, P-8, P-10).

The restaurant of ``conftest`` also keeps a hotel: room 90 with Анна Петрова (the main
guest) and Иван Петров checked in, room 12A empty, the currency code 12 mapped to the
"Закрытие на номер" payment type and 13 to the deposit. Amounts are kopecks: ``45000``
is 450.00 roubles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.farcards.room import (
    MAY_CHARGE_KOPECKS,
    cut_utf8,
    guest_code,
    parse_guest_code,
)
from kopilka.farcards.schema import farcards_calls
from kopilka.hotel import folios, stays
from kopilka.hotel.schema import hotel_invoices, hotel_stay_guests
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.verify import verify
from kopilka.loyalty.billing import set_loyalty_enabled
from kopilka.payments.codes import add_payment_code
from kopilka.payments.types import PaymentKind, create_payment_type

from .conftest import (
    RESTAURANT,
    STATION,
    Restaurant,
    Station,
    TestClient,
    app_for,
    open_restaurant,
    station_for,
)

BORSCH = ("Борщ", "1", 45000, 45000)
KIEV = ("Котлета по-киевски", "2", 39000, 78000)
ORDER = (BORSCH, KIEV)  # 1,230.00
CLOSED = "2026-11-23T20:15:00"  # the restaurant's time (Moscow): 17:15 UTC


@dataclass
class Hotel:
    """The restaurant's tenant as a hotel too."""

    restaurant: Restaurant
    anna: stays.GuestView
    ivan: stays.GuestView
    stay: stays.StayView
    cash: int
    room: Station  # the second FarCards interface
    loyalty: Station  # the first one

    @property
    def t(self) -> int:
        return self.restaurant.tenant.id

    @property
    def engine(self) -> Engine:
        return self.restaurant.engine

    @property
    def folio_id(self) -> int:
        return self.stay.folios[0].id

    def folio(self, folio_id: int | None = None) -> folios.FolioView:
        with read_only(self.engine) as conn:
            return folios.get_folio(conn, self.t, folio_id or self.folio_id)

    def code_of(self, guest: stays.GuestView) -> str:
        with read_only(self.engine) as conn:
            row_id = conn.execute(
                select(hotel_stay_guests.c.id).where(
                    hotel_stay_guests.c.stay_id == self.stay.id,
                    hotel_stay_guests.c.guest_id == guest.id,
                )
            ).scalar_one()
        return guest_code(row_id)

    def count(self, table: Any) -> int:
        with read_only(self.engine) as conn:
            query = select(func.count()).select_from(table).where(table.c.tenant_id == self.t)
            return int(conn.execute(query).scalar_one())

    def assert_clean(self) -> None:
        """``kopilka ledger verify`` of the tenant finds nothing."""
        with read_only(self.engine) as conn:
            problems = verify(conn, tenant_id=self.t)
        assert problems == [], problems


def open_hotel(restaurant: Restaurant) -> Hotel:
    actor = restaurant.actor

    def setup(conn: Connection) -> dict[str, Any]:
        t = restaurant.tenant.id
        prop = stays.create_property(conn, tenant_id=t, name="Отель «Берег»", actor=actor)
        room_90 = stays.create_room(
            conn, tenant_id=t, property_id=prop.id, number="90", actor=actor
        )
        stays.create_room(conn, tenant_id=t, property_id=prop.id, number="12A", actor=actor)
        anna = stays.create_guest(conn, tenant_id=t, full_name="Анна Петрова", actor=actor)
        ivan = stays.create_guest(conn, tenant_id=t, full_name="Иван Петров", actor=actor)
        today = utcnow().date()
        stay = stays.create_stay(
            conn,
            tenant_id=t,
            room_id=room_90.id,
            arrival=today,
            departure=today + timedelta(days=3),
            guest_ids=[anna.id, ivan.id],
            check_in=True,
            actor=actor,
        )

        def new(name: str, kind: PaymentKind) -> int:
            return create_payment_type(conn, tenant_id=t, name=name, kind=kind, actor=actor).id

        room_charge = new("Закрытие на номер", PaymentKind.ROOM_CHARGE)
        deposit = new("Депозит", PaymentKind.DEPOSIT)
        add_payment_code(conn, tenant_id=t, code="12", payment_type_id=room_charge, actor=actor)
        add_payment_code(conn, tenant_id=t, code="13", payment_type_id=deposit, actor=actor)
        return {
            "anna": anna,
            "ivan": ivan,
            "stay": stay,
            "cash": new("Наличные", PaymentKind.CASH),
        }

    made = run_transaction(restaurant.engine, setup)
    loyalty = station_for(restaurant)
    room = Station(loyalty.client, f"{loyalty.base}/room")
    return Hotel(restaurant, room=room, loyalty=loyalty, **made)


@pytest.fixture
def hotel(restaurant: Restaurant) -> Hotel:
    return open_hotel(restaurant)


# --------------------------------------------------------------------------- r_keeper


def room_check(
    *,
    chmode: int,
    guid: str,
    lines: tuple[tuple[str, str, int, int], ...] = ORDER,
    payments: tuple[tuple[str, int], ...] | None = None,
    generated: str = CLOSED,
    with_guid: bool = True,
) -> str:
    """r_keeper's check buffer: its lines (name, quantity, price, sum) and payments."""
    total = sum(line[3] for line in lines)
    paid = payments if payments is not None else (("12", total),)
    body = "".join(
        f'<LINE id="{n}" uni="{n}" code="{100 + n}" name="{name}" quantity="{quantity}" '
        f'price="{price}" sum="{amount}" categ="1"/>'
        for n, (name, quantity, price, amount) in enumerate(lines, start=1)
    ) + "".join(f'<PAYMENT code="{code}" sum="{amount}" uni="1"/>' for code, amount in paid)
    checkguid = f' checkguid="{guid}"' if with_guid else ""
    return (
        f'<INPBUF InpKind="1"><CHECK stationcode="{STATION}" restaurantcode="199999999" '
        f'cashservername="MID1" generateddatetime="{generated}" chmode="{chmode}">'
        f'<CHECKDATA ordernum="1/1" checknum="1"{checkguid}>'
        f"{body}</CHECKDATA></CHECK></INPBUF>"
    )


def charge_body(
    card: str,
    summa: int,
    *,
    guid: str,
    person: int | None = None,
    kind: int = 0,
    chmode: int | None = 1,
    **check: Any,
) -> bytes:
    """One TransactionsEx of the room interface, with the check buffer unless ``chmode``
    is None."""
    person_attribute = f' PersonID="{person}"' if person is not None else ""
    buffer = "" if chmode is None else room_check(chmode=chmode, guid=guid, **check)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ROOT><Transactions>'
        f'<TransactionsEx Card="{card}"{person_attribute} Kind="{kind}" Summa="{summa}" '
        f'Restaurant="{RESTAURANT}" RKDate="46349" RKUni="{STATION}" RKCheck="{guid}"/>'
        f"</Transactions>{buffer}</ROOT>"
    ).encode()


def failure(reply: ET.Element) -> tuple[str, str]:
    """(error_code, err_text) of a refusal (a lookup's reason is its ScrMessage)."""
    assert reply.attrib["Result"] == "1", ET.tostring(reply)
    if reply.tag == "GetCardInfoEx":
        return "", reply.attrib["ScrMessage"]
    answer = reply.find("TRRESPONSE")
    assert answer is not None
    return answer.attrib["error_code"], answer.attrib["err_text"]


def ok(reply: ET.Element) -> dict[str, str]:
    """The one TRANSACTION of a call applied."""
    assert reply.attrib["Result"] == "0", ET.tostring(reply)
    (line,) = reply.iter("TRANSACTION")
    return dict(line.attrib)


def sell(hotel: Hotel, card: str, guid: str, **kw: Any) -> ET.Element:
    summa = kw.pop("summa", -123000)
    return hotel.room.post("TransactionsEx", charge_body(card, summa, guid=guid, **kw))


def pay_at_desk(hotel: Hotel, invoice_id: int, amount_minor: int) -> None:
    run_transaction(
        hotel.engine,
        lambda c: folios.pay(
            c,
            tenant_id=hotel.t,
            folio_id=hotel.folio_id,
            payment_type_id=hotel.cash,
            amount_minor=amount_minor,
            invoice_id=invoice_id,
            operation_id=f"desk-{invoice_id}",
            actor=hotel.restaurant.actor,
        ),
    )


# --------------------------------------------------------------------------- guest codes


def test_a_guest_code_is_nine_digits_no_room_is_numbered() -> None:
    assert guest_code(42) == "900000042"
    assert guest_code(99_999_999) == "999999999"
    assert parse_guest_code("900000042") == 42
    for room in ("90", "12", "9", "90000004", "9000000420", "800000042", "900000000"):
        assert parse_guest_code(room) is None
    # Holder is at most 40 bytes: a Cyrillic name is cut between letters, never inside one.
    name = "Александра Константиновна Преображенская"
    assert cut_utf8(name, 40) == "Александра Константи"
    assert cut_utf8("Ёж" * 30, 41).encode() == ("Ёж" * 10).encode()


# --------------------------------------------------------------------------- lookups


def test_lookup_by_room_answers_the_main_guest_and_lists_everyone_with_their_code(
    hotel: Hotel,
) -> None:
    info = hotel.room.lookup("90")
    assert info.tag == "GetCardInfoEx"
    assert info.attrib["Result"] == "0"
    assert info.attrib["Holder"] == "Анна Петрова"
    assert info.attrib["PersonID"] == str(hotel.anna.id)
    assert info.attrib["Account"] == str(hotel.folio_id)
    assert info.attrib["Summa"] == str(MAY_CHARGE_KOPECKS) == "999999999"
    assert (info.attrib["Locked"], info.attrib["Bonus"], info.attrib["Discount"]) == ("0",) * 3
    screen = info.attrib["ScrMessage"].split("\n")
    assert screen[0].startswith("Отель «Берег», номер 90, выезд ")
    assert screen[1:] == [
        f"Анна Петрова: код {hotel.code_of(hotel.anna)}",
        f"Иван Петров: код {hotel.code_of(hotel.ivan)}",
    ]


def test_lookup_by_guest_code_answers_that_guest_while_the_stay_is_checked_in(
    hotel: Hotel,
) -> None:
    actor = hotel.restaurant.actor
    # Иван pays separately: his own folio is where his charges go.
    own = run_transaction(
        hotel.engine,
        lambda c: stays.open_guest_folio(
            c, tenant_id=hotel.t, stay_id=hotel.stay.id, guest_id=hotel.ivan.id, actor=actor
        ),
    )
    code = hotel.code_of(hotel.ivan)
    info = hotel.room.lookup(code)
    assert info.attrib["Result"] == "0"
    assert (info.attrib["Holder"], info.attrib["PersonID"], info.attrib["Account"]) == (
        "Иван Петров",
        str(hotel.ivan.id),
        str(own.id),
    )
    assert info.attrib["ScrMessage"].endswith(f"Иван Петров: код {code}")

    run_transaction(
        hotel.engine,
        lambda c: stays.check_out_stay(c, tenant_id=hotel.t, stay_id=hotel.stay.id, actor=actor),
    )
    gone = hotel.room.lookup(code)
    assert failure(gone) == ("", f"Гость с кодом {code} сейчас не проживает в отеле")
    assert failure(hotel.room.lookup("900999999"))[1].startswith("Гость с кодом 900999999")


def test_nobody_in_the_room(hotel: Hotel) -> None:
    assert failure(hotel.room.lookup("91")) == ("", "В номере 91 никто не проживает")
    refused = sell(hotel, "91", "{S-91}")
    assert failure(refused) == ("301", "В номере 91 никто не проживает")
    assert hotel.count(hotel_invoices) == 0


# --------------------------------------------------------------------------- sales


def test_sale_on_credit_is_an_unpaid_invoice_on_the_chosen_guests_folio(hotel: Hotel) -> None:
    # The cashier typed the room, then charged Иван (the PersonID answered for his code).
    reply = sell(hotel, "90", "{S-1}", person=hotel.ivan.id)
    line = ok(reply)
    assert (line["value"], line["cardcode"], line["extinfo"]) == ("-123000", "90", "RoomCharge=1")
    assert line["slip"] == "Закрыто на номер 90 (Иван Петров): 1230.00"
    answer = reply.find("TRRESPONSE")
    assert answer is not None and answer.attrib["error_code"] == "0"

    folio = hotel.folio()
    (invoice,) = folio.invoices
    assert (invoice.status, invoice.kind, invoice.total_minor) == ("unpaid", "pos_order", 123000)
    assert invoice.payer is not None and invoice.payer.full_name == "Иван Петров"
    assert invoice.check_id == "rk:{S-1}"
    assert invoice.closed_at == datetime(2026, 11, 23, 17, 15, tzinfo=UTC)
    assert [(x.name, x.quantity_milli, x.price_minor, x.amount_minor) for x in invoice.lines] == [
        ("Борщ", 1000, 45000, 45000),
        ("Котлета по-киевски", 2000, 39000, 78000),
    ]
    assert folio.balance_minor == -123000
    hotel.assert_clean()


def test_a_sale_by_guest_code_and_lines_without_names(hotel: Hotel) -> None:
    bare = hotel.room.post(
        "TransactionsEx",
        charge_body(hotel.code_of(hotel.anna), -123000, guid="{S-2}").replace(
            b' name="', b' title="'
        ),
    )
    ok(bare)
    ((invoice,),) = [hotel.folio().invoices]
    assert invoice.payer is not None and invoice.payer.full_name == "Анна Петрова"
    assert [x.name for x in invoice.lines] == ["блюдо 101", "блюдо 102"]


def test_a_repeated_call_is_answered_as_the_first_time_and_written_once(hotel: Hotel) -> None:
    body = charge_body("90", -123000, guid="{S-1}", person=hotel.anna.id)
    replies = [
        hotel.room.client.post(f"{hotel.room.base}/TransactionsEx", content=body) for _ in range(3)
    ]
    assert replies[0].content == replies[1].content == replies[2].content
    assert b'Result="0"' in replies[0].content
    assert (hotel.count(hotel_invoices), hotel.count(farcards_calls)) == (1, 1)
    assert hotel.folio().balance_minor == -123000

    # The same check with another content is refused, and nothing changes.
    other = sell(hotel, "90", "{S-1}", person=hotel.ivan.id)
    assert failure(other)[0] == "140"
    assert (hotel.count(hotel_invoices), hotel.count(farcards_calls)) == (1, 1)
    hotel.assert_clean()


def test_a_sale_rollback_voids_the_invoice_until_the_front_desk_takes_a_payment(
    hotel: Hotel,
) -> None:
    ok(sell(hotel, "90", "{S-1}"))
    rollback = sell(hotel, "90", "{S-1}", summa=123000, chmode=2)
    line = ok(rollback)
    assert (line["value"], line["extinfo"]) == ("123000", "RoomCharge=0")
    assert line["slip"] == "Отменено закрытие на номер (Анна Петрова): 1230.00"
    ok(sell(hotel, "90", "{S-1}", summa=123000, chmode=2))  # again: the same answer
    (invoice,) = hotel.folio().invoices
    assert invoice.status == "void"
    assert hotel.folio().balance_minor == 0

    # Without a check buffer the positive Summa says "cancellation" on its own.
    # (The check is then Restaurant:RKDate:RKUni:RKCheck, so the sale had no guid either.)
    tea = (("Чай", "1", 5000, 5000),)
    ok(sell(hotel, "90", "S-3", summa=-5000, lines=tea, with_guid=False))
    ok(sell(hotel, "90", "S-3", summa=5000, chmode=None))
    assert [i.status for i in hotel.folio().invoices] == ["void", "void"]

    # Paid at the front desk: the POS can no longer cancel it; the hotel refunds.
    ok(sell(hotel, "90", "{S-2}"))
    paid = hotel.folio().invoices[-1]
    pay_at_desk(hotel, paid.id, 23000)
    refused = sell(hotel, "90", "{S-2}", summa=123000, chmode=2)
    assert failure(refused) == ("304", "Счёт уже оплачен на ресепшене; возврат оформляется там")
    assert hotel.folio().invoices[-1].status == "partly_paid"

    never = sell(hotel, "90", "{S-404}", summa=123000, chmode=2)
    assert failure(never) == ("305", "Отмена: этот чек не закрывался на номер")
    hotel.assert_clean()


def test_in_english_the_front_desk_refund_is_named_too(engine: Engine, actor: Actor) -> None:
    hotel = open_hotel(open_restaurant(engine, actor, locale="en"))
    ok(sell(hotel, "90", "{S-1}"))
    pay_at_desk(hotel, hotel.folio().invoices[0].id, 123000)
    refused = sell(hotel, "90", "{S-1}", summa=123000, chmode=2)
    assert failure(refused) == ("304", "Already paid at the front desk; refund it there")
    assert failure(hotel.room.lookup("91"))[1] == "Nobody is staying in room 91"


def test_returns_and_other_kinds_are_refused(hotel: Hotel) -> None:
    ok(sell(hotel, "90", "{S-1}"))
    back = sell(hotel, "90", "{R-1}", summa=45000, chmode=3, lines=(("Борщ", "1", 45000, -45000),))
    assert failure(back) == (
        "152",
        "Возврат заказа, закрытого на номер, оформляется на ресепшене отеля",
    )
    bonus = sell(hotel, "90", "{S-2}", kind=2, summa=3000)
    assert failure(bonus) == ("151", "На номер закрывается только оплата (Kind=0), не Kind=2")
    # A pre-check is nothing to post: answered, nothing written.
    assert sell(hotel, "90", "{P-1}", chmode=6).attrib["Result"] == "0"
    assert (hotel.count(hotel_invoices), hotel.count(farcards_calls)) == (1, 1)
    assert hotel.folio().invoices[0].status == "unpaid"


def test_the_order_must_add_up_and_name_a_room_charge_currency(hotel: Hotel) -> None:
    short = sell(hotel, "90", "{S-1}", summa=-100000)
    assert failure(short) == ("154", "Блюда чека на 1230.00, а на номер закрывается 1000.00")
    unknown = sell(hotel, "90", "{S-2}", payments=(("77", 123000),))
    code, text = failure(unknown)
    assert code == "306" and "Валюта 77 не сопоставлена" in text
    cash_only = sell(hotel, "90", "{S-3}", payments=(("1", 100000), ("12", 23000)))
    assert failure(cash_only) == (
        "155",
        "В чеке нет одной оплаты на 1230.00 валютой «Закрытие на номер»",
    )
    no_check = sell(hotel, "90", "{S-4}", chmode=None)
    assert failure(no_check)[0] == "153"
    # The deposit currency pays at once from the guest's credit, which is none here.
    deposit = sell(hotel, "90", "{S-5}", payments=(("13", 123000),))
    assert failure(deposit) == (
        "309",
        "Депозита гостя хватает только на 0.00; закройте на номер в кредит",
    )
    assert (hotel.count(hotel_invoices), hotel.count(farcards_calls)) == (0, 0)
    hotel.assert_clean()


def test_room_charge_works_with_the_loyalty_module_switched_off(hotel: Hotel) -> None:
    card = hotel.restaurant.card()
    run_transaction(
        hotel.engine,
        lambda c: set_loyalty_enabled(
            c, tenant_id=hotel.t, enabled=False, actor=hotel.restaurant.actor
        ),
    )
    assert failure(hotel.loyalty.lookup(card.number))[1] == (
        "Программа лояльности отключена: карты не принимаются"
    )
    assert hotel.room.lookup("90").attrib["Holder"] == "Анна Петрова"
    ok(sell(hotel, "90", "{S-1}"))
    ok(sell(hotel, "90", "{S-1}", summa=123000, chmode=2))
    assert hotel.folio().invoices[0].status == "void"


def test_another_tenants_secret_sees_nothing_of_this_hotel(
    hotel: Hotel, engine: Engine, actor: Actor
) -> None:
    other = open_restaurant(engine, actor)
    theirs = station_for(other)
    theirs_room = Station(theirs.client, f"{theirs.base}/room")
    assert failure(theirs_room.lookup("90"))[1] == "В номере 90 никто не проживает"
    code = hotel.code_of(hotel.anna)
    assert failure(theirs_room.lookup(code))[1].startswith(f"Гость с кодом {code}")
    their_sale = theirs_room.post("TransactionsEx", charge_body("90", -123000, guid="{X}"))
    assert failure(their_sale)[0] == "301"
    # Their secret under this tenant's address is no secret at all.
    mixed = Station(hotel.room.client, f"/farcards/{hotel.restaurant.tenant.slug}/{other.secret}")
    assert failure(Station(mixed.client, f"{mixed.base}/room").lookup("90"))[1].startswith(
        "Kopilka: неверный адрес или секрет FarCards"
    )
    assert hotel.count(hotel_invoices) == 0


# --------------------------------------------------------------------------- JSON and FarCards


def test_the_json_api_and_farcards_leave_the_same_folio(hotel: Hotel) -> None:
    by_farcards = hotel
    by_json = open_hotel(open_restaurant(hotel.engine, hotel.restaurant.actor))
    api = TestClient(
        app_for(by_json.engine),
        headers={"Authorization": f"Bearer {by_json.restaurant.terminal_key}"},
    )
    posted = api.post(
        "/api/v1/pos/room-charges",
        json={
            "check_id": "rk:{S-1}",
            "room": "90",
            "guest_id": by_json.ivan.id,
            "payment_code": "12",
            "closed_at": f"{CLOSED}+03:00",
            "lines": [
                {"name": "Борщ", "amount": "450.00"},
                {
                    "name": "Котлета по-киевски",
                    "quantity": "2",
                    "price": "390.00",
                    "amount": "780.00",
                },
            ],
        },
    )
    assert posted.status_code == 201, posted.text
    ok(sell(by_farcards, "90", "{S-1}", person=by_farcards.ivan.id))

    def shown(one: Hotel) -> tuple[Any, ...]:
        folio = one.folio()
        (invoice,) = folio.invoices
        assert invoice.payer is not None
        return (
            folio.balance_minor,
            invoice.total_minor,
            invoice.status,
            invoice.check_id,
            invoice.closed_at,
            invoice.description,
            invoice.payer.full_name,
            [(x.name, x.quantity_milli, x.price_minor, x.amount_minor) for x in invoice.lines],
        )

    assert shown(by_json) == shown(by_farcards)
    assert shown(by_json)[:3] == (-123000, 123000, "unpaid")
    by_json.assert_clean()
    by_farcards.assert_clean()
