"""A guest's folio on screen (SPEC H-1, H-2, H-4, H-6, P-7; seeds 000, 001): the balance
and the invoices with their lines (a restaurant order's check, time and terminal),
charging, taking a payment for an invoice or the folio, refunding, paying with points in
seed 000's six steps, voiding a charge, receipts on a cash register; every refusal
shown by its field in the user's language with nothing written, and a form sent twice
doing its work once."""

from __future__ import annotations

import re
from typing import Any

from kopilka.core.db import read_only
from kopilka.fiscal import receipts as fiscal
from kopilka.hotel import folios, room_charge, stays
from kopilka.hotel.loyalty_centre import set_centre
from kopilka.hotel.schema import hotel_invoices, hotel_payments, hotel_refunds
from kopilka.loyalty.cards import find_card
from kopilka.payments.types import update_payment_type
from tests.fiscal.atol_server import atol_stand_in
from tests.hotel.conftest import Resort
from tests.web.conftest import Web, text_of
from tests.web.test_front_desk import (
    ACTOR,
    HOME,
    block,
    charge,
    english,
    field_error,
    form_error,
    form_of,
    register,
    submit,
    text_by_testid,
)
from tests.web.test_front_desk import resort as resort  # the fixture
from tests.web.test_front_desk import tenant as tenant  # the hotel in the staff's tenant


def folio_url(resort: Resort, folio_id: int | None = None) -> str:
    return f"{HOME}/folios/{folio_id or resort.folio_id}"


def flash(html: str) -> str:
    return " ".join(
        re.sub(r"\s+", " ", m).strip() for m in re.findall(r'class="flash[^"]*"[^>]*>(.*?)<', html)
    )


def pos_order(resort: Resort, check_id: str = "Бар-121") -> folios.InvoiceView:
    """Seed 001: the bar's order closed to room 90 at the terminal."""
    return resort.tx(
        lambda c: room_charge.post_room_charge(
            c,
            tenant_id=resort.t,
            terminal_id=resort.terminal_id,
            room="90",
            guest_id=resort.guest.id,
            check_id=check_id,
            lines=[
                folios.LineIn("Капучино", 640_00, 2000, 320_00),
                folios.LineIn("Чизкейк", 450_00),
            ],
            payment_code="12",
            actor=ACTOR,
        )
    )


def card_points(resort: Resort, number: str) -> int:
    with read_only(resort.engine) as conn:
        return find_card(conn, resort.t, number=number).balance_minor


# --------------------------------------------------------------------------- reading


def test_the_folio_shows_what_is_owed_and_each_invoice_with_its_lines(
    web: Web, resort: Resort
) -> None:
    night = charge(resort, ("Проживание 2 ночи", 7_000_00), ("Завтрак", 500_00))
    order = pos_order(resort)
    resort.tx(
        lambda c: folios.pay(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=resort.cash,
            amount_minor=2_500_00,
            invoice_id=night.id,
            operation_id="cash-1",
            payer="Анна Петрова",
            actor=ACTOR,
        )
    )
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort))
    assert page.status_code == 200
    assert text_by_testid(page.text, "folio-owed") == "6\u00a0090,00\u00a0₽"
    night_row = text_of(block(page.text, f"invoice-{night.id}"))
    assert "Частично оплачен" in night_row and "Проживание 2 ночи" in night_row
    order_row = block(page.text, f"invoice-{order.id}")
    assert 'data-status="unpaid"' in order_row, "the order is on the folio, unpaid"
    details = text_of(order_row)
    assert "Заказ из ресторана" in details and "Детали услуги" in details
    assert "Бар-121" in details and "Ресторан" in details  # its check and terminal
    assert "Капучино 2 320,00 ₽ 640,00 ₽" in details and "Чизкейк 1 450,00 ₽ 450,00 ₽" in details
    payments = text_of(block(page.text, "payments"))
    assert "Наличные" in payments and "2 500,00 ₽" in payments and "Анна Петрова" in payments
    # A restaurant order is voided only at its terminal: no button for it.
    assert f'data-testid="void-invoice-{order.id}"' not in page.text
    assert f'data-testid="pay-invoice-{order.id}"' in page.text

    en = english(web).get(folio_url(resort))
    shown = text_of(en.text)
    assert "The guest owes" in shown and "₽6,090.00" in shown
    assert "Partly paid" in shown and "Unpaid" in shown and "Service details" in shown
    assert "Restaurant order" in shown and "Take payment" in shown


