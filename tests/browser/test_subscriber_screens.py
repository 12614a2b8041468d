"""In a real browser, an internet provider's administrator lives through seed 003:

a daily tariff of 20,00 and the seed's promised payment "600 for 5 days costing 200" are
set up in Settings → Subscribers; a subscriber is added and activated by hand (a zero
balance cannot pay the first day: blocked for debt); a top-up of 100,00 brings the
service back; the promised payment is taken from the card, which shows what it costs
beforehand, and the disconnection threshold goes from 0,00 to -600,00 while the
connection price is charged.
"""

from __future__ import annotations

import uuid

from .conftest import Watched


def _text(page: Watched, selector: str) -> str:
    return str(page.page.inner_text(selector)).replace("\u00a0", " ").strip()


def test_seed_003_a_promised_payment_taken_at_the_desk(page: Watched) -> None:
    tag = uuid.uuid4().hex[:4]
    tariff_name, service_name = f"Домашний {tag}", f"Доверительный {tag}"
    account = f"LS-{tag.upper()}"
    page.sign_in("administrator")

    # Settings → Subscribers: the tariff, with its options tab in the seed's words.
    page.page.click("nav.sidebar >> text=Настройки")
    page.page.click(".subnav >> text=Абоненты")
    page.page.click("[data-testid=new-tariff]")
    form = page.page.locator("[data-testid=tariff-form]")
    assert "Прошлый реал. платеж не старее n дней" in form.inner_text()
    form.locator("input[name=name]").fill(tariff_name)
    form.locator("input[name=price]").fill("20,00")
    form.locator("select[name=charge_method]").select_option("daily")
    form.locator("[data-testid=save-tariff]").click()
    page.page.wait_for_selector(f"text=Тариф «{tariff_name}» добавлен.")

    # The promised payment service: 600 for 5 days, its connection costing 200.
    page.page.click("[data-testid=new-service]")
    form = page.page.locator("[data-testid=service-form]")
    form.locator("input[name=name]").fill(service_name)
    form.locator("input[name=amount]").fill("600")
    # A field left wrong is said by its field, what was typed kept.
    form.locator("input[name=commission]").fill("101")
    form.locator("[data-testid=save-service]").click()
    page.page.wait_for_selector("[data-testid=error-commission]")
    assert "от 0 до 100 %" in _text(page, "[data-testid=error-commission]")
    form = page.page.locator("[data-testid=service-form]")
    assert form.locator("input[name=name]").input_value() == service_name
    form.locator("input[name=commission]").fill("0")
    form.locator("input[name=days]").fill("5")
    form.locator("input[name=connection_price]").fill("200")
    form.locator("select[name=charge_method]").select_option("monthly")
    form.locator("select[name=tariff_ids]").select_option(label=tariff_name)
    form.locator("[data-testid=save-service]").click()
    page.page.wait_for_selector(f"text=Услуга обещанного платежа «{service_name}» добавлена.")
    page.shot("subscriber-settings")

    # A new subscriber, from the section's list.
    page.page.click("nav.sidebar >> text=Абоненты")
    page.page.wait_for_selector("[data-testid=subscribers-table]")
    page.page.click("[data-testid=new-subscriber]")
    form = page.page.locator("[data-testid=new-subscriber-form]")
    form.locator("input[name=account_no]").fill(account)
    form.locator("input[name=full_name]").fill("Ольга Сетевая")
    form.locator("input[name=phone]").fill("+7 916 555-44-33")
    form.locator("select[name=tariff_id]").select_option(
        label=f"{tariff_name} · 20,00\u00a0₽ · Ежедневно"
    )
    form.locator("[data-testid=create-subscriber]").click()
    page.page.wait_for_selector("[data-testid=subscriber-title]")
    assert account in _text(page, "[data-testid=subscriber-title]")
    assert _text(page, "[data-testid=subscriber-threshold]") == "0,00 ₽"

    # Activated by hand: nothing on the balance for the first day, so blocked for debt.
    page.page.click("[data-testid=activate]")
    page.page.wait_for_selector("text=Обслуживание начато.")
    assert _text(page, "[data-testid=subscriber-status]") == "Заблокирован за долг"

    # A top-up brings the service back; the first day is charged.
    top_up = page.page.locator("[data-testid=top-up-form]")
    top_up.locator("input[name=topup-amount]").fill("100")
    top_up.locator("select[name=topup-method]").select_option("cash")
    top_up.locator("[data-testid=top-up]").click()
    page.page.wait_for_selector("text=Пополнение на 100,00 ₽ проведено.")
    assert _text(page, "[data-testid=subscriber-status]") == "Активен"
    assert _text(page, "[data-testid=subscriber-balance]") == "80,00 ₽"

    # The card says what the promised payment costs before it is taken.
    offer = page.page.locator("[data-testid=promised-offers] [data-testid^=offer-]").filter(
        has_text=service_name
    )
    details = offer.inner_text().replace("\u00a0", " ")
    assert "на 600,00 ₽" in details and "подключение 200,00 ₽" in details
    verdict = offer.locator("[data-testid^=offer-verdict]")
    assert verdict.inner_text().strip() == "Можно подключить"
    offer.locator("input[type=radio]").check()
    page.shot("subscriber-card-before")
    page.page.click("[data-testid=take-promised]")
    page.page.wait_for_selector("text=порог отключения теперь -600,00 ₽")
    assert _text(page, "[data-testid=subscriber-threshold]") == "-600,00 ₽"
    assert _text(page, "[data-testid=subscriber-base-threshold]") == "0,00 ₽"
    assert _text(page, "[data-testid=subscriber-balance]") == "-120,00 ₽"  # 80 - 200
    assert "Действует" in page.page.inner_text("[data-testid=promised-table]")
    # A second one is refused on the card itself, with its reason.
    assert verdict.inner_text().strip() == "Обещанный платёж уже действует."
    history = page.page.inner_text("[data-testid=subscriber-history]")
    assert "Взят обещанный платёж" in history and "Подключение обещанного платежа" in history
    page.shot("subscriber-card")
