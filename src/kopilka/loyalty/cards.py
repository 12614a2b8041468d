"""Discount cards (SPEC C-1, C-2): numbers, holders, statuses, batch issue, group operations.

A card is a row of ``cards`` plus a wallet account in its program's point unit (with lots:
activation delay and lifetime), so its balance, holds and history are the ledger's. A card
is ``active``, ``blocked`` (by a person, with a reason) or ``expired`` (its ``expires_at``
has passed; the nightly routine marks it, but ``card_for_use`` refuses it from the moment
the date passes).

Numbers are what a barcode, a magnetic track or a QR code carries: 4 to 32 digits, kept
without spaces or dashes. A check digit (Luhn) is optional: batch issue can add one, and
cards brought over from elsewhere keep whatever numbers they had.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, select, update

from kopilka.core.actor import Actor
from kopilka.core.bulk import insert_rows, new_ids
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import Conflict, InvalidInput, NotFound, Refused
from kopilka.ledger.accounts import (
    AccountView,
    Policy,
    create_account,
    create_wallets,
    get_account,
)
from kopilka.ledger.schema import entries, holds
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import Program, Tier, get_program
from kopilka.loyalty.schema import card_purchases, cards, loyalty_programs, pos_checks
from kopilka.tenancy.audit import record_audit

NUMBER_MIN_DIGITS = 4
NUMBER_MAX_DIGITS = 32
MAX_RANGE = 100_000  # cards in one batch issue
_WRITE_CHUNK = 5_000  # cards per insert in a batch issue (and per progress report)
LISTED = 10  # numbers or ids named in an error message

_DIGITS = re.compile(r"[0-9]+")
_NUMBER_NOISE = re.compile(r"[\s-]+")
_PHONE_CHARS = re.compile(r"\+?[0-9 ()\-.]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CardView:
    id: int
    tenant_id: int
    program_id: int
    number: str
    status: str
    blocked_reason: str | None
    holder_name: str | None
    holder_phone: str | None
    holder_email: str | None
    issued_at: datetime
    expires_at: datetime | None
    account_id: int
    accumulation_minor: int
    checks_count: int
    tier_id: int | None
    debt_minor: int
    # The wallet's figures (point unit minor): spendable now is ``available_minor``.
    balance_minor: int
    held_minor: int
    available_minor: int

    def is_expired(self, now: datetime) -> bool:
        """Whether the card counts as expired at ``now`` (marked so, or past its date)."""
        return _is_expired(self.status, self.expires_at, now)


# --------------------------------------------------------------------------- numbers


def normalise_number(number: str) -> str:
    """The card number as stored: digits only (spaces and dashes dropped), 4 to 32 long."""
    cleaned = _NUMBER_NOISE.sub("", number) if isinstance(number, str) else ""
    if not _DIGITS.fullmatch(cleaned) or not (
        NUMBER_MIN_DIGITS <= len(cleaned) <= NUMBER_MAX_DIGITS
    ):
        raise InvalidInput(
            E.INVALID_CARD_NUMBER,
            f"a card number is {NUMBER_MIN_DIGITS} to {NUMBER_MAX_DIGITS} digits, not {number!r}",
        )
    return cleaned


def luhn_check_digit(body: str) -> str:
    """The Luhn (mod 10) digit to append to ``body``."""
    if not isinstance(body, str) or not _DIGITS.fullmatch(body):
        raise InvalidInput(E.INVALID_CARD_NUMBER, f"{body!r} is not a string of digits")
    total = 0
    # Counting from the right of the body, the 1st, 3rd, 5th... digits are doubled
    # (they are the 2nd, 4th... once the check digit is appended).
    for position, char in enumerate(reversed(body)):
        digit = ord(char) - 48
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str(-total % 10)


def is_valid_luhn(number: str) -> bool:
    """Whether ``number`` (spaces and dashes allowed) ends with its correct Luhn digit."""
    if not isinstance(number, str):
        return False
    cleaned = _NUMBER_NOISE.sub("", number)
    if len(cleaned) < 2 or not _DIGITS.fullmatch(cleaned):
        return False
    return luhn_check_digit(cleaned[:-1]) == cleaned[-1]


# --------------------------------------------------------------------------- holder


def normalise_phone(phone: str) -> str:
    """A phone as stored and searched: ``+`` and 8 to 15 digits (E.164).

    Without a leading ``+`` the number is read the Russian way: ``8 916 123-45-67`` and
    ``7 916...`` (11 digits) and ``916 123-45-67`` (10 digits) are all ``+79161234567``.
    """
    raw = phone.strip() if isinstance(phone, str) else ""
    if not _PHONE_CHARS.fullmatch(raw):
        raise InvalidInput(E.INVALID_PHONE, f"{phone!r} is not a phone number")
    digits = re.sub(r"[^0-9]", "", raw)
    if not raw.startswith("+"):
        if len(digits) == 11 and digits[0] in "78":
            digits = "7" + digits[1:]
        elif len(digits) == 10:
            digits = "7" + digits
    if not 8 <= len(digits) <= 15 or digits[0] == "0":
        raise InvalidInput(E.INVALID_PHONE, f"{phone!r} is not a phone number")
    return "+" + digits


def normalise_email(email: str) -> str:
    """An e-mail address, trimmed, its domain in lower case."""
    raw = email.strip() if isinstance(email, str) else ""
    if len(raw) > 200 or not _EMAIL.fullmatch(raw):
        raise InvalidInput(E.INVALID_EMAIL, f"{email!r} is not an e-mail address")
    local, domain = raw.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def _holder(
    name: str | None, phone: str | None, email: str | None
) -> tuple[str | None, str | None, str | None]:
    """The holder's fields as stored; empty strings are "not given"."""
    clean_name = name.strip() if name is not None else None
    if clean_name is not None and len(clean_name) > 200:
        raise InvalidInput(E.INVALID_HOLDER, "a holder's name is at most 200 characters")
    clean_phone = normalise_phone(phone) if phone is not None and phone.strip() else None
    clean_email = normalise_email(email) if email is not None and email.strip() else None
    return clean_name or None, clean_phone, clean_email