# --------------------------------------------------------------------------- charging


def test_services_are_charged_with_their_lines_once_whatever_the_clicks(
    web: Web, resort: Resort
) -> None:
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort)).text
    fields = {
        "charge__kind": "service",
        "charge__description": "Мини-бар",
        "charge__lines-0-name": "Вода",
        "charge__lines-0-quantity": "3",
        "charge__lines-0-price": "150",
        "charge__lines-1-name": "Орешки",
        "charge__lines-1-quantity": "1,5",
        "charge__lines-1-price": "",
        "charge__lines-1-amount": "300,00",
    }
    made = submit(desk, page, "charge-form", **fields)
    assert made.status_code == 303
    assert "начислен" in flash(desk.follow(made).text)
    again = submit(desk, page, "charge-form", **fields)  # the same form, sent again
    assert "форма была отправлена дважды" in flash(desk.follow(again).text)
    (invoice,) = resort.folio().invoices
    assert invoice.kind == "service" and invoice.total_minor == 750_00
    assert [(x.name, x.quantity_milli, x.price_minor, x.amount_minor) for x in invoice.lines] == [
        ("Вода", 3000, 150_00, 450_00),
        ("Орешки", 1500, 200_00, 300_00),
    ]
    assert invoice.payer is not None and invoice.payer.full_name == "Анна Петрова"
    assert resort.count(hotel_invoices) == 1

    empty = submit(desk, page, "charge-form", charge__description="Пусто")
    assert empty.status_code == 422
    assert field_error(empty.text, "charge-lines-0-name") == "Заполните хотя бы одну строку."
    wrong = submit(
        desk,
        desk.get(folio_url(resort)).text,
        "charge-form",
        charge__description="Ужин",
        charge__lines__0__name="Ужин",
        charge__lines__0__quantity="0",
        charge__lines__0__price="1000",
    )
    assert wrong.status_code == 422
    assert "Количество больше нуля" in field_error(wrong.text, "charge-lines-0-quantity")
    more = submit(desk, page, "charge-form", charge__add_line="1")
    assert more.status_code == 200 and 'name="charge-lines-3-name"' in more.text
    assert resort.count(hotel_invoices) == 1


def test_nothing_more_is_charged_to_a_stay_checked_out(web: Web, resort: Resort) -> None:
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort)).text
    resort.tx(
        lambda c: stays.check_out_stay(c, tenant_id=resort.t, stay_id=resort.stay.id, actor=ACTOR)
    )
    late = submit(
        desk,
        page,
        "charge-form",
        charge__description="Поздний завтрак",
        charge__lines__0__name="Завтрак",
        charge__lines__0__price="800",
    )
    assert late.status_code == 422
    assert form_error(late.text) == "Гость выехал или бронь отменена: начислять больше нельзя."
    assert resort.count(hotel_invoices) == 0


# --------------------------------------------------------------------------- payments


def test_a_payment_for_an_invoice_is_taken_once_and_never_more_than_owed(
    web: Web, resort: Resort
) -> None:
    night = charge(resort, ("Проживание", 3_500_00))
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort), params={"invoice": str(night.id)}).text
    action, shown = form_of(page, "pay-form")
    assert action == f"{folio_url(resort)}/payments"
    assert shown["pay-amount"] == "3500,00" and shown["pay-invoice_id"] == str(night.id)
    assert shown["pay-payer"] == "Анна Петрова" and shown["pay-operation_id"]
    assert 'id="pay" open' in page

    too_much = submit(
        desk, page, "pay-form", pay__payment_type_id=str(resort.card), pay__amount="3 600"
    )
    assert too_much.status_code == 422
    assert (
        field_error(too_much.text, "pay-amount") == "По счёту осталось оплатить только 3 500,00 ₽."
    )
    assert resort.count(hotel_payments) == 0

    paid = submit(desk, page, "pay-form", pay__payment_type_id=str(resort.card))
    assert paid.status_code == 303
    assert "Оплата 3 500,00 ₽ проведена." in flash(desk.follow(paid).text)
    twice = submit(desk, page, "pay-form", pay__payment_type_id=str(resort.card))
    assert twice.status_code == 303
    assert "Эта оплата уже проведена: форма была отправлена дважды." in flash(
        desk.follow(twice).text
    )
    folio = resort.folio()
    assert len(folio.payments) == 1 and folio.balance_minor == 0
    assert folio.invoices[0].status == "paid"
    resort.assert_clean()


