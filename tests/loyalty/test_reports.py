"""Balances and turnovers, a card's history, reconciliation (SPEC C-10, C-11), worked on a
shop's March: checks, a refund, a write-off, a night that burns a lot. Points in minor
units: 30_00 is 30.00 bonus points."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.accounts import system_account
from kopilka.ledger.balances import turnovers
from kopilka.ledger.holds import place_hold, void_hold
from kopilka.loyalty import card_history, documents, pos, reconciliation, reports
from kopilka.loyalty.cards import CardView, block_cards, issue_card, unblock_cards
from kopilka.loyalty.nightly import run_nightly
from kopilka.loyalty.programs import create_program
from kopilka.tenancy.actions import create_branch, create_terminal

from .conftest import Shop

MARCH_1 = datetime(2031, 3, 1, 10, 0, tzinfo=UTC)


def day(n: int, hour: int = 10) -> datetime:
    """March n, 2031 (n past 31 runs on into April)."""
    return MARCH_1 + timedelta(days=n - 1, hours=hour - 10)


def commit(
    shop: Shop,
    card: CardView,
    check_id: str,
    lines: list[int],
    points: int = 0,
    *,
    at: datetime,
    terminal_id: int | None = None,
) -> pos.CommittedCheck:
    return shop.tx(
        lambda c: pos.commit_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=terminal_id or shop.terminal_id,
            check_id=check_id,
            card_number=card.number,
            lines=lines,
            points_minor=points,
            actor=shop.actor,
            now=at,
        )
    )


def refund(
    shop: Shop, check_id: str, refund_id: str, amount: int | None, *, at: datetime
) -> pos.Refund:
    return shop.tx(
        lambda c: pos.refund_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id=check_id,
            refund_id=refund_id,
            amount_minor=amount,
            actor=shop.actor,
            now=at,
        )
    )


def document(shop: Shop, kind: str, card: CardView, amount: int, doc: str, at: datetime) -> Any:
    act = documents.accrue_points if kind == "accrual" else documents.write_off_points
    return shop.tx(
        lambda c: act(
            c,
            tenant_id=shop.tenant.id,
            card_numbers=[card.number],
            amount_minor=amount,
            reason="ошибка кассира" if kind != "accrual" else "компенсация",
            actor=shop.actor,
            document_id=doc,
            now=at,
        )
    )


def report(shop: Shop, first: datetime, end: datetime, **options: Any) -> reports.TurnoverReport:
    with read_only(shop.engine) as conn:
        return reports.balances_and_turnovers(conn, shop.tenant.id, start=first, end=end, **options)


def march(shop: Shop) -> CardView:
    """The worked example on one card, each step on its day:

    * 1 March, check C1 of 1,000.00 paid in money: 3 % accrued, 30.00 (a lot to 31 March);
    * 5 March, check C2 of 400.00, 20.00 of it in points: 3 % of 380.00 accrued, 11.40;
    * 10 March, half of C2 refunded: 10.00 points back, 5.70 of the accrual taken back;
    * 15 March, document W-1 writes 5.00 off (from the lot of C1, the first to expire);
    * 1 April, the night: what is left of C1's lot, 5.00, expires.
    """
    card = shop.card(holder_name="Анна Петрова")
    assert commit(shop, card, "C1", [1000_00], at=day(1)).accrued_minor == 30_00
    c2 = commit(shop, card, "C2", [250_00, 150_00], 20_00, at=day(5))
    assert (c2.spent_minor, c2.accrued_minor) == (20_00, 11_40)
    back = refund(shop, "C2", "R1", 200_00, at=day(10))
    assert (back.points_returned_minor, back.accrual_reversed_minor) == (10_00, 5_70)
    document(shop, "write_off", card, 5_00, "W-1", day(15))
    night = run_nightly(shop.engine, tenant_id=shop.tenant.id, actor=shop.actor, now=day(32, 3))
    assert night.lots_expired == 1
    return card


def figures(row: reports.TurnoverRow) -> dict[str, int]:
    f = row.figures
    return {
        "opening": f.opening_minor,
        "accrued": f.accrued_minor,
        "returned": f.returned_minor,
        "spent": f.spent_minor,
        "reversed": f.reversed_minor,
        "written_off": f.written_off_minor,
        "expired": f.expired_minor,
        "other": f.other_credit_minor - f.other_debit_minor + f.outside_minor,
        "closing": f.closing_minor,
        "purchases": f.purchases_minor,
        "checks": f.checks,
    }


# --------------------------------------------------------------------------- turnovers


def test_march_and_april_balances_and_turnovers(shop: Shop) -> None:
    card = march(shop)
    (row,) = report(shop, day(1, 0), day(32, 0)).rows
    assert (row.number, row.holder_name, row.program, row.unit_code) == (
        card.number,
        "Анна Петрова",
        "Бонусы",
        "BONUS",
    )
    assert figures(row) == {
        "opening": 0,
        "accrued": 41_40,
        "returned": 10_00,
        "spent": 20_00,
        "reversed": 5_70,
        "written_off": 5_00,
        "expired": 0,
        "other": 0,
        "closing": 20_70,
        "purchases": 1000_00 + 380_00 - 190_00,
        "checks": 2,
    }
    (april,) = report(shop, day(32, 0), day(61, 0)).rows
    assert figures(april) | {"purchases": 0} == {
        "opening": 20_70,
        "accrued": 0,
        "returned": 0,
        "spent": 0,
        "reversed": 0,
        "written_off": 0,
        "expired": 5_00,
        "other": 0,
        "closing": 15_70,
        "purchases": 0,
        "checks": 0,
    }
    # A period inside: opening is the balance before the refund day, to the entry.
    (middle,) = report(shop, day(10, 0), day(15, 0)).rows
    assert (middle.figures.opening_minor, middle.figures.closing_minor) == (21_40, 25_70)
    assert (middle.figures.credit_minor, middle.figures.debit_minor) == (10_00, 5_70)
    shop.assert_clean()


def test_every_row_adds_up_and_totals_add_the_rows(shop: Shop) -> None:
    march(shop)
    other = shop.card()
    commit(shop, other, "C3", [700_00], at=day(2))
    document(shop, "accrual", other, 3_00, "A-1", day(3))
    shop.card()  # never used: not listed unless asked
    result = report(shop, day(1, 0), day(40, 0))
    assert len(result.rows) == 2
    for row in result.rows:
        f = row.figures
        assert f.opening_minor + f.credit_minor - f.debit_minor == f.closing_minor
        assert f.outside_minor == 0
    (total,) = result.totals
    assert total.cards == 2 and total.unit_code == "BONUS"
    assert total.figures.accrued_minor == 41_40 + 21_00 + 3_00
    assert total.figures.closing_minor == sum(r.figures.closing_minor for r in result.rows)
    assert len(report(shop, day(1, 0), day(40, 0), include_idle=True).rows) == 3
    # Paging by card id gives the same rows.
    first = report(shop, day(1, 0), day(40, 0), limit=1)
    assert first.next_after_card_id == result.rows[0].card_id
    rest = report(shop, day(1, 0), day(40, 0), after_card_id=first.next_after_card_id)
    assert [r.card_id for r in first.rows + rest.rows] == [r.card_id for r in result.rows]


def test_branch_filter_counts_its_terminals_and_leaves_documents_outside(shop: Shop) -> None:
    def setup(conn: Any) -> tuple[int, int]:
        branch = create_branch(conn, tenant_id=shop.tenant.id, name="Центр", actor=shop.actor)
        terminal, _ = create_terminal(
            conn, tenant_id=shop.tenant.id, name="Касса Центр", actor=shop.actor, branch_id=branch
        )
        return branch, terminal.id

    branch, centre = shop.tx(setup)
    march(shop)  # at the terminal of no branch
    card = shop.card()
    commit(shop, card, "Z1", [500_00], at=day(2), terminal_id=centre)
    document(shop, "accrual", card, 3_00, "A-1", day(3))
    (row,) = report(shop, day(1, 0), day(40, 0), branch_id=branch).rows
    assert row.card_id == card.id
    assert figures(row) == {
        "opening": 0,
        "accrued": 15_00,
        "returned": 0,
        "spent": 0,
        "reversed": 0,
        "written_off": 0,
        "expired": 0,
        "other": 3_00,  # the document: outside the branch
        "closing": 18_00,
        "purchases": 500_00,
        "checks": 1,
    }
    assert row.figures.outside_minor == 3_00 and row.figures.balanced()
    (whole,) = [r for r in report(shop, day(1, 0), day(40, 0)).rows if r.card_id == card.id]
    assert whole.figures.accrued_minor == 18_00 and whole.figures.outside_minor == 0


def test_program_and_card_filters(shop: Shop) -> None:
    def second_program(conn: Any) -> CardView:
        program = create_program(
            conn, tenant_id=shop.tenant.id, name="Кофе", unit_code="BONUS", actor=shop.actor
        )
        return issue_card(
            conn,
            tenant_id=shop.tenant.id,
            program_id=program.id,
            number="5550001",
            actor=shop.actor,
        )

    coffee = shop.tx(second_program)
    card = march(shop)
    document(shop, "accrual", coffee, 7_00, "A-2", day(2))
    both = report(shop, day(1, 0), day(40, 0))
    assert {r.number for r in both.rows} == {card.number, coffee.number}
    only = report(shop, day(1, 0), day(40, 0), program_id=shop.program.id)
    assert [r.number for r in only.rows] == [card.number]
    chosen = report(shop, day(1, 0), day(40, 0), card_ids=[coffee.id])
    assert [(r.program, r.figures.accrued_minor) for r in chosen.rows] == [("Кофе", 7_00)]


def test_bad_periods_and_filters_are_refused(shop: Shop) -> None:
    with pytest.raises(KopilkaError) as caught:
        report(shop, day(2), day(1))
    assert caught.value.code == "invalid_report"
    with pytest.raises(KopilkaError) as caught:
        report(shop, day(1), day(2), branch_id=999_999)
    assert caught.value.code == "branch_not_found"
    with pytest.raises(KopilkaError) as caught:
        reports.day_period(date(2031, 3, 2), date(2031, 3, 1), "Europe/Moscow")
    assert caught.value.code == "invalid_report"


def test_day_period_is_in_the_tenants_time_zone() -> None:
    start, end = reports.day_period(date(2031, 3, 1), date(2031, 3, 31), "Europe/Moscow")
    assert start == datetime(2031, 2, 28, 21, 0, tzinfo=UTC)
    assert end == datetime(2031, 3, 31, 21, 0, tzinfo=UTC)


operations = st.lists(
    st.tuples(
        st.sampled_from(["check", "check_points", "refund", "accrue", "write_off", "night"]),
        st.integers(min_value=1, max_value=900_00),
        st.integers(min_value=1, max_value=20),  # days after the previous step
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, cut=st.integers(min_value=0, max_value=120))
def test_rows_agree_with_the_ledger_whatever_happens(
    shop: Shop, ops: list[tuple[str, int, int]], cut: int
) -> None:
    """Any sequence of checks, refunds, documents and nights: each row adds up, and its
    opening, closing, credit and debit are what the ledger's own turnovers say."""
    card = shop.card()
    moment = datetime(2033, 1, 1, 12, tzinfo=UTC)
    checks: list[str] = []
    for n, (kind, amount, gap) in enumerate(ops):
        moment += timedelta(days=gap)
        try:
            if kind.startswith("check"):
                points = shop.get(card).available_minor // 4 if kind == "check_points" else 0
                commit(shop, card, f"{card.id}-K{n}", [amount], points, at=moment)
                checks.append(f"{card.id}-K{n}")
            elif kind == "refund" and checks:
                refund(shop, checks[-1], f"R{n}", None, at=moment)
                checks.pop()
            elif kind == "accrue":
                document(shop, "accrual", card, amount, f"{card.id}-D{n}", moment)
            elif kind == "write_off":
                document(shop, "write_off", card, amount // 10 + 1, f"{card.id}-W{n}", moment)
            elif kind == "night":
                run_nightly(shop.engine, tenant_id=shop.tenant.id, actor=shop.actor, now=moment)
        except KopilkaError as error:
            assert error.code in {"insufficient_points", "points_over_cap"}, error
    start = datetime(2033, 1, 1, tzinfo=UTC) + timedelta(days=cut)
    end = moment + timedelta(days=1)
    if end <= start:
        start, end = end - timedelta(days=1), start + timedelta(days=1)
    with read_only(shop.engine) as conn:
        result = reports.balances_and_turnovers(
            conn, shop.tenant.id, start=start, end=end, card_ids=[card.id], include_idle=True
        )
        ledger = turnovers(conn, shop.tenant.id, [card.account_id], start, end)
    (row,) = result.rows
    f = row.figures
    assert f.balanced() and f.outside_minor == 0
    assert (f.opening_minor, f.closing_minor) == (ledger.opening_minor, ledger.closing_minor)
    assert (f.credit_minor, f.debit_minor) == (ledger.credit_minor, ledger.debit_minor)


# --------------------------------------------------------------------------- export


def test_csv_opens_in_excel_in_russia_and_parses_back(shop: Shop) -> None:
    card = march(shop)
    with read_only(shop.engine) as conn:
        rows = reports.iter_turnovers(conn, shop.tenant.id, start=day(1, 0), end=day(32, 0))
        text = "".join(reports.csv_chunks(rows))
    assert text.startswith("\ufeffКарта;Владелец;Программа")
    lines = list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))
    header, body, total = lines[0], lines[1], lines[2]
    assert len(lines) == 3
    assert header[5] == "Остаток на начало" and header[-3] == "Остаток на конец"
    data = dict(zip(header, body, strict=True))
    assert data["Карта"] == card.number
    assert data["Начислено"] == "41,40"
    assert data["Оплачено баллами"] == "20,00"
    assert data["Остаток на конец"] == "20,70"
    assert data["Покупки"] == "1190,00" and data["Чеков"] == "2"
    assert total[0] == "Итого BONUS (1)" and total[-3] == "20,70"
    # English headers and decimal points, for machines.
    with read_only(shop.engine) as conn:
        rows = reports.iter_turnovers(conn, shop.tenant.id, start=day(1, 0), end=day(32, 0))
        plain = "".join(reports.csv_chunks(rows, locale="en", decimal_comma=False))
    assert "Card;Holder;Program" in plain and ";20.70;" in plain


