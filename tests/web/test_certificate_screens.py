"""Gift certificates on screen (SPEC C-9): issue, sell, pay partly then fully, a payment
above the balance refused by its field, a double click posting once, and who may do what."""

from __future__ import annotations

import re

from kopilka.core.db import read_only
from kopilka.loyalty.certificates import find_certificate
from tests.web.conftest import Visitor, Web, text_of

NBSP = "\u00a0"


def field_error(html: str, name: str) -> str:
    match = re.search(rf'data-testid="error-{name}">(.*?)</p>', html, re.S)
    assert match, f"no error shown by the field {name}"
    return match.group(1).strip()


def balance(web: Web, number: str) -> int:
    with read_only(web.engine) as conn:
        return find_certificate(conn, web.tenant.id, number).balance_minor


def operation_id(html: str, form: str) -> str:
    block = re.search(rf'data-testid="{form}".*?</form>', html, re.S)
    assert block is not None, f"no {form} on the page"
    found = re.search(r'name="operation_id"[^>]*value="([0-9a-f]+)"', block.group(0))
    assert found is not None
    return found.group(1)


def certificate_url(visitor: Visitor, number: str) -> str:
    listing = visitor.get(f"/cards/certificates?q={number}")
    found = re.search(rf'href="(/cards/certificates/\d+)"[^>]*>{number}<', listing.text)
    assert found is not None, f"certificate {number} is not listed"
    return found.group(1)


def test_sell_then_pay_partly_and_fully_and_never_beyond_the_balance(web: Web) -> None:
    owner = web.sign_in("owner")
    issued = owner.post(
        "/cards/certificates", {"prefix": "90", "first": "1", "last": "3", "width": "4"}
    )
    assert "3 сертификата выпущены." in text_of(owner.follow(issued).text)

    cashier = web.sign_in("cashier")
    url = certificate_url(cashier, "900001")
    page = cashier.get(url)
    assert "Не продан" in text_of(page.text)
    sale = {"nominal": "3 000", "operation_id": operation_id(page.text, "sell-form")}
    sold = cashier.follow(cashier.post(f"{url}/sale", sale))
    assert "Сертификат продан." in text_of(sold.text)
    assert balance(web, "900001") == 3_000_00
    cashier.post(f"{url}/sale", sale)  # the same form again: nothing more
    assert balance(web, "900001") == 3_000_00

    pay = {
        "amount": "1 200,00",
        "check_id": "Заказ 5",
        "operation_id": operation_id(sold.text, "pay-form"),
    }
    paid = cashier.follow(cashier.post(f"{url}/payments", pay))
    assert "Оплата принята." in text_of(paid.text)
    cashier.post(f"{url}/payments", pay)  # a double click
    assert balance(web, "900001") == 1_800_00
    shown = re.search(r'data-testid="certificate-balance">(.*?)<', paid.text)
    assert shown is not None and shown.group(1) == f"1{NBSP}800,00{NBSP}₽"

    too_much = cashier.post(
        f"{url}/payments",
        {"amount": "1 800,01", "operation_id": operation_id(paid.text, "pay-form")},
    )
    assert too_much.status_code == 422
    assert field_error(too_much.text, "amount") == "На сертификате осталось меньше."
    rest = cashier.post(
        f"{url}/payments", {"amount": "1800", "operation_id": operation_id(paid.text, "pay-form")}
    )
    assert rest.status_code == 303
    assert balance(web, "900001") == 0
    history = cashier.get(url).text
    assert text_of(history).count("Оплата сертификатом") == 2


def test_the_cashier_cannot_issue_or_block_and_front_desk_sees_nothing(web: Web) -> None:
    owner = web.sign_in("owner")
    owner.post("/cards/certificates", {"prefix": "91", "first": "7", "last": "7", "width": "2"})
    cashier = web.sign_in("cashier")
    listing = cashier.get("/cards/certificates")
    assert listing.status_code == 200 and "9107" in listing.text
    assert 'data-testid="certificate-range-form"' not in listing.text
    assert cashier.post("/cards/certificates", {"first": "1", "last": "2"}).status_code == 403
    url = certificate_url(cashier, "9107")
    assert cashier.post(f"{url}/block", {"reason": "x"}).status_code == 403
    assert web.sign_in("front_desk").get("/cards/certificates").status_code == 403


def test_an_existing_number_is_refused_and_nothing_is_issued(web: Web) -> None:
    owner = web.sign_in("owner")
    owner.post("/cards/certificates", {"prefix": "92", "first": "5", "last": "5", "width": "2"})
    again = owner.post(
        "/cards/certificates", {"prefix": "92", "first": "1", "last": "9", "width": "2"}
    )
    assert again.status_code == 422
    assert field_error(again.text, "first") == "Часть этих номеров уже есть."
    listing = owner.get("/cards/certificates?q=92")
    assert len(re.findall(r'data-testid="certificate-92', listing.text)) == 1
