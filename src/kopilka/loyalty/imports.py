"""Cards and their opening balances brought over from another system (SPEC C-5, C-6).

The input is a CSV file as Excel in Russia saves it: UTF-8 with or without a BOM, or
Windows-1251; cells separated by ``;`` or ``,`` (or a tab), told apart by the header line
(or an Excel ``sep=;`` first line); a header naming the columns in English or Russian
(``number``/``номер``, ``holder_name``/``ФИО``, ``phone``/``телефон``, ``email``,
``expires``/``срок``, ``accumulation``/``накопление``, ``checks``/``чеков``,
``points``/``бонусы``/``баллы``, ``status``/``статус``); amounts as ``1 234,56`` or
``1234.56``, read exactly into minor units.

Design overview
---------------
1. **Read and check everything first.** Every row is checked on its own (number and
   check digit, holder, amounts, date, status), then against the file (a number twice),
   then against the database (a card on another program, a card with operations). Every
   problem becomes a ``RowError`` (line, column, code, message); if there is any,
   ``ImportRejected`` lists them all and nothing is written.
2. **Write, in the caller's transaction.** Cards not known yet are issued in bulk (their
   wallets opened at the opening moment); known cards without operations get the file's
   holder data. Points go to each wallet by one ledger transfer (kind
   ``opening_balance``) from an account of the import's own, ``opening:UNIT:IMPORT``;
   accumulation and the check count become one ``card_purchases`` row (so the nightly
   aging window treats them as purchases of that moment) and the card's figures and tier.
3. **The opening moment** (C-6) is the last microsecond of the day before the start date,
   in the tenant's time zone: the balances at the end of that day include what was
   imported, the day before shows nothing, and the first sale of the start date adds to
   it. Lots are dated by the program's rules (activation delay, lifetime) from that moment.
   The opening account is an ordinary (not hot) account opened at the opening moment, so
   the ledger posts exactly then (it never posts before an account's opening or its last
   posting, and hot accounts' snapshots forbid back-dated entries).

**Idempotency.** An import has an id: given, or ``csv-`` and the file's SHA-256. Its
audit record (``cards.import``, object ``card_import``) keeps the digest of the request
(file, program, start date, check digit) and the result: the same id again answers with
the first result (``replayed``), with another digest it is ``import_conflict``. The
program's row is locked first, so two imports into one program queue; two requests with
one id collide on the cards' or the transfers' unique keys and ``run_transaction`` retries
the loser into a replay.
"""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select, update

from kopilka.core.actor import Actor, ActorType
from kopilka.core.bulk import insert_rows, new_ids, update_rows
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError
from kopilka.core.money import MAX_ABS_MINOR, format_amount
from kopilka.jobs.runner import JobContext, register
from kopilka.jobs.schema import jobs
from kopilka.ledger.accounts import Policy, backdate_unused, create_account
from kopilka.ledger.posting import (
    PostedTransfer,
    TransferSpec,
    post_transfers,
    run_transaction,
    simple_transfer,
)
from kopilka.ledger.schema import accounts, holds
from kopilka.loyalty.cards import (
    card_wallets,
    chunk_size,
    is_valid_luhn,
    normalise_email,
    normalise_number,
    normalise_phone,
)
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import Program, get_program, lot_dates
from kopilka.loyalty.schema import card_purchases, cards, loyalty_programs, pos_checks
from kopilka.tenancy.actions import get_tenant
from kopilka.tenancy.audit import record_audit
from kopilka.tenancy.schema import audit_events

MAX_ROWS = 100_000  # cards in one file
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_IMPORT_ID = 64  # fits audit_events.object_id
LISTED_ERRORS = 1_000  # row errors carried in an error's parameters (API body, job result)
MAX_CHECKS = 1_000_000_000
_WRITE_CHUNK = 5_000  # cards per insert, transfers per posting call (and per progress report)
KIND = "opening_balance"
AUDIT_ACTION = "cards.import"
BLOCKED_REASON = "blocked in the imported file"
JOB_KIND = "cards.import"

# Called with (rows done, rows in all, the stage: "checking", "issuing", "updating",
# "posting", "done").
ImportProgress = Callable[[int, int, str], None]


