"""Manual documents (SPEC C-5): staff accrue points to cards, or write points off them.

A document is one staff action on one card or many at once: the same amount to (or from)
every card, with a reason. It is all or nothing: every card must exist and not be
blocked, a write-off may not take a card below what it may spend now, and the cards'
points must be of one unit; if any card fails, the document is refused as a whole,
naming the cards at fault.

Each card gets one ledger transfer, all posted by one ``post_transfers`` call:

* accrual ``issuance:UNIT`` → the card's wallet, kind ``manual_accrual``, as a lot dated
  by the card's program (activation delay, lifetime) unless the document sets its own
  lifetime;
* write-off the card's wallet → ``redeemed:UNIT``, kind ``manual_write_off``.

The description is the reason; the meta names the document, the card and the digest of
the whole document. One audit record per document.

**Idempotency** rests on the ledger's own keys: the transfer of the n-th card (numbers
sorted) is keyed ``doc:{document id}:{n}``, so a document that was posted always has the
key ``doc:{document id}:1``. Its meta carries the digest of the document (kind, cards,
amount, reason, lifetime): the same digest replays the document, another is
``document_conflict``. Two requests with one document id racing each other collide on
that unique key; ``run_transaction`` retries the loser, which then replays or conflicts.

A refusal is raised after nothing or after some transfers of the caller's transaction
were written; the caller rolls the transaction back (``run_transaction`` does), so a
refused document leaves no trace.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from itertools import pairwise
from typing import Any, Literal

from sqlalchemy import Connection, select

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.money import MAX_ABS_MINOR, format_amount
from kopilka.ledger.accounts import system_account
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import (
    PostedTransfer,
    TransferSpec,
    get_transfer,
    post_transfers,
    simple_transfer,
)
from kopilka.ledger.schema import transfers
from kopilka.loyalty.cards import LISTED, chunk_size, listing, normalise_number
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import Program, get_program, lot_dates
from kopilka.loyalty.schema import cards
from kopilka.tenancy.audit import record_audit

MAX_CARDS = 100_000  # cards in one document
MAX_REASON = 500
MAX_DOCUMENT_ID = 64  # fits audit_events.object_id
ACCRUAL = "manual_accrual"
WRITE_OFF = "manual_write_off"


class _Default(Enum):
    PROGRAM = "program"


PROGRAM_DEFAULT = _Default.PROGRAM
"""``lifetime_days`` of an accrual: the lots live as long as each card's program says."""

Lifetime = int | None | Literal[_Default.PROGRAM]


@dataclass(frozen=True, slots=True)
class Document:
    document_id: str
    kind: str  # "manual_accrual" or "manual_write_off"
    unit_code: str
    amount_minor: int  # to or from each card
    reason: str
    card_numbers: tuple[str, ...]  # sorted
    transfer_ids: tuple[int, ...]  # one per card, in the order of card_numbers
    posted_at: datetime
    replayed: bool = False

    @property
    def count(self) -> int:
        return len(self.card_numbers)

    @property
    def total_minor(self) -> int:
        return self.amount_minor * len(self.card_numbers)


def accrue_points(
    conn: Connection,
    *,
    tenant_id: int,
    card_numbers: list[str],
    amount_minor: int,
    reason: str,
    actor: Actor,
    document_id: str,
    lifetime_days: Lifetime = PROGRAM_DEFAULT,
    now: datetime | None = None,
) -> Document:
    """Accrue ``amount_minor`` points to each card. ``lifetime_days``: the lots' lifetime
    in days counted from when they become spendable (``None``: they never expire); by
    default each card's program's. The activation delay is always the program's."""
    if (
        lifetime_days is not PROGRAM_DEFAULT
        and lifetime_days is not None
        and (
            not isinstance(lifetime_days, int)
            or isinstance(lifetime_days, bool)
            or lifetime_days <= 0
        )
    ):
        raise InvalidInput(E.INVALID_DOCUMENT, "points live at least one day (or for ever)")
    return _apply(
        conn,
        tenant_id=tenant_id,
        kind=ACCRUAL,
        card_numbers=card_numbers,
        amount_minor=amount_minor,
        reason=reason,
        actor=actor,
        document_id=document_id,
        lifetime_days=lifetime_days,
        now=now,
    )


def write_off_points(
    conn: Connection,
    *,
    tenant_id: int,
    card_numbers: list[str],
    amount_minor: int,
    reason: str,
    actor: Actor,
    document_id: str,
    now: datetime | None = None,
) -> Document:
    """Write ``amount_minor`` points off each card; refused as a whole if any card may
    not spend that much now (spendable lots less holds)."""
    return _apply(
        conn,
        tenant_id=tenant_id,
        kind=WRITE_OFF,
        card_numbers=card_numbers,
        amount_minor=amount_minor,
        reason=reason,
        actor=actor,
        document_id=document_id,
        lifetime_days=PROGRAM_DEFAULT,
        now=now,
    )


# --------------------------------------------------------------------------- the work