def test_payment_types_the_desk_cannot_use_and_void_invoices_are_refused(
    web: Web, resort: Resort
) -> None:
    night = charge(resort, ("Проживание", 3_500_00))
    minibar = charge(resort, ("Мини-бар", 500_00), kind="service")
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort)).text
    _, shown = form_of(page, "pay-form")
    assert shown["pay-amount"] == "4000,00" and shown["pay-invoice_id"] == ""
    listed = block(page, "pay-form").split('name="pay-invoice_id"')[0]
    assert "Наличные" in listed and "Банковская карта" in listed
    assert "Закрытие на номер" not in listed and "Бонусные баллы" not in listed

    resort.tx(
        lambda c: update_payment_type(
            c, tenant_id=resort.t, payment_type_id=resort.card, enabled=False, actor=ACTOR
        )
    )
    for type_id in (resort.card, resort.room_charge, resort.points):
        refused = submit(desk, page, "pay-form", pay__payment_type_id=str(type_id))
        assert refused.status_code == 422
        assert field_error(refused.text, "pay-payment_type_id").startswith(
            "Этот тип платежа здесь не подходит"
        )
    resort.tx(
        lambda c: folios.void_invoice(c, tenant_id=resort.t, invoice_id=minibar.id, actor=ACTOR)
    )
    void = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(resort.cash),
        pay__invoice_id=str(minibar.id),
        pay__amount="500",
    )
    assert void.status_code == 422
    assert field_error(void.text, "pay-invoice_id") == "Счёт аннулирован: оплатить его нельзя."
    assert resort.count(hotel_payments) == 0

    # A payment for the folio pays the oldest invoices first; the rest is the guest's credit.
    more = submit(
        desk, page, "pay-form", pay__payment_type_id=str(resort.cash), pay__amount="5 000"
    )
    assert more.status_code == 303
    folio = resort.folio()
    assert folio.credit_minor == 1_500_00 and folio.invoices[0].id == night.id
    assert folio.invoices[0].status == "paid"
    shown_page = desk.get(folio_url(resort)).text
    assert text_by_testid(shown_page, "folio-credit") == "1\u00a0500,00\u00a0₽"


def test_the_payment_form_follows_the_chosen_invoice_and_the_receipt_box(
    web: Web, resort: Resort
) -> None:
    charge(resort, ("Проживание", 3_500_00))
    minibar = charge(resort, ("Мини-бар", 500_00), kind="service")
    register(resort, "http://127.0.0.1:9")
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort)).text
    _, shown = form_of(page, "pay-form")
    assert 'data-testid="receipt-fields"' not in page  # until the box is ticked
    htmx = {"HX-Request": "true", "HX-Target": "pay-form"}
    chosen = desk.post(
        f"{folio_url(resort)}/pay-form",
        {**shown, "pay-invoice_id": str(minibar.id)},
        headers={**htmx, "HX-Trigger-Name": "pay-invoice_id"},
    )
    assert chosen.status_code == 200 and "<html" not in chosen.text
    _, again = form_of(chosen.text, "pay-form")
    assert again["pay-amount"] == "500,00" and again["pay-invoice_id"] == str(minibar.id)
    ticked = desk.post(
        f"{folio_url(resort)}/pay-form",
        {**again, "pay-amount": "450,00", "pay-print_receipt": "y"},
        headers={**htmx, "HX-Trigger-Name": "pay-print_receipt"},
    )
    _, receipt = form_of(ticked.text, "pay-form")
    assert 'data-testid="receipt-fields"' in ticked.text
    assert receipt["pay-amount"] == "450,00"  # what was typed stays
    assert receipt["pay-receipt_email"] == "anna@example.ru"
    assert receipt["pay-receipt_phone"] == "+79161234567"
    assert receipt["pay-register_id"]


# --------------------------------------------------------------------------- refunds


