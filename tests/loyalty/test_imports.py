"""Import of cards and opening balances from CSV (SPEC C-5, C-6; seed 002 "enabling
billing"): balances as of the day before the start date, all or nothing, once per import."""

from __future__ import annotations

import codecs
import dataclasses
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.balances import balance_at
from kopilka.ledger.lots import account_lots
from kopilka.ledger.schema import accounts, transfers
from kopilka.loyalty import documents, imports, pos
from kopilka.loyalty.cards import find_card, issue_card, luhn_check_digit
from kopilka.loyalty.imports import ImportRejected, ImportResult, RowCode, parse_amount
from kopilka.loyalty.programs import create_program
from kopilka.loyalty.schema import card_purchases, cards
from kopilka.tenancy.schema import audit_events

from .conftest import Shop

MSK = ZoneInfo("Europe/Moscow")
START = date(2026, 3, 1)


def csv_bytes(text: str, encoding: str = "utf-8") -> bytes:
    return text.replace("\n", "\r\n").encode(encoding)


def run(shop: Shop, data: bytes, start: date = START, **extra: Any) -> ImportResult:
    return shop.tx(
        lambda c: imports.import_cards(
            c,
            tenant_id=shop.tenant.id,
            program_id=shop.program.id,
            data=data,
            start_date=start,
            actor=shop.actor,
            **extra,
        )
    )


def rejected(shop: Shop, data: bytes, **extra: Any) -> list[tuple[int, str | None, str]]:
    with pytest.raises(ImportRejected) as caught:
        run(shop, data, **extra)
    error = caught.value
    assert error.code == "invalid_import" and error.status == 422
    assert error.params["error_count"] == len(error.errors)
    return [(e.line, e.column, e.code) for e in error.errors]


def count_cards(shop: Shop) -> int:
    with read_only(shop.engine) as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(cards).where(cards.c.tenant_id == shop.tenant.id)
            ).scalar_one()
        )


def card_of(shop: Shop, number: str) -> Any:
    with read_only(shop.engine) as conn:
        return find_card(conn, shop.tenant.id, number=number)


def balance(shop: Shop, account_id: int, moment: datetime) -> int:
    with read_only(shop.engine) as conn:
        return balance_at(conn, shop.tenant.id, account_id, moment)


def luhn(body: str) -> str:
    return body + luhn_check_digit(body)


WORKED = (
    "Номер;ФИО;Телефон;E-mail;Срок действия;Накопление;Чеков;Бонусы;Статус\n"
    "2000000000015;Иванова Мария Петровна;8 916 123-45-67;Maria@Example.RU;31.12.2027;"
    "600,00;3;120,50;активна\n"
)


# --------------------------------------------------------------------------- worked example


def test_worked_example_balances_as_of_the_day_before_then_a_sale_adds(shop: Shop) -> None:
    result = run(shop, csv_bytes(WORKED))
    assert (result.rows, result.cards_issued, result.cards_updated) == (1, 1, 0)
    assert (result.points, result.accumulation, result.checks) == ("120.50", "600.00", 3)
    assert (result.encoding, result.delimiter, result.replayed) == ("utf-8", ";", False)
    # The last instant of 28 February, Moscow time.
    assert result.opening_at == datetime(2026, 3, 1, tzinfo=MSK) - timedelta(microseconds=1)

    card = card_of(shop, "2000000000015")
    assert card.holder_name == "Иванова Мария Петровна"
    assert (card.holder_phone, card.holder_email) == ("+79161234567", "Maria@example.ru")
    assert card.expires_at == datetime(2028, 1, 1, tzinfo=MSK)  # valid through 31.12.2027
    assert (card.accumulation_minor, card.checks_count, card.balance_minor) == (600_00, 3, 120_50)
    assert card.issued_at == result.opening_at
    end_of_28th = datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=MSK)
    assert balance(shop, card.account_id, end_of_28th) == 120_50
    assert balance(shop, card.account_id, datetime(2026, 2, 28, 12, tzinfo=MSK)) == 0
    assert balance(shop, card.account_id, datetime(2026, 2, 27, 23, 59, tzinfo=MSK)) == 0
    # The lot lives by the program's rules from that moment (30 days here).
    with read_only(shop.engine) as conn:
        (lot,) = account_lots(conn, shop.tenant.id, card.account_id)
        purchases = conn.execute(
            select(
                card_purchases.c.amount_minor, card_purchases.c.checks, card_purchases.c.at
            ).where(card_purchases.c.card_id == card.id)
        ).all()
    assert lot.expires_at == result.opening_at + timedelta(days=30)
    assert [(p[0], p[1]) for p in purchases] == [(600_00, 3)]

    # 1 March: a sale of 1 000,00 adds to both (3 % accrual, no tier reached).
    pos_result = shop.tx(
        lambda c: pos.commit_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id="march-1",
            card_number=card.number,
            lines=[1000_00],
            points_minor=0,
            actor=shop.actor,
            now=datetime(2026, 3, 1, 10, tzinfo=MSK),
        )
    )
    assert pos_result.accrued_minor == 30_00
    after = card_of(shop, card.number)
    assert (after.accumulation_minor, after.checks_count) == (1600_00, 4)
    assert after.balance_minor == 150_50
    assert balance(shop, card.account_id, end_of_28th) == 120_50
    shop.assert_clean()


