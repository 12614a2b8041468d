"""In a real browser, at the front desk of the demo hotel:

(a) seed 000, paying a bill with points in six steps: a guest is checked into room 91
    and charged 10 000,00; their card holds 5 000 points; the points type pays at most
    30 %; "Ask" shows that 3 000 may be spent; 3 500 is refused with a message and
    nothing is written; 3 000 is saved; the folio shows the payment and owes 7 000,00.
(b) seed 001, a restaurant order charged to room 12B: it is on the folio, unpaid, its
    dishes shown; it is paid by card with "Print a receipt" on a cash register (the
    ATOL stand-in), the receipt registered; then refunded with a refund receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.demo import DEMO_PROGRAM, DEMO_TERMINAL
from kopilka.fiscal.registers import create_register
from kopilka.hotel import folios, room_charge, stays
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.cards import find_card, issue_card
from kopilka.loyalty.documents import accrue_points
from kopilka.loyalty.programs import list_programs
from kopilka.tenancy.actions import list_terminals
from tests.fiscal.atol_server import atol_stand_in

from .conftest import Live, Watched

T = TypeVar("T")
ACTOR = Actor.cli("browser tests")
CARD = "27799990005"


def _tx(live: Live, work: Callable[[Connection], T]) -> T:
    return run_transaction(live.engine, work)


def _room(conn: Connection, live: Live, number: str) -> stays.RoomView:
    return next(r for r in stays.list_rooms(conn, live.demo.tenant.id) if r.number == number)


def _card_with_points(live: Live, points_minor: int) -> None:
    t = live.demo.tenant.id

    def work(conn: Connection) -> None:
        program = next(p for p in list_programs(conn, t) if p.name == DEMO_PROGRAM)
        issue_card(conn, tenant_id=t, program_id=program.id, number=CARD, actor=ACTOR)
        accrue_points(
            conn,
            tenant_id=t,
            card_numbers=[CARD],
            amount_minor=points_minor,
            reason="welcome",
            actor=ACTOR,
            document_id=f"welcome-{CARD}",
        )

    _tx(live, work)


def _card_balance(live: Live) -> int:
    with live.engine.connect() as conn:
        return find_card(conn, live.demo.tenant.id, number=CARD).balance_minor


def _owed(page: Watched) -> str:
    return str(page.page.inner_text("[data-testid=folio-owed]")).replace("\u00a0", " ")


def test_seed_000_a_bill_paid_with_points_in_six_steps(page: Watched) -> None:
    _card_with_points(page.live, 5_000_00)  # the demo's bonus points have kopecks
    page.sign_in("front_desk")
    page.page.click("nav.sidebar >> text=Ресепшн")
    page.page.wait_for_selector("[data-testid=stays-table]")

    # A guest is checked into room 91 at the desk.
    page.page.click("[data-testid=new-stay]")
    form = page.page.locator("[data-testid=new-stay-form]")
    form.locator("select[name=room_id]").select_option(label="Гостиница «Берег» · 91 (Стандарт)")
    form.locator("input[name=guest_name]").fill("Сергей Морозов")
    form.locator("input[name=guest_phone]").fill("+7 915 700-80-90")
    form.locator("[data-testid=create-stay]").click()
    page.page.wait_for_selector("text=Гость Сергей Морозов заселён в номер 91.")
    page.page.click("[data-testid=stay-folios] a")
    page.page.wait_for_selector("[data-testid=folio-title]")
    # Nothing is owed yet: no paying with points (seed 000: "сальдо должно быть отрицательным").
    assert page.page.locator("[data-testid=points-panel]").count() == 0

    # The night is charged: 10 000,00.
    page.page.click("[data-testid=charge-panel] summary")
    charge = page.page.locator("[data-testid=charge-form]")
    charge.locator("input[name=charge-description]").fill("Проживание")
    charge.locator("input[name=charge-lines-0-name]").fill("Номер «Стандарт», 2 ночи")
    charge.locator("input[name=charge-lines-0-quantity]").fill("2")
    charge.locator("input[name=charge-lines-0-price]").fill("5 000,00")
    charge.locator("[data-testid=charge]").click()
    page.page.wait_for_selector("[data-testid=folio-owed]")
    assert _owed(page) == "10 000,00 ₽"

    # Steps 1-2: the card's number, "Запросить".
    page.page.click("[data-testid=points-panel] summary")
    page.page.fill("[data-testid=points-card-number]", CARD)
    page.page.click("[data-testid=points-ask]")
    offer = page.page.locator("[data-testid=points-offers] tbody tr").first
    offer.wait_for()
    # Steps 3-4: the type, the card's balance, what may be spent (30 % of 10 000).
    assert offer.locator("[data-testid=points-balance]").inner_text().replace("\u00a0", " ") == (
        "5 000,00 Bonus points"
    )
    assert offer.locator("[data-testid=points-cap]").inner_text().replace("\u00a0", " ") == (
        "3 000,00 Bonus points"
    )
    assert offer.locator("[data-testid=points-pays]").inner_text().replace("\u00a0", " ") == (
        "3 000,00 ₽"
    )

    # Step 5: 3 500 is more than may be spent: refused, clearly; nothing is written.
    pay = page.page.locator("[data-testid=points-pay-form]")
    pay.locator("select[name=points-payment_type_id]").select_option(label="Бонусы")
    pay.locator("input[name=points-points]").fill("3 500")
    pay.locator("[data-testid=points-save]").click()
    error = page.page.locator("[data-testid=error-points-points]")
    error.wait_for()
    assert error.inner_text().replace("\u00a0", " ") == (
        "Сейчас по этому счёту можно списать не больше 3 000,00 Bonus points."
    )
    assert _owed(page) == "10 000,00 ₽"
    assert _card_balance(page.live) == 5_000_00

    # Step 6: 3 000, Save. The folio shows the payment; the guest owes 7 000,00.
    pay = page.page.locator("[data-testid=points-pay-form]")
    pay.locator("input[name=points-points]").fill("3000")
    pay.locator("[data-testid=points-save]").click()
    page.page.wait_for_selector("text=Оплата 3 000,00 ₽ проведена.")
    assert _owed(page) == "7 000,00 ₽"
    payments = page.page.inner_text("[data-testid=payments]").replace("\u00a0", " ")
    assert "Бонусы" in payments and f"3 000,00 Bonus points с карты {CARD}" in payments
    assert _card_balance(page.live) == 2_000_00


def _stay_with_an_order(live: Live) -> None:
    """Room 12B checked in, and the bar's order closed to it at the terminal (P-7)."""
    t = live.demo.tenant.id
    today = utcnow().date()

    def work(conn: Connection) -> None:
        guest = stays.create_guest(
            conn,
            tenant_id=t,
            full_name="Елена Соколова",
            phone="+7 926 555-44-11",
            email="elena@example.ru",
            actor=ACTOR,
        )
        stays.create_stay(
            conn,
            tenant_id=t,
            room_id=_room(conn, live, "12B").id,
            arrival=today,
            departure=today + timedelta(days=2),
            guest_ids=[guest.id],
            check_in=True,
            actor=ACTOR,
        )
        terminal = next(x for x in list_terminals(conn, t) if x.name == DEMO_TERMINAL)
        room_charge.post_room_charge(
            conn,
            tenant_id=t,
            terminal_id=terminal.id,
            room="12B",
            guest_id=guest.id,
            check_id="Бар-777",
            lines=[
                folios.LineIn("Паста карбонара", 890_00),
                folios.LineIn("Лимонад", 700_00, 2000, 350_00),
            ],
            payment_code="12",
            actor=ACTOR,
        )

    _tx(live, work)