class RowCode(StrEnum):
    """What is wrong with a row or a header cell (the ``code`` of a ``RowError``)."""

    UNKNOWN_COLUMN = "unknown_column"
    DUPLICATE_COLUMN = "duplicate_column"
    MISSING_COLUMN = "missing_column"
    BAD_ROW = "bad_row"
    TOO_MANY_ROWS = "too_many_rows"
    INVALID_CARD_NUMBER = "invalid_card_number"
    INVALID_CHECK_DIGIT = "invalid_check_digit"
    DUPLICATE_CARD = "duplicate_card"
    INVALID_HOLDER = "invalid_holder"
    INVALID_PHONE = "invalid_phone"
    INVALID_EMAIL = "invalid_email"
    INVALID_DATE = "invalid_date"
    INVALID_STATUS = "invalid_status"
    INVALID_AMOUNT = "invalid_amount"
    AMOUNT_TOO_PRECISE = "amount_too_precise"
    NEGATIVE_AMOUNT = "negative_amount"
    INVALID_COUNT = "invalid_count"
    CARD_ON_OTHER_PROGRAM = "card_on_other_program"
    CARD_HAS_HISTORY = "card_has_history"


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # in the file, the header is line 1 (2 after an Excel "sep=" line)
    column: str | None  # as the file's header names it; None for the row as a whole
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportRejected(InvalidInput):
    """The file has problems; ``errors`` lists every one of them. Nothing was written."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        assert errors, "a rejection names at least one problem"
        first = errors[0]
        where = f"line {first.line}" + (f", {first.column}" if first.column else "")
        count = len(errors)
        super().__init__(
            E.INVALID_IMPORT,
            f"{count} problem{'s' if count != 1 else ''} in the file, nothing was imported; "
            f"the first: {where}: {first.message}",
            errors=[error.as_dict() for error in errors[:LISTED_ERRORS]],
            error_count=count,
        )
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class ImportResult:
    import_id: str
    program_id: int
    start_date: date
    opening_at: datetime  # the moment the balances are dated (the day before's last instant)
    rows: int
    cards_issued: int
    cards_updated: int
    cards_with_points: int
    points_minor: int  # in the program's point unit
    unit_code: str
    unit_exponent: int
    accumulation_minor: int  # in the program's currency
    currency: str
    currency_exponent: int
    checks: int
    opening_account_id: int | None  # None when no row had points
    encoding: str
    delimiter: str
    dry_run: bool = False
    replayed: bool = False

    @property
    def points(self) -> str:
        return format_amount(self.points_minor, self.unit_exponent)

    @property
    def accumulation(self) -> str:
        return format_amount(self.accumulation_minor, self.currency_exponent)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (for a job's result and the audit record)."""
        data = asdict(self)
        data["start_date"] = self.start_date.isoformat()
        data["opening_at"] = self.opening_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportResult:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["start_date"] = date.fromisoformat(values["start_date"])
        values["opening_at"] = as_utc(datetime.fromisoformat(values["opening_at"]))
        return cls(**values)


# --------------------------------------------------------------------------- columns

COLUMNS = (
    "number",
    "holder_name",
    "phone",
    "email",
    "expires",
    "accumulation",
    "checks",
    "points",
    "status",
)

_ALIASES = {
    "number": (
        "number",
        "card",
        "card number",
        "card_number",
        "номер",
        "номер карты",
        "карта",
        "код карты",
        "штрихкод",
        "штрих-код",
    ),
    "holder_name": (
        "holder_name",
        "holder",
        "name",
        "фио",
        "владелец",
        "держатель",
        "клиент",
        "имя",
    ),
    "phone": ("phone", "holder_phone", "telephone", "телефон", "тел", "моб телефон"),
    "email": ("email", "e-mail", "holder_email", "mail", "почта", "эл почта", "электронная почта"),
    "expires": (
        "expires",
        "expires_at",
        "expiry",
        "valid until",
        "срок",
        "срок действия",
        "действует до",
        "дата окончания",
    ),
    "accumulation": (
        "accumulation",
        "accumulated",
        "накопление",
        "накопления",
        "сумма накоплений",
        "сумма покупок",
        "накоплено",
    ),
    "checks": ("checks", "checks_count", "чеков", "чеки", "количество чеков", "кол-во чеков"),
    "points": (
        "points",
        "bonus",
        "bonuses",
        "balance",
        "бонусы",
        "бонусов",
        "баллы",
        "баллов",
        "остаток бонусов",
        "остаток",
    ),
    "status": ("status", "state", "статус", "состояние"),
}

_STATUSES = {
    "active": ("active", "активна", "активная", "активен", "действует", "действующая"),
    "blocked": (
        "blocked",
        "заблокирована",
        "заблокирован",
        "блокирована",
        "блокирован",
        "заблокированная",
    ),
}


def _key(text: str) -> str:
    """A header or a status as compared: lower case, ё as е, separators as one space."""
    cleaned = text.replace("\ufeff", "").strip().strip("\"'").lower().replace("ё", "е")
    return re.sub(r"[\s_.:№#]+", " ", cleaned).strip()


_COLUMN_OF = {_key(alias): name for name, aliases in _ALIASES.items() for alias in aliases}
_STATUS_OF = {_key(alias): name for name, aliases in _STATUSES.items() for alias in aliases}
_SHOWN_COLUMNS = "number/номер, holder_name/ФИО, phone/телефон, email, expires/срок, " + (
    "accumulation/накопление, checks/чеков, points/бонусы, status/статус"
)


# --------------------------------------------------------------------------- cells