def test_a_known_unused_card_gets_its_balances_and_holder_and_tier(shop: Shop) -> None:
    issued = shop.card(holder_name="Старое имя", holder_email="old@example.com")
    data = csv_bytes(f"number;name;phone;accumulation;points\n{issued.number};Пётр;;12 000,00;5\n")
    result = run(shop, data)
    assert (result.cards_issued, result.cards_updated) == (0, 1)
    card = card_of(shop, issued.number)
    assert card.id == issued.id and card.account_id == issued.account_id
    assert (card.holder_name, card.holder_email) == ("Пётр", "old@example.com")
    assert card.tier_id == shop.program.tiers[0].id  # 12 000,00 reaches "Золото"
    assert card.issued_at == result.opening_at
    assert balance(shop, card.account_id, result.opening_at) == 5_00
    assert balance(shop, card.account_id, result.opening_at - timedelta(microseconds=1)) == 0
    shop.assert_clean()


def test_blocked_status_and_no_points_post_nothing(shop: Shop) -> None:
    result = run(shop, csv_bytes("номер;статус;накопление\n3000000000014;заблокирована;10\n"))
    assert result.opening_account_id is None and result.cards_with_points == 0
    card = card_of(shop, "3000000000014")
    assert card.status == "blocked" and card.blocked_reason == imports.BLOCKED_REASON
    assert (card.accumulation_minor, card.balance_minor) == (10_00, 0)
    shop.assert_clean()


# --------------------------------------------------------------------------- bad files


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(shop: Shop) -> None:
    # A card with history whose number fails the Luhn check (its last digit is off by one).
    valid = luhn("4100000001")
    used = shop.tx(
        lambda c: issue_card(
            c,
            tenant_id=shop.tenant.id,
            program_id=shop.program.id,
            number=valid[:-1] + str((int(valid[-1]) + 1) % 10),
            actor=shop.actor,
        )
    )
    shop.tx(
        lambda c: documents.accrue_points(
            c,
            tenant_id=shop.tenant.id,
            card_numbers=[used.number],
            amount_minor=100,
            reason="бонус",
            actor=shop.actor,
            document_id="doc-used",
        )
    )
    other = shop.tx(
        lambda c: create_program(
            c, tenant_id=shop.tenant.id, name="Другая", unit_code="BONUS", actor=shop.actor
        )
    )
    elsewhere = shop.tx(
        lambda c: issue_card(
            c,
            tenant_id=shop.tenant.id,
            program_id=other.id,
            number=luhn("555000111"),
            actor=shop.actor,
        )
    )
    good = luhn("4000000001")
    lines = [
        "Номер;ФИО;Телефон;Срок;Накопление;Чеков;Бонусы;Статус;Скидка",  # 1: unknown column
        f"{good};Ок;;;100,00;1;10;;",  # 2: fine
        "12ab;;;;;;;;",  # 3: bad number
        f"{good};Дубль;;;;;;;",  # 4: the same card again
        f"{luhn('4000000002')};;12345;;;;;;",  # 5: bad phone
        f"{luhn('4000000003')};;;;-5,00;;;;",  # 6: negative
        f"{luhn('4000000004')};;;;;;1,234;;",  # 7: too many decimals
        f"{used.number};;;;;;;;",  # 8: has history (and fails the check digit)
        "40000000050;;;;;;;;",  # 9: bad check digit
        f"{luhn('4000000006')};;;32.13.2027;;;;;",  # 10: bad date
        f"{luhn('4000000007')};;;;;2,5;;;",  # 11: bad count
        f"{luhn('4000000008')};;;;;;;удалена;",  # 12: bad status
        f"{elsewhere.number};;;;;;;;",  # 13: on another program
        f"{luhn('4000000009')};;;;;;;;;лишнее",  # 14: too many cells
        f"{luhn('4000000010')};;;;1 2,00;;;;",  # 15: bad amount
        "",
        ";;;;;;;;",  # empty rows are skipped
    ]
    before = count_cards(shop)
    errors = rejected(shop, csv_bytes("\n".join(lines) + "\n"), check_digit=True)
    assert errors == [
        (1, "Скидка", RowCode.UNKNOWN_COLUMN),
        (3, "Номер", RowCode.INVALID_CARD_NUMBER),
        (4, "Номер", RowCode.DUPLICATE_CARD),
        (5, "Телефон", RowCode.INVALID_PHONE),
        (6, "Накопление", RowCode.NEGATIVE_AMOUNT),
        (7, "Бонусы", RowCode.AMOUNT_TOO_PRECISE),
        (8, "Номер", RowCode.INVALID_CHECK_DIGIT),
        (9, "Номер", RowCode.INVALID_CHECK_DIGIT),
        (10, "Срок", RowCode.INVALID_DATE),
        (11, "Чеков", RowCode.INVALID_COUNT),
        (12, "Статус", RowCode.INVALID_STATUS),
        (13, None, RowCode.CARD_ON_OTHER_PROGRAM),
        (14, None, RowCode.BAD_ROW),
        (15, "Накопление", RowCode.INVALID_AMOUNT),
    ]
    # Without the check digit rule, the used card is refused for its history.
    assert (8, None, RowCode.CARD_HAS_HISTORY) in rejected(shop, csv_bytes("\n".join(lines) + "\n"))
    assert count_cards(shop) == before
    with read_only(shop.engine) as conn:
        imported = conn.execute(
            select(func.count())
            .select_from(audit_events)
            .where(
                audit_events.c.tenant_id == shop.tenant.id,
                audit_events.c.action == imports.AUDIT_ACTION,
            )
        ).scalar_one()
    assert imported == 0
    shop.assert_clean()


