"""Folios: charges as invoices, payments by payment type, refunds never above what was
paid, every change a balanced ledger transfer (SPEC H-1, H-2)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.hotel import folios, stays
from kopilka.hotel.schema import hotel_allocations, hotel_invoices, hotel_payments, hotel_refunds
from kopilka.payments.types import update_payment_type
from tests.hotel.conftest import Resort, lines, op


def refused(code: str, work: Any, kind: type[KopilkaError] = KopilkaError) -> KopilkaError:
    with pytest.raises(kind) as caught:
        work()
    assert caught.value.code == code, caught.value
    return caught.value


def charge(
    resort: Resort, *items: tuple[str, int], folio_id: int | None = None, **kw: Any
) -> folios.InvoiceView:
    return resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=folio_id or resort.folio_id,
            kind=kw.pop("kind", "accommodation"),
            description=kw.pop("description", "Проживание"),
            lines=lines(*items),
            operation_id=kw.pop("operation_id", None) or op(),
            actor=resort.actor,
            **kw,
        )
    )


def pay(resort: Resort, type_id: int, amount: int, **kw: Any) -> folios.PaymentView:
    return resort.tx(
        lambda c: folios.pay(
            c,
            tenant_id=resort.t,
            folio_id=kw.pop("folio_id", resort.folio_id),
            payment_type_id=type_id,
            amount_minor=amount,
            operation_id=kw.pop("operation_id", None) or op(),
            actor=resort.actor,
            **kw,
        )
    )


def refund(
    resort: Resort, payment_id: int, amount: int, type_id: int, **kw: Any
) -> folios.RefundView:
    return resort.tx(
        lambda c: folios.refund(
            c,
            tenant_id=resort.t,
            folio_id=kw.pop("folio_id", resort.folio_id),
            payment_id=payment_id,
            amount_minor=amount,
            payment_type_id=type_id,
            direction=kw.pop("direction", "cash"),
            operation_id=kw.pop("operation_id", None) or op(),
            actor=resort.actor,
            **kw,
        )
    )


def test_a_charge_is_an_unpaid_invoice_and_the_guest_owes(resort: Resort) -> None:
    invoice = charge(resort, ("Проживание 2 ночи", 6_000_00), ("Завтрак", 800_00))
    assert invoice.status == "unpaid" and invoice.total_minor == 6_800_00
    assert [x.name for x in invoice.lines] == ["Проживание 2 ночи", "Завтрак"]
    assert invoice.payer is not None and invoice.payer.full_name == "Анна Петрова"
    folio = resort.folio()
    assert folio.balance_minor == -6_800_00 and folio.owed_minor == 6_800_00
    resort.assert_clean()


def test_payments_make_an_invoice_partly_paid_then_paid(resort: Resort) -> None:
    invoice = charge(resort, ("Проживание", 10_000_00))
    pay(resort, resort.cash, 4_000_00, invoice_id=invoice.id)
    assert resort.folio().invoices[0].status == "partly_paid"
    pay(resort, resort.card, 6_000_00, invoice_id=invoice.id)
    folio = resort.folio()
    assert folio.invoices[0].status == "paid" and folio.balance_minor == 0
    refused(
        "overpayment",
        lambda: pay(resort, resort.cash, 1, invoice_id=invoice.id),
        Refused,
    )
    resort.assert_clean()


def test_a_payment_for_the_folio_pays_oldest_invoices_first_and_keeps_the_rest(
    resort: Resort,
) -> None:
    first = charge(resort, ("Ночь 1", 3_000_00))
    second = charge(resort, ("Ночь 2", 3_000_00))
    pay(resort, resort.cash, 4_000_00)
    folio = resort.folio()
    status = {i.id: (i.status, i.paid_minor) for i in folio.invoices}
    assert status == {first.id: ("paid", 3_000_00), second.id: ("partly_paid", 1_000_00)}
    pay(resort, resort.cash, 5_000_00)  # 2,000 settles the second, 3,000 stays as credit
    folio = resort.folio()
    assert folio.credit_minor == 3_000_00 and folio.balance_minor == 3_000_00
    assert all(i.status == "paid" for i in folio.invoices)


def test_a_refund_never_exceeds_the_payment(resort: Resort) -> None:
    invoice = charge(resort, ("Проживание", 5_000_00))
    payment = pay(resort, resort.card, 5_000_00, invoice_id=invoice.id)
    refused(
        "refund_too_large",
        lambda: refund(resort, payment.id, 5_000_01, resort.card, direction="card"),
        Refused,
    )
    refund(resort, payment.id, 2_000_00, resort.card, direction="card")
    assert resort.folio().invoices[0].status == "partly_paid"
    refused(
        "refund_too_large",
        lambda: refund(resort, payment.id, 3_000_01, resort.cash),
        Refused,
    )
    done = refund(resort, payment.id, 3_000_00, resort.cash, direction="cash", reason="отказ")
    assert done.direction == "cash" and done.payment_name == "Наличные"
    folio = resort.folio()
    assert folio.invoices[0].status == "unpaid" and folio.balance_minor == -5_000_00
    assert folio.payments[0].refunded_minor == 5_000_00
    refused("refund_too_large", lambda: refund(resort, payment.id, 1, resort.cash), Refused)
    resort.assert_clean()


def test_a_refund_takes_the_credit_back_first(resort: Resort) -> None:
    charge(resort, ("Ночь", 1_000_00))
    payment = pay(resort, resort.cash, 3_000_00)  # 2,000 of credit
    refund(resort, payment.id, 2_000_00, resort.cash, direction="deposit")
    folio = resort.folio()
    assert folio.credit_minor == 0 and folio.invoices[0].status == "paid"
    assert folio.balance_minor == 0


def test_a_refund_of_one_invoice_takes_back_that_invoice_only(resort: Resort) -> None:
    first = charge(resort, ("Ночь 1", 1_000_00))
    second = charge(resort, ("Ночь 2", 1_000_00))
    payment = pay(resort, resort.card, 2_000_00)
    refused(
        "refund_too_large",
        lambda: refund(resort, payment.id, 1_500_00, resort.card, invoice_id=first.id),
        Refused,
    )
    refund(resort, payment.id, 1_000_00, resort.card, direction="card", invoice_id=first.id)
    status = {i.id: i.status for i in resort.folio().invoices}
    assert status == {first.id: "unpaid", second.id: "paid"}


def test_operations_are_idempotent_and_conflicts_are_clear(resort: Resort) -> None:
    invoice = charge(resort, ("Ночь", 1_000_00), operation_id="inv-1")
    again = charge(resort, ("Ночь", 1_000_00), operation_id="inv-1")
    assert again.id == invoice.id and again.replayed
    refused(
        "hotel_operation_conflict",
        lambda: charge(resort, ("Ночь", 2_000_00), operation_id="inv-1"),
        Conflict,
    )
    payment = pay(resort, resort.cash, 500_00, operation_id="pay-1")
    assert pay(resort, resort.cash, 500_00, operation_id="pay-1").id == payment.id
    refused(
        "hotel_operation_conflict",
        lambda: pay(resort, resort.cash, 600_00, operation_id="pay-1"),
        Conflict,
    )
    back = refund(resort, payment.id, 100_00, resort.cash, operation_id="ref-1")
    assert refund(resort, payment.id, 100_00, resort.cash, operation_id="ref-1").id == back.id
    assert resort.count(hotel_invoices) == 1 and resort.count(hotel_payments) == 1
    assert resort.count(hotel_refunds) == 1
    assert resort.folio().balance_minor == -1_000_00 + 500_00 - 100_00
    resort.assert_clean()


def test_what_bad_input_gets(resort: Resort) -> None:
    invoice = charge(resort, ("Ночь", 1_000_00))
    resort.tx(
        lambda c: update_payment_type(
            c, tenant_id=resort.t, payment_type_id=resort.card, enabled=False, actor=resort.actor
        )
    )
    refused("payment_type_not_usable", lambda: pay(resort, resort.card, 100_00), Refused)
    refused("payment_type_not_usable", lambda: pay(resort, resort.room_charge, 100_00), Refused)
    refused("payment_type_not_usable", lambda: pay(resort, resort.points, 100_00), Refused)
    refused("payment_type_not_found", lambda: pay(resort, 999_999, 100_00), NotFound)
    refused("invalid_hotel_input", lambda: pay(resort, resort.cash, 0), InvalidInput)
    refused("invalid_hotel_input", lambda: pay(resort, resort.cash, -5), InvalidInput)
    refused("folio_not_found", lambda: pay(resort, resort.cash, 100, folio_id=999_999), NotFound)
    refused("invalid_hotel_input", lambda: charge(resort, ("", 100)), InvalidInput)
    refused("invalid_hotel_input", lambda: charge(resort, ("Ночь", 0)), InvalidInput)
    refused(
        "invalid_hotel_input", lambda: charge(resort, ("Ночь", 100), kind="minibar"), InvalidInput
    )
    payment = pay(resort, resort.cash, 100_00, invoice_id=invoice.id)
    refused(
        "invalid_direction",
        lambda: refund(resort, payment.id, 1, resort.cash, direction="wallet"),
        InvalidInput,
    )
    refused(
        "payment_type_not_usable", lambda: refund(resort, payment.id, 1, resort.points), Refused
    )
    refused("payment_not_found", lambda: refund(resort, 999_999, 1, resort.cash), NotFound)
    # Nothing half-written by any of the refusals.
    assert resort.count(hotel_payments) == 1 and resort.count(hotel_refunds) == 0
    assert resort.count(hotel_allocations) == 1 and resort.count(hotel_invoices) == 1
    resort.assert_clean()


def test_a_checked_out_stay_takes_no_charges_but_still_takes_payments(resort: Resort) -> None:
    charge(resort, ("Ночь", 1_000_00))
    resort.tx(
        lambda c: stays.check_out_stay(
            c, tenant_id=resort.t, stay_id=resort.stay.id, actor=resort.actor
        )
    )
    refused("stay_closed", lambda: charge(resort, ("Мини-бар", 300_00)), Refused)
    pay(resort, resort.cash, 1_000_00)
    assert resort.folio().balance_minor == 0


def test_a_guest_folio_of_their_own(resort: Resort) -> None:
    own = resort.tx(
        lambda c: stays.open_guest_folio(
            c,
            tenant_id=resort.t,
            stay_id=resort.stay.id,
            guest_id=resort.partner.id,
            actor=resort.actor,
        )
    )
    again = resort.tx(
        lambda c: stays.open_guest_folio(
            c,
            tenant_id=resort.t,
            stay_id=resort.stay.id,
            guest_id=resort.partner.id,
            actor=resort.actor,
        )
    )
    assert own == again and own.id != resort.folio_id
    invoice = charge(resort, ("Спа", 2_500_00), folio_id=own.id, kind="service", description="Спа")
    assert invoice.payer is not None and invoice.payer.full_name == "Иван Петров"
    assert resort.folio(own.id).owed_minor == 2_500_00 and resort.folio().owed_minor == 0


def test_staff_void_an_unpaid_charge_but_not_a_paid_one(resort: Resort) -> None:
    invoice = charge(resort, ("Ошибка", 700_00))
    void = resort.tx(
        lambda c: folios.void_invoice(
            c, tenant_id=resort.t, invoice_id=invoice.id, actor=resort.actor
        )
    )
    assert void.status == "void" and resort.folio().balance_minor == 0
    again = resort.tx(
        lambda c: folios.void_invoice(
            c, tenant_id=resort.t, invoice_id=invoice.id, actor=resort.actor
        )
    )
    assert again.replayed
    paid = charge(resort, ("Ночь", 1_000_00))
    pay(resort, resort.cash, 1_00, invoice_id=paid.id)
    refused(
        "invoice_paid",
        lambda: resort.tx(
            lambda c: folios.void_invoice(
                c, tenant_id=resort.t, invoice_id=paid.id, actor=resort.actor
            )
        ),
        Refused,
    )
    refused("invoice_void", lambda: pay(resort, resort.cash, 1, invoice_id=invoice.id), Refused)
    resort.assert_clean()


def test_stays_rooms_and_finding_them(resort: Resort) -> None:
    found = resort.read(lambda c: stays.find_stays(c, resort.t, text="90"))
    assert [s.id for s in found] == [resort.stay.id]
    found = resort.read(lambda c: stays.find_stays(c, resort.t, text="петров"))
    assert [s.id for s in found] == [resort.stay.id]
    assert resort.read(lambda c: stays.find_stays(c, resort.t, text="Сидоров")) == []
    refused(
        "room_exists",
        lambda: resort.tx(
            lambda c: stays.create_room(
                c,
                tenant_id=resort.t,
                property_id=resort.property_id,
                number="12a",
                actor=resort.actor,
            )
        ),
        Conflict,
    )
    refused("invalid_hotel_input", lambda: stays.normalise_room_number("12A; DROP"), InvalidInput)
    today = utcnow().date()
    refused(
        "room_occupied",
        lambda: resort.tx(
            lambda c: stays.create_stay(
                c,
                tenant_id=resort.t,
                room_id=resort.room_90,
                arrival=today,
                departure=today + timedelta(days=1),
                guest_ids=[resort.partner.id],
                check_in=True,
                actor=resort.actor,
            )
        ),
        Refused,
    )
    refused(
        "invalid_hotel_input",
        lambda: resort.tx(
            lambda c: stays.create_stay(
                c,
                tenant_id=resort.t,
                room_id=resort.room_12a,
                arrival=today,
                departure=today,
                guest_ids=[resort.partner.id],
                actor=resort.actor,
            )
        ),
        InvalidInput,
    )
    in_room = resort.read(lambda c: stays.guests_in_room(c, resort.t, " 90 "))
    assert [g.guest.full_name for g in in_room] == ["Анна Петрова", "Иван Петров"]
    assert resort.read(lambda c: stays.guests_in_room(c, resort.t, "12a")) == []