def test_a_refund_never_exceeds_the_payment_and_is_made_once(web: Web, resort: Resort) -> None:
    night = charge(resort, ("Проживание", 3_500_00))
    payment = resort.tx(
        lambda c: folios.pay(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=resort.card,
            amount_minor=3_500_00,
            invoice_id=night.id,
            operation_id="card-1",
            actor=ACTOR,
        )
    )
    desk = web.sign_in("front_desk")
    folio_page = desk.get(folio_url(resort)).text
    assert f'data-testid="refund-payment-{payment.id}"' in folio_page
    page = desk.get(folio_url(resort), params={"refund": str(payment.id)}).text
    _, shown = form_of(page, "refund-form")
    assert shown["refund-amount"] == "3500,00" and shown["refund-direction"] == "card"
    assert shown["refund-payment_type_id"] == str(resort.card)

    too_much = submit(desk, page, "refund-form", refund__amount="3 600")
    assert too_much.status_code == 422
    assert field_error(too_much.text, "refund-amount") == "Вернуть можно не больше 3 500,00 ₽."
    nowhere = submit(desk, page, "refund-form", refund__direction="pocket", refund__amount="100")
    assert nowhere.status_code == 422
    assert field_error(nowhere.text, "refund-direction") == "Выберите направление возврата."
    assert resort.count(hotel_refunds) == 0

    done = submit(desk, page, "refund-form", refund__amount="1 000", refund__reason="Шумно")
    assert done.status_code == 303
    assert "Возврат 1 000,00 ₽ оформлен." in flash(desk.follow(done).text)
    twice = submit(desk, page, "refund-form", refund__amount="1 000", refund__reason="Шумно")
    assert "Этот возврат уже оформлен" in flash(desk.follow(twice).text)
    folio = resort.folio()
    assert len(folio.refunds) == 1 and folio.payments[0].refunded_minor == 1_000_00
    assert folio.invoices[0].status == "partly_paid" and folio.owed_minor == 1_000_00
    after = desk.get(folio_url(resort)).text
    refunds = text_of(block(after, "refunds"))
    assert "На банковскую карту" in refunds and "Шумно" in refunds and "1 000,00 ₽" in refunds

    rest = desk.get(folio_url(resort), params={"refund": str(payment.id)}).text
    assert form_of(rest, "refund-form")[1]["refund-amount"] == "2500,00"
    resort.assert_clean()


# --------------------------------------------------------------------------- points (seed 000)


def test_seed_000_paying_a_bill_with_points_in_six_steps(web: Web, resort: Resort) -> None:
    card = resort.loyalty_card(5_000)
    charge(resort, ("Проживание", 10_000_00))
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort)).text
    assert 'data-testid="points-panel"' in page  # the guest owes: points may pay

    # Steps 1-2: the card's number, "Ask" (htmx swaps the answer in).
    asked = desk.get(
        f"{folio_url(resort)}/points",
        params={"card": card.number},
        headers={"HX-Request": "true", "HX-Target": "points-offers"},
    )
    assert asked.status_code == 200 and "<html" not in asked.text
    # Steps 3-4: per points type, the card's balance and what may be spent (30 %).
    offer = text_of(block(asked.text, f"points-offer-{resort.points}"))
    assert offer == "Бонусные баллы (бонусы) 5 000 баллов 3 000 баллов 3 000,00 ₽"

    # Step 5: more than may be spent is refused, clearly, and nothing is written.
    above = submit(desk, asked.text, "points-pay-form", points__points="3 500")
    assert above.status_code == 422
    assert field_error(above.text, "points-points") == (
        "Сейчас по этому счёту можно списать не больше 3 000 баллов."
    )
    assert card_points(resort, card.number) == 5_000 and resort.count(hotel_payments) == 0
    assert 'id="points" open' in above.text

    # Step 6: Save. The folio shows the payment; the guest owes 7,000.
    saved = submit(desk, asked.text, "points-pay-form", points__points="3000")
    assert saved.status_code == 303
    shown = desk.follow(saved).text
    assert "Оплата 3 000,00 ₽ проведена." in flash(shown)
    assert text_by_testid(shown, "folio-owed") == "7\u00a0000,00\u00a0₽"
    assert f"3 000 баллов с карты {card.number}" in text_of(shown)
    again = submit(desk, asked.text, "points-pay-form", points__points="3000")
    assert "уже проведена" in flash(desk.follow(again).text)
    assert card_points(resort, card.number) == 2_000
    assert resort.count(hotel_payments) == 1
    resort.assert_clean()