def test_a_file_without_a_number_column_or_without_rows(shop: Shop) -> None:
    assert rejected(shop, csv_bytes("ФИО;Бонусы\nИванов;10\n")) == [
        (1, None, RowCode.MISSING_COLUMN)
    ]
    for data in (b"", b"\r\n\r\n", csv_bytes("number;points\n")):
        with pytest.raises(KopilkaError) as caught:
            run(shop, data)
        assert caught.value.code == "invalid_import"


def test_a_start_date_in_the_future_is_refused(shop: Shop) -> None:
    with pytest.raises(KopilkaError) as caught:
        run(shop, csv_bytes(WORKED), start=date.today() + timedelta(days=3))
    assert caught.value.code == "invalid_import"


# --------------------------------------------------------------------------- encodings


def test_cp1251_with_semicolons(shop: Shop) -> None:
    text = "Номер карты;ФИО;Баллы;Накопления\n1111 2222 3333;Ёжиков Семён;1 234,56;\n"
    result = run(shop, csv_bytes(text, "cp1251"))
    assert (result.encoding, result.delimiter, result.points) == ("cp1251", ";", "1234.56")
    assert card_of(shop, "111122223333").holder_name == "Ёжиков Семён"


def test_utf8_bom_with_commas_and_an_excel_sep_line(shop: Shop) -> None:
    text = 'number,holder_name,points,accumulation\n4444555566,"Smith, John",1234.5,"1 000,00"\n'
    result = run(shop, codecs.BOM_UTF8 + csv_bytes(text))
    assert (result.encoding, result.delimiter) == ("utf-8-sig", ",")
    card = card_of(shop, "4444555566")
    assert (card.holder_name, card.balance_minor, card.accumulation_minor) == (
        "Smith, John",
        1234_50,
        1000_00,
    )
    sep = codecs.BOM_UTF8 + csv_bytes("sep=;\nНомер;Бонусы\n4444555567;7\n4444555568;x\n")
    assert rejected(shop, sep) == [(4, "Бонусы", RowCode.INVALID_AMOUNT)]


# --------------------------------------------------------------------------- once only


def test_the_same_file_again_answers_with_the_first_result(shop: Shop) -> None:
    data = csv_bytes("Номер;Бонусы;Накопление\n6000000001;10,00;100\n6000000002;20,00;0\n")
    first = run(shop, data)
    assert first.import_id == imports.content_import_id(data)
    again = run(shop, data)
    assert again.replayed and not first.replayed
    assert again == dataclasses.replace(first, replayed=True)
    with read_only(shop.engine) as conn:
        keyed = conn.execute(
            select(func.count())
            .select_from(transfers)
            .where(
                transfers.c.tenant_id == shop.tenant.id,
                transfers.c.idempotency_key.like(f"import:{first.import_id}:%"),
            )
        ).scalar_one()
    assert keyed == 2
    assert card_of(shop, "6000000001").balance_minor == 10_00
    assert card_of(shop, "6000000001").accumulation_minor == 100_00
    shop.assert_clean()