def _register(live: Live, settings: dict[str, Any]) -> None:
    _tx(
        live,
        lambda conn: create_register(
            conn,
            tenant_id=live.demo.tenant.id,
            name="Касса ресепшн (стенд)",
            settings=settings,
            actor=ACTOR,
        ),
    )


def _receipt_status(page: Watched, row: str) -> str:
    return str(page.page.locator(f"{row} [data-testid=receipt-status]").inner_text())


def test_seed_001_a_room_charge_paid_with_a_receipt_then_refunded(page: Watched) -> None:
    _stay_with_an_order(page.live)
    with atol_stand_in(wait_polls=0) as atol:
        _register(page.live, atol.register_settings())
        page.sign_in("front_desk")
        page.goto("/front-desk")
        assert page.page.locator("[data-testid=stays-table] tr[data-room='90']").count() == 1
        page.page.fill("[data-testid=stay-search-q]", "Соколова")  # found as one types
        page.page.wait_for_selector(
            "[data-testid=stays-table] tr[data-room='90']", state="detached"
        )
        assert page.page.locator("[data-testid=stays-table] tbody tr").count() == 1
        page.page.click("[data-testid=stays-table] tr[data-room='12B'] >> text=Счёт гостя")

        # The order is on the folio, unpaid; "Детали услуги" shows what was ordered.
        order = page.page.locator("tr[data-status=unpaid]").first
        order.wait_for()
        assert "Заказ из ресторана" in order.inner_text()
        order.locator("summary").click()
        details = order.locator("details").inner_text().replace("\u00a0", " ")
        assert "Бар-777" in details and DEMO_TERMINAL in details
        assert "Паста карбонара" in details and "Лимонад" in details and "700,00 ₽" in details

        # "Оформить платёж" by card with "Печатать чек".
        order.locator("text=Оформить платёж").click()
        pay = page.page.locator("[data-testid=pay-form]")
        pay.wait_for()
        assert pay.locator("input[name=pay-amount]").input_value() == "1590,00"
        pay.locator("select[name=pay-payment_type_id]").select_option(label="Банковская карта")
        pay.locator("input[name=pay-print_receipt]").check()
        page.page.wait_for_selector("[data-testid=pay-form] [data-testid=receipt-fields]")
        pay = page.page.locator("[data-testid=pay-form]")
        assert pay.locator("input[name=pay-receipt_email]").input_value() == "elena@example.ru"
        pay.locator("select[name=pay-register_id]").select_option(label="Касса ресепшн (стенд)")
        pay.locator("[data-testid=take-payment]").click()
        page.page.wait_for_selector("text=Касса приняла чек и регистрирует его.")
        row = "[data-testid=payments] tbody tr"
        assert _receipt_status(page, row) == "Регистрируется"
        assert page.page.locator("tr[data-status=paid]").count() == 1
        # The register fiscalises it; asked, it says so.
        page.page.locator(f"{row} >> text=Запросить статус").click()
        page.page.wait_for_selector("text=Чек зарегистрирован.")
        assert _receipt_status(page, row) == "Зарегистрирован"

        # "Оформить возврат" to the card, with a refund receipt.
        page.page.locator(f"{row} >> text=Оформить возврат").click()
        refund = page.page.locator("[data-testid=refund-form]")
        refund.wait_for()
        assert refund.locator("input[name=refund-amount]").input_value() == "1590,00"
        assert refund.locator("select[name=refund-direction]").input_value() == "card"
        refund.locator("input[name=refund-reason]").fill("Гость не заказывал лимонад")
        refund.locator("input[name=refund-print_receipt]").check()
        page.page.wait_for_selector("[data-testid=refund-form] [data-testid=receipt-fields]")
        refund = page.page.locator("[data-testid=refund-form]")
        refund.locator("[data-testid=make-refund]").click()
        page.page.wait_for_selector("text=Возврат 1 590,00 ₽ оформлен.")
        refunds = page.page.locator("[data-testid=refunds] tbody tr")
        assert refunds.count() == 1
        assert "чек возврата" in refunds.first.inner_text()
        assert _receipt_status(page, "[data-testid=refunds] tbody tr") == "Регистрируется"
        operations = sorted(d.operation for d in atol.documents_by_external_id().values())
        assert operations == ["sell", "sell_refund"]
        assert page.page.inner_text("[data-testid=folio-owed]").replace("\u00a0", " ") == (
            "1 590,00 ₽"
        )
