"""The posting hot path makes a fixed number of statements, whatever the batch size."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from kopilka.core.actor import Actor
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_account, create_unit, system_account
from kopilka.ledger.posting import post_transfers, run_transaction, simple_transfer
from kopilka.tenancy.actions import Tenant


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _setup(engine: Engine, tenant: Tenant, actor: Actor, wallets: int) -> tuple[int, list[int]]:
    def work(conn: Any) -> tuple[int, list[int]]:
        create_unit(conn, tenant_id=tenant.id, code="BONUS", kind=UnitKind.POINTS, actor=actor)
        issuance = system_account(
            conn, tenant_id=tenant.id, unit_code="BONUS", purpose="issuance", actor=actor
        )
        ids = [
            create_account(
                conn, tenant_id=tenant.id, unit_code="BONUS", kind="wallet", actor=actor
            ).id
            for _ in range(wallets)
        ]
        return issuance.id, ids

    return run_transaction(engine, work)


def _post(engine: Engine, tenant: Tenant, actor: Actor, issuance: int, wallets: list[int]) -> None:
    specs = [
        simple_transfer(
            uuid.uuid4().hex, debit_account_id=issuance, credit_account_id=w, amount_minor=5
        )
        for w in wallets
    ]
    outcomes = run_transaction(
        engine,
        lambda conn: post_transfers(conn, tenant_id=tenant.id, specs=specs, actor=actor),
    )
    assert all(not isinstance(o, Exception) for o in outcomes)


def test_statement_count_does_not_grow_with_the_batch(
    engine: Engine, tenant: Tenant, actor: Actor
) -> None:
    issuance, wallets = _setup(engine, tenant, actor, 100)
    _post(engine, tenant, actor, issuance, wallets[:1])  # warms the shard-count cache
    with counting(engine) as one:
        _post(engine, tenant, actor, issuance, wallets[1:2])
    with counting(engine) as hundred:
        _post(engine, tenant, actor, issuance, wallets[:100])
    assert len(one) == len(hundred), (one, hundred)
    # Key check, account locks, hot accounts, shard update, ids, and the writes.
    assert len(one) <= 10, one