def _apply(
    conn: Connection,
    *,
    tenant_id: int,
    kind: str,
    card_numbers: list[str],
    amount_minor: int,
    reason: str,
    actor: Actor,
    document_id: str,
    lifetime_days: Lifetime,
    now: datetime | None,
) -> Document:
    moment = as_utc(now) if now else utcnow()
    document_id = document_id.strip() if isinstance(document_id, str) else ""
    if not 1 <= len(document_id) <= MAX_DOCUMENT_ID:
        raise InvalidInput(
            E.INVALID_DOCUMENT, f"a document id of 1 to {MAX_DOCUMENT_ID} characters is required"
        )
    reason = reason.strip() if isinstance(reason, str) else ""
    if not 1 <= len(reason) <= MAX_REASON:
        raise InvalidInput(
            E.REASON_REQUIRED, f"a document needs a reason of 1 to {MAX_REASON} characters"
        )
    if (
        not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or not 0 < amount_minor <= MAX_ABS_MINOR
    ):
        raise InvalidInput(E.INVALID_AMOUNT, "the amount is a whole number greater than zero")
    numbers = _numbers(card_numbers)
    digest = _digest(kind, numbers, amount_minor, reason, lifetime_days)

    known = _known(conn, tenant_id, document_id, digest, len(numbers))
    if known is not None:
        return known

    rows = _cards(conn, tenant_id, numbers)
    programs = {
        program_id: get_program(conn, tenant_id, program_id)
        for program_id in sorted({row.program_id for row in rows.values()})
    }
    unit_codes = sorted({p.unit.code for p in programs.values()})
    if len(unit_codes) > 1:
        raise InvalidInput(
            E.INVALID_DOCUMENT,
            f"the cards keep points in different units ({', '.join(unit_codes)}); "
            "a document moves one unit",
            units=unit_codes,
        )
    unit = unit_codes[0]
    exponent = next(iter(programs.values())).unit.exponent
    purpose = "issuance" if kind == ACCRUAL else "redeemed"
    system_id = system_account(
        conn, tenant_id=tenant_id, unit_code=unit, purpose=purpose, actor=actor
    ).id

    specs: list[TransferSpec] = []
    for position, number in enumerate(numbers, start=1):
        row = rows[number]
        meta = {
            "document": document_id,
            "document_hash": digest,
            "card": number,
            "position": position,
            "count": len(numbers),
        }
        key = _key(document_id, position)
        if kind == ACCRUAL:
            available_at, expires_at = _lot_dates(programs[row.program_id], moment, lifetime_days)
            spec = simple_transfer(
                key,
                debit_account_id=system_id,
                credit_account_id=row.account_id,
                amount_minor=amount_minor,
                kind=kind,
                description=reason,
                meta=meta,
                available_at=available_at,
                expires_at=expires_at,
            )
        else:
            spec = simple_transfer(
                key,
                debit_account_id=row.account_id,
                credit_account_id=system_id,
                amount_minor=amount_minor,
                kind=kind,
                description=reason,
                meta=meta,
            )
        specs.append(spec)

    # All the cards or none: a savepoint undoes the cards that were fine when one is
    # refused, so nothing is left written even for a caller that commits after an error.
    savepoint = conn.begin_nested()
    outcomes = post_transfers(conn, tenant_id=tenant_id, specs=specs, actor=actor, now=moment)
    failed = [
        (number, outcome)
        for number, outcome in zip(numbers, outcomes, strict=True)
        if isinstance(outcome, KopilkaError)
    ]
    if failed:
        savepoint.rollback()
    else:
        savepoint.commit()
    if failed:
        if any(error.code == LedgerErrorCode.IDEMPOTENCY_CONFLICT for _, error in failed):
            # Keys of this document are taken by another request.
            raise _conflict(document_id)
        short = [n for n, error in failed if error.code == LedgerErrorCode.INSUFFICIENT_FUNDS]
        if short:
            raise Refused(
                E.INSUFFICIENT_POINTS,
                f"cards {listing(short)} may not spend "
                f"{format_amount(amount_minor, exponent)} {unit} now; nothing was written off",
                card_numbers=short[:LISTED],
                count=len(short),
            )
        raise failed[0][1]
    posted = [o for o in outcomes if isinstance(o, PostedTransfer)]
    if any(p.replayed for p in posted):
        # A transfer of this document existed although its first did not: another
        # request has taken these keys. Not ours to overwrite.
        raise _conflict(document_id)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="points.accrue" if kind == ACCRUAL else "points.write_off",
        object_type="document",
        object_id=document_id,
        details={
            "document": document_id,
            "count": len(numbers),
            "amount_minor": amount_minor,
            "unit": unit,
            "reason": reason,
        },
    )
    return Document(
        document_id=document_id,
        kind=kind,
        unit_code=unit,
        amount_minor=amount_minor,
        reason=reason,
        card_numbers=tuple(numbers),
        transfer_ids=tuple(p.id for p in posted),
        posted_at=posted[0].posted_at,
    )


