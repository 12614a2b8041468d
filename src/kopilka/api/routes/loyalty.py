"""Loyalty reports for staff (owners and administrators)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from kopilka.api.deps import EngineDep, ManagerPrincipal, PageDep, encode_cursor
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.core.db import read_only
from kopilka.core.money import format_amount
from kopilka.ledger.schema import units
from kopilka.loyalty.schema import cards, loyalty_programs

router = APIRouter(prefix=f"{API_PREFIX}/loyalty", tags=["loyalty"])


class CardDebtOut(BaseModel):
    card: str
    holder_name: str | None
    holder_phone: str | None
    program: str
    debt: str
    unit: str


class CardDebtList(BaseModel):
    items: list[CardDebtOut]
    next_cursor: str | None


@router.get("/debts", responses=problem_responses(401, 403, 422, 503))
def card_debts(principal: ManagerPrincipal, engine: EngineDep, page: PageDep) -> CardDebtList:
    """Cards that owe points (SPEC P-6): points offline checks took that the card no
    longer had, and accruals a refund could not take back. By card, in issue order."""
    query = (
        select(
            cards.c.id,
            cards.c.number,
            cards.c.holder_name,
            cards.c.holder_phone,
            cards.c.debt_minor,
            loyalty_programs.c.name.label("program"),
            units.c.code.label("unit"),
            units.c.exponent,
        )
        .join(loyalty_programs, loyalty_programs.c.id == cards.c.program_id)
        .join(units, units.c.id == loyalty_programs.c.unit_id)
        .where(cards.c.tenant_id == principal.tenant_id, cards.c.debt_minor > 0)
        .order_by(cards.c.id)
        .limit(page.limit + 1)
    )
    if page.after_id is not None:
        query = query.where(cards.c.id > page.after_id)
    with read_only(engine) as conn:
        rows = conn.execute(query).all()
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return CardDebtList(
        items=[
            CardDebtOut(
                card=r.number,
                holder_name=r.holder_name,
                holder_phone=r.holder_phone,
                program=r.program,
                debt=format_amount(r.debt_minor, r.exponent),
                unit=r.unit,
            )
            for r in rows
        ],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )
