"""The card screens' search box (SPEC C-1, C-2): one text, a few filters, offset pages.

NOTE (helper STAFFAPI): the lead's original of this module was overwritten by accident;
this is a reconstruction from its callers in ``kopilka.web.routes.cards``. The
conditions are those of ``kopilka.loyalty.card_filters`` (which the JSON API uses), so
the screens and the API find the same cards.

The text matches a card whose number starts with it, whose holder's phone contains its
digits, or whose holder's name or e-mail contains it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, func, or_, select

from kopilka.core.clock import as_utc, utcnow
from kopilka.loyalty.card_filters import CardFilter, card_views, conditions
from kopilka.loyalty.cards import CardView
from kopilka.loyalty.schema import cards

_NOISE = re.compile(r"[\s()+\-.]+")


@dataclass(frozen=True, slots=True)
class CardPage:
    items: list[CardView]
    total: int  # cards matching, over all pages


def _where(
    conn: Connection,
    tenant_id: int,
    *,
    search: str,
    program_id: int | None,
    status: str | None,
    tier_id: int | None,
    in_debt: bool,
    now: datetime,
) -> list[ColumnElement[bool]]:
    wanted = CardFilter(program_id=program_id, status=status, tier_id=tier_id)
    where = [cards.c.tenant_id == tenant_id, *conditions(conn, wanted, now)]
    text = search.strip()
    if text:
        words = [
            cards.c.holder_email.icontains(text, autoescape=True),
            *conditions(conn, CardFilter(name=text), now),
        ]
        digits = _NOISE.sub("", text)
        if digits.isdigit() and digits.isascii():
            words.append(cards.c.number.startswith(digits, autoescape=True))
            words.append(cards.c.holder_phone.contains(digits, autoescape=True))
        where.append(or_(*words))
    if in_debt:
        where.append(cards.c.debt_minor > 0)
    return where


def search_cards(
    conn: Connection,
    tenant_id: int,
    *,
    search: str = "",
    program_id: int | None = None,
    status: str | None = None,
    tier_id: int | None = None,
    in_debt: bool = False,
    offset: int = 0,
    limit: int = 50,
    now: datetime | None = None,
) -> CardPage:
    """A page of the matching cards in issue order, and how many match in all."""
    assert offset >= 0 and limit >= 1
    moment = as_utc(now) if now else utcnow()
    where = _where(
        conn,
        tenant_id,
        search=search,
        program_id=program_id,
        status=status,
        tier_id=tier_id,
        in_debt=in_debt,
        now=moment,
    )
    total = conn.execute(select(func.count()).select_from(cards).where(*where)).scalar_one()
    rows = conn.execute(
        select(cards).where(*where).order_by(cards.c.id).offset(offset).limit(limit)
    ).all()
    return CardPage(card_views(conn, tenant_id, rows, moment), int(total))


def matching_ids(
    conn: Connection,
    tenant_id: int,
    *,
    search: str = "",
    program_id: int | None = None,
    status: str | None = None,
    tier_id: int | None = None,
    in_debt: bool = False,
    now: datetime | None = None,
) -> list[int]:
    """The ids of every matching card, in issue order (for a group operation)."""
    moment = as_utc(now) if now else utcnow()
    where = _where(
        conn,
        tenant_id,
        search=search,
        program_id=program_id,
        status=status,
        tier_id=tier_id,
        in_debt=in_debt,
        now=moment,
    )
    return list(conn.execute(select(cards.c.id).where(*where).order_by(cards.c.id)).scalars())
