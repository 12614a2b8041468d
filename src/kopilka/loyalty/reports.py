"""The "balances and turnovers" report of cards (SPEC C-11), with CSV and XLSX export.
Everything here only reads; nothing moves points.

Balances and turnovers
----------------------
A period is half-open, ``[start, end)``, like the ledger's (``kopilka.ledger.balances``).
Opening and closing come from the running balance stored on each ledger entry: the last
entry of the card's wallet before the moment, one index probe per card, however long the
history. Only the period's own entries are read, grouped by card and by what they were
(the transfer's ``kind``, as ``pos``, ``documents`` and the lot expiry label them):

=================  ======  ====================================================
column             side    kinds
=================  ======  ====================================================
accrued            credit  ``accrual`` (checks), ``manual_accrual``, imports
returned           credit  ``refund``: points a refund gave back
spent              debit   ``spend`` (checks), ``capture`` (held, then taken)
reversed           debit   ``accrual_reversal``: accruals a refund took back
written_off        debit   ``manual_write_off``
expired            debit   ``expiry``
other_credit/debit         anything else (corrections, reversals)
=================  ======  ====================================================

so ``opening + credit - debit == closing`` for every row, where ``credit`` and ``debit``
are the sums of their columns. Cards are read in chunks by id, a handful of set-based
statements per chunk, so 100,000 cards cost tens of statements, not a query per card.

**Branch filter.** A card belongs to no branch; an operation does when a terminal of the
branch made it (POS transfers are keyed ``pos:{terminal}:…``, purchases name their
check). With a branch, a row shows the card's real opening and closing balances, the
turnovers of that branch only, and in ``outside`` the net of everything else (other
branches, manual documents, imports, expiry), so the row still adds up. Manual documents
and expiry belong to no branch: they appear only in ``outside`` and in the report without
a branch. Only cards the branch served in the period are listed.

A card's history is ``kopilka.loyalty.card_history``; reconciliation with the POS side is
``kopilka.loyalty.reconciliation``.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, case, false, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from kopilka.core.clock import as_utc
from kopilka.core.db import one_of, read_only
from kopilka.core.errors import InvalidInput, NotFound
from kopilka.core.money import currency_exponent, format_amount
from kopilka.ledger.schema import accounts, entries, transfers, units
from kopilka.loyalty.cards import chunk_size
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import get_program
from kopilka.loyalty.schema import (
    card_purchases,
    cards,
    loyalty_programs,
    loyalty_tiers,
    pos_checks,
)
from kopilka.tenancy.actions import TenancyErrorCode
from kopilka.tenancy.schema import branches, terminals

REPORT_CHUNK = 2_000  # cards per round of statements
MAX_PERIOD_DAYS = 3_660

ACCRUED_KINDS = frozenset({"accrual", "manual_accrual", "opening_balance", "import"})
CREDIT_KINDS = {"refund": "returned", **{kind: "accrued" for kind in ACCRUED_KINDS}}
DEBIT_KINDS = {
    "spend": "spent",
    "capture": "spent",
    "accrual_reversal": "reversed",
    "manual_write_off": "written_off",
    "expiry": "expired",
}


def column_of(kind: str, amount_minor: int) -> str:
    """The report column an entry of this transfer kind and sign falls in."""
    assert amount_minor != 0, "entries are never zero"
    if amount_minor > 0:
        return CREDIT_KINDS.get(kind, "other_credit")
    return DEBIT_KINDS.get(kind, "other_debit")


# --------------------------------------------------------------------------- periods


def day_period(first: date, last: date, timezone: str) -> tuple[datetime, datetime]:
    """The days ``first`` to ``last`` (both included) in the tenant's time zone, as the
    half-open UTC period ``[start, end)`` the report takes."""
    if last < first:
        raise InvalidInput(E.INVALID_REPORT, "a period's last day is not before its first")
    if (last - first).days > MAX_PERIOD_DAYS:
        raise InvalidInput(E.INVALID_REPORT, f"a period is at most {MAX_PERIOD_DAYS} days")
    zone = ZoneInfo(timezone)
    try:
        start = datetime.combine(first, time(0), tzinfo=zone)
        end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone)
        return as_utc(start), as_utc(end)
    except OverflowError:  # the first hours of year 1, the last day of 9999
        raise InvalidInput(E.INVALID_REPORT, "the period is out of range") from None


# --------------------------------------------------------------------------- figures


@dataclass(slots=True)
class Figures:
    """A card's (or a total's) points over the period, in the point unit's minor units;
    ``purchases_minor`` in the program's currency minor units."""

    opening_minor: int = 0
    accrued_minor: int = 0
    returned_minor: int = 0
    other_credit_minor: int = 0
    spent_minor: int = 0
    reversed_minor: int = 0
    written_off_minor: int = 0
    expired_minor: int = 0
    other_debit_minor: int = 0
    outside_minor: int = 0  # net of operations outside the branch filter
    closing_minor: int = 0
    purchases_minor: int = 0  # money paid on checks, less refunds
    checks: int = 0  # checks, less full refunds

    @property
    def credit_minor(self) -> int:
        return self.accrued_minor + self.returned_minor + self.other_credit_minor

    @property
    def debit_minor(self) -> int:
        return (
            self.spent_minor
            + self.reversed_minor
            + self.written_off_minor
            + self.expired_minor
            + self.other_debit_minor
        )

    @property
    def moved(self) -> bool:
        return bool(self.credit_minor or self.debit_minor or self.purchases_minor or self.checks)

    def add(self, other: Figures) -> None:
        for name in FIGURE_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def balanced(self) -> bool:
        return (
            self.opening_minor + self.credit_minor - self.debit_minor + self.outside_minor
            == self.closing_minor
        )


