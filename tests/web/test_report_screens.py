"""The loyalty report screens (SPEC C-10, C-11, X-4): balances and turnovers of cards with
their downloads, and reconciliation with the POS, worked on a shop's March the way
REPORT's tests work it (checks, a refund, a write-off, a night that burns a lot), and
read the way the tenant's Russian screens write the figures."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import pytest

from kopilka.core.actor import Actor
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import documents, pos
from kopilka.loyalty.cards import issue_card
from kopilka.loyalty.nightly import run_nightly
from kopilka.loyalty.programs import create_program
from kopilka.tenancy.actions import create_terminal
from kopilka.web.routes import reports as report_screens
from tests.web.conftest import Visitor, Web, text_of

ACTOR = Actor.cli("tests")
NBSP = "\u00a0"
MARCH_1 = datetime(2031, 3, 1, 10, 0, tzinfo=UTC)
MARCH = "from=2031-03-01&to=2031-04-01"  # April 1 too: the night that burns the lot


def day(n: int, hour: int = 10) -> datetime:
    """March n, 2031 (n past 31 runs on into April)."""
    return MARCH_1 + timedelta(days=n - 1, hours=hour - 10)


@dataclass
class Shop:
    web: Web
    bonus_id: int
    coffee_id: int
    till: int  # a terminal of no branch
    branch_till: int  # a terminal of the branch "Main building"
    anna: str = "2770000000011"
    boris: str = "2770000000028"
    coffee: str = "5550000000013"

    def card(self, program_id: int, number: str, holder_name: str) -> int:
        def work(conn: Any) -> int:
            card = issue_card(
                conn,
                tenant_id=self.web.tenant.id,
                program_id=program_id,
                number=number,
                actor=ACTOR,
                holder_name=holder_name,
            )
            return card.id

        return run_transaction(self.web.engine, work)

    def commit(
        self, number: str, check_id: str, lines: list[int], points: int = 0, *, at: datetime
    ) -> pos.CommittedCheck:
        terminal = self.branch_till if number == self.boris else self.till
        return run_transaction(
            self.web.engine,
            lambda c: pos.commit_check(
                c,
                tenant_id=self.web.tenant.id,
                terminal_id=terminal,
                check_id=check_id,
                card_number=number,
                lines=lines,
                points_minor=points,
                actor=ACTOR,
                now=at,
            ),
        )

    def document(self, kind: str, number: str, amount: int, doc: str, at: datetime) -> None:
        act = documents.accrue_points if kind == "accrual" else documents.write_off_points
        run_transaction(
            self.web.engine,
            lambda c: act(
                c,
                tenant_id=self.web.tenant.id,
                card_numbers=[number],
                amount_minor=amount,
                reason="компенсация" if kind == "accrual" else "ошибка кассира",
                actor=ACTOR,
                document_id=doc,
                now=at,
            ),
        )


@pytest.fixture
def shop(web: Web) -> Shop:
    def setup(conn: Any) -> tuple[int, int, int, int]:
        tenant_id = web.tenant.id
        create_unit(
            conn,
            tenant_id=tenant_id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=ACTOR,
        )
        bonus = create_program(
            conn,
            tenant_id=tenant_id,
            name="Бонусы",
            unit_code="BONUS",
            actor=ACTOR,
            accrual_bp=300,
            lifetime_days=30,
            max_share_bp=5000,
        )
        coffee = create_program(
            conn, tenant_id=tenant_id, name="Кофе", unit_code="BONUS", actor=ACTOR
        )
        till, _ = create_terminal(conn, tenant_id=tenant_id, name="Касса 1", actor=ACTOR)
        branch_till, _ = create_terminal(
            conn, tenant_id=tenant_id, name="Касса 2", actor=ACTOR, branch_id=web.branch_id
        )
        return bonus.id, coffee.id, till.id, branch_till.id

    return Shop(web, *run_transaction(web.engine, setup))


def worked_march(shop: Shop) -> dict[str, int]:
    """Anna's March at the till of no branch (REPORT's worked example):

    * 1 March, check C1 of 1,000.00 in money: 3 % accrued, 30.00;
    * 5 March, check C2 of 400.00, 20.00 of it in points: 3 % of 380.00 accrued, 11.40;
    * 10 March, half of C2 refunded: 10.00 points back, 5.70 of the accrual taken back;
    * 15 March, document W-1 writes 5.00 off;
    * 1 April, the night: what is left of C1's lot, 5.00, expires.

    Boris buys for 500.00 at the branch's till on 2 March (15.00 accrued) and gets a
    3.00 document on the 3rd; the coffee card gets a 7.00 document on the 2nd.
    """
    ids = {
        "anna": shop.card(shop.bonus_id, shop.anna, "Анна Петрова"),
        "boris": shop.card(shop.bonus_id, shop.boris, "Борис Иванов"),
        "coffee": shop.card(shop.coffee_id, shop.coffee, "Вера Кофейная"),
        "idle": shop.card(shop.bonus_id, "2770000000035", "Никто"),
    }
    assert shop.commit(shop.anna, "C1", [1000_00], at=day(1)).accrued_minor == 30_00
    c2 = shop.commit(shop.anna, "C2", [250_00, 150_00], 20_00, at=day(5))
    assert (c2.spent_minor, c2.accrued_minor) == (20_00, 11_40)
    back = run_transaction(
        shop.web.engine,
        lambda c: pos.refund_check(
            c,
            tenant_id=shop.web.tenant.id,
            terminal_id=shop.till,
            check_id="C2",
            refund_id="R1",
            amount_minor=200_00,
            actor=ACTOR,
            now=day(10),
        ),
    )
    assert (back.points_returned_minor, back.accrual_reversed_minor) == (10_00, 5_70)
    shop.document("write_off", shop.anna, 5_00, "W-1", day(15))
    assert shop.commit(shop.boris, "Z1", [500_00], at=day(2)).accrued_minor == 15_00
    shop.document("accrual", shop.boris, 3_00, "A-1", day(3))
    shop.document("accrual", shop.coffee, 7_00, "A-2", day(2))
    night = run_nightly(shop.web.engine, tenant_id=shop.web.tenant.id, actor=ACTOR, now=day(32, 3))
    assert night.lots_expired == 1
    return ids


def cells(html: str, number: str) -> dict[str, str]:
    """The figures of a card's row (or a totals row: ``total-BONUS``), as shown."""
    testid = number if number.startswith("total-") else f"row-{number}"
    row = re.search(rf'data-testid="{testid}".*?</tr>', html, re.S)
    assert row is not None, f"no row {testid} on the page"
    found = re.findall(r'data-testid="([a-z-]+)"[^>]*>(.*?)</td>', row.group(0), re.S)
    return {key: re.sub(r"<[^>]+>", "", value).strip() for key, value in found}