def parse_amount(text: str, exponent: int) -> int:
    """An amount as Excel writes it (``1 234,56``, ``1234.56``, ``-0``) in minor units of
    ``exponent`` decimals, exactly; "" is 0. Refused: anything else, more decimals than
    the unit has (``amount_too_precise``), below zero (``negative_amount``)."""
    assert exponent >= 0
    raw = text.strip()
    for space in ("\u00a0", "\u202f", "\u2009"):
        raw = raw.replace(space, " ")
    if not raw:
        return 0
    match = _AMOUNT.fullmatch(raw) if len(raw) <= 40 else None
    if match is None or (match["whole"] is None and match["frac"] is None):
        raise InvalidInput(
            RowCode.INVALID_AMOUNT, f"{text.strip()!r} is not an amount such as 1 234,56"
        )
    whole = int((match["whole"] or "0").replace(" ", ""))
    frac = match["frac"] or ""
    if len(frac.rstrip("0")) > exponent:
        raise InvalidInput(
            RowCode.AMOUNT_TOO_PRECISE,
            f"{text.strip()!r} has more than {exponent} decimal places",
        )
    frac = frac[:exponent].ljust(exponent, "0")
    minor = whole * 10**exponent + (int(frac) if frac else 0)
    if match["sign"] in ("-", "−") and minor != 0:
        raise InvalidInput(RowCode.NEGATIVE_AMOUNT, f"{text.strip()!r} is below zero")
    if minor > MAX_ABS_MINOR:
        raise InvalidInput(RowCode.INVALID_AMOUNT, f"{text.strip()!r} is too large")
    return minor


# Digits grouped by spaces in threes, or plain; one decimal separator, a comma or a point.
_AMOUNT = re.compile(r"(?P<sign>[-−+]?)\s*(?P<whole>\d{1,3}(?: \d{3})+|\d+)?(?:[.,](?P<frac>\d+))?")


def parse_count(text: str) -> int:
    """A whole number of checks, zero or more ("" is 0)."""
    raw = re.sub(r"[\s\u00a0]", "", text)
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_CHECKS:
        raise InvalidInput(
            RowCode.INVALID_COUNT, f"{text.strip()!r} is not a whole number of checks"
        )
    return int(raw)


_DATE_FORMATS = ("%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%y")
_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2})?")


def parse_date(text: str) -> date | None:
    """``31.12.2027``, ``2027-12-31``, ``31/12/2027`` or ``31.12.27``, with or without a
    time after it (Excel and 1C add ``0:00:00``); "" is None."""
    parts = text.split()
    if not parts:
        return None
    if len(parts) == 1 or (len(parts) == 2 and _TIME.fullmatch(parts[1])):
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(parts[0], fmt).date()
            except ValueError:
                continue
    raise InvalidInput(RowCode.INVALID_DATE, f"{text.strip()!r} is not a date such as 31.12.2027")


def parse_status(text: str) -> str | None:
    """``active`` or ``blocked`` (Russian words too); "" is None (as it is)."""
    if not text.strip():
        return None
    status = _STATUS_OF.get(_key(text))
    if status is None:
        raise InvalidInput(
            RowCode.INVALID_STATUS,
            f"{text.strip()!r} is not a status; use active/активна or blocked/заблокирована",
        )
    return status


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class _Row:
    line: int
    number: str
    holder_name: str | None = None  # None: not given (kept as it is on a known card)
    phone: str | None = None
    email: str | None = None
    expires: date | None = None
    status: str | None = None
    accumulation_minor: int = 0
    checks: int = 0
    points_minor: int = 0


@dataclass(slots=True)
class _Parsed:
    encoding: str
    delimiter: str
    rows: list[_Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def decode(data: bytes) -> tuple[str, str]:
    """The file's text and the encoding it was read in: by its BOM (UTF-8, UTF-16), else
    UTF-8 if it is valid UTF-8, else Windows-1251 (what Excel in Russia writes)."""
    if data.startswith(codecs.BOM_UTF8):
        candidates: tuple[str, ...] = ("utf-8-sig",)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ("utf-16",)
    else:
        candidates = ("utf-8", "cp1251")
    for encoding in candidates:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise InvalidInput(
        E.INVALID_IMPORT, f"the file is not text in {' or '.join(candidates)}; save it as CSV"
    )


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (";", "\t", ",")}
    best = max(counts, key=lambda d: counts[d])  # ties: the first, ";"
    return best if counts[best] else ";"


def read_file(data: bytes, program: Program, *, check_digit: bool) -> _Parsed:
    """Every row of the file read and checked on its own and against the others."""
    text, encoding = decode(data)
    offset = 0
    first_line, _, rest = text.partition("\n")
    sep = re.fullmatch(r"\s*sep=(.)\s*", first_line)
    if sep:
        offset, text, delimiter = 1, rest, sep.group(1)
    else:
        delimiter = _delimiter(first_line)
    parsed = _Parsed(encoding, delimiter)
    header: list[str | None] | None = None
    names: list[str] = []
    seen: dict[str, int] = {}  # card number -> the line it is first on
    count = 0
    for line, cells in _records(text, delimiter, offset):
        if header is None:
            header, names = _header(cells, line, parsed.errors)
            continue
        count += 1
        if count > MAX_ROWS:
            message = f"at most {MAX_ROWS:,} cards in one file; split it"
            parsed.errors.append(RowError(line, None, RowCode.TOO_MANY_ROWS, message))
            break
        row = _row(cells, line, header, names, program, check_digit, parsed.errors)
        if row is None:
            continue
        first = seen.get(row.number)
        if first is not None:
            column = names[header.index("number")]
            message = f"card {row.number} is on line {first} already"
            parsed.errors.append(RowError(line, column, RowCode.DUPLICATE_CARD, message))
            continue
        seen[row.number] = line
        parsed.rows.append(row)
    if header is None:
        raise InvalidInput(E.INVALID_IMPORT, "the file is empty: no header, no cards")
    return parsed


def _records(text: str, delimiter: str, offset: int) -> Iterator[tuple[int, list[str]]]:
    """The non-empty records of the file with the line each starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    last_line = 0
    try:
        for cells in reader:
            line = offset + last_line + 1
            last_line = reader.line_num
            if any(cell.strip() for cell in cells):
                yield line, cells
    except csv.Error as error:
        raise InvalidInput(
            E.INVALID_IMPORT, f"line {offset + reader.line_num}: not CSV ({error})"
        ) from error


def _header(
    cells: list[str], line: int, errors: list[RowError]
) -> tuple[list[str | None], list[str]]:
    """The canonical name of each column (None: skipped) and the names as written."""
    header: list[str | None] = []
    names = [cell.replace("\ufeff", "").strip() for cell in cells]
    for name in names:
        if not name:
            header.append(None)  # Excel's trailing separators
            continue
        column = _COLUMN_OF.get(_key(name))
        if column is None:
            errors.append(
                RowError(
                    line,
                    name,
                    RowCode.UNKNOWN_COLUMN,
                    f"unknown column {name!r}; the columns are {_SHOWN_COLUMNS}",
                )
            )
        elif column in header:
            errors.append(
                RowError(line, name, RowCode.DUPLICATE_COLUMN, f"column {column} appears twice")
            )
            column = None
        header.append(column)
    if "number" not in header:
        errors.append(
            RowError(line, None, RowCode.MISSING_COLUMN, "there is no card number column")
        )
    return header, names


def _row(
    cells: list[str],
    line: int,
    header: list[str | None],
    names: list[str],
    program: Program,
    check_digit: bool,
    errors: list[RowError],
) -> _Row | None:
    """The row's values; None (its problems added to ``errors``) if any is bad."""
    extra = [cell for cell in cells[len(header) :] if cell.strip()]
    if extra:
        errors.append(
            RowError(
                line,
                None,
                RowCode.BAD_ROW,
                f"the row has {len(cells)} cells, the header names {len(header)} columns",
            )
        )
        return None
    if "number" not in header:
        return None
    values: dict[str, Any] = {}
    bad = False
    for index, column in enumerate(header):
        if column is None:
            continue
        cell = cells[index] if index < len(cells) else ""
        try:
            values[_FIELDS.get(column, column)] = _cell(column, cell, program, check_digit)
        except InvalidInput as error:
            errors.append(RowError(line, names[index], error.code, error.detail))
            bad = True
    if bad:
        return None
    return _Row(line=line, **values)


_FIELDS = {"accumulation": "accumulation_minor", "points": "points_minor"}


def _cell(column: str, cell: str, program: Program, check_digit: bool) -> Any:
    text = cell.strip()
    if column == "number":
        if not text:
            raise InvalidInput(RowCode.INVALID_CARD_NUMBER, "the card number is missing")
        number = normalise_number(text)
        if check_digit and not is_valid_luhn(number):
            raise InvalidInput(
                RowCode.INVALID_CHECK_DIGIT, f"card {number} fails its check digit (Luhn)"
            )
        return number
    if column == "holder_name":
        if len(text) > 200:
            raise InvalidInput(RowCode.INVALID_HOLDER, "a holder's name is at most 200 characters")
        return text or None
    if column == "phone":
        return normalise_phone(text) if text else None
    if column == "email":
        return normalise_email(text) if text else None
    if column == "expires":
        day = parse_date(text)
        if day == date.max:  # valid through it: expires the day after, which does not exist
            raise InvalidInput(RowCode.INVALID_DATE, f"{text.strip()!r} is past the last date")
        return day
    if column == "status":
        return parse_status(text)
    if column == "checks":
        return parse_count(text)
    if column == "accumulation":
        return parse_amount(text, program.currency_exponent)
    assert column == "points"
    return parse_amount(text, program.unit.exponent)


# --------------------------------------------------------------------------- the import