FIGURE_NAMES = tuple(f.name for f in fields(Figures))


@dataclass(frozen=True, slots=True)
class TurnoverRow:
    card_id: int
    number: str
    holder_name: str | None
    status: str
    program_id: int
    program: str
    tier: str | None
    unit_code: str
    exponent: int
    currency: str
    currency_exponent: int
    figures: Figures


@dataclass(slots=True)
class TurnoverTotal:
    """The rows of one point unit (and currency) added up."""

    unit_code: str
    exponent: int
    currency: str
    currency_exponent: int
    cards: int = 0
    figures: Figures = field(default_factory=Figures)


@dataclass(frozen=True, slots=True)
class TurnoverReport:
    start: datetime
    end: datetime
    program_id: int | None
    branch_id: int | None
    rows: list[TurnoverRow]
    totals: list[TurnoverTotal]  # of ``rows``, by unit
    next_after_card_id: int | None  # more rows follow this card (``limit`` given)


class Totals:
    """Adds rows up by (unit, currency) as they stream past."""

    def __init__(self) -> None:
        self._by_unit: dict[tuple[str, str], TurnoverTotal] = {}

    def add(self, row: TurnoverRow) -> None:
        key = (row.unit_code, row.currency)
        total = self._by_unit.get(key)
        if total is None:
            total = TurnoverTotal(row.unit_code, row.exponent, row.currency, row.currency_exponent)
            self._by_unit[key] = total
        total.cards += 1
        total.figures.add(row.figures)

    def result(self) -> list[TurnoverTotal]:
        return [self._by_unit[key] for key in sorted(self._by_unit)]


# --------------------------------------------------------------------------- the report

Progress = Callable[[int, int], None]  # (cards looked at, cards in all)


@dataclass(frozen=True, slots=True)
class _Filter:
    tenant_id: int
    start: datetime
    end: datetime
    program_id: int | None
    branch_terminals: tuple[int, ...] | None  # None: every operation counts
    card_ids: tuple[int, ...] | None


def balances_and_turnovers(
    conn: Connection,
    tenant_id: int,
    *,
    start: datetime,
    end: datetime,
    program_id: int | None = None,
    branch_id: int | None = None,
    card_ids: Sequence[int] | None = None,
    include_idle: bool = False,
    after_card_id: int | None = None,
    limit: int | None = None,
) -> TurnoverReport:
    """SPEC C-11: per card, opening balance, turnovers by kind, closing balance, and the
    purchases and checks of ``[start, end)``; totals by unit. ``limit`` pages the rows by
    card id (continue with ``after_card_id=report.next_after_card_id``); the totals are
    of the rows returned. ``include_idle`` also lists cards with nothing at all."""
    rows: list[TurnoverRow] = []
    totals = Totals()
    more = None
    for row in iter_turnovers(
        conn,
        tenant_id,
        start=start,
        end=end,
        program_id=program_id,
        branch_id=branch_id,
        card_ids=card_ids,
        include_idle=include_idle,
        after_card_id=after_card_id,
    ):
        if limit is not None and len(rows) == limit:
            more = rows[-1].card_id
            break
        rows.append(row)
        totals.add(row)
    return TurnoverReport(
        as_utc(start), as_utc(end), program_id, branch_id, rows, totals.result(), more
    )


