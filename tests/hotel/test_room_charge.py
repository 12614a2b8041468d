"""Room charge from the POS (SPEC P-7, P-8; seed 001), in the domain."""

from __future__ import annotations

from typing import Any

import pytest

from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.hotel import folios, room_charge, stays
from kopilka.hotel.schema import hotel_invoices
from kopilka.payments.codes import add_payment_code
from kopilka.payments.types import PaymentKind, create_payment_type
from tests.hotel.conftest import Resort, lines, op


def refused(code: str, work: Any, kind: type[KopilkaError] = KopilkaError) -> KopilkaError:
    with pytest.raises(kind) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


def post(resort: Resort, check_id: str, *items: tuple[str, int], **kw: Any) -> folios.InvoiceView:
    return resort.tx(
        lambda c: room_charge.post_room_charge(
            c,
            tenant_id=resort.t,
            terminal_id=kw.pop("terminal_id", resort.terminal_id),
            room=kw.pop("room", "90"),
            guest_id=kw.pop("guest_id", resort.guest.id),
            check_id=check_id,
            lines=lines(*items),
            payment_code=kw.pop("code", "12"),
            actor=resort.actor,
            **kw,
        )
    )


def cancel(resort: Resort, check_id: str, terminal_id: int | None = None) -> folios.InvoiceView:
    return resort.tx(
        lambda c: room_charge.cancel_room_charge(
            c,
            tenant_id=resort.t,
            terminal_id=terminal_id or resort.terminal_id,
            check_id=check_id,
            actor=resort.actor,
        )
    )


def test_an_order_charged_to_a_room_is_an_unpaid_invoice_of_the_chosen_guest(
    resort: Resort,
) -> None:
    staying = resort.read(lambda c: room_charge.room_guests(c, tenant_id=resort.t, room="90"))
    assert [g.guest.full_name for g in staying] == ["Анна Петрова", "Иван Петров"]
    invoice = post(
        resort,
        "R-1001",
        ("Борщ", 450_00),
        ("Котлета по-киевски", 780_00),
        guest_id=resort.partner.id,
    )
    assert invoice.status == "unpaid" and invoice.kind == "pos_order"
    assert invoice.total_minor == 1_230_00 and invoice.check_id == "R-1001"
    assert invoice.payer is not None and invoice.payer.full_name == "Иван Петров"
    assert [x.name for x in invoice.lines] == ["Борщ", "Котлета по-киевски"]
    assert invoice.closed_at is not None
    assert resort.folio().owed_minor == 1_230_00
    again = post(
        resort,
        "R-1001",
        ("Борщ", 450_00),
        ("Котлета по-киевски", 780_00),
        guest_id=resort.partner.id,
    )
    assert again.id == invoice.id and again.replayed
    refused("hotel_operation_conflict", lambda: post(resort, "R-1001", ("Борщ", 1_00)), Conflict)
    assert resort.count(hotel_invoices) == 1
    resort.assert_clean()


def test_a_guest_with_a_folio_of_their_own_is_charged_there(resort: Resort) -> None:
    own = resort.tx(
        lambda c: stays.open_guest_folio(
            c,
            tenant_id=resort.t,
            stay_id=resort.stay.id,
            guest_id=resort.partner.id,
            actor=resort.actor,
        )
    )
    invoice = post(resort, "R-2", ("Кофе", 200_00), guest_id=resort.partner.id)
    assert invoice.folio_id == own.id