def row_numbers(html: str) -> list[str]:
    return re.findall(r'data-testid="row-(\d+)"', html)


def field_error(html: str, name: str) -> str:
    match = re.search(rf'data-testid="error-{name}">(.*?)</p>', html, re.S)
    assert match, f"no error shown by the field {name}"
    return match.group(1).strip()


def p(text: str) -> str:
    """A figure as Russian writes it: spaces between thousands are no-break spaces."""
    return text.replace(" ", NBSP)


# --------------------------------------------------------------------------- balances


def test_the_month_in_russian_with_a_totals_row(shop: Shop) -> None:
    ids = worked_march(shop)
    owner = shop.web.sign_in("owner")
    page = owner.get(f"/reports/cards?{MARCH}")
    assert page.status_code == 200, text_of(page.text)[:500]
    assert "Остатки и обороты" in text_of(page.text)
    assert row_numbers(page.text) == [shop.anna, shop.boris, shop.coffee]  # not the idle card
    assert f'href="/cards/{ids["anna"]}"' in page.text
    assert cells(page.text, shop.anna) == {
        "opening": "0,00",
        "accrued": "41,40",
        "spent": "20,00",
        "expired": "5,00",
        "other": "-0,70",  # 10,00 returned - 5,70 reversed - 5,00 written off
        "closing": "15,70",
        "purchases": p("1 190,00 ₽"),
        "checks": "2",
    }
    assert "Анна Петрова" in text_of(page.text) and "Бонусы" in text_of(page.text)
    assert cells(page.text, shop.boris)["accrued"] == "18,00"
    assert cells(page.text, "total-BONUS") == {
        "opening": "0,00",
        "accrued": "66,40",  # 41,40 + 18,00 + 7,00
        "spent": "20,00",
        "expired": "5,00",
        "other": "-0,70",
        "closing": "40,70",  # 15,70 + 18,00 + 7,00
        "purchases": p("1 690,00 ₽"),
        "checks": "3",
    }
    assert "Итого, BONUS" in text_of(page.text) and "3 карты" in text_of(page.text)
    # The tabs of the section, and the ledger's screens keep theirs.
    assert 'href="/reports/reconciliation"' in page.text
    ledger = owner.get("/ledger/turnovers")
    assert ledger.status_code == 200 and 'href="/reports/cards"' in ledger.text


