"""Many terminals at once against one card, on PostgreSQL with real threads (SPEC P-4)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from kopilka.core.errors import KopilkaError
from kopilka.ledger.accounts import system_account
from kopilka.ledger.posting import post_one, run_transaction, simple_transfer
from kopilka.loyalty import pos
from kopilka.loyalty.schema import loyalty_programs

from .conftest import Shop

TERMINALS = 50


def test_fifty_terminals_spending_one_card_never_overspend(shop: Shop, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's; SQLite runs one writer at a time")
    with engine.begin() as conn:  # no accrual, so only the funded points can be spent
        conn.execute(
            loyalty_programs.update()
            .where(loyalty_programs.c.id == shop.program.id)
            .values(accrual_bp=0)
        )
    card = shop.card()

    def fund(conn):  # type: ignore[no-untyped-def]
        issuance = system_account(
            conn, tenant_id=shop.tenant.id, unit_code="BONUS", purpose="issuance", actor=shop.actor
        ).id
        return post_one(
            conn,
            tenant_id=shop.tenant.id,
            spec=simple_transfer(
                "fund",
                debit_account_id=issuance,
                credit_account_id=card.account_id,
                amount_minor=100_00,
            ),
            actor=shop.actor,
        )

    run_transaction(engine, fund)
    barrier = threading.Barrier(TERMINALS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def terminal(n: int) -> None:
        barrier.wait()
        try:
            run_transaction(
                engine,
                lambda conn: pos.commit_check(
                    conn,
                    tenant_id=shop.tenant.id,
                    terminal_id=shop.terminal_id,
                    check_id=f"T-{n}",
                    card_number=card.number,
                    lines=[20_00],
                    points_minor=10_00,
                    actor=shop.actor,
                ),
            )
            result = "ok"
        except KopilkaError as error:
            result = error.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=terminal, args=(n,)) for n in range(TERMINALS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 10, outcomes
    assert outcomes.count("insufficient_points") == TERMINALS - 10
    assert shop.get(card).balance_minor == 0
    shop.assert_clean()