def opening_moment(start_date: date, timezone: str) -> datetime:
    """The last microsecond of the day before ``start_date`` in ``timezone``, in UTC."""
    midnight = datetime.combine(start_date, time(0), tzinfo=ZoneInfo(timezone))
    try:
        return midnight.astimezone(UTC) - timedelta(microseconds=1)
    except OverflowError:  # the first days of year 1
        raise InvalidInput(
            E.INVALID_IMPORT, f"the start date {start_date.isoformat()} is out of range"
        ) from None


def content_import_id(data: bytes) -> str:
    """The import id a file gets when none is given: from its content alone."""
    return "csv-" + hashlib.sha256(data).hexdigest()[:40]


def import_cards(
    conn: Connection,
    *,
    tenant_id: int,
    program_id: int,
    data: bytes,
    start_date: date,
    actor: Actor,
    import_id: str | None = None,
    check_digit: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: ImportProgress | None = None,
) -> ImportResult:
    """Import the cards and opening balances of ``data`` (a CSV file) into a program.

    All or nothing: a file with any bad row raises ``ImportRejected`` listing them all.
    ``dry_run`` checks everything and reports what would be done, writing nothing.
    ``check_digit``: every number must end with its Luhn digit.
    """
    moment_now = as_utc(now) if now else utcnow()
    if not isinstance(data, bytes) or len(data) > MAX_FILE_BYTES:
        raise InvalidInput(E.INVALID_IMPORT, f"a file of at most {MAX_FILE_BYTES:,} bytes")
    program = _lock_program(conn, tenant_id, program_id)
    tenant = get_tenant(conn, tenant_id)
    today = moment_now.astimezone(ZoneInfo(tenant.timezone)).date()
    if start_date > today:
        raise InvalidInput(
            E.INVALID_IMPORT,
            f"the start date {start_date.isoformat()} is in the future; it is today or past",
        )
    opening_at = opening_moment(start_date, tenant.timezone)
    import_id = _import_id(import_id, data)
    digest = _digest(data, program.id, start_date, check_digit)
    known = _known(conn, tenant_id, import_id, digest)
    if known is not None:
        return known

    parsed = read_file(data, program, check_digit=check_digit)
    rows = parsed.rows
    total = len(rows)
    _report(progress, 0, total, "checking")
    existing = _existing(conn, tenant_id, [row.number for row in rows])
    errors = parsed.errors + _database_errors(conn, program, rows, existing)
    if errors:
        raise ImportRejected(sorted(errors, key=lambda e: e.line))
    if not rows:
        raise InvalidInput(E.INVALID_IMPORT, "the file has a header but no cards")
    fresh = [row for row in rows if row.number not in existing]
    known_rows = [row for row in rows if row.number in existing]
    with_points = [row for row in rows if row.points_minor > 0]
    result = ImportResult(
        import_id=import_id,
        program_id=program.id,
        start_date=start_date,
        opening_at=opening_at,
        rows=total,
        cards_issued=len(fresh),
        cards_updated=len(known_rows),
        cards_with_points=len(with_points),
        points_minor=sum(row.points_minor for row in rows),
        unit_code=program.unit.code,
        unit_exponent=program.unit.exponent,
        accumulation_minor=sum(row.accumulation_minor for row in rows),
        currency=program.currency,
        currency_exponent=program.currency_exponent,
        checks=sum(row.checks for row in rows),
        opening_account_id=None,
        encoding=parsed.encoding,
        delimiter=parsed.delimiter,
        dry_run=dry_run,
    )
    if dry_run:
        _report(progress, total, total, "done")
        return result

    ids = _issue(conn, program, fresh, opening_at, moment_now, tenant.timezone, actor)
    _report(progress, len(fresh), total, "issuing")
    ids.update(
        _update_known(conn, program, known_rows, existing, opening_at, moment_now, tenant.timezone)
    )
    _report(progress, total, total, "updating")
    opening_account_id = _post_points(
        conn, program, import_id, start_date, with_points, ids, opening_at, actor, progress
    )
    _purchases(conn, tenant_id, rows, ids, opening_at)
    result = replace(result, opening_account_id=opening_account_id)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action=AUDIT_ACTION,
        object_type="card_import",
        object_id=import_id,
        details={"digest": digest, "result": json.dumps(result.as_dict(), sort_keys=True)},
    )
    _report(progress, total, total, "done")
    return result


def run_import(
    engine: Engine,
    *,
    tenant_id: int,
    program_id: int,
    data: bytes,
    start_date: date,
    actor: Actor,
    import_id: str | None = None,
    check_digit: bool = False,
    dry_run: bool = False,
    progress: ImportProgress | None = None,
) -> ImportResult:
    """``import_cards`` in a transaction of its own (retried as ``run_transaction`` does)."""
    return run_transaction(
        engine,
        lambda conn: import_cards(
            conn,
            tenant_id=tenant_id,
            program_id=program_id,
            data=data,
            start_date=start_date,
            actor=actor,
            import_id=import_id,
            check_digit=check_digit,
            dry_run=dry_run,
            progress=progress,
        ),
    )


def _report(progress: ImportProgress | None, done: int, total: int, stage: str) -> None:
    if progress is not None:
        progress(done, total, stage)


