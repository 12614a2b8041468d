"""Helpers shared by the ledger tests: a tenant's book of accounts and row counts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import (
    AccountView,
    Policy,
    create_account,
    create_unit,
    get_account,
    system_account,
)
from kopilka.ledger.holds import HoldView, get_hold
from kopilka.ledger.lots import LotView, account_lots
from kopilka.ledger.posting import PostedTransfer, TransferSpec, post_one, run_transaction
from kopilka.ledger.schema import (
    account_limits,
    account_snapshots,
    accounts,
    hold_resolutions,
    holds,
    lot_consumptions,
    lots,
    transfers,
    units,
)
from kopilka.ledger.schema import entries as entries_table
from kopilka.ledger.verify import verify
from kopilka.tenancy.actions import Tenant, create_tenant

T = TypeVar("T")

COUNTED = {
    "units": units,
    "accounts": accounts,
    "account_limits": account_limits,
    "transfers": transfers,
    "entries": entries_table,
    "holds": holds,
    "hold_resolutions": hold_resolutions,
    "lots": lots,
    "lot_consumptions": lot_consumptions,
    "account_snapshots": account_snapshots,
}


def row_counts(conn: Connection, tenant_id: int) -> dict[str, Any]:
    """How many rows of each ledger table the tenant has, and every account's figures."""
    counts: dict[str, Any] = {
        name: conn.execute(
            select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
        ).scalar_one()
        for name, table in COUNTED.items()
    }
    counts["figures"] = [
        tuple(row)
        for row in conn.execute(
            select(
                accounts.c.id,
                accounts.c.balance_minor,
                accounts.c.held_minor,
                accounts.c.credit_limit_minor,
                accounts.c.entry_count,
            )
            .where(accounts.c.tenant_id == tenant_id)
            .order_by(accounts.c.id)
        )
    ]
    counts["lot_remainders"] = [
        tuple(row)
        for row in conn.execute(
            select(lots.c.id, lots.c.remaining_minor)
            .where(lots.c.tenant_id == tenant_id)
            .order_by(lots.c.id)
        )
    ]
    return counts


def new_tenant(engine: Engine, actor: Actor) -> Tenant:
    with engine.begin() as conn:
        return create_tenant(
            conn, slug=f"t-{uuid.uuid4().hex[:12]}", name="Test tenant", actor=actor
        )


# Tests post history at moments of their choosing (a month ago, last year); their
# accounts are opened well before, as accounts brought over with their history are.
OPENED = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass
class Book:
    """One tenant's ledger, with short ways to make accounts and post."""

    engine: Engine
    tenant_id: int
    actor: Actor

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def unit(self, code: str, kind: UnitKind = UnitKind.POINTS, exponent: int = 0) -> None:
        self.tx(
            lambda c: create_unit(
                c,
                tenant_id=self.tenant_id,
                code=code,
                kind=kind,
                exponent=exponent,
                actor=self.actor,
            )
        )

    def account(
        self,
        unit_code: str,
        *,
        policy: Policy = Policy.NON_NEGATIVE,
        uses_lots: bool = False,
        credit_limit_minor: int = 0,
        kind: str = "wallet",
    ) -> int:
        view = self.tx(
            lambda c: create_account(
                c,
                tenant_id=self.tenant_id,
                unit_code=unit_code,
                kind=kind,
                policy=policy,
                uses_lots=uses_lots,
                credit_limit_minor=credit_limit_minor,
                actor=self.actor,
                opened_at=OPENED,
            )
        )
        return view.id

    def system(self, purpose: str, unit_code: str) -> int:
        return self.tx(
            lambda c: system_account(
                c,
                tenant_id=self.tenant_id,
                unit_code=unit_code,
                purpose=purpose,
                actor=self.actor,
                opened_at=OPENED,
            )
        ).id

    def post(self, spec: TransferSpec, now: datetime | None = None) -> PostedTransfer:
        return self.tx(
            lambda c: post_one(c, tenant_id=self.tenant_id, spec=spec, actor=self.actor, now=now)
        )

    def get(self, account_id: int, now: datetime | None = None) -> AccountView:
        with read_only(self.engine) as conn:
            return get_account(conn, self.tenant_id, account_id, now=now)

    def lots(self, account_id: int) -> list[LotView]:
        with read_only(self.engine) as conn:
            return account_lots(conn, self.tenant_id, account_id)

    def hold(self, hold_id: int) -> HoldView:
        with read_only(self.engine) as conn:
            return get_hold(conn, self.tenant_id, hold_id)

    def counts(self) -> dict[str, Any]:
        with read_only(self.engine) as conn:
            return row_counts(conn, self.tenant_id)

    def assert_clean(self) -> None:
        with read_only(self.engine) as conn:
            problems = verify(conn, tenant_id=self.tenant_id)
        assert problems == [], "\n".join(map(str, problems))


def key() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def book(engine: Engine, tenant: Tenant, actor: Actor) -> Book:
    """The test's tenant, with a ``BONUS`` point unit besides its home currency (RUB)."""
    b = Book(engine, tenant.id, actor)
    b.unit("BONUS")
    return b
