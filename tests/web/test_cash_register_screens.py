"""Settings -> Cash registers and the Receipts screen (SPEC H-6): an owner adds the
hotel's ATOL Online register, mistakes are shown by their fields in Russian, the
password is never shown back; the front desk sees a failed receipt with its error and
retries it in place."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.fiscal import receipts as rc
from kopilka.fiscal import registers as rg
from kopilka.ledger.posting import run_transaction
from kopilka.web import i18n
from kopilka.web.routes.cash_registers import error_text
from tests.fiscal.atol_server import AtolStandIn, atol_stand_in
from tests.fiscal.conftest import payload
from tests.web.conftest import Visitor, Web, text_of
from tests.web.test_cards import field_error

HOME = "/settings/cash-registers"
ACTOR = Actor.cli("tests")


@pytest.fixture
def atol() -> Iterator[AtolStandIn]:
    with atol_stand_in() as stand_in:
        yield stand_in


def form_of(atol: AtolStandIn, **changes: str) -> dict[str, str]:
    settings = atol.register_settings()
    data = {
        "name": "Ресепшен",
        "base_url": settings["base_url"],
        "login": settings["login"],
        "password": settings["password"],
        "group_code": settings["group_code"],
        "inn": settings["inn"],
        "sno": "usn_income",
        "payment_address": settings["payment_address"],
        "company_email": settings["company_email"],
        "enabled": "y",
    }
    data.update(changes)
    return data


def registers_of(web: Web) -> dict[str, rg.CashRegister]:
    with read_only(web.engine) as conn:
        return {r.name: r for r in rg.list_registers(conn, web.tenant.id)}


def add_register(web: Web, atol: AtolStandIn, **settings: Any) -> rg.CashRegister:
    return run_transaction(
        web.engine,
        lambda conn: rg.create_register(
            conn,
            tenant_id=web.tenant.id,
            name="Ресепшен",
            settings=atol.register_settings(**settings),
            actor=ACTOR,
        ),
    )


def ask(web: Web, register_id: int, source_id: int) -> rc.ReceiptView:
    return run_transaction(
        web.engine,
        lambda conn: rc.request_receipt(
            conn,
            tenant_id=web.tenant.id,
            register_id=register_id,
            operation="sell",
            source_type="hotel_payment",
            source_id=source_id,
            payload=payload(),
            email="guest@example.ru",
            phone=None,
            actor=ACTOR,
        ),
    )


def flash_of(visitor: Visitor, reply: Any) -> str:
    return text_of(visitor.follow(reply).text)


def test_an_owner_adds_a_register_and_the_password_is_never_shown(
    web: Web, atol: AtolStandIn
) -> None:
    owner = web.sign_in("owner")
    home = owner.get(HOME)
    assert home.status_code == 200
    assert 'data-testid="tab-cash-registers" aria-current="page"' in home.text
    assert "Касс пока нет." in text_of(home.text)

    reply = owner.post(HOME, form_of(atol))
    assert "Касса «Ресепшен» добавлена." in flash_of(owner, reply)
    made = registers_of(web)["Ресепшен"]
    assert made.settings["password"] == atol.password and made.enabled
    page = owner.get(HOME).text
    assert "Ресепшен" in text_of(page) and atol.group_code in page
    assert "Упрощённая, доходы (УСН)" in text_of(page)

    form = owner.get(f"{HOME}/{made.id}")
    assert form.status_code == 200
    assert atol.password not in form.text
    assert re.search(r'<input[^>]*name="password"[^>]*>', form.text)
    assert 'value="5544332219"' in form.text
    assert "Оставьте пустым, чтобы сохранить прежний пароль." in text_of(form.text)


def test_mistakes_are_shown_by_their_fields_in_russian_and_nothing_is_written(
    web: Web, atol: AtolStandIn
) -> None:
    owner = web.sign_in("owner")
    bad_inn = owner.post(HOME, form_of(atol, inn="5544332210"))
    assert bad_inn.status_code == 422
    assert field_error(bad_inn.text, "inn") == (
        "Введите ИНН из 10 или 12 цифр с верными контрольными цифрами."
    )
    assert atol.password not in bad_inn.text  # not even the one just typed
    no_password = owner.post(HOME, form_of(atol, password=""))
    assert field_error(no_password.text, "password") == "Введите пароль, выданный сервисом."
    bad_email = owner.post(HOME, form_of(atol, company_email="hotel@"))
    assert field_error(bad_email.text, "company_email") == (
        "Введите адрес e-mail, например hotel@example.ru."
    )
    bad_address = owner.post(HOME, form_of(atol, base_url="online.atol.ru"))
    assert "Введите адрес сервиса" in field_error(bad_address.text, "base_url")
    bad_group = owner.post(HOME, form_of(atol, group_code="a b"))
    assert "код группы" in field_error(bad_group.text, "group_code")
    assert registers_of(web) == {}

    owner.post(HOME, form_of(atol))
    again = owner.post(HOME, form_of(atol, name="ресепшен"))
    assert field_error(again.text, "name") == "Касса с таким названием уже есть."
    assert len(registers_of(web)) == 1


def test_a_register_is_edited_keeping_its_password_and_switched_off(
    web: Web, atol: AtolStandIn
) -> None:
    made = add_register(web, atol)
    owner = web.sign_in("owner")
    saved = owner.post(
        f"{HOME}/{made.id}", form_of(atol, name="Ресепшен 2", password="", sno="osn")
    )
    assert "Касса «Ресепшен 2» сохранена." in flash_of(owner, saved)
    edited = registers_of(web)["Ресепшен 2"]
    assert edited.settings["password"] == atol.password and edited.settings["sno"] == "osn"

    bad = owner.post(f"{HOME}/{made.id}", form_of(atol, inn="12"))
    assert bad.status_code == 422 and "error-inn" in bad.text

    off = owner.post(f"{HOME}/{made.id}/switch", {"enabled": "0"})
    assert "Касса «Ресепшен 2» выключена." in flash_of(owner, off)
    assert registers_of(web)["Ресепшен 2"].enabled is False
    assert "Не принимает чеки" in text_of(owner.get(HOME).text)
    on = owner.post(f"{HOME}/{made.id}/switch", {"enabled": "1"})
    assert "включена" in flash_of(owner, on)
    assert owner.get(f"{HOME}/{10**12}").status_code == 404
    assert owner.post(f"{HOME}/{10**12}/switch", {"enabled": "0"}).status_code == 404


def test_who_may_come_in(web: Web, atol: AtolStandIn) -> None:
    assert web.sign_in("administrator").get(HOME).status_code == 200
    front = web.sign_in("front_desk")
    assert front.get(HOME).status_code == 403
    assert front.get("/receipts").status_code == 200
    cashier = web.sign_in("cashier")
    assert cashier.get("/receipts").status_code == 403
    assert cashier.get(HOME).status_code == 403


def test_the_front_desk_sees_a_failed_receipt_with_its_error_and_retries_it(
    web: Web, atol: AtolStandIn
) -> None:
    register = add_register(web, atol, password="wrong")
    failed = ask(web, register.id, 1)
    pending = ask(web, register.id, 2)
    assert rc.send_receipt(web.engine, web.tenant.id, failed.id).status == "failed"

    front = web.sign_in("front_desk")
    page = front.get("/receipts")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Ошибка АТОЛ 12: Неверный логин или пароль" in shown and "Ожидает отправки" in shown
    assert "Оплата по счёту гостя № 1" in shown and "3 500,00 ₽" in shown, shown
    assert f'data-testid="retry-{failed.id}"' in page.text
    only_failed = front.get("/receipts", params={"status": "failed"})
    assert f"receipt-{failed.id}" in only_failed.text
    assert f"receipt-{pending.id}" not in only_failed.text

    # Still refused: the row comes back in place, with the register's words.
    row = front.post(f"/receipts/{failed.id}/retry", headers={"HX-Request": "true"})
    assert row.status_code == 200 and row.text.lstrip().startswith(("<tr", "{#"))
    assert 'data-status="failed"' in row.text and "<html" not in row.text

    run_transaction(
        web.engine,
        lambda conn: rg.update_register(
            conn,
            tenant_id=web.tenant.id,
            register_id=register.id,
            settings={"password": atol.password},
            actor=ACTOR,
        ),
    )
    row = front.post(f"/receipts/{failed.id}/retry", headers={"HX-Request": "true"})
    assert 'data-status="wait"' in row.text and "Регистрируется" in text_of(row.text)
    assert f"retry-{failed.id}" not in row.text

    plain = front.post(f"/receipts/{pending.id}/retry")
    assert "Касса приняла чек № " in flash_of(front, plain)
    assert front.post(f"/receipts/{10**12}/retry").status_code == 404

    # Fiscalised: the row shows the fiscal drive's numbers.
    rc.send_receipt(web.engine, web.tenant.id, failed.id)
    rc.send_receipt(web.engine, web.tenant.id, failed.id)
    done = text_of(front.get("/receipts").text)
    assert "Зарегистрирован" in done and "ФН 9999078902004236" in done


def test_the_settings_tab_links_the_failed_receipts(web: Web, atol: AtolStandIn) -> None:
    register = add_register(web, atol, password="wrong")
    receipt = ask(web, register.id, 1)
    rc.send_receipt(web.engine, web.tenant.id, receipt.id)
    page = web.sign_in("owner").get(HOME)
    assert 'data-testid="failed-receipts"' in page.text
    assert "С ошибкой: 1" in text_of(page.text)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        (
            "getToken: ATOL 12 (system), HTTP 401: Неверный логин или пароль",
            "Ошибка АТОЛ 12: Неверный логин или пароль",
        ),
        (
            "ATOL 32 (system), HTTP 400: Ошибочные поля : receipt.company.inn",
            "Ошибка АТОЛ 32: Ошибочные поля : receipt.company.inn",
        ),
        (
            "ATOL could not be reached: ConnectError: refused",
            "Касса недоступна: ConnectError: refused",
        ),
        ("ATOL did not answer in time (ReadTimeout)", "Касса не ответила вовремя."),
        ("ATOL answered HTTP 502 without a JSON body", "Касса ответила ошибкой (HTTP 502)."),
        ("something new", "something new"),
    ],
)
def test_the_adapters_words_are_shown_in_russian(stored: str, shown: str) -> None:
    i18n.set_locale("ru")
    assert error_text(stored) == shown