def iter_turnovers(
    conn: Connection,
    tenant_id: int,
    *,
    start: datetime,
    end: datetime,
    program_id: int | None = None,
    branch_id: int | None = None,
    card_ids: Sequence[int] | None = None,
    include_idle: bool = False,
    after_card_id: int | None = None,
    progress: Progress | None = None,
    chunk: int = REPORT_CHUNK,
) -> Iterator[TurnoverRow]:
    """The rows of ``balances_and_turnovers`` one at a time, by card id, read in chunks:
    what exports stream. The filters are checked at once (a bad one raises here, not at
    the first row); ``progress`` hears (cards looked at, cards in all)."""
    flt = _filter(conn, tenant_id, start, end, program_id, branch_id, card_ids)
    return _rows(conn, flt, include_idle, after_card_id, progress, chunk)


def _rows(
    conn: Connection,
    flt: _Filter,
    include_idle: bool,
    after_card_id: int | None,
    progress: Progress | None,
    chunk: int,
) -> Iterator[TurnoverRow]:
    total = _count_cards(conn, flt) if progress else 0
    done = 0
    after = after_card_id or 0
    while True:
        heads = _card_chunk(conn, flt, after, chunk)
        if not heads:
            break
        after = heads[-1].id
        moves = _period_moves(conn, flt, [h.account_id for h in heads])
        bought = _purchases(conn, flt, [h.id for h in heads])
        for head in heads:
            row = _row(head, moves.get(head.account_id, {}), bought.get(head.id), flt)
            figures = row.figures
            if flt.branch_terminals is not None:
                # A branch lists the cards it served in the period.
                listed = figures.moved
            else:
                listed = (
                    include_idle
                    or figures.moved
                    or bool(figures.opening_minor or figures.closing_minor)
                )
            if listed:
                yield row
        done += len(heads)
        if progress:
            progress(done, total)


def _filter(
    conn: Connection,
    tenant_id: int,
    start: datetime,
    end: datetime,
    program_id: int | None,
    branch_id: int | None,
    card_ids: Sequence[int] | None,
) -> _Filter:
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise InvalidInput(E.INVALID_REPORT, "a period ends after it starts")
    if program_id is not None:
        get_program(conn, tenant_id, program_id)
    branch_terminals = None
    if branch_id is not None:
        if not conn.execute(
            select(branches.c.id).where(
                branches.c.tenant_id == tenant_id, branches.c.id == branch_id
            )
        ).first():
            raise NotFound(TenancyErrorCode.BRANCH_NOT_FOUND, f"branch {branch_id} does not exist")
        branch_terminals = tuple(
            conn.execute(
                select(terminals.c.id)
                .where(terminals.c.tenant_id == tenant_id, terminals.c.branch_id == branch_id)
                .order_by(terminals.c.id)
            ).scalars()
        )
    ids = None if card_ids is None else tuple(sorted(set(card_ids)))
    return _Filter(tenant_id, start, end, program_id, branch_terminals, ids)


def _card_scope(conn: Connection, flt: _Filter, after: int) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [cards.c.tenant_id == flt.tenant_id, cards.c.id > after]
    if flt.program_id is not None:
        where.append(cards.c.program_id == flt.program_id)
    if flt.card_ids is not None:
        # The ids above the cursor, a chunk at a time.
        first = bisect_right(flt.card_ids, after)
        wanted = flt.card_ids[first : first + chunk_size(conn)]
        where.append(one_of(conn, cards.c.id, wanted) if wanted else false())
    return where


def _count_cards(conn: Connection, flt: _Filter) -> int:
    if flt.card_ids is not None:
        return len(flt.card_ids)
    query = select(func.count()).select_from(cards).where(cards.c.tenant_id == flt.tenant_id)
    if flt.program_id is not None:
        query = query.where(cards.c.program_id == flt.program_id)
    return int(conn.execute(query).scalar_one())