def test_points_are_refused_clearly_when_they_cannot_pay(web: Web, resort: Resort) -> None:
    card = resort.loyalty_card(5_000)
    desk = web.sign_in("front_desk")
    # The guest owes nothing: no points panel, and asking says why.
    assert 'data-testid="points-panel"' not in desk.get(folio_url(resort)).text
    nothing = desk.get(f"{folio_url(resort)}/points", params={"card": card.number})
    assert nothing.status_code == 200
    assert text_by_testid(nothing.text, "points-error") == (
        "Гость ничего не должен: баллами можно оплатить только долг "
        "(сальдо должно быть отрицательным)."
    )
    charge(resort, ("Проживание", 1_000_00))
    unknown = desk.get(
        f"{folio_url(resort)}/points",
        params={"card": "999999"},
        headers={"HX-Request": "true", "HX-Target": "points-offers"},
    )
    assert text_by_testid(unknown.text, "points-error") == "Карты с таким номером нет."
    asked = desk.get(
        f"{folio_url(resort)}/points",
        params={"card": card.number},
        headers={"HX-Request": "true", "HX-Target": "points-offers"},
    ).text
    # The bill was paid meanwhile: saving is refused, nothing written.
    resort.tx(
        lambda c: folios.pay(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=resort.cash,
            amount_minor=1_000_00,
            operation_id="cash-all",
            actor=ACTOR,
        )
    )
    late = submit(desk, asked, "points-pay-form", points__points="100")
    assert late.status_code == 422
    assert "Гость ничего не должен" in late.text
    assert card_points(resort, card.number) == 5_000

    # The points live in a loyalty centre that does not answer.
    charge(resort, ("Ужин", 2_000_00))
    resort.tx(
        lambda c: set_centre(
            c,
            tenant_id=resort.t,
            base_url="http://127.0.0.1:9/",
            api_key="kpt_abcdef123456_" + "x" * 43,
            timeout_ms=500,
            actor=ACTOR,
        )
    )
    down = desk.get(f"{folio_url(resort)}/points", params={"card": card.number})
    assert text_by_testid(down.text, "points-error") == (
        "Процессинговый центр не отвечает; ничего не записано. Попробуйте чуть позже."
    )
    saving = submit(desk, asked, "points-pay-form", points__points="100")
    assert saving.status_code == 422
    assert "Процессинговый центр не отвечает" in saving.text
    assert resort.count(hotel_payments) == 1


def test_points_refusals_speak_english_too(web: Web, resort: Resort) -> None:
    card = resort.loyalty_card(5_000)
    charge(resort, ("Room", 10_000_00))
    desk = english(web)
    asked = desk.get(
        f"{folio_url(resort)}/points",
        params={"card": card.number},
        headers={"HX-Request": "true", "HX-Target": "points-offers"},
    ).text
    assert "May be spent" in text_of(asked)
    above = submit(desk, asked, "points-pay-form", points__points="3500")
    assert field_error(above.text, "points-points") == (
        "At most 3,000 баллов may be spent on this folio now."
    )


# --------------------------------------------------------------------------- voiding


def test_an_unpaid_desk_charge_is_voided_and_others_are_not(web: Web, resort: Resort) -> None:
    minibar = charge(resort, ("Мини-бар", 500_00), kind="service")
    night = charge(resort, ("Проживание", 3_500_00))
    order = pos_order(resort)
    resort.tx(
        lambda c: folios.pay(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=resort.cash,
            amount_minor=100_00,
            invoice_id=night.id,
            operation_id="cash-part",
            actor=ACTOR,
        )
    )
    desk = web.sign_in("front_desk")
    voided = desk.post(f"{folio_url(resort)}/invoices/{minibar.id}/void", {})
    shown = desk.follow(voided).text
    assert f"Счёт № {minibar.id} аннулирован." in flash(shown)
    assert f'<tr data-testid="invoice-{minibar.id}" data-status="void">' in shown
    paid = desk.follow(desk.post(f"{folio_url(resort)}/invoices/{night.id}/void", {})).text
    assert "По счёту есть оплаты: аннулировать его нельзя" in flash(paid)
    from_pos = desk.follow(desk.post(f"{folio_url(resort)}/invoices/{order.id}/void", {})).text
    assert "Заказ из ресторана отменяется только на его кассе" in flash(from_pos)
    folio = resort.folio()
    assert [i.status for i in folio.invoices] == ["void", "partly_paid", "unpaid"]
    assert folio.owed_minor == 3_400_00 + 1_090_00
    other = desk.post(f"{HOME}/folios/{resort.folio_id}/invoices/999999/void", {})
    assert other.status_code == 404


