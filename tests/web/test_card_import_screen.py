"""Importing cards and opening balances from a CSV file on screen (SPEC C-5, C-6, X-5): the
file goes to a background job, whose page shows the counts, or every bad row by its line
and column; the cards then carry their balances. Files are what Excel in Russia saves:
Windows-1251, cells separated by ``;``."""

from __future__ import annotations

import re
from datetime import date, timedelta

from kopilka.core.db import read_only
from kopilka.jobs.runner import get_job
from kopilka.loyalty.card_search import search_cards
from kopilka.loyalty.cards import find_card
from tests.web.conftest import Visitor, Web, text_of
from tests.web.test_cards import bonus_program, field_error, wait_for_job

YESTERDAY = (date.today() - timedelta(days=1)).isoformat()

GOOD = (
    "Номер;ФИО;Телефон;Бонусы;Накопление;Чеков\r\n"
    "880000000001;Иванова Анна;+7 912 345-67-89;250,50;12 345,67;15\r\n"
    "880000000002;Пётр Сидоров;;1 000;0;0\r\n"
)
BAD = (
    "номер;фио;бонусы;статус\r\n"
    "880000000011;Анна;10,00;активна\r\n"
    "880000000012;Олег;десять;активна\r\n"
    "880000000013;Ирина;5,00;в отпуске\r\n"
    "880000000011;Анна ещё раз;1;\r\n"
)


def upload(visitor: Visitor, program_id: int, content: bytes, **ticks: str) -> tuple[int, str, str]:
    """Posts the import form; (status, where it sends us, the page's HTML)."""
    reply = visitor.post(
        "/cards/import",
        {"program_id": str(program_id), "start_date": YESTERDAY, **ticks},
        files={"file": ("cards.csv", content, "text/csv")},
    )
    return reply.status_code, reply.headers.get("location", ""), reply.text


def test_a_windows_1251_file_is_imported_as_a_job_and_again_is_a_replay(web: Web) -> None:
    program_id = bonus_program(web)
    owner = web.sign_in("owner")
    cards_page = owner.get("/cards")
    assert 'href="/cards/import"' in cards_page.text

    form = owner.get("/cards/import")
    assert form.status_code == 200
    assert 'enctype="multipart/form-data"' in form.text
    assert "накопление" in text_of(form.text)  # the columns' help names the aliases

    status, job_url, _ = upload(owner, program_id, GOOD.encode("cp1251"))
    assert status == 303 and job_url.startswith("/jobs/")
    result = text_of(wait_for_job(owner, job_url))
    assert "2 карты импортированы." in result
    assert "Открыто баллов 1 250,50 BONUS" in result.replace("\u00a0", " ")

    with read_only(web.engine) as conn:
        anna = find_card(conn, web.tenant.id, number="880000000001")
        petr = find_card(conn, web.tenant.id, number="880000000002")
    assert (anna.balance_minor, anna.accumulation_minor, anna.checks_count) == (
        250_50,
        12_345_67,
        15,
    )
    assert anna.holder_name == "Иванова Анна"
    assert petr.balance_minor == 1000_00
    # The job's row keeps no copy of the file (holders' names and phones).
    job = get_job(web.engine, web.tenant.id, int(job_url.rsplit("/", 1)[1]))
    assert job.params is not None and "data_base64" not in job.params
    assert job.params["bytes"] == len(GOOD.encode("cp1251"))

    status, again_url, _ = upload(owner, program_id, GOOD.encode("cp1251"))
    assert status == 303 and again_url != job_url
    again = wait_for_job(owner, again_url)
    assert 'data-outcome="replayed"' in again
    assert balance_of_all(web) == 1250_50  # nothing was added twice


def balance_of_all(web: Web) -> int:
    with read_only(web.engine) as conn:
        found = search_cards(conn, web.tenant.id, search="88000000000", limit=100)
    return sum(card.balance_minor for card in found.items)


def test_a_bad_file_lists_every_bad_row_by_line_and_writes_nothing(web: Web) -> None:
    program_id = bonus_program(web)
    owner = web.sign_in("owner")
    _status, job_url, _ = upload(owner, program_id, BAD.encode("cp1251"))
    page = wait_for_job(owner, job_url)
    assert "3 ошибки в файле; ничего не импортировано." in text_of(page)
    rows = {
        int(line): text_of(row)
        for line, row in re.findall(r'data-testid="import-error-(\d+)">(.*?)</tr>', page, re.S)
    }
    assert sorted(rows) == [3, 4, 5]
    assert "бонусы" in rows[3] and "Не сумма" in rows[3]
    assert "статус" in rows[4] and "Не статус" in rows[4]
    assert "Карта в файле дважды" in rows[5]
    with read_only(web.engine) as conn:
        assert search_cards(conn, web.tenant.id, search="8800000000", limit=10).total == 0


def test_the_form_refuses_a_missing_file_and_a_future_start(web: Web) -> None:
    program_id = bonus_program(web)
    owner = web.sign_in("owner")
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    reply = owner.post(
        "/cards/import",
        {"program_id": str(program_id), "start_date": tomorrow},
        files={"file": ("", b"", "application/octet-stream")},
    )
    assert reply.status_code == 422
    assert field_error(reply.text, "file") == "Выберите файл CSV."
    assert field_error(reply.text, "start_date") == (
        "Биллинг начинается сегодня или в уже прошедший день."
    )


def test_the_sample_file_downloads_and_imports_with_check_digits(web: Web) -> None:
    program_id = bonus_program(web)
    owner = web.sign_in("owner")
    sample = owner.get("/cards/import/sample.csv")
    assert sample.status_code == 200
    assert sample.headers["content-type"].startswith("text/csv")
    assert "attachment" in sample.headers["content-disposition"]
    _status, job_url, _ = upload(owner, program_id, sample.content, check_digit="y", dry_run="y")
    dry = wait_for_job(owner, job_url)
    assert 'data-outcome="dry_run"' in dry
    with read_only(web.engine) as conn:
        assert search_cards(conn, web.tenant.id, search="27700000000", limit=10).total == 0

    _status, job_url, _ = upload(owner, program_id, sample.content, check_digit="y")
    assert 'data-outcome="imported"' in wait_for_job(owner, job_url)
    with read_only(web.engine) as conn:
        assert search_cards(conn, web.tenant.id, search="27700000000", limit=10).total == 2


def test_a_cashier_may_not_import(web: Web) -> None:
    program_id = bonus_program(web)
    cashier = web.sign_in("cashier")
    assert cashier.get("/cards/import").status_code == 403
    assert 'href="/cards/import"' not in cashier.get("/cards").text
    status, _, _ = upload(cashier, program_id, GOOD.encode("cp1251"))
    assert status == 403
    with read_only(web.engine) as conn:
        assert search_cards(conn, web.tenant.id, search="8800000000", limit=10).total == 0