def test_xlsx_has_numbers_with_formats_and_a_totals_row(shop: Shop, tmp_path: Any) -> None:
    card = march(shop)
    path = tmp_path / "report.xlsx"
    with read_only(shop.engine) as conn:
        rows = reports.iter_turnovers(conn, shop.tenant.id, start=day(1, 0), end=day(32, 0))
        totals = reports.write_xlsx(rows, str(path), title="Остатки и обороты, март 2031")
    assert totals[0].figures.closing_minor == 20_70
    book = openpyxl.load_workbook(path, read_only=True)
    sheet = book.active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "Остатки и обороты, март 2031"
    header, body, total = values[1], values[2], values[3]
    assert header[0] == "Карта" and body[0] == card.number
    closing = header.index("Остаток на конец")
    assert body[closing] == pytest.approx(20.70) and isinstance(body[closing], float)
    assert body[header.index("Чеков")] == 2
    assert total[0] == "Итого BONUS (1)" and total[closing] == pytest.approx(20.70)
    book.close()
    formats = openpyxl.load_workbook(path)
    cell = formats.active.cell(row=3, column=closing + 1)
    assert cell.number_format == "#,##0.00"


# --------------------------------------------------------------------------- history


def history(shop: Shop, card: CardView, **options: Any) -> card_history.CardHistory:
    with read_only(shop.engine) as conn:
        return card_history.card_history(conn, shop.tenant.id, card.id, **options)