def test_a_period_inside_the_month_opens_with_the_balance_before_it(shop: Shop) -> None:
    worked_march(shop)
    owner = shop.web.sign_in("owner")
    page = owner.get("/reports/cards?from=2031-03-10&to=2031-03-14")
    # Cards with a balance are listed too, though nothing moved on them.
    assert row_numbers(page.text) == [shop.anna, shop.boris, shop.coffee]
    boris = cells(page.text, shop.boris)
    assert (boris["opening"], boris["accrued"], boris["closing"]) == ("18,00", "0,00", "18,00")
    assert cells(page.text, shop.anna) | {"purchases": ""} == {
        "opening": "21,40",
        "accrued": "0,00",
        "spent": "0,00",
        "expired": "0,00",
        "other": "4,30",  # the refund: 10,00 back, 5,70 of the accrual taken back
        "closing": "25,70",
        "purchases": "",
        "checks": "0",
    }


def test_filters_by_program_and_by_branch(shop: Shop) -> None:
    worked_march(shop)
    owner = shop.web.sign_in("administrator")
    coffee = owner.get(f"/reports/cards?{MARCH}&program={shop.coffee_id}")
    assert row_numbers(coffee.text) == [shop.coffee]
    assert cells(coffee.text, shop.coffee)["accrued"] == "7,00"
    assert f'<option selected value="{shop.coffee_id}">' in coffee.text

    branch = owner.get(f"/reports/cards?{MARCH}&branch={shop.web.branch_id}")
    assert row_numbers(branch.text) == [shop.boris]
    assert cells(branch.text, shop.boris) == {
        "opening": "0,00",
        "accrued": "15,00",  # the branch's check only
        "spent": "0,00",
        "expired": "0,00",
        "other": "3,00",  # the document: outside the branch
        "closing": "18,00",
        "purchases": p("500,00 ₽"),
        "checks": "1",
    }

    unknown = owner.get(f"/reports/cards?{MARCH}&program=999999")
    assert unknown.status_code == 422
    assert field_error(unknown.text, "program")


def test_pages_follow_the_card_ids_and_total_the_page(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    worked_march(shop)
    monkeypatch.setattr(report_screens, "ROWS_PER_PAGE", 2)
    owner = shop.web.sign_in("owner")
    first = owner.get(f"/reports/cards?{MARCH}")
    assert row_numbers(first.text) == [shop.anna, shop.boris]
    assert "Итого на странице, BONUS" in text_of(first.text)
    assert cells(first.text, "total-BONUS")["closing"] == "33,70"
    link = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert link is not None
    second = owner.get(link.group(1).replace("&amp;", "&"))
    assert row_numbers(second.text) == [shop.coffee]
    assert 'rel="next"' not in second.text and 'rel="first"' in second.text


def test_downloads_hold_the_same_report_as_csv_and_xlsx(shop: Shop) -> None:
    worked_march(shop)
    owner = shop.web.sign_in("owner")
    page = owner.get(f"/reports/cards?{MARCH}&program={shop.bonus_id}")
    csv_link = re.search(r'href="([^"]+)" download data-testid="download-csv"', page.text)
    assert csv_link is not None
    got = owner.get(csv_link.group(1).replace("&amp;", "&"))
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"] == (
        'attachment; filename="balances-2031-03-01-2031-04-01.csv"'
    )
    text = got.content.decode("utf-8")
    assert text.startswith("\ufeffКарта;Владелец;Программа")
    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    header, anna, boris, total = lines
    data = dict(zip(header, anna, strict=True))
    assert data["Карта"] == shop.anna and data["Владелец"] == "Анна Петрова"
    assert (data["Начислено"], data["Сгорело"], data["Остаток на конец"]) == (
        "41,40",
        "5,00",
        "15,70",
    )
    assert data["Покупки"] == "1190,00" and data["Чеков"] == "2"
    assert boris[0] == shop.boris
    assert total[0] == "Итого BONUS (2)" and total[header.index("Остаток на конец")] == "33,70"

    xlsx = owner.get(f"/reports/cards?{MARCH}&program={shop.bonus_id}&format=xlsx")
    assert xlsx.status_code == 200
    assert xlsx.headers["content-type"] == report_screens.XLSX_TYPE
    assert "attachment" in xlsx.headers["content-disposition"]
    assert "balances-2031-03-01-2031-04-01.xlsx" in xlsx.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content), read_only=True)
    sheet = book.active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "Остатки и обороты: Гостиница «Берёзка», 01.03.2031–01.04.2031"
    header_x, anna_x, boris_x, total_x = values[1:]
    closing = header_x.index("Остаток на конец")
    assert anna_x[0] == shop.anna and anna_x[closing] == pytest.approx(15.70)
    assert boris_x[0] == shop.boris
    assert total_x[0] == "Итого BONUS (2)" and total_x[closing] == pytest.approx(33.70)
    book.close()