def balance_probe(moment: datetime) -> Any:
    """The card's wallet balance after every entry posted before ``moment``: the running
    balance of the last such entry (one index probe), or zero. A wallet whose last posting
    is older than the moment answers from its own row, without the probe (the common case
    for a period that ends now). Needs ``cards`` and its ``accounts`` row in the query."""
    last = (
        select(entries.c.balance_after_minor)
        .where(entries.c.account_id == cards.c.account_id, entries.c.posted_at < moment)
        .order_by(entries.c.posted_at.desc(), entries.c.account_seq.desc())
        .limit(1)
        .correlate(cards)
        .scalar_subquery()
    )
    return case(
        (accounts.c.last_posted_at.is_(None), 0),
        (accounts.c.last_posted_at < moment, accounts.c.balance_minor),
        else_=func.coalesce(last, 0),
    )


def _card_chunk(conn: Connection, flt: _Filter, after: int, chunk: int) -> list[Any]:
    # The chunk's ids first, by the primary key: the wide query below then reads only
    # these cards, whatever the planner thinks of the tenant's size.
    ids = list(
        conn.execute(
            select(cards.c.id)
            .where(*_card_scope(conn, flt, after))
            .order_by(cards.c.id)
            .limit(chunk)
        ).scalars()
    )
    if not ids:
        return []
    return list(
        conn.execute(
            select(
                cards.c.id,
                cards.c.number,
                cards.c.holder_name,
                cards.c.status,
                cards.c.account_id,
                cards.c.program_id,
                loyalty_programs.c.name.label("program"),
                loyalty_programs.c.currency,
                loyalty_tiers.c.name.label("tier"),
                units.c.code.label("unit_code"),
                units.c.exponent,
                accounts.c.is_hot,
                balance_probe(flt.start).label("opening"),
                balance_probe(flt.end).label("closing"),
            )
            .join(loyalty_programs, loyalty_programs.c.id == cards.c.program_id)
            .join(accounts, accounts.c.id == cards.c.account_id)
            .join(units, units.c.id == accounts.c.unit_id)
            .outerjoin(loyalty_tiers, loyalty_tiers.c.id == cards.c.tier_id)
            .where(one_of(conn, cards.c.id, ids))
            .order_by(cards.c.id)
        )
    )


def _branch_transfers(flt: _Filter) -> ColumnElement[bool] | None:
    """Transfers made by the branch's terminals (None: no branch filter)."""
    if flt.branch_terminals is None:
        return None
    if not flt.branch_terminals:
        return false()
    return or_(*(transfers.c.idempotency_key.like(f"pos:{t}:%") for t in flt.branch_terminals))


def _period_moves(
    conn: Connection, flt: _Filter, account_ids: list[int]
) -> dict[int, dict[str, int]]:
    """Per account, the period's entries summed by report column."""
    credit = case((entries.c.amount_minor > 0, 1), else_=0)
    query = (
        select(
            entries.c.account_id,
            transfers.c.kind,
            credit.label("credit"),
            func.sum(entries.c.amount_minor).label("amount"),
        )
        .join(transfers, transfers.c.id == entries.c.transfer_id)
        .where(
            one_of(conn, entries.c.account_id, account_ids),
            entries.c.posted_at >= flt.start,
            entries.c.posted_at < flt.end,
        )
        .group_by(entries.c.account_id, transfers.c.kind, credit)
    )
    branch = _branch_transfers(flt)
    if branch is not None:
        query = query.where(branch)
    moves: dict[int, dict[str, int]] = {}
    for row in conn.execute(query):
        amount = int(row.amount)
        column = column_of(row.kind, amount)
        by_column = moves.setdefault(row.account_id, {})
        by_column[column] = by_column.get(column, 0) + abs(amount)
    return moves


def _purchases(conn: Connection, flt: _Filter, card_ids: list[int]) -> dict[int, tuple[int, int]]:
    query = (
        select(
            card_purchases.c.card_id,
            func.sum(card_purchases.c.amount_minor),
            func.sum(card_purchases.c.checks),
        )
        .where(
            one_of(conn, card_purchases.c.card_id, card_ids),
            card_purchases.c.at >= flt.start,
            card_purchases.c.at < flt.end,
        )
        .group_by(card_purchases.c.card_id)
    )
    if flt.branch_terminals is not None:
        query = query.join(pos_checks, pos_checks.c.id == card_purchases.c.pos_check_id).where(
            one_of(conn, pos_checks.c.terminal_id, flt.branch_terminals)
            if flt.branch_terminals
            else false()
        )
    return {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(query)}


