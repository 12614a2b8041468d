"""A tenant with a bonus program ready for the POS: BONUS points (2 decimals) worth a
rouble each, a terminal, and a way to issue cards."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.verify import verify
from kopilka.loyalty.cards import CardView, get_card, issue_card
from kopilka.loyalty.programs import Program, add_tier, create_program, get_program
from kopilka.tenancy.actions import Tenant, create_terminal

T = TypeVar("T")
_numbers = itertools.count(1)


@dataclass
class Shop:
    engine: Engine
    tenant: Tenant
    actor: Actor
    program: Program
    terminal_id: int
    terminal_key: str

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def card(self, **holder: Any) -> CardView:
        number = f"77{next(_numbers):011d}"
        return self.tx(
            lambda c: issue_card(
                c,
                tenant_id=self.tenant.id,
                program_id=self.program.id,
                number=number,
                actor=self.actor,
                **holder,
            )
        )

    def get(self, card: CardView) -> CardView:
        with read_only(self.engine) as conn:
            return get_card(conn, self.tenant.id, card.id)

    def reload(self) -> Program:
        with read_only(self.engine) as conn:
            self.program = get_program(conn, self.tenant.id, self.program.id)
        return self.program

    def assert_clean(self) -> None:
        with read_only(self.engine) as conn:
            problems = verify(conn, tenant_id=self.tenant.id)
        assert problems == [], problems


@pytest.fixture
def shop(engine: Engine, tenant: Tenant, actor: Actor) -> Shop:
    def setup(conn: Connection) -> tuple[Program, int, str]:
        create_unit(
            conn,
            tenant_id=tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=actor,
        )
        program = create_program(
            conn,
            tenant_id=tenant.id,
            name="Бонусы",
            unit_code="BONUS",
            actor=actor,
            accrual_bp=300,  # 3 % before any tier
            lifetime_days=30,
            max_share_bp=5000,  # at most half of a check in points
        )
        add_tier(
            conn,
            tenant_id=tenant.id,
            program_id=program.id,
            name="Золото",
            threshold_minor=10_000_00,
            discount_bp=0,
            accrual_bp=500,
            actor=actor,
        )
        terminal, key = create_terminal(conn, tenant_id=tenant.id, name="Касса 1", actor=actor)
        return get_program(conn, tenant.id, program.id), terminal.id, key

    program, terminal_id, key = run_transaction(engine, setup)
    return Shop(engine, tenant, actor, program, terminal_id, key)