def _numbers(card_numbers: list[str]) -> list[str]:
    """The document's card numbers, normalised and sorted; refused if empty, too many,
    or naming a card twice."""
    if isinstance(card_numbers, str) or not card_numbers:
        raise InvalidInput(E.INVALID_DOCUMENT, "a document names at least one card")
    if len(card_numbers) > MAX_CARDS:
        raise InvalidInput(E.INVALID_DOCUMENT, f"at most {MAX_CARDS:,} cards in one document")
    numbers = sorted(normalise_number(number) for number in card_numbers)
    twice = sorted({a for a, b in pairwise(numbers) if a == b})
    if twice:
        raise InvalidInput(
            E.INVALID_DOCUMENT,
            f"cards {listing(twice)} appear more than once in the document",
            card_numbers=twice[:LISTED],
        )
    return numbers


def _digest(
    kind: str, numbers: list[str], amount_minor: int, reason: str, lifetime_days: Lifetime
) -> str:
    lifetime = "program" if lifetime_days is PROGRAM_DEFAULT else lifetime_days
    text = json.dumps(
        {
            "kind": kind,
            "cards": numbers,
            "amount": amount_minor,
            "reason": reason,
            "lifetime": lifetime,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _key(document_id: str, position: int) -> str:
    return f"doc:{document_id}:{position}"


def _conflict(document_id: str) -> Conflict:
    return Conflict(
        E.DOCUMENT_CONFLICT,
        f"document {document_id!r} was posted already with other content",
        document_id=document_id,
    )


def _known(
    conn: Connection, tenant_id: int, document_id: str, digest: str, count: int
) -> Document | None:
    """The document as first posted if it was (a replay), None if it was not; a conflict
    if it was posted with other content."""
    head = conn.execute(
        select(transfers.c.meta).where(
            transfers.c.tenant_id == tenant_id,
            transfers.c.idempotency_key == _key(document_id, 1),
        )
    ).first()
    if head is None:
        return None
    meta = head.meta or {}
    if meta.get("document_hash") != digest or meta.get("count") != count:
        raise _conflict(document_id)
    keys = [_key(document_id, position) for position in range(1, count + 1)]
    found: dict[str, Any] = {}
    size = chunk_size(conn)
    for start in range(0, len(keys), size):
        for row in conn.execute(
            select(transfers.c.id, transfers.c.idempotency_key, transfers.c.meta).where(
                transfers.c.tenant_id == tenant_id,
                one_of(conn, transfers.c.idempotency_key, keys[start : start + size]),
            )
        ):
            found[row.idempotency_key] = row
    if len(found) != count or any(
        (row.meta or {}).get("document_hash") != digest for row in found.values()
    ):
        raise _conflict(document_id)
    rows = [found[key] for key in keys]
    first = get_transfer(conn, tenant_id, rows[0].id)
    credit = next(e for e in first.entries if e.amount_minor > 0)
    return Document(
        document_id=document_id,
        kind=first.kind,
        unit_code=credit.unit_code,
        amount_minor=credit.amount_minor,
        reason=first.description,
        card_numbers=tuple(row.meta["card"] for row in rows),
        transfer_ids=tuple(row.id for row in rows),
        posted_at=first.posted_at,
        replayed=True,
    )


def _cards(conn: Connection, tenant_id: int, numbers: list[str]) -> dict[str, Any]:
    """The cards' rows by number, locked in id order; NotFound naming every unknown
    number, Refused naming every blocked card."""
    size = chunk_size(conn)
    ids: list[int] = []
    for start in range(0, len(numbers), size):
        ids.extend(
            conn.execute(
                select(cards.c.id).where(
                    cards.c.tenant_id == tenant_id,
                    one_of(conn, cards.c.number, numbers[start : start + size]),
                )
            ).scalars()
        )
    ids.sort()
    rows: dict[str, Any] = {}
    for start in range(0, len(ids), size):
        for row in conn.execute(
            select(cards)
            .where(one_of(conn, cards.c.id, ids[start : start + size]))
            .order_by(cards.c.id)
            .with_for_update()
        ):
            rows[row.number] = row
    missing = [number for number in numbers if number not in rows]
    if missing:
        raise NotFound(
            E.CARD_NOT_FOUND,
            f"no such cards: {listing(missing)}; nothing was changed",
            card_numbers=missing[:LISTED],
            count=len(missing),
        )
    blocked = [number for number in numbers if rows[number].status == "blocked"]
    if blocked:
        raise Refused(
            E.CARD_BLOCKED,
            f"cards {listing(blocked)} are blocked; nothing was changed",
            card_numbers=blocked[:LISTED],
            count=len(blocked),
        )
    return rows


def _lot_dates(
    program: Program, moment: datetime, lifetime_days: Lifetime
) -> tuple[datetime | None, datetime | None]:
    if lifetime_days is PROGRAM_DEFAULT:
        return lot_dates(program, moment)
    available_at, _ = lot_dates(program, moment)
    if lifetime_days is None:
        return available_at, None
    return available_at, (available_at or moment) + timedelta(days=lifetime_days)