def test_english_writes_figures_the_english_way(shop: Shop) -> None:
    worked_march(shop)
    english = shop.web.sign_in("owner")
    english.post("/language", {"locale": "en", "next": "/"})
    page = english.get(f"/reports/cards?{MARCH}")
    assert "Balances and turnovers" in text_of(page.text)
    assert cells(page.text, shop.anna)["purchases"] == "₽1,190.00"
    assert cells(page.text, "total-BONUS")["closing"] == "40.70"
    got = english.get(f"/reports/cards?{MARCH}&format=csv")
    text = got.content.decode("utf-8")
    assert text.startswith("\ufeffCard;Holder;Program") and ";15.70;" in text


def test_a_bad_period_is_shown_by_its_field(shop: Shop) -> None:
    owner = shop.web.sign_in("owner")
    backwards = owner.get("/reports/cards?from=2031-03-10&to=2031-03-01")
    assert backwards.status_code == 422
    assert field_error(backwards.text, "to") == "Период не может закончиться раньше, чем начался."
    assert 'data-testid="report-table"' not in backwards.text
    garbage = owner.get("/reports/cards?from=10.03.2031&to=2031-03-31&format=csv")
    assert garbage.status_code == 422 and garbage.headers["content-type"].startswith("text/html")
    assert field_error(garbage.text, "from") == "Введите дату, например 2026-03-31."
    too_long = owner.get("/reports/cards?from=2001-01-01&to=2031-01-01")
    assert too_long.status_code == 422
    assert field_error(too_long.text, "to") == f"Период — не длиннее 3{NBSP}660 дней."


def test_the_default_period_is_this_month(shop: Shop) -> None:
    shop.card(shop.bonus_id, shop.anna, "Анна Петрова")
    shop.commit(shop.anna, "T1", [100_00], at=datetime.now(UTC))
    owner = shop.web.sign_in("owner")
    page = owner.get("/reports/cards")
    assert page.status_code == 200
    assert row_numbers(page.text) == [shop.anna]
    assert cells(page.text, shop.anna)["accrued"] == "3,00"


def test_a_cashier_may_not_see_the_reports(shop: Shop) -> None:
    cashier = shop.web.sign_in("cashier")
    assert cashier.get(f"/reports/cards?{MARCH}").status_code == 403
    assert cashier.get(f"/reports/cards?{MARCH}&format=csv").status_code == 403
    assert cashier.get("/reports/reconciliation").status_code == 403
    assert cashier.post("/reports/reconciliation", {"mode": "all"}).status_code == 403


# --------------------------------------------------------------------------- reconciliation


def upload(visitor: Visitor, text: str, **fields: str) -> Any:
    return visitor.post(
        "/reports/reconciliation",
        {"mode": "file", **fields},
        files={"file": ("pos.csv", text.encode("utf-8"), "text/csv")},
    )