def _row(head: Any, moves: dict[str, int], bought: tuple[int, int] | None, flt: _Filter) -> Any:
    assert not head.is_hot, "a card's wallet is an ordinary account"
    figures = Figures(
        opening_minor=int(head.opening),
        closing_minor=int(head.closing),
        **{f"{column}_minor": amount for column, amount in moves.items()},
    )
    if bought is not None:
        figures.purchases_minor, figures.checks = bought
    figures.outside_minor = (
        figures.closing_minor - figures.opening_minor - figures.credit_minor + figures.debit_minor
    )
    # Without a branch filter every entry of the period is in a column: nothing is outside.
    assert flt.branch_terminals is not None or figures.outside_minor == 0, (
        f"card {head.number}: the period's entries do not add up to its balances"
    )
    return TurnoverRow(
        card_id=head.id,
        number=head.number,
        holder_name=head.holder_name,
        status=head.status,
        program_id=head.program_id,
        program=head.program,
        tier=head.tier,
        unit_code=head.unit_code,
        exponent=head.exponent,
        currency=head.currency,
        currency_exponent=_exponent_of(head.currency),
        figures=figures,
    )


@lru_cache(maxsize=64)
def _exponent_of(currency: str) -> int:
    return currency_exponent(currency)


# --------------------------------------------------------------------------- export

# (key, Russian header, English header, what): what is "text", "points", "money" or "count".
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("number", "Карта", "Card", "text"),
    ("holder_name", "Владелец", "Holder", "text"),
    ("program", "Программа", "Program", "text"),
    ("tier", "Уровень", "Tier", "text"),
    ("unit_code", "Единица", "Unit", "text"),
    ("opening_minor", "Остаток на начало", "Opening", "points"),
    ("accrued_minor", "Начислено", "Accrued", "points"),
    ("returned_minor", "Возвращено при возвратах", "Returned on refunds", "points"),
    ("other_credit_minor", "Прочие поступления", "Other credits", "points"),
    ("spent_minor", "Оплачено баллами", "Spent", "points"),
    ("reversed_minor", "Сторно начислений", "Accruals reversed", "points"),
    ("written_off_minor", "Списано вручную", "Written off", "points"),
    ("expired_minor", "Сгорело", "Expired", "points"),
    ("other_debit_minor", "Прочие списания", "Other debits", "points"),
    ("outside_minor", "Вне филиала", "Outside the branch", "points"),
    ("closing_minor", "Остаток на конец", "Closing", "points"),
    ("purchases_minor", "Покупки", "Purchases", "money"),
    ("checks", "Чеков", "Checks", "count"),
)


def headers(locale: str = "ru") -> list[str]:
    russian = locale.lower().startswith("ru")
    return [ru if russian else en for _, ru, en, _ in COLUMNS]


def _total_label(locale: str, total: TurnoverTotal) -> str:
    word = "Итого" if locale.lower().startswith("ru") else "Total"
    return f"{word} {total.unit_code} ({total.cards})"


def _cells(row: TurnoverRow | TurnoverTotal, locale: str) -> list[tuple[str, Any]]:
    """(what, value) per column; amounts stay in minor units here."""
    out: list[tuple[str, Any]] = []
    for key, _, _, what in COLUMNS:
        if what == "text":
            if isinstance(row, TurnoverTotal):
                value: Any = (
                    _total_label(locale, row)
                    if key == "number"
                    else (row.unit_code if key == "unit_code" else "")
                )
            else:
                value = getattr(row, key) or ""
        else:
            value = getattr(row.figures, key)
        out.append((what, value))
    return out


def _decimal_text(amount_minor: int, exponent: int, comma: bool) -> str:
    text = format_amount(amount_minor, exponent)
    return text.replace(".", ",") if comma else text


def csv_chunks(
    rows: Iterable[TurnoverRow],
    *,
    locale: str = "ru",
    decimal_comma: bool = True,
    totals: Totals | None = None,
    rows_per_chunk: int = 1_000,
) -> Iterator[str]:
    """The report as CSV text in pieces, for streaming: UTF-8 with a BOM, ``;`` between
    fields, amounts as decimals in major units (a decimal comma by default, as Excel in
    Russia reads them), a header row first and a totals row per unit last."""
    totals = totals if totals is not None else Totals()
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(headers(locale))
    for count, row in enumerate(rows, start=1):
        totals.add(row)
        writer.writerow(_csv_line(row, locale, decimal_comma))
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    for total in totals.result():
        writer.writerow(_csv_line(total, locale, decimal_comma))
    yield buffer.getvalue()


# A spreadsheet takes a cell that starts with one of these for a formula (CSV injection:
# a holder named ``=HYPERLINK(…)`` would run when the report is opened).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: object) -> str:
    """Text for a CSV cell, a leading apostrophe before what would start a formula (the
    spreadsheet shows the text as typed; XLSX cells are written as strings instead)."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _csv_line(row: TurnoverRow | TurnoverTotal, locale: str, comma: bool) -> list[str]:
    line = []
    for what, value in _cells(row, locale):
        if what == "points":
            line.append(_decimal_text(value, row.exponent, comma))
        elif what == "money":
            line.append(_decimal_text(value, row.currency_exponent, comma))
        elif what == "text":
            line.append(csv_text(value))
        else:
            line.append(str(value))
    return line


def write_csv(rows: Iterable[TurnoverRow], out: IO[str], **options: Any) -> None:
    for piece in csv_chunks(rows, **options):
        out.write(piece)


def write_xlsx(
    rows: Iterable[TurnoverRow],
    target: str | IO[bytes],
    *,
    locale: str = "ru",
    title: str = "",
) -> list[TurnoverTotal]:
    """The report as an Excel workbook, written row by row (XlsxWriter's constant memory
    mode: a row once written leaves memory). Amounts are numeric cells with a number
    format of the unit's decimals; a title line, a header row, a totals row per unit."""
    import xlsxwriter

    book = xlsxwriter.Workbook(
        target, {"constant_memory": True, "in_memory": not isinstance(target, str)}
    )
    try:
        sheet = book.add_worksheet("Report" if not locale.startswith("ru") else "Отчёт")
        bold = book.add_format({"bold": True})
        head = book.add_format({"bold": True, "text_wrap": True, "valign": "top", "bottom": 1})
        formats: dict[tuple[int, bool], Any] = {}

        def number_format(exponent: int, total: bool) -> Any:
            key = (exponent, total)
            if key not in formats:
                pattern = "#,##0" + ("." + "0" * exponent if exponent else "")
                formats[key] = book.add_format({"num_format": pattern, "bold": total})
            return formats[key]

        sheet.write_string(0, 0, title, bold)
        for col, text in enumerate(headers(locale)):
            sheet.write_string(1, col, text, head)
            sheet.set_column(col, col, 22 if col < 5 else 14)
        sheet.freeze_panes(2, 1)
        totals = Totals()
        line = 2
        for row in rows:
            totals.add(row)
            _xlsx_line(sheet, line, row, locale, number_format, None)
            line += 1
        result = totals.result()
        for total in result:
            _xlsx_line(sheet, line, total, locale, number_format, bold)
            line += 1
    finally:
        book.close()
    return result


def _xlsx_line(
    sheet: Any,
    line: int,
    row: TurnoverRow | TurnoverTotal,
    locale: str,
    number_format: Callable[[int, bool], Any],
    text_format: Any,
) -> None:
    total = isinstance(row, TurnoverTotal)
    for col, (what, value) in enumerate(_cells(row, locale)):
        if what == "text":
            sheet.write_string(line, col, str(value), text_format)
        elif what == "count":
            sheet.write_number(line, col, value, number_format(0, total))
        else:
            exponent = row.exponent if what == "points" else row.currency_exponent
            # A Decimal goes into the file as its exact digits (no float on the way).
            sheet.write_number(
                line, col, Decimal(value).scaleb(-exponent), number_format(exponent, total)
            )


# --------------------------------------------------------------------------- downloads


def turnovers_csv(
    engine: Engine,
    tenant_id: int,
    *,
    locale: str,
    decimal_comma: bool = True,
    **options: Any,
) -> Iterator[str]:
    """The report as CSV text, chunk by chunk, read on its own connection (a streamed
    response is sent after the route has returned)."""
    with read_only(engine) as conn:
        yield from csv_chunks(
            iter_turnovers(conn, tenant_id, **options),
            locale=locale,
            decimal_comma=decimal_comma,
        )


def turnovers_xlsx_file(
    engine: Engine, tenant_id: int, *, locale: str, title: str, **options: Any
) -> str:
    """The report written to a temporary XLSX file; its path (the caller removes it)."""
    handle, path = tempfile.mkstemp(prefix="kopilka-report-", suffix=".xlsx")
    os.close(handle)
    try:
        with read_only(engine) as conn:
            write_xlsx(iter_turnovers(conn, tenant_id, **options), path, locale=locale, title=title)
    except BaseException:
        os.unlink(path)
        raise
    return path