def test_an_import_id_with_another_file_or_date_is_a_conflict(shop: Shop) -> None:
    data = csv_bytes("Номер;Бонусы\n6100000001;10\n")
    run(shop, data, import_id="march-start")
    for other, start in (
        (csv_bytes("Номер;Бонусы\n6100000001;11\n"), START),
        (data, date(2026, 2, 1)),
    ):
        with pytest.raises(KopilkaError) as caught:
            run(shop, other, start=start, import_id="march-start")
        assert caught.value.code == "import_conflict" and caught.value.status == 409
    # The derived id is the file's: the same file with another start date conflicts too.
    run(shop, csv_bytes("Номер;Бонусы\n6100000002;10\n"))
    with pytest.raises(KopilkaError) as caught:
        run(shop, csv_bytes("Номер;Бонусы\n6100000002;10\n"), start=date(2026, 2, 1))
    assert caught.value.code == "import_conflict"
    with pytest.raises(KopilkaError) as caught:
        run(shop, data, import_id="bad id with spaces")
    assert caught.value.code == "invalid_import"


def test_a_dry_run_checks_and_counts_but_writes_nothing(shop: Shop) -> None:
    data = csv_bytes("Номер;Бонусы;Чеков\n6200000001;10;2\n6200000002;;\n")
    before = count_cards(shop)
    result = run(shop, data, dry_run=True)
    assert result.dry_run and (result.cards_issued, result.points_minor, result.checks) == (
        2,
        10_00,
        2,
    )
    assert count_cards(shop) == before
    real = run(shop, data)
    assert not real.dry_run and not real.replayed and real.opening_account_id is not None
    with read_only(shop.engine) as conn:
        opening = conn.execute(
            select(accounts.c.code, accounts.c.balance_minor, accounts.c.is_hot).where(
                accounts.c.id == real.opening_account_id
            )
        ).one()
    assert tuple(opening) == (f"opening:BONUS:{real.import_id}", -10_00, False)


def test_progress_is_reported_up_to_the_end(shop: Shop) -> None:
    seen: list[tuple[int, int, str]] = []
    data = csv_bytes("Номер;Бонусы\n" + "".join(f"63000{n:05d};1\n" for n in range(30)))
    run(shop, data, progress=lambda done, total, stage: seen.append((done, total, stage)))
    assert seen[0] == (0, 30, "checking") and seen[-1] == (30, 30, "done")
    assert {stage for _, _, stage in seen} >= {"issuing", "posting"}


# --------------------------------------------------------------------------- amounts


@given(
    minor=st.integers(min_value=0, max_value=10**14),
    exponent=st.integers(min_value=0, max_value=4),
    comma=st.booleans(),
    grouped=st.booleans(),
)
def test_amounts_read_back_exactly_as_written(
    minor: int, exponent: int, comma: bool, grouped: bool
) -> None:
    whole, frac = divmod(minor, 10**exponent)
    text = f"{whole:,}".replace(",", " " if grouped else "")
    if exponent:
        text += ("," if comma else ".") + f"{frac:0{exponent}d}"
    assert parse_amount(text, exponent) == minor
    assert parse_amount("\u00a0" + text.replace(" ", "\u00a0") + " ", exponent) == minor
    # One more decimal that is not zero is too precise; a zero is harmless.
    sep = "" if exponent else ("," if comma else ".")
    assert parse_amount(text + sep + "0", exponent) == minor
    with pytest.raises(KopilkaError) as caught:
        parse_amount(text + sep + "1", exponent)
    assert caught.value.code == RowCode.AMOUNT_TOO_PRECISE
    if minor:
        with pytest.raises(KopilkaError) as caught:
            parse_amount("-" + text, exponent)
        assert caught.value.code == RowCode.NEGATIVE_AMOUNT


@pytest.mark.parametrize("text", ["1,2,3", "1.234,56", "12 34", "1e3", "руб", "+", ",", "5,"])
def test_what_is_not_an_amount(text: str) -> None:
    with pytest.raises(KopilkaError) as caught:
        parse_amount(text, 2)
    assert caught.value.code == RowCode.INVALID_AMOUNT
