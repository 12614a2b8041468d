"""A hotel with a cash register on the ATOL stand-in: its tenant, register and receipts.

``atol`` is a started ``AtolStandIn`` (``tests.fiscal.atol_server``); ``desk`` adds a
tenant's register pointing at it, and verbs that read like the examples: ``ask`` a
receipt for a source, ``send`` it, ``read`` it back, ``due`` to run the job's work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.fiscal import receipts as rc
from kopilka.fiscal.registers import CashRegister, create_register
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import Tenant
from kopilka.tenancy.schema import audit_events
from tests.fiscal.atol_server import AtolStandIn, atol_stand_in

T = TypeVar("T")


def payload(
    *lines: tuple[str, int, int],
    payments: tuple[tuple[str, int], ...] | None = None,
    **item_fields: Any,
) -> dict[str, Any]:
    """A receipt's payload: ``(name, price_minor, quantity_milli)`` lines (a night at
    3 500.00 RUB by default), paid by card unless ``payments`` says otherwise."""
    lines = lines or (("Проживание, номер 12", 350_000, 1000),)
    items = [
        {
            "name": name,
            "price_minor": price,
            "quantity_milli": quantity,
            "amount_minor": price * quantity // 1000,
            "payment_object": "service",
            "vat": "none",
            **item_fields,
        }
        for name, price, quantity in lines
    ]
    total = sum(item["amount_minor"] for item in items)
    paid = payments or (("card", total),)
    return {
        "items": items,
        "payments": [{"kind": kind, "amount_minor": amount} for kind, amount in paid],
        "total_minor": total,
        "exponent": 2,
    }


@pytest.fixture
def atol() -> Iterator[AtolStandIn]:
    with atol_stand_in() as stand_in:
        yield stand_in


@dataclass
class Desk:
    engine: Engine
    tenant: Tenant
    actor: Actor
    atol: AtolStandIn
    register: CashRegister

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def ask(self, source_id: int, body: dict[str, Any] | None = None, **fields: Any) -> Any:
        """A receipt for hotel payment ``source_id`` (the guest's e-mail unless told)."""
        arguments: dict[str, Any] = {
            "tenant_id": self.tenant.id,
            "register_id": self.register.id,
            "operation": "sell",
            "source_type": "hotel_payment",
            "source_id": source_id,
            "payload": body or payload(),
            "email": "guest@example.ru",
            "phone": None,
            "actor": self.actor,
        }
        arguments.update(fields)
        return self.tx(lambda conn: rc.request_receipt(conn, **arguments))

    def send(self, receipt_id: int, now: datetime | None = None) -> rc.ReceiptView:
        return rc.send_receipt(self.engine, self.tenant.id, receipt_id, now=now)

    def get(self, receipt_id: int) -> rc.ReceiptView:
        return self.read(lambda conn: rc.get_receipt(conn, self.tenant.id, receipt_id))

    def due(self, now: datetime | None = None) -> rc.DueCounts:
        return rc.process_due(self.engine, now, tenant_id=self.tenant.id)

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

    def count(self, table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == self.tenant.id)
        return int(self.read(lambda c: c.execute(query).scalar_one()))


@pytest.fixture
def desk(engine: Engine, tenant: Tenant, actor: Actor, atol: AtolStandIn) -> Desk:
    register = run_transaction(
        engine,
        lambda conn: create_register(
            conn,
            tenant_id=tenant.id,
            name="Ресепшен",
            settings=atol.register_settings(),
            actor=actor,
        ),
    )
    return Desk(engine, tenant, actor, atol, register)