def test_history_explains_every_change_with_the_balance_after(shop: Shop) -> None:
    card = march(shop)
    points = [i for i in history(shop, card, limit=100).items if i.amount_minor is not None]
    assert [(i.kind, i.amount_minor, i.balance_after_minor) for i in points] == [
        ("check_accrual", 30_00, 30_00),
        ("check_spend", -20_00, 10_00),
        ("check_accrual", 11_40, 21_40),
        ("refund", 10_00, 31_40),
        ("accrual_reversal", -5_70, 25_70),
        ("manual_write_off", -5_00, 20_70),
        ("expiry", -5_00, 15_70),
    ]
    c1, spend, c2, back, reverse, write_off, expiry = points
    assert c1.details["check_id"] == "C1" and c1.details["terminal"] == "Касса 1"
    assert c1.details["rate_bp"] == 300 and c1.details["tier"] is None
    assert c1.details["total_minor"] == 1000_00
    assert "3.00 %" in c1.title
    assert spend.details["spent_minor"] == 20_00 and spend.details["check_id"] == "C2"
    assert back.details["refund_id"] == "R1" and back.details["share"] == "20000/40000"
    assert reverse.details["check_id"] == "C2"
    assert write_off.details["reason"] == "ошибка кассира"
    assert write_off.details["document_id"] == "W-1"
    assert write_off.details["who"] == "cli"
    assert expiry.details["lot_amount_minor"] == 30_00
    assert expiry.details["accrued_at"] == day(1).isoformat()
    assert c2.at == day(5) and expiry.at == day(32, 3)