def test_only_the_terminal_cancels_and_only_while_unpaid(resort: Resort) -> None:
    invoice = post(resort, "R-3", ("Салат", 500_00))
    refused(
        "pos_order_terminal_only",
        lambda: resort.tx(
            lambda c: folios.void_invoice(
                c, tenant_id=resort.t, invoice_id=invoice.id, actor=resort.actor
            )
        ),
        Refused,
    )
    other = resort.tx(
        lambda c: __import__("kopilka.tenancy.actions", fromlist=["x"]).create_terminal(
            c, tenant_id=resort.t, name="Бар", actor=resort.actor
        )
    )[0]
    refused("invoice_not_found", lambda: cancel(resort, "R-3", other.id), NotFound)
    void = cancel(resort, "R-3")
    assert void.status == "void" and resort.folio().balance_minor == 0
    assert cancel(resort, "R-3").replayed
    paid = post(resort, "R-4", ("Стейк", 1_500_00))
    resort.tx(
        lambda c: folios.pay(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=resort.card,
            amount_minor=1_500_00,
            invoice_id=paid.id,
            operation_id=op(),
            actor=resort.actor,
        )
    )
    refused("invoice_paid", lambda: cancel(resort, "R-4"), Refused)
    refused("invoice_not_found", lambda: cancel(resort, "R-404"), NotFound)
    resort.assert_clean()


def test_a_deposit_code_pays_the_order_from_the_guests_deposit(resort: Resort) -> None:
    refused(
        "deposit_insufficient", lambda: post(resort, "R-5", ("Ужин", 2_000_00), code="13"), Refused
    )
    assert resort.count(hotel_invoices) == 0  # nothing half-written
    resort.tx(
        lambda c: folios.pay(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=resort.cash,
            amount_minor=5_000_00,
            operation_id=op(),
            actor=resort.actor,
        )
    )
    invoice = post(resort, "R-5", ("Ужин", 2_000_00), code="13")
    assert invoice.status == "paid"
    folio = resort.folio()
    assert folio.credit_minor == 3_000_00 and folio.balance_minor == 3_000_00


def test_what_bad_input_gets(resort: Resort) -> None:
    refused("no_guest_in_room", lambda: post(resort, "R-6", ("Чай", 100_00), room="12A"), Refused)
    refused(
        "guest_not_found", lambda: post(resort, "R-6", ("Чай", 100_00), guest_id=999_999), NotFound
    )
    refused(
        "unknown_payment_code",
        lambda: post(resort, "R-6", ("Чай", 100_00), code="77"),
        InvalidInput,
    )
    refused("not_room_charge", lambda: post(resort, "R-6", ("Чай", 100_00), code="1"), InvalidInput)
    refused("invalid_hotel_input", lambda: post(resort, "R-6", ("Чай", -1)), InvalidInput)
    refused("invalid_hotel_input", lambda: post(resort, "", ("Чай", 100_00)), InvalidInput)
    resort.tx(
        lambda c: stays.check_out_stay(
            c, tenant_id=resort.t, stay_id=resort.stay.id, actor=resort.actor
        )
    )
    refused("no_guest_in_room", lambda: post(resort, "R-6", ("Чай", 100_00)), Refused)
    assert resort.count(hotel_invoices) == 0


def test_a_code_of_one_terminal_only(resort: Resort) -> None:
    def setup(c: Any) -> int:
        room = create_payment_type(
            c,
            tenant_id=resort.t,
            name="На номер (бар)",
            kind=PaymentKind.ROOM_CHARGE,
            actor=resort.actor,
        )
        add_payment_code(
            c,
            tenant_id=resort.t,
            code="ROOM",
            payment_type_id=room.id,
            terminal_id=resort.terminal_id,
            actor=resort.actor,
        )
        return room.id

    resort.tx(setup)
    assert post(resort, "R-7", ("Пиво", 300_00), code="room").status == "unpaid"


def test_the_same_order_again_with_the_room_typed_otherwise_is_a_replay(resort: Resort) -> None:
    def setup(c: Any) -> None:
        stays.create_stay(
            c,
            tenant_id=resort.t,
            room_id=resort.room_12a,
            arrival=resort.stay.arrival,
            departure=resort.stay.departure,
            guest_ids=[resort.partner.id],
            check_in=True,
            actor=resort.actor,
        )

    resort.tx(setup)
    first = post(resort, "R-12", ("Чай", 150_00), room="12A", guest_id=resort.partner.id)
    again = post(resort, "R-12", ("Чай", 150_00), room="12a", guest_id=resort.partner.id)
    assert again.id == first.id and again.replayed
    assert first.description == "Заказ R-12, номер 12A"
