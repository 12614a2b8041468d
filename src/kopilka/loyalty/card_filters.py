"""Finding cards for the back office (SPEC C-1, C-2): search, filters, selections.

One ``CardFilter`` serves a list screen and a group operation alike, so "block every
card the list shows" blocks exactly those cards. Conditions combine with AND:

* ``number_prefix``: the number starts with these digits (spaces and dashes dropped);
* ``phone``: a whole phone number (any common format) matches exactly; fewer than eight
  digits match anywhere in the stored number (the last four digits, say);
* ``name``: a part of the holder's name, in any letter case;
* ``program_id``, ``tier_id`` (the tier as the nightly routine last set it);
* ``status``: ``active``, ``blocked`` or ``expired``, where a card past its date counts
  as expired before the nightly routine marks it (as the POS sees it).

Reads only: selections are locked by the group operations in ``kopilka.loyalty.cards``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import InvalidInput
from kopilka.ledger.accounts import AccountView, find_accounts
from kopilka.ledger.schema import accounts
from kopilka.loyalty.cards import CardView, card_view, chunk_size, normalise_phone
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.schema import CARD_STATUSES, cards

MAX_SELECTION = 100_000  # cards one group operation may select by a filter
MAX_TEXT = 100
PHONE_DIGITS = 8  # a phone with fewer digits is a part of one
_NUMBER_NOISE = re.compile(r"[\s-]+")


@dataclass(frozen=True, slots=True)
class CardFilter:
    number_prefix: str | None = None
    phone: str | None = None
    name: str | None = None
    program_id: int | None = None
    status: str | None = None
    tier_id: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) in (None, "") for f in fields(self))


def conditions(conn: Connection, wanted: CardFilter, now: datetime) -> list[ColumnElement[bool]]:
    """The filter as conditions on ``cards``; ``invalid_card`` (or ``invalid_phone``) for
    a value that can match nothing by its shape."""
    where: list[ColumnElement[bool]] = []
    if wanted.number_prefix:
        prefix = _NUMBER_NOISE.sub("", wanted.number_prefix)
        if not prefix.isdigit() or not prefix.isascii() or len(prefix) > 32:
            raise InvalidInput(E.INVALID_CARD, "a number prefix is 1 to 32 digits")
        where.append(cards.c.number.startswith(prefix, autoescape=True))
    if wanted.phone:
        where.append(_phone(wanted.phone))
    if wanted.name and wanted.name.strip():
        where.append(_name(conn, wanted.name.strip()[:MAX_TEXT]))
    if wanted.program_id is not None:
        where.append(cards.c.program_id == wanted.program_id)
    if wanted.tier_id is not None:
        where.append(cards.c.tier_id == wanted.tier_id)
    if wanted.status:
        where.append(_status(wanted.status, now))
    return where


def _phone(text: str) -> ColumnElement[bool]:
    digits = re.sub(r"[^0-9]", "", text)
    if len(digits) >= PHONE_DIGITS:
        return cards.c.holder_phone == normalise_phone(text)
    if not digits or re.fullmatch(r"[0-9 ()\-.+]+", text.strip()) is None:
        raise InvalidInput(E.INVALID_PHONE, f"{text!r} is not a phone number or a part of one")
    return cards.c.holder_phone.contains(digits, autoescape=True)


def _name(conn: Connection, text: str) -> ColumnElement[bool]:
    matches = cards.c.holder_name.icontains(text, autoescape=True)
    if conn.dialect.name == "postgresql":
        return matches
    # SQLite folds the case of ASCII letters only; a Cyrillic name is matched in the
    # spellings people type it in.
    spellings = sorted({text, text.lower(), text.upper(), text.capitalize(), text.title()})
    return or_(matches, *(cards.c.holder_name.contains(s, autoescape=True) for s in spellings))


def _status(status: str, now: datetime) -> ColumnElement[bool]:
    if status not in CARD_STATUSES:
        raise InvalidInput(E.INVALID_CARD, f"a card's status is one of {', '.join(CARD_STATUSES)}")
    past = and_(cards.c.expires_at.is_not(None), cards.c.expires_at <= now)
    if status == "active":
        return and_(cards.c.status == "active", ~past)
    if status == "expired":
        return or_(cards.c.status == "expired", and_(cards.c.status == "active", past))
    return cards.c.status == "blocked"


def find_cards(
    conn: Connection,
    tenant_id: int,
    wanted: CardFilter,
    *,
    after_id: int = 0,
    limit: int = 50,
    now: datetime | None = None,
) -> list[CardView]:
    """Cards matching the filter, in id order after ``after_id`` (cursor paging)."""
    assert limit >= 1
    moment = as_utc(now) if now else utcnow()
    rows = conn.execute(
        select(cards)
        .where(
            cards.c.tenant_id == tenant_id,
            cards.c.id > after_id,
            *conditions(conn, wanted, moment),
        )
        .order_by(cards.c.id)
        .limit(limit)
    ).all()
    return card_views(conn, tenant_id, rows, moment)


def selected_ids(
    conn: Connection, tenant_id: int, wanted: CardFilter, *, now: datetime | None = None
) -> list[int]:
    """The ids of every card matching a filter that is not empty, for a group operation;
    refused (``invalid_selection``) when it is empty or selects too many cards."""
    if wanted.is_empty():
        raise InvalidInput(
            E.INVALID_SELECTION,
            "a selection by filter needs at least one condition; to act on every card, "
            "filter by program",
        )
    moment = as_utc(now) if now else utcnow()
    ids = list(
        conn.execute(
            select(cards.c.id)
            .where(cards.c.tenant_id == tenant_id, *conditions(conn, wanted, moment))
            .order_by(cards.c.id)
            .limit(MAX_SELECTION + 1)
        ).scalars()
    )
    if len(ids) > MAX_SELECTION:
        raise InvalidInput(
            E.INVALID_SELECTION,
            f"the filter selects more than {MAX_SELECTION:,} cards; narrow it",
            limit=MAX_SELECTION,
        )
    return ids


def card_views(
    conn: Connection, tenant_id: int, rows: Sequence[Any], now: datetime
) -> list[CardView]:
    """Cards' rows with their wallets' figures, reading the wallets in one go."""
    wallets: dict[int, AccountView] = {}
    account_ids = [row.account_id for row in rows]
    size = chunk_size(conn)
    for start in range(0, len(account_ids), size):
        chunk = account_ids[start : start + size]
        for account in find_accounts(
            conn,
            tenant_id,
            where=[one_of(conn, accounts.c.id, chunk)],
            limit=len(chunk),
            now=now,
        ):
            wallets[account.id] = account
    views = [card_view(row, wallets[row.account_id]) for row in rows]
    assert len(views) == len(rows)
    return views