def test_history_shows_holds_status_changes_and_pages(shop: Shop) -> None:
    card = march(shop)
    tenant = shop.tenant.id
    shop.tx(
        lambda c: block_cards(
            c, tenant_id=tenant, card_ids=[card.id], reason="утеряна", actor=shop.actor
        )
    )
    shop.tx(lambda c: unblock_cards(c, tenant_id=tenant, card_ids=[card.id], actor=shop.actor))

    def hold(conn: Any) -> int:
        redeemed = system_account(
            conn, tenant_id=shop.tenant.id, unit_code="BONUS", purpose="redeemed", actor=shop.actor
        )
        placed = place_hold(
            conn,
            tenant_id=shop.tenant.id,
            idempotency_key=f"h-{card.id}",
            debit_account_id=card.account_id,
            credit_account_id=redeemed.id,
            amount_minor=2_00,
            actor=shop.actor,
            ttl_seconds=600,
            description="check C9 open",
            now=day(33),
        )
        void_hold(
            conn,
            tenant_id=shop.tenant.id,
            hold_id=placed.id,
            idempotency_key=f"v-{card.id}",
            actor=shop.actor,
            now=day(33) + timedelta(minutes=5),
        )
        return placed.id

    shop.tx(hold)
    everything = history(shop, card, limit=100).items
    kinds = [i.kind for i in everything]
    assert kinds[:3] == ["card_issue", "card_block", "card_unblock"]
    assert kinds[-2:] == ["hold", "hold_voided"]
    assert everything[1].details["reason"] == "утеряна"
    assert everything[-1].balance_after_minor == 15_70 and everything[-1].amount_minor is None
    # Pages of three, oldest first and newest first, give the same items.
    seen, cursor = [], None
    while True:
        page = history(shop, card, limit=3, cursor=cursor)
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [i.cursor for i in seen] == [i.cursor for i in everything]
    backwards, cursor = [], None
    while True:
        page = history(shop, card, limit=4, cursor=cursor, newest_first=True)
        backwards.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [i.cursor for i in backwards] == [i.cursor for i in reversed(everything)]