def test_reconciliation_of_a_pos_file_shows_corrections_and_downloads_them(shop: Shop) -> None:
    ids = worked_march(shop)
    owner = shop.web.sign_in("owner")
    form = owner.get("/reports/reconciliation")
    assert form.status_code == 200 and "Сверка с кассами" in text_of(form.text)
    pos_file = (
        "Номер;Баллы;Накопление\r\n"
        f"{shop.anna};20,70;1 190,00\r\n"
        f"{shop.boris};18,00;500,00\r\n"
        "9999999;1,00;\r\n"
    )
    page = upload(owner, pos_file)
    assert page.status_code == 200, text_of(page.text)[:800]
    summary = text_of(page.text)
    assert "Проверено 2 карты, расхождение у 1." in summary
    assert "Сервер не знает эти карты: 9999999." in summary
    anna = re.search(rf'data-testid="line-{shop.anna}".*?</tr>', page.text, re.S)
    assert anna is not None and 'class="differs"' in anna.group(0)
    assert f'href="/cards/{ids["anna"]}"' in anna.group(0)
    figures = dict(re.findall(r'data-testid="([a-z-]+)">(?:<strong>)?([^<]*)', anna.group(0)))
    assert figures["server-balance"] == "15,70" and figures["pos-balance"] == "20,70"
    assert figures["balance-correction"] == "-5,00"
    assert figures["server-accumulation"] == p("1 190,00")
    assert figures["accumulation-correction"] == ""

    carried = re.search(r'<textarea name="reported" hidden>(.*?)</textarea>', page.text, re.S)
    assert carried is not None
    download = owner.post(
        "/reports/reconciliation",
        {"mode": "file", "format": "csv", "reported": carried.group(1)},
    )
    assert download.status_code == 200
    assert download.headers["content-disposition"] == 'attachment; filename="reconciliation.csv"'
    text = download.content.decode("utf-8")
    assert f"{shop.anna};active;BONUS;15.70;20.70;-5.00;1190.00;1190.00;0.00" in text
    assert f"{shop.boris};active;BONUS;18.00;18.00;0.00" in text
    assert "9999999;unknown" in text

    # At once, from the upload form's own download button, only the cards that differ.
    direct = upload(owner, pos_file, format="csv", only_differences="y")
    assert direct.status_code == 200
    body = direct.content.decode("utf-8")
    assert shop.anna in body and shop.boris not in body


def test_reconciliation_of_all_cards_lists_the_values_to_set(shop: Shop) -> None:
    worked_march(shop)
    owner = shop.web.sign_in("administrator")
    page = owner.post("/reports/reconciliation", {"mode": "all", "program": str(shop.bonus_id)})
    assert page.status_code == 200
    assert "3 карты: касса устанавливает значения ниже." in text_of(page.text)
    anna = re.search(rf'data-testid="line-{shop.anna}".*?</tr>', page.text, re.S)
    assert anna is not None and ">15,70<" in anna.group(0)
    assert shop.coffee not in page.text
    download = owner.post(
        "/reports/reconciliation",
        {"mode": "all", "program": str(shop.bonus_id), "format": "csv"},
    )
    assert f"{shop.anna};active;BONUS;15.70;;;1190.00;;" in download.content.decode("utf-8")


def test_a_bad_pos_file_is_refused_by_the_file_field(shop: Shop) -> None:
    worked_march(shop)
    owner = shop.web.sign_in("owner")
    nothing = owner.post("/reports/reconciliation", {"mode": "file"})
    assert nothing.status_code == 422
    assert field_error(nothing.text, "file") == "Выберите файл, выгруженный кассой."
    cases = {
        "12;1\r\n": "Строка 1: номер карты — от 4 до 32 цифр.",
        f"{shop.anna};1,005\r\n": (
            "Строка 1: сумма не подходит к единице карты (проверьте знаки после запятой)."
        ),
        f"{shop.anna};1;2;3\r\n": (
            "Строка 1: ожидаются номер карты, баллы и (если есть) накопление через точку с запятой."
        ),
        f"{shop.anna};1\r\n{shop.anna};2\r\n": (
            f"Эти карты есть в файле больше одного раза: {shop.anna}."
        ),
        "\r\n": "Файл пуст.",
    }
    for text, message in cases.items():
        refused = upload(owner, text)
        assert refused.status_code == 422, text
        assert field_error(refused.text, "file") == message
    bad_moment = upload(owner, f"{shop.anna};15,70\r\n", at="вчера")
    assert bad_moment.status_code == 422
    assert field_error(bad_moment.text, "at").startswith("Введите дату")