# --------------------------------------------------------------------------- receipts (H-6)


def test_a_payment_with_a_receipt_is_registered_and_its_refund_too(
    web: Web, resort: Resort
) -> None:
    order = pos_order(resort)
    with atol_stand_in(wait_polls=0) as atol:
        register_id = str(register(resort, "", settings=atol.register_settings()))
        desk = web.sign_in("front_desk")
        page = desk.get(folio_url(resort), params={"invoice": str(order.id)}).text
        paid = submit(
            desk,
            page,
            "pay-form",
            pay__payment_type_id=str(resort.card),
            pay__print_receipt="y",
            pay__register_id=register_id,
            pay__receipt_email="anna@example.ru",
            pay__receipt_phone="",
        )
        assert paid.status_code == 303, text_of(paid.text)[:400]
        shown_page = desk.follow(paid).text
        assert "Касса приняла чек и регистрирует его." in flash(shown_page)
        payment = resort.folio().payments[0]
        cell = block(shown_page, f"payment-{payment.id}")
        found = re.search(r'data-testid="receipt-(\d+)" data-status="wait"', cell)
        assert found is not None, "the register has the receipt"
        receipt_id = found.group(1)
        asked = desk.follow(desk.post(f"{folio_url(resort)}/receipts/{receipt_id}/retry", {}))
        assert "Чек зарегистрирован." in flash(asked.text)
        document = atol.documents_by_external_id()[f"kopilka-{resort.t}-hotel_payment-{payment.id}"]
        assert document.operation == "sell" and document.total == 1_090

        refund_page = desk.get(folio_url(resort), params={"refund": str(payment.id)}).text
        refunded = submit(
            desk,
            refund_page,
            "refund-form",
            refund__print_receipt="y",
            refund__register_id=register_id,
            refund__receipt_email="anna@example.ru",
            refund__reason="Гость передумал",
        )
        assert refunded.status_code == 303
        after = desk.follow(refunded).text
        (refund,) = resort.folio().refunds
        assert "чек возврата" in text_of(block(after, f"refund-{refund.id}"))
        assert f"kopilka-{resort.t}-hotel_refund-{refund.id}" in atol.documents_by_external_id()


def test_a_register_that_does_not_answer_never_loses_the_payment(web: Web, resort: Resort) -> None:
    night = charge(resort, ("Проживание", 3_500_00))
    dead = register(resort, "http://127.0.0.1:9")
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort), params={"invoice": str(night.id)}).text
    no_contact = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(resort.cash),
        pay__print_receipt="y",
        pay__register_id=str(dead),
        pay__receipt_email="",
        pay__receipt_phone="",
    )
    assert no_contact.status_code == 422
    assert field_error(no_contact.text, "pay-receipt_email") == (
        "Укажите эл. почту или телефон плательщика для электронной копии чека."
    )
    bad_phone = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(resort.cash),
        pay__print_receipt="y",
        pay__register_id=str(dead),
        pay__receipt_email="",
        pay__receipt_phone="звоните",
    )
    assert field_error(bad_phone.text, "pay-receipt_phone") == "Проверьте эл. почту и телефон."
    no_register = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(resort.cash),
        pay__print_receipt="y",
        pay__register_id="",
    )
    assert field_error(no_register.text, "pay-register_id") == "Выберите кассу из списка."
    assert resort.count(hotel_payments) == 0

    paid = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(resort.cash),
        pay__print_receipt="y",
        pay__register_id=str(dead),
        pay__receipt_email="anna@example.ru",
    )
    assert paid.status_code == 303
    shown = desk.follow(paid).text
    assert "Касса не ответила; чек будет отправлен повторно автоматически." in flash(shown)
    folio = resort.folio()
    assert folio.invoices[0].status == "paid" and folio.balance_minor == 0
    receipt = re.search(r'data-testid="receipt-(\d+)" data-status="pending"', shown)
    assert receipt is not None and 'data-testid="receipt-error"' in shown
    retried = desk.follow(desk.post(f"{folio_url(resort)}/receipts/{receipt.group(1)}/retry", {}))
    assert "Касса не ответила" in flash(retried.text)
    assert desk.post(f"{folio_url(resort)}/receipts/999999/retry", {}).status_code == 404