# --------------------------------------------------------------------------- reconciliation


def test_reconciliation_names_differences_corrections_and_unknown_cards(shop: Shop) -> None:
    card = march(shop)
    same = shop.card()
    with read_only(shop.engine) as conn:
        result = reconciliation.reconcile(
            conn,
            shop.tenant.id,
            [
                reconciliation.Reported(card.number, "20.70", "1190.00"),
                reconciliation.Reported(same.number, "0", None),
                reconciliation.Reported("9999999", "1.00"),
            ],
        )
    assert result.unknown_numbers == ["9999999"]
    assert (result.checked, result.differing) == (2, 1)
    first, second = result.lines
    assert (first.server_balance_minor, first.pos_balance_minor) == (15_70, 20_70)
    assert (first.balance_difference_minor, first.balance_correction_minor) == (5_00, -5_00)
    assert first.accumulation_difference_minor == 0
    assert not second.differs
    # As of before the night, the POS was right.
    with read_only(shop.engine) as conn:
        before = reconciliation.reconcile(
            conn,
            shop.tenant.id,
            [reconciliation.Reported(card.number, "20.70")],
            as_of=day(31),
            only_differences=True,
        )
    assert before.lines == [] and before.differing == 0


def test_reconciliation_of_all_cards_sets_every_value(shop: Shop) -> None:
    card = march(shop)
    shop.card()
    with read_only(shop.engine) as conn:
        result = reconciliation.reconcile(conn, shop.tenant.id)
    assert next((line.number, line.server_balance_minor) for line in result.lines) == (
        card.number,
        15_70,
    )
    assert len(result.lines) == 2 and result.unknown_numbers == []
    text = "".join(reconciliation.reconcile_csv_chunks(result))
    assert f"{card.number};active;BONUS;15.70;;;1190.00;;" in text


def test_reconciliation_reads_a_pos_csv_and_refuses_bad_input(shop: Shop) -> None:
    card = march(shop)
    parsed = reconciliation.parse_reported_csv(
        f"\ufeffНомер;Баллы;Накопление\r\n{card.number};20,70;1 190,00\r\n"
    )
    assert parsed == [reconciliation.Reported(card.number, "20.70", "1190.00")]
    with read_only(shop.engine) as conn:
        for bad in (
            [reconciliation.Reported(card.number, "1.005")],
            [reconciliation.Reported(card.number, "1"), reconciliation.Reported(card.number, "2")],
            [reconciliation.Reported("12", "1")],
        ):
            with pytest.raises(KopilkaError) as caught:
                reconciliation.reconcile(conn, shop.tenant.id, bad)
            assert caught.value.code == "invalid_reconciliation"