# --------------------------------------------------------------------------- reading


def _is_expired(status: str, expires_at: datetime | None, now: datetime) -> bool:
    return status == "expired" or (expires_at is not None and as_utc(expires_at) <= now)


def _view(conn: Connection, row: Any, now: datetime) -> CardView:
    return card_view(row, get_account(conn, row.tenant_id, row.account_id, now=now))


def card_wallets(
    conn: Connection,
    program: Program,
    numbers: Sequence[str],
    *,
    actor: Actor,
    opened_at: datetime,
) -> list[int]:
    """Bulk-open the wallets of new cards numbered ``numbers``: the program's point unit,
    never below zero, with lots. Their ids, in the order of ``numbers``."""
    return create_wallets(
        conn,
        tenant_id=program.tenant_id,
        unit_code=program.unit.code,
        owners=[("card", n) for n in numbers],
        names=[f"Card {n}" for n in numbers],
        kind="wallet",
        policy=Policy.NON_NEGATIVE,
        uses_lots=True,
        actor=actor,
        opened_at=opened_at,
    )


def card_view(row: Any, wallet: AccountView) -> CardView:
    """A card's row with its wallet's figures (read by the caller, one or many at once)."""
    return CardView(
        id=row.id,
        tenant_id=row.tenant_id,
        program_id=row.program_id,
        number=row.number,
        status=row.status,
        blocked_reason=row.blocked_reason,
        holder_name=row.holder_name,
        holder_phone=row.holder_phone,
        holder_email=row.holder_email,
        issued_at=as_utc(row.issued_at),
        expires_at=None if row.expires_at is None else as_utc(row.expires_at),
        account_id=row.account_id,
        accumulation_minor=row.accumulation_minor,
        checks_count=row.checks_count,
        tier_id=row.tier_id,
        debt_minor=row.debt_minor,
        balance_minor=wallet.balance_minor,
        held_minor=wallet.held_minor,
        available_minor=wallet.available_minor or 0,
    )