# --------------------------------------------------------------------------- who may


def test_a_cashier_takes_no_payment_on_a_folio(web: Web, resort: Resort) -> None:
    charge(resort, ("Проживание", 3_500_00))
    page = web.sign_in("front_desk").get(folio_url(resort)).text
    _, fields = form_of(page, "pay-form")
    cashier = web.sign_in("cashier")
    refused = cashier.post(
        f"{folio_url(resort)}/payments", {**fields, "pay-payment_type_id": str(resort.cash)}
    )
    assert refused.status_code == 403
    assert resort.count(hotel_payments) == 0


def test_a_discounted_line_is_on_the_receipt_at_its_discounted_price(
    web: Web, resort: Resort
) -> None:
    """A line with a discount (its sum is not price times quantity) goes on the fiscal
    receipt at the price after the discount, so the register takes it and the invoice is
    paid with its receipt (the register here does not answer: the receipt waits)."""
    discounted = resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            kind="service",
            description="Кофе со скидкой",
            lines=[folios.LineIn("Кофе ×2, скидка 10 %", 576_00, 2000, 320_00)],
            operation_id="discounted",
            actor=ACTOR,
        )
    )
    dead = register(resort, "http://127.0.0.1:9")
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort), params={"invoice": str(discounted.id)}).text
    paid = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(resort.card),
        pay__print_receipt="y",
        pay__register_id=str(dead),
        pay__receipt_email="anna@example.ru",
    )
    assert paid.status_code == 303, paid.text
    assert [i.status for i in resort.folio().invoices] == ["paid"]
    (receipt,) = resort.read(lambda c: fiscal.list_receipts(c, resort.t))
    (item,) = receipt.payload["items"]
    assert (item["price_minor"], item["quantity_milli"], item["amount_minor"]) == (
        288_00,
        2000,
        576_00,
    )
    assert receipt.status == "pending"  # the register did not answer; it is retried


def test_the_new_stay_and_hotel_settings_speak_english(web: Web, resort: Resort) -> None:
    desk = english(web)
    new = text_of(desk.get(f"{HOME}/stays/new").text)
    assert "New stay" in new and "Main guest" in new and "Check in now" in new
    owner = english(web, "owner")
    settings = text_of(owner.get("/settings/hotel").text)
    assert "Add a property" in settings and "Add a room" in settings and "Room number" in settings
    folio = text_of(owner.get(folio_url(resort)).text)
    assert "Charge services" in folio and "Pay with points" not in folio  # nothing owed


def test_a_gift_certificate_pays_at_the_desk(web: Web, resort: Resort) -> None:
    from kopilka.loyalty import certificates as gc
    from kopilka.payments.types import PaymentKind, create_payment_type

    def setup(c: Any) -> int:
        gc.issue_certificate(c, tenant_id=resort.t, number="900555", actor=ACTOR)
        gc.sell_certificate(
            c,
            tenant_id=resort.t,
            number="900555",
            nominal_minor=2_000_00,
            operation_id="sale-900555",
            actor=ACTOR,
        )
        return create_payment_type(
            c,
            tenant_id=resort.t,
            name="Сертификат",
            kind=PaymentKind.GIFT_CERTIFICATE,
            actor=ACTOR,
        ).id

    type_id = resort.tx(setup)
    night = charge(resort, ("Проживание", 3_500_00))
    desk = web.sign_in("front_desk")
    page = desk.get(folio_url(resort), params={"invoice": str(night.id)}).text
    unknown = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(type_id),
        pay__amount="1000",
        pay__certificate="123",
    )
    assert unknown.status_code == 422
    assert field_error(unknown.text, "pay-certificate") == (
        "Подарочного сертификата с таким номером нет."
    )
    too_much = submit(
        desk, page, "pay-form", pay__payment_type_id=str(type_id), pay__certificate="900555"
    )
    assert field_error(too_much.text, "pay-certificate") == "На подарочном сертификате меньше."
    paid = submit(
        desk,
        page,
        "pay-form",
        pay__payment_type_id=str(type_id),
        pay__amount="2000",
        pay__certificate="900555",
    )
    assert paid.status_code == 303, paid.text
    folio = resort.folio()
    assert folio.owed_minor == 1_500_00 and folio.payments[0].card_number == "900555"
    resort.assert_clean()