def _lock_program(conn: Connection, tenant_id: int, program_id: int) -> Program:
    """The program, its row locked so imports into it queue (PostgreSQL)."""
    program = get_program(conn, tenant_id, program_id)
    conn.execute(
        select(loyalty_programs.c.id)
        .where(loyalty_programs.c.id == program.id)
        .with_for_update(of=loyalty_programs)
    ).first()
    return program


_IMPORT_ID = re.compile(r"[A-Za-z0-9._:\-]+")


def _import_id(import_id: str | None, data: bytes) -> str:
    if import_id is None or not import_id.strip():
        return content_import_id(data)
    cleaned = import_id.strip()
    if len(cleaned) > MAX_IMPORT_ID or not _IMPORT_ID.fullmatch(cleaned):
        raise InvalidInput(
            E.INVALID_IMPORT,
            f"an import id is 1 to {MAX_IMPORT_ID} letters, digits and . _ : -",
        )
    return cleaned


def _digest(data: bytes, program_id: int, start_date: date, check_digit: bool) -> str:
    text = json.dumps(
        {
            "file": hashlib.sha256(data).hexdigest(),
            "program": program_id,
            "start_date": start_date.isoformat(),
            "check_digit": check_digit,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _known(conn: Connection, tenant_id: int, import_id: str, digest: str) -> ImportResult | None:
    """The import's first result if it was done (a replay), None if it was not."""
    row = conn.execute(
        select(audit_events.c.details)
        .where(
            audit_events.c.tenant_id == tenant_id,
            audit_events.c.action == AUDIT_ACTION,
            audit_events.c.object_id == import_id,
        )
        .order_by(audit_events.c.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    details = row.details or {}
    if details.get("digest") != digest:
        raise Conflict(
            E.IMPORT_CONFLICT,
            f"import {import_id!r} was done already with another file, program or start date",
            import_id=import_id,
        )
    return replace(ImportResult.from_dict(json.loads(details["result"])), replayed=True)


# --------------------------------------------------------------------------- the database


@dataclass(frozen=True, slots=True)
class _Known:
    """A card of the file that exists already."""

    id: int
    program_id: int
    account_id: int
    status: str
    blocked_reason: str | None
    holder_name: str | None
    holder_phone: str | None
    holder_email: str | None
    issued_at: datetime
    expires_at: datetime | None
    used: bool  # has operations: ledger entries, holds, checks, purchases, figures


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing(conn: Connection, tenant_id: int, numbers: list[str]) -> dict[str, _Known]:
    """The file's cards that exist, by number, their rows locked in id order."""
    size = chunk_size(conn)
    ids: list[int] = []
    for chunk in _chunks(numbers, size):
        ids.extend(
            conn.execute(
                select(cards.c.id).where(
                    cards.c.tenant_id == tenant_id, one_of(conn, cards.c.number, chunk)
                )
            ).scalars()
        )
    ids.sort()
    found: dict[str, _Known] = {}
    for chunk in _chunks(ids, size):
        rows = conn.execute(
            select(cards, accounts.c.entry_count, accounts.c.held_minor)
            .join(accounts, accounts.c.id == cards.c.account_id)
            .where(one_of(conn, cards.c.id, chunk))
            .order_by(cards.c.id)
            .with_for_update(of=cards)
        ).all()
        account_ids = [row.account_id for row in rows]
        card_ids = [row.id for row in rows]
        held = set(
            conn.execute(
                select(holds.c.debit_account_id)
                .where(one_of(conn, holds.c.debit_account_id, account_ids))
                .distinct()
            ).scalars()
        )
        touched: set[int] = set()
        for column in (pos_checks.c.card_id, card_purchases.c.card_id):
            touched.update(
                conn.execute(
                    select(column).where(one_of(conn, column, card_ids)).distinct()
                ).scalars()
            )
        for row in rows:
            used = bool(
                row.entry_count
                or row.held_minor
                or row.accumulation_minor
                or row.checks_count
                or row.debt_minor
                or row.account_id in held
                or row.id in touched
            )
            found[row.number] = _Known(
                id=row.id,
                program_id=row.program_id,
                account_id=row.account_id,
                status=row.status,
                blocked_reason=row.blocked_reason,
                holder_name=row.holder_name,
                holder_phone=row.holder_phone,
                holder_email=row.holder_email,
                issued_at=as_utc(row.issued_at),
                expires_at=None if row.expires_at is None else as_utc(row.expires_at),
                used=used,
            )
    return found


def _database_errors(
    conn: Connection, program: Program, rows: list[_Row], existing: dict[str, _Known]
) -> list[RowError]:
    errors: list[RowError] = []
    other_programs: dict[int, str] = {}
    for row in rows:
        card = existing.get(row.number)
        if card is None:
            continue
        if card.program_id != program.id:
            if card.program_id not in other_programs:
                other_programs[card.program_id] = conn.execute(
                    select(loyalty_programs.c.name).where(loyalty_programs.c.id == card.program_id)
                ).scalar_one()
            errors.append(
                RowError(
                    row.line,
                    None,
                    RowCode.CARD_ON_OTHER_PROGRAM,
                    f"card {row.number} exists on program "
                    f"{other_programs[card.program_id]!r}, not {program.name!r}",
                )
            )
        elif card.used:
            errors.append(
                RowError(
                    row.line,
                    None,
                    RowCode.CARD_HAS_HISTORY,
                    f"card {row.number} exists and has operations already; its balances "
                    "are the server's, an import cannot open them",
                )
            )
    return errors


def _expires_at(day: date | None, tz: ZoneInfo) -> datetime | None:
    """A card valid until a date is valid through that whole day (tenant time)."""
    if day is None:
        return None
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def _status(wanted: str | None, current: str, expires_at: datetime | None, now: datetime) -> str:
    if wanted == "blocked" or (wanted is None and current == "blocked"):
        return "blocked"
    return "expired" if expires_at is not None and expires_at <= now else "active"


_CARD_COLUMNS = (
    "id",
    "tenant_id",
    "program_id",
    "number",
    "status",
    "blocked_reason",
    "holder_name",
    "holder_phone",
    "holder_email",
    "issued_at",
    "expires_at",
    "account_id",
    "accumulation_minor",
    "checks_count",
    "tier_id",
    "debt_minor",
    "created_at",
)


def _issue(
    conn: Connection,
    program: Program,
    rows: list[_Row],
    opening_at: datetime,
    now: datetime,
    timezone: str,
    actor: Actor,
) -> dict[str, tuple[int, int]]:
    """Issue the file's new cards in bulk, as of the opening moment; their (card id,
    wallet id) by number."""
    if not rows:
        return {}
    tz = ZoneInfo(timezone)
    tenant_id = program.tenant_id
    numbers = [row.number for row in rows]
    account_ids = card_wallets(conn, program, numbers, actor=actor, opened_at=opening_at)
    card_ids = new_ids(conn, cards, len(rows))
    for start in range(0, len(rows), _WRITE_CHUNK):
        end = min(start + _WRITE_CHUNK, len(rows))
        values = []
        for i in range(start, end):
            row = rows[i]
            expires = _expires_at(row.expires, tz)
            status = _status(row.status, "active", expires, now)
            tier = program.tier_for(row.accumulation_minor)
            values.append(
                (
                    card_ids[i],
                    tenant_id,
                    program.id,
                    row.number,
                    status,
                    BLOCKED_REASON if status == "blocked" else None,
                    row.holder_name,
                    row.phone,
                    row.email,
                    opening_at,
                    expires,
                    account_ids[i],
                    row.accumulation_minor,
                    row.checks,
                    None if tier is None else tier.id,
                    0,
                    now,
                )
            )
        insert_rows(conn, cards, _CARD_COLUMNS, values)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="card.issue_import",
        object_type="program",
        object_id=program.id,
        details={
            "count": len(rows),
            "first_card_id": card_ids[0],
            "last_card_id": card_ids[-1],
        },
    )
    return {n: (c, a) for n, c, a in zip(numbers, card_ids, account_ids, strict=True)}


def _update_known(
    conn: Connection,
    program: Program,
    rows: list[_Row],
    existing: dict[str, _Known],
    opening_at: datetime,
    now: datetime,
    timezone: str,
) -> dict[str, tuple[int, int]]:
    """Known cards without operations: the file's holder data, dates and figures. Their
    wallets, empty and never used, are re-dated to open at the opening moment."""
    if not rows:
        return {}
    tz = ZoneInfo(timezone)
    values = []
    for row in rows:
        card = existing[row.number]
        expires = _expires_at(row.expires, tz) if row.expires else card.expires_at
        status = _status(row.status, card.status, expires, now)
        reason = (card.blocked_reason or BLOCKED_REASON) if status == "blocked" else None
        tier = program.tier_for(row.accumulation_minor)
        values.append(
            (
                status,
                reason,
                row.holder_name if row.holder_name is not None else card.holder_name,
                row.phone if row.phone is not None else card.holder_phone,
                row.email if row.email is not None else card.holder_email,
                min(card.issued_at, opening_at),
                expires,
                row.accumulation_minor,
                row.checks,
                None if tier is None else tier.id,
                card.id,
            )
        )
    update_rows(
        conn,
        cards,
        "id",
        (
            "status",
            "blocked_reason",
            "holder_name",
            "holder_phone",
            "holder_email",
            "issued_at",
            "expires_at",
            "accumulation_minor",
            "checks_count",
            "tier_id",
        ),
        values,
    )
    backdate_unused(conn, [existing[row.number].account_id for row in rows], opening_at)
    return {row.number: (existing[row.number].id, existing[row.number].account_id) for row in rows}


def _post_points(
    conn: Connection,
    program: Program,
    import_id: str,
    start_date: date,
    rows: list[_Row],
    ids: dict[str, tuple[int, int]],
    opening_at: datetime,
    actor: Actor,
    progress: ImportProgress | None,
) -> int | None:
    """One transfer per card with points, from the import's opening account, dated at the
    opening moment; the opening account's id (None if no card has points)."""
    if not rows:
        return None
    unit = program.unit.code
    opening = create_account(
        conn,
        tenant_id=program.tenant_id,
        unit_code=unit,
        kind="system",
        policy=Policy.UNLIMITED,
        name=f"opening balances ({unit}), import {import_id}",
        code=f"opening:{unit}:{import_id}",
        actor=actor,
        opened_at=opening_at,
    )
    available_at, expires_at = lot_dates(program, opening_at)
    day = start_date - timedelta(days=1)
    specs: list[TransferSpec] = [
        simple_transfer(
            f"import:{import_id}:{position}",
            debit_account_id=opening.id,
            credit_account_id=ids[row.number][1],
            amount_minor=row.points_minor,
            kind=KIND,
            description=f"opening balance as of {day.isoformat()}",
            meta={"import": import_id, "card": row.number, "line": row.line},
            available_at=available_at,
            expires_at=expires_at,
        )
        for position, row in enumerate(rows, start=1)
    ]
    done = 0
    for chunk in _chunks(specs, _WRITE_CHUNK):
        outcomes = post_transfers(
            conn, tenant_id=program.tenant_id, specs=chunk, actor=actor, now=opening_at
        )
        for outcome in outcomes:
            if isinstance(outcome, KopilkaError):
                raise outcome
            assert isinstance(outcome, PostedTransfer)
            if outcome.replayed:
                raise Conflict(
                    E.IMPORT_CONFLICT,
                    f"transfers of import {import_id!r} exist already",
                    import_id=import_id,
                )
            assert outcome.posted_at == opening_at, "an opening balance posted at another moment"
        done += len(chunk)
        _report(progress, done, len(specs), "posting")
    return opening.id


def _purchases(
    conn: Connection,
    tenant_id: int,
    rows: list[_Row],
    ids: dict[str, tuple[int, int]],
    opening_at: datetime,
) -> None:
    """Accumulation and checks as one purchase of the opening moment per card, so the
    nightly aging window counts them from then."""
    insert_rows(
        conn,
        card_purchases,
        ("tenant_id", "card_id", "pos_check_id", "amount_minor", "checks", "at"),
        [
            (tenant_id, ids[row.number][0], None, row.accumulation_minor, row.checks, opening_at)
            for row in rows
            if row.accumulation_minor or row.checks
        ],
    )


# --------------------------------------------------------------------------- the job


@register(JOB_KIND)
def import_job(ctx: JobContext) -> dict[str, Any]:
    """The ``cards.import`` job. Params: ``program_id``, ``start_date`` (ISO), the file as
    ``data_base64`` or a server-side ``path``, optional ``import_id``, ``check_digit``,
    ``dry_run``, and who started it (``user_id``, ``user_login``, ``source_ip``).

    Its result is ``ImportResult.as_dict()`` plus ``"outcome"``: ``imported``,
    ``replayed``, ``dry_run``, or ``rejected`` with ``errors`` (at most
    ``LISTED_ERRORS``) and ``error_count`` (a rejected file is the job's answer, not a
    failure of the job)."""
    params = ctx.params
    actor = Actor(
        ActorType.USER,
        str(params.get("user_id", "")),
        str(params.get("user_login", "")),
        params.get("source_ip") or None,
    )
    if params.get("data_base64") is not None:
        data = base64.b64decode(str(params["data_base64"]))
        # The file holds card holders' personal data: the job's row keeps only its size.
        kept = {k: v for k, v in params.items() if k != "data_base64"} | {"bytes": len(data)}
        with ctx.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == ctx.job_id).values(params=kept))
    else:
        data = Path(str(params["path"])).read_bytes()

    # Progress is written to the job's row by another transaction. SQLite has one writer
    # at a time, and the import holds the write lock until it commits: there, progress is
    # reported once the import is done.
    def report(done: int, total: int, stage: str) -> None:
        ctx.progress.update(done, total, stage)

    progress = None if ctx.engine.dialect.name == "sqlite" else report
    try:
        result = run_import(
            ctx.engine,
            tenant_id=ctx.tenant_id,
            program_id=int(params["program_id"]),
            data=data,
            start_date=date.fromisoformat(str(params["start_date"])),
            actor=actor,
            import_id=params.get("import_id") or None,
            check_digit=bool(params.get("check_digit")),
            dry_run=bool(params.get("dry_run")),
            progress=progress,
        )
    except ImportRejected as rejected:
        return {
            "outcome": "rejected",
            "errors": rejected.params["errors"],
            "error_count": rejected.params["error_count"],
        }
    ctx.progress.update(result.rows, result.rows, "done")
    outcome = "replayed" if result.replayed else "dry_run" if result.dry_run else "imported"
    return {"outcome": outcome, **result.as_dict()}
