"""A hotel with a bar: its tenant, bonus points (BONUS, 2 decimals), and two terminals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import Tenant, create_terminal
from kopilka.tenancy.schema import audit_events

T = TypeVar("T")


@dataclass
class Hotel:
    engine: Engine
    tenant: Tenant
    actor: Actor
    bar: int  # a terminal at the bar
    restaurant: int  # a terminal in the restaurant

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def count(self, table: Any, *where: Any) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == self.tenant.id)
        return int(self.read(lambda c: c.execute(query.where(*where)).scalar_one()))

    def audits(self, prefix: str) -> list[Any]:
        query = (
            select(audit_events.c.action, audit_events.c.object_id, audit_events.c.details)
            .where(
                audit_events.c.tenant_id == self.tenant.id,
                audit_events.c.action.like(f"{prefix}%"),
            )
            .order_by(audit_events.c.id)
        )
        return list(self.read(lambda c: c.execute(query).all()))


@pytest.fixture
def hotel(engine: Engine, tenant: Tenant, actor: Actor) -> Hotel:
    def setup(conn: Connection) -> tuple[int, int]:
        create_unit(
            conn,
            tenant_id=tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=actor,
        )
        bar, _ = create_terminal(conn, tenant_id=tenant.id, name="Бар", actor=actor)
        restaurant, _ = create_terminal(conn, tenant_id=tenant.id, name="Ресторан", actor=actor)
        return bar.id, restaurant.id

    bar, restaurant = run_transaction(engine, setup)
    return Hotel(engine, tenant, actor, bar, restaurant)
