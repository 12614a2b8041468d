"""Reconciliation with the POS side (SPEC C-10): the seed's "synchronisation of
accumulations", which makes the server's figures the ones every till sees.

``reconcile`` compares what a POS reports with the server and returns, per card, the
correction the POS must apply (``server - pos``) and the value to set. It posts nothing:
the server is the source of truth, and the POS is what gets corrected. A POS that kept
points the server does not know about is a case for a manual document, made by a person
who has looked at the difference.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from kopilka.core.clock import as_utc
from kopilka.core.db import one_of
from kopilka.core.errors import InvalidInput
from kopilka.core.money import currency_exponent, format_amount, parse_amount
from kopilka.ledger.schema import accounts, entries, units
from kopilka.loyalty.cards import chunk_size, listing, normalise_number
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import get_program
from kopilka.loyalty.schema import cards, loyalty_programs

MAX_RECONCILE = 100_000  # cards one reconciliation names
CHUNK = 2_000  # cards read at a time for "every card"


@dataclass(frozen=True, slots=True)
class Reported:
    """What the POS side holds for a card: decimal strings, as the POS reported them, in
    the card's point unit (``balance``) and its program's currency (``accumulation``)."""

    number: str
    balance: str | None = None
    accumulation: str | None = None


@dataclass(frozen=True, slots=True)
class ReconcileLine:
    card_id: int
    number: str
    status: str
    unit_code: str
    exponent: int
    currency_exponent: int
    server_balance_minor: int
    pos_balance_minor: int | None  # None: not reported (all cards: set it)
    server_accumulation_minor: int
    pos_accumulation_minor: int | None

    @property
    def balance_difference_minor(self) -> int | None:
        """What the POS holds over the server (negative: under)."""
        if self.pos_balance_minor is None:
            return None
        return self.pos_balance_minor - self.server_balance_minor

    @property
    def balance_correction_minor(self) -> int | None:
        """What the POS must add to agree with the server."""
        diff = self.balance_difference_minor
        return None if diff is None else -diff

    @property
    def accumulation_difference_minor(self) -> int | None:
        if self.pos_accumulation_minor is None:
            return None
        return self.pos_accumulation_minor - self.server_accumulation_minor

    @property
    def accumulation_correction_minor(self) -> int | None:
        diff = self.accumulation_difference_minor
        return None if diff is None else -diff

    @property
    def differs(self) -> bool:
        return bool(self.balance_difference_minor or self.accumulation_difference_minor)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    as_of: datetime | None  # None: the balances now
    lines: list[ReconcileLine]
    unknown_numbers: list[str]
    checked: int
    differing: int


def reconcile(
    conn: Connection,
    tenant_id: int,
    reported: Sequence[Reported] | None = None,
    *,
    as_of: datetime | None = None,
    only_differences: bool = False,
    program_id: int | None = None,
) -> Reconciliation:
    """SPEC C-10: compare what the POS reports with the server; the corrections to send.

    ``reported`` None (the seed's document with an empty table): every card of the
    tenant (or of ``program_id``), each with the values the POS must set. Otherwise the
    cards named, each with the server's value, the POS's, the difference and the
    correction; numbers the server does not know are listed apart. ``as_of`` compares
    points with the balance at that moment (the moment the POS's figures were taken);
    accumulation is always the card's current one. Reads only: nothing is posted.
    """
    moment = None if as_of is None else as_utc(as_of)
    if reported is None:
        every = list(_all_lines(conn, tenant_id, moment, program_id))
        return Reconciliation(moment, every, [], len(every), 0)
    wanted = _parse_reported(reported)
    found = _server_lines(conn, tenant_id, moment, list(wanted))
    lines: list[ReconcileLine] = []
    unknown = []
    for number, item in wanted.items():
        server = found.get(number)
        if server is None:
            unknown.append(number)
            continue
        lines.append(_compare(server, item))
    differing = sum(1 for line in lines if line.differs)
    if only_differences:
        lines = [line for line in lines if line.differs]
    return Reconciliation(moment, lines, unknown, len(wanted) - len(unknown), differing)


# Every refusal of the POS's figures says what it is about in ``params["reason"]``: empty,
# too_many, repeated, bad_shape, bad_number or bad_amount (screens word it by that).


def _parse_reported(reported: Sequence[Reported]) -> dict[str, tuple[Reported, int]]:
    if len(reported) > MAX_RECONCILE:
        raise InvalidInput(
            E.INVALID_RECONCILIATION,
            f"at most {MAX_RECONCILE:,} cards at once",
            reason="too_many",
        )
    wanted: dict[str, tuple[Reported, int]] = {}
    twice = []
    for position, item in enumerate(reported, start=1):
        try:
            number = normalise_number(item.number)
        except InvalidInput as error:
            raise InvalidInput(
                E.INVALID_RECONCILIATION,
                f"line {position}: {error.detail}",
                line=position,
                reason="bad_number",
            ) from error
        if number in wanted:
            twice.append(number)
        wanted[number] = (item, position)
    if twice:
        raise InvalidInput(
            E.INVALID_RECONCILIATION,
            f"cards {listing(twice)} are reported more than once",
            card_numbers=twice[:10],
            reason="repeated",
        )
    return wanted


def _server_query(moment: datetime | None) -> Any:
    balance = accounts.c.balance_minor if moment is None else _balance_until(moment)
    return (
        select(
            cards.c.id,
            cards.c.number,
            cards.c.status,
            cards.c.accumulation_minor,
            loyalty_programs.c.currency,
            units.c.code.label("unit_code"),
            units.c.exponent,
            balance.label("balance"),
        )
        .join(loyalty_programs, loyalty_programs.c.id == cards.c.program_id)
        .join(accounts, accounts.c.id == cards.c.account_id)
        .join(units, units.c.id == accounts.c.unit_id)
    )


def _balance_until(moment: datetime) -> Any:
    last = (
        select(entries.c.balance_after_minor)
        .where(entries.c.account_id == cards.c.account_id, entries.c.posted_at <= moment)
        .order_by(entries.c.posted_at.desc(), entries.c.account_seq.desc())
        .limit(1)
        .correlate(cards)
        .scalar_subquery()
    )
    return func.coalesce(last, 0)


def _line(row: Any, pos_balance: int | None, pos_accumulation: int | None) -> ReconcileLine:
    return ReconcileLine(
        card_id=row.id,
        number=row.number,
        status=row.status,
        unit_code=row.unit_code,
        exponent=row.exponent,
        currency_exponent=currency_exponent(row.currency),
        server_balance_minor=int(row.balance),
        pos_balance_minor=pos_balance,
        server_accumulation_minor=row.accumulation_minor,
        pos_accumulation_minor=pos_accumulation,
    )


def _server_lines(
    conn: Connection, tenant_id: int, moment: datetime | None, numbers: list[str]
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    size = chunk_size(conn)
    for begin in range(0, len(numbers), size):
        for row in conn.execute(
            _server_query(moment).where(
                cards.c.tenant_id == tenant_id,
                one_of(conn, cards.c.number, numbers[begin : begin + size]),
            )
        ):
            found[row.number] = row
    return found


def _compare(server: Any, item: tuple[Reported, int]) -> ReconcileLine:
    reported, position = item
    exponent = server.exponent
    currency_exp = currency_exponent(server.currency)
    try:
        balance = (
            None
            if reported.balance is None
            else parse_amount(reported.balance, exponent, unit_code=server.unit_code)
        )
        accumulation = (
            None
            if reported.accumulation is None
            else parse_amount(reported.accumulation, currency_exp, unit_code=server.currency)
        )
    except InvalidInput as error:
        raise InvalidInput(
            E.INVALID_RECONCILIATION,
            f"line {position} (card {server.number}): {error.detail}",
            line=position,
            reason="bad_amount",
        ) from error
    return _line(server, balance, accumulation)


def _all_lines(
    conn: Connection, tenant_id: int, moment: datetime | None, program_id: int | None
) -> Iterator[ReconcileLine]:
    if program_id is not None:
        get_program(conn, tenant_id, program_id)
    after = 0
    while True:
        query = _server_query(moment).where(cards.c.tenant_id == tenant_id, cards.c.id > after)
        if program_id is not None:
            query = query.where(cards.c.program_id == program_id)
        rows = conn.execute(query.order_by(cards.c.id).limit(CHUNK)).all()
        if not rows:
            return
        after = rows[-1].id
        for row in rows:
            yield _line(row, None, None)


def parse_reported_csv(text: str) -> list[Reported]:
    """A POS's figures from CSV: card number, points balance and (optionally) accumulation
    per line; ``;`` or ``,`` between fields (with ``;``, a decimal comma is fine); a
    header line (anything whose first field is not a card number) is skipped."""
    text = text.lstrip("\ufeff")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidInput(E.INVALID_RECONCILIATION, "the file has no lines", reason="empty")
    delimiter = ";" if ";" in lines[0] else ("\t" if "\t" in lines[0] else ",")
    out = []
    for position, fields_ in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        cells = [cell.strip() for cell in fields_]
        if position == 1 and not cells[0].replace(" ", "").replace("-", "").isdigit():
            continue  # a header
        if len(cells) < 2 or len(cells) > 3:
            raise InvalidInput(
                E.INVALID_RECONCILIATION,
                f"line {position}: card number; balance[; accumulation] expected",
                line=position,
                reason="bad_shape",
            )

        def amount(cell: str) -> str | None:
            if not cell:
                return None
            return cell.replace(" ", "").replace("\u00a0", "").replace(",", ".")

        out.append(
            Reported(cells[0], amount(cells[1]), amount(cells[2]) if len(cells) == 3 else None)
        )
    return out


RECONCILE_COLUMNS = (
    "number",
    "status",
    "unit",
    "server_balance",
    "pos_balance",
    "balance_correction",
    "server_accumulation",
    "pos_accumulation",
    "accumulation_correction",
)


def reconcile_csv_chunks(result: Reconciliation, rows_per_chunk: int = 1_000) -> Iterator[str]:
    """The corrections as CSV (UTF-8 with a BOM, ``;``, decimal points: for machines,
    the POS's import, rather than for Excel). Unknown numbers close the file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(RECONCILE_COLUMNS)

    def amount(value: int | None, exponent: int) -> str:
        return "" if value is None else format_amount(value, exponent)

    for count, line in enumerate(result.lines, start=1):
        writer.writerow(
            [
                line.number,
                line.status,
                line.unit_code,
                amount(line.server_balance_minor, line.exponent),
                amount(line.pos_balance_minor, line.exponent),
                amount(line.balance_correction_minor, line.exponent),
                amount(line.server_accumulation_minor, line.currency_exponent),
                amount(line.pos_accumulation_minor, line.currency_exponent),
                amount(line.accumulation_correction_minor, line.currency_exponent),
            ]
        )
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    for number in result.unknown_numbers:
        writer.writerow([number, "unknown", "", "", "", "", "", "", ""])
    yield buffer.getvalue()