def get_card(
    conn: Connection,
    tenant_id: int,
    card_id: int,
    *,
    lock: bool = False,
    now: datetime | None = None,
) -> CardView:
    """The card by id; ``lock`` takes its row ``FOR UPDATE`` (PostgreSQL)."""
    query = select(cards).where(cards.c.tenant_id == tenant_id, cards.c.id == card_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(E.CARD_NOT_FOUND, f"card {card_id} does not exist", card_id=card_id)
    return _view(conn, row, as_utc(now) if now else utcnow())


def find_card(
    conn: Connection,
    tenant_id: int,
    *,
    number: str | None = None,
    phone: str | None = None,
    now: datetime | None = None,
) -> CardView:
    """The card with this number, or the holder's card with this phone.

    A phone shared by several cards finds the most recently issued usable one (active and
    not past its date); failing that, the most recently issued of the others.
    """
    if (number is None) == (phone is None):
        raise InvalidInput(E.INVALID_CARD, "look a card up by its number or by a phone")
    moment = as_utc(now) if now else utcnow()
    if number is not None:
        wanted = normalise_number(number)
        row = conn.execute(
            select(cards).where(cards.c.tenant_id == tenant_id, cards.c.number == wanted)
        ).first()
        if row is None:
            raise NotFound(E.CARD_NOT_FOUND, f"no card numbered {wanted}", number=wanted)
        return _view(conn, row, moment)
    assert phone is not None
    wanted = normalise_phone(phone)
    rows = conn.execute(
        select(cards).where(cards.c.tenant_id == tenant_id, cards.c.holder_phone == wanted)
    ).all()
    if not rows:
        raise NotFound(E.CARD_NOT_FOUND, f"no card held by {wanted}", phone=wanted)
    best = max(
        rows,
        key=lambda r: (
            r.status == "active" and not _is_expired(r.status, r.expires_at, moment),
            as_utc(r.issued_at),
            r.id,
        ),
    )
    return _view(conn, best, moment)


def card_for_use(
    conn: Connection, tenant_id: int, number: str, *, now: datetime, lock: bool = True
) -> CardView:
    """The card a terminal presents, refused if blocked or expired (at ``now``).

    ``lock`` takes the card's row ``FOR UPDATE`` on PostgreSQL, so concurrent uses of one
    card queue (SQLite serialises writers anyway).
    """
    wanted = normalise_number(number)
    query = select(cards).where(cards.c.tenant_id == tenant_id, cards.c.number == wanted)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(E.CARD_NOT_FOUND, f"no card numbered {wanted}", number=wanted)
    moment = as_utc(now)
    if row.status == "blocked":
        reason = row.blocked_reason or ""
        raise Refused(
            E.CARD_BLOCKED,
            f"card {wanted} is blocked" + (f": {reason}" if reason else ""),
            number=wanted,
            reason=reason,
        )
    if _is_expired(row.status, row.expires_at, moment):
        raise Refused(E.CARD_EXPIRED, f"card {wanted} has expired", number=wanted)
    return _view(conn, row, moment)


# --------------------------------------------------------------------------- issuing


def _check_dates(issued_at: datetime, expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= issued_at:
        raise InvalidInput(E.INVALID_CARD, "a card expires after it is issued")


def _initial_tier(program: Program) -> int | None:
    tier = program.tier_for(0)
    return None if tier is None else tier.id


def issue_card(
    conn: Connection,
    *,
    tenant_id: int,
    program_id: int,
    number: str,
    actor: Actor,
    holder_name: str | None = None,
    holder_phone: str | None = None,
    holder_email: str | None = None,
    expires_at: datetime | None = None,
    issued_at: datetime | None = None,
) -> CardView:
    """A new active card with its wallet (opened at ``issued_at``, which may be past)."""
    program = get_program(conn, tenant_id, program_id)
    wanted = normalise_number(number)
    name, phone, email = _holder(holder_name, holder_phone, holder_email)
    now = utcnow()
    issued = min(as_utc(issued_at), now) if issued_at is not None else now
    expires = None if expires_at is None else as_utc(expires_at)
    _check_dates(issued, expires)
    if conn.execute(
        select(cards.c.id).where(cards.c.tenant_id == tenant_id, cards.c.number == wanted)
    ).first():
        raise Conflict(E.CARD_EXISTS, f"card {wanted} exists already", number=wanted)
    account = create_account(
        conn,
        tenant_id=tenant_id,
        unit_code=program.unit.code,
        kind="wallet",
        policy=Policy.NON_NEGATIVE,
        uses_lots=True,
        owner_type="card",
        owner_id=wanted,
        name=f"Card {wanted}",
        actor=actor,
        opened_at=issued,
    )
    card_id = conn.execute(
        cards.insert().returning(cards.c.id),
        {
            "tenant_id": tenant_id,
            "program_id": program.id,
            "number": wanted,
            "status": "expired" if _is_expired("active", expires, now) else "active",
            "holder_name": name,
            "holder_phone": phone,
            "holder_email": email,
            "issued_at": issued,
            "expires_at": expires,
            "account_id": account.id,
            "accumulation_minor": 0,
            "checks_count": 0,
            "tier_id": _initial_tier(program),
            "debt_minor": 0,
            "created_at": now,
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="card.issue",
        object_type="card",
        object_id=card_id,
        details={"number": wanted, "program": program.id, "account": account.id},
    )
    return get_card(conn, tenant_id, card_id, now=now)


def range_numbers(
    prefix: str, first: int, last: int, *, check_digit: bool, width: int | None = None
) -> list[str]:
    """The numbers of a batch: ``prefix`` + the serial zero-padded to ``width`` (default:
    the digits of ``last``) + the Luhn digit if asked, from ``first`` to ``last``."""
    prefix = _NUMBER_NOISE.sub("", prefix) if isinstance(prefix, str) else "?"
    if prefix and not _DIGITS.fullmatch(prefix):
        raise InvalidInput(E.INVALID_CARD_RANGE, "a prefix is digits only")
    if first < 0 or last < first:
        raise InvalidInput(E.INVALID_CARD_RANGE, "a range runs from a first serial up to a last")
    count = last - first + 1
    if count > MAX_RANGE:
        raise InvalidInput(
            E.INVALID_CARD_RANGE,
            f"at most {MAX_RANGE:,} cards in one batch, not {count:,}",
        )
    needed = len(str(last))
    width = needed if width is None else width
    if width < needed:
        raise InvalidInput(E.INVALID_CARD_RANGE, f"serial {last} does not fit in {width} digits")
    length = len(prefix) + width + (1 if check_digit else 0)
    if not NUMBER_MIN_DIGITS <= length <= NUMBER_MAX_DIGITS:
        raise InvalidInput(
            E.INVALID_CARD_RANGE,
            f"the numbers would be {length} digits long; a card number is "
            f"{NUMBER_MIN_DIGITS} to {NUMBER_MAX_DIGITS}",
        )
    bodies = [f"{prefix}{serial:0{width}d}" for serial in range(first, last + 1)]
    if not check_digit:
        return bodies
    return [body + luhn_check_digit(body) for body in bodies]


def issue_range(
    conn: Connection,
    *,
    tenant_id: int,
    program_id: int,
    prefix: str,
    first: int,
    last: int,
    check_digit: bool,
    actor: Actor,
    width: int | None = None,
    expires_at: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[int]:
    """Issue cards ``first``..``last`` at once (SPEC C-2); returns their ids in order.

    All or nothing: if any of the numbers exists already, nothing is written and the
    error names up to ten of them. ``progress(done, total)`` is called as cards are
    written. Wallets and cards go in as bulk inserts, so 100,000 cards take seconds.
    """
    program = get_program(conn, tenant_id, program_id)
    numbers = range_numbers(prefix, first, last, check_digit=check_digit, width=width)
    now = utcnow()
    expires = None if expires_at is None else as_utc(expires_at)
    _check_dates(now, expires)
    total = len(numbers)
    # Numbers of one batch have one length and sort as their serials do: one range scan.
    wanted = set(numbers)
    taken = [
        n
        for n in conn.execute(
            select(cards.c.number)
            .where(
                cards.c.tenant_id == tenant_id,
                cards.c.number >= numbers[0],
                cards.c.number <= numbers[-1],
            )
            .order_by(cards.c.number)
        ).scalars()
        if n in wanted
    ]
    if taken:
        listed = ", ".join(taken[:LISTED])
        more = f" and {len(taken) - LISTED} more" if len(taken) > LISTED else ""
        raise Conflict(
            E.CARD_EXISTS,
            f"{len(taken)} of these cards exist already: {listed}{more}; nothing was issued",
            numbers=taken[:LISTED],
            count=len(taken),
        )
    if progress is not None:
        progress(0, total)
    account_ids = card_wallets(conn, program, numbers, actor=actor, opened_at=now)
    card_ids = new_ids(conn, cards, total)
    tier_id = _initial_tier(program)
    status = "expired" if _is_expired("active", expires, now) else "active"
    columns = (
        "id",
        "tenant_id",
        "program_id",
        "number",
        "status",
        "issued_at",
        "expires_at",
        "account_id",
        "accumulation_minor",
        "checks_count",
        "tier_id",
        "debt_minor",
        "created_at",
    )
    for start in range(0, total, _WRITE_CHUNK):
        end = min(start + _WRITE_CHUNK, total)
        insert_rows(
            conn,
            cards,
            columns,
            [
                (
                    card_ids[i],
                    tenant_id,
                    program.id,
                    numbers[i],
                    status,
                    now,
                    expires,
                    account_ids[i],
                    0,
                    0,
                    tier_id,
                    0,
                    now,
                )
                for i in range(start, end)
            ],
        )
        if progress is not None:
            progress(end, total)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="card.issue_range",
        object_type="program",
        object_id=program.id,
        details={
            "prefix": prefix,
            "first": first,
            "last": last,
            "width": width,
            "check_digit": check_digit,
            "count": total,
            "first_number": numbers[0],
            "last_number": numbers[-1],
            "first_card_id": card_ids[0],
            "last_card_id": card_ids[-1],
        },
    )
    return card_ids


# --------------------------------------------------------------------------- one card


def update_holder(
    conn: Connection,
    *,
    tenant_id: int,
    card_id: int,
    name: str | None,
    phone: str | None,
    email: str | None,
    actor: Actor,
) -> CardView:
    """Set the holder's name, phone and e-mail (None or "" clears a field)."""
    clean = _holder(name, phone, email)
    row = conn.execute(
        select(cards.c.holder_name, cards.c.holder_phone, cards.c.holder_email)
        .where(cards.c.tenant_id == tenant_id, cards.c.id == card_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.CARD_NOT_FOUND, f"card {card_id} does not exist", card_id=card_id)
    fields = ("holder_name", "holder_phone", "holder_email")
    changed = [f for f, old, new in zip(fields, row, clean, strict=True) if old != new]
    if changed:
        conn.execute(
            update(cards).where(cards.c.id == card_id).values(dict(zip(fields, clean, strict=True)))
        )
        # The audit names what changed, not the personal data itself.
        record_audit(
            conn,
            tenant_id=tenant_id,
            actor=actor,
            action="card.update_holder",
            object_type="card",
            object_id=card_id,
            details={"changed": ",".join(changed)},
        )
    return get_card(conn, tenant_id, card_id)


def recompute_tier(conn: Connection, program: Program, card_id: int) -> Tier | None:
    """Put the card on the tier its accumulation reaches in ``program``; returns it."""
    row = conn.execute(
        select(cards.c.accumulation_minor, cards.c.tier_id).where(
            cards.c.tenant_id == program.tenant_id,
            cards.c.id == card_id,
            cards.c.program_id == program.id,
        )
    ).first()
    if row is None:
        raise NotFound(
            E.CARD_NOT_FOUND, f"card {card_id} is not on program {program.id}", card_id=card_id
        )
    tier = program.tier_for(row.accumulation_minor)
    tier_id = None if tier is None else tier.id
    if tier_id != row.tier_id:
        conn.execute(update(cards).where(cards.c.id == card_id).values(tier_id=tier_id))
    return tier


# --------------------------------------------------------------------------- selections


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def chunk_size(conn: Connection) -> int:
    # PostgreSQL takes the ids as one array parameter; SQLite as one parameter each.
    return 10_000 if conn.dialect.name == "postgresql" else 500


def listing(items: Sequence[Any]) -> str:
    """The first ``LISTED`` items for an error message, and how many more there are."""
    shown = ", ".join(str(i) for i in items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def _selection(conn: Connection, tenant_id: int, card_ids: Iterable[int]) -> list[Any]:
    """The selected cards' rows, locked, in id order; NotFound naming any unknown id."""
    ids = sorted(set(card_ids))
    for card_id in ids:
        if not isinstance(card_id, int) or isinstance(card_id, bool):
            raise InvalidInput(E.INVALID_CARD, f"{card_id!r} is not a card id")
    rows: list[Any] = []
    for chunk in _chunks(ids, chunk_size(conn)):
        rows.extend(
            conn.execute(
                select(cards)
                .where(cards.c.tenant_id == tenant_id, one_of(conn, cards.c.id, chunk))
                .order_by(cards.c.id)
                .with_for_update()
            ).all()
        )
    found = {row.id for row in rows}
    missing = [card_id for card_id in ids if card_id not in found]
    if missing:
        raise NotFound(
            E.CARD_NOT_FOUND,
            f"no such cards: {listing(missing)}; nothing was changed",
            card_ids=missing[:LISTED],
            count=len(missing),
        )
    return rows


def _update(conn: Connection, ids: Sequence[int], **values: Any) -> None:
    for chunk in _chunks(ids, chunk_size(conn)):
        conn.execute(update(cards).where(one_of(conn, cards.c.id, chunk)).values(**values))


def _audit(
    conn: Connection,
    tenant_id: int,
    actor: Actor,
    action: str,
    changed: Sequence[int],
    requested: int,
    **details: Any,
) -> None:
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        object_type="card",
        object_id=changed[0] if len(changed) == 1 else None,
        details={"requested": requested, "changed": len(changed), "card_ids": changed, **details},
    )


def block_cards(
    conn: Connection, *, tenant_id: int, card_ids: Iterable[int], reason: str, actor: Actor
) -> int:
    """Block the selected cards with a reason; returns how many were not blocked before
    (cards blocked already keep their reason)."""
    reason = reason.strip() if isinstance(reason, str) else ""
    if not 1 <= len(reason) <= 200:
        raise InvalidInput(E.INVALID_CARD, "a block needs a reason of 1 to 200 characters")
    rows = _selection(conn, tenant_id, card_ids)
    if not rows:
        return 0
    changed = [row.id for row in rows if row.status != "blocked"]
    _update(conn, changed, status="blocked", blocked_reason=reason)
    _audit(conn, tenant_id, actor, "card.block", changed, len(rows), reason=reason)
    return len(changed)


def unblock_cards(
    conn: Connection,
    *,
    tenant_id: int,
    card_ids: Iterable[int],
    actor: Actor,
    now: datetime | None = None,
) -> int:
    """Unblock the selected blocked cards: active again, or expired if past their date."""
    moment = as_utc(now) if now else utcnow()
    rows = _selection(conn, tenant_id, card_ids)
    if not rows:
        return 0
    blocked = [row for row in rows if row.status == "blocked"]
    to_active = [r.id for r in blocked if not _is_expired("active", r.expires_at, moment)]
    to_expired = [r.id for r in blocked if _is_expired("active", r.expires_at, moment)]
    _update(conn, to_active, status="active", blocked_reason=None)
    _update(conn, to_expired, status="expired", blocked_reason=None)
    changed = sorted(to_active + to_expired)
    _audit(conn, tenant_id, actor, "card.unblock", changed, len(rows))
    return len(changed)


def change_program(
    conn: Connection, *, tenant_id: int, card_ids: Iterable[int], program_id: int, actor: Actor
) -> int:
    """Move the selected cards to another program of the same point unit (their wallets
    are in that unit); each card's tier is recomputed on the new program."""
    target = get_program(conn, tenant_id, program_id)
    rows = _selection(conn, tenant_id, card_ids)
    if not rows:
        return 0
    program_ids = sorted({row.program_id for row in rows})
    unit_of = dict(
        conn.execute(
            select(loyalty_programs.c.id, loyalty_programs.c.unit_id).where(
                loyalty_programs.c.id.in_(program_ids)
            )
        ).all()
    )
    mismatched = [row.id for row in rows if unit_of[row.program_id] != target.unit.id]
    if mismatched:
        raise InvalidInput(
            E.PROGRAM_UNIT_MISMATCH,
            f"cards {listing(mismatched)} keep points in another unit than {target.unit.code} "
            f"of program {target.name!r}; nothing was changed",
            card_ids=mismatched[:LISTED],
            count=len(mismatched),
        )
    moving = [row for row in rows if row.program_id != target.id]
    by_tier: dict[int | None, list[int]] = {}
    for row in moving:
        tier = target.tier_for(row.accumulation_minor)
        by_tier.setdefault(None if tier is None else tier.id, []).append(row.id)
    for tier_id, ids in by_tier.items():
        _update(conn, ids, program_id=target.id, tier_id=tier_id)
    changed = [row.id for row in moving]
    _audit(conn, tenant_id, actor, "card.change_program", changed, len(rows), program=target.id)
    return len(changed)


def set_expiry(
    conn: Connection,
    *,
    tenant_id: int,
    card_ids: Iterable[int],
    expires_at: datetime | None,
    actor: Actor,
    now: datetime | None = None,
) -> int:
    """Set the selected cards' expiry (None: never). An active card whose new date has
    passed becomes expired; an expired card with a date ahead (or none) becomes active
    again; blocked cards stay blocked. Returns how many cards changed."""
    moment = as_utc(now) if now else utcnow()
    expires = None if expires_at is None else as_utc(expires_at)
    rows = _selection(conn, tenant_id, card_ids)
    if not rows:
        return 0
    past = expires is not None and expires <= moment
    by_status: dict[str, list[int]] = {}
    for row in rows:
        status = row.status
        if status == "active" and past:
            status = "expired"
        elif status == "expired" and not past:
            status = "active"
        old = None if row.expires_at is None else as_utc(row.expires_at)
        if old != expires or status != row.status:
            by_status.setdefault(status, []).append(row.id)
    for status, ids in by_status.items():
        _update(conn, ids, expires_at=expires, status=status)
    changed = sorted(card_id for ids in by_status.values() for card_id in ids)
    _audit(
        conn,
        tenant_id,
        actor,
        "card.set_expiry",
        changed,
        len(rows),
        expires_at=None if expires is None else expires.isoformat(),
    )
    return len(changed)


def delete_unused(
    conn: Connection, *, tenant_id: int, card_ids: Iterable[int], actor: Actor
) -> int:
    """Delete those selected cards that were never used; returns how many were deleted.

    Unused means: the wallet has no ledger entries and never had a hold, and no POS check
    or purchase names the card. Other cards of the selection are left as they are.

    The card's row is deleted; its wallet account is not (the ledger deletes nothing): it
    stays, empty and without history, with ``owner_type="card"`` and the card's number as
    ``owner_id``, and no card points to it any more. Issuing the number again creates a
    new card with a new wallet. The audit record keeps the deleted cards' numbers and
    account ids.
    """
    rows = _selection(conn, tenant_id, card_ids)
    if not rows:
        return 0
    size = chunk_size(conn)
    used_accounts: set[int] = set()
    used_cards: set[int] = set()
    account_ids = [row.account_id for row in rows]
    ids = [row.id for row in rows]
    for chunk in _chunks(account_ids, size):
        used_accounts.update(
            conn.execute(
                select(entries.c.account_id)
                .where(one_of(conn, entries.c.account_id, chunk))
                .distinct()
            ).scalars()
        )
        used_accounts.update(
            conn.execute(
                select(holds.c.debit_account_id)
                .where(one_of(conn, holds.c.debit_account_id, chunk))
                .distinct()
            ).scalars()
        )
    for chunk in _chunks(ids, size):
        for column in (pos_checks.c.card_id, card_purchases.c.card_id):
            used_cards.update(
                conn.execute(select(column).where(one_of(conn, column, chunk)).distinct()).scalars()
            )
    unused = [r for r in rows if r.id not in used_cards and r.account_id not in used_accounts]
    doomed = [row.id for row in unused]
    for chunk in _chunks(doomed, size):
        conn.execute(delete(cards).where(one_of(conn, cards.c.id, chunk)))
    _audit(
        conn,
        tenant_id,
        actor,
        "card.delete_unused",
        doomed,
        len(rows),
        numbers=[row.number for row in unused],
        account_ids=[row.account_id for row in unused],
    )
    return len(doomed)
