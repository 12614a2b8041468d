"""Many front-desk payments on one folio at once, on PostgreSQL with real threads
(SPEC L-4): an invoice is never paid above its total, no update is lost."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from kopilka.core.errors import KopilkaError
from kopilka.hotel import folios
from kopilka.ledger.posting import run_transaction

from .conftest import Resort, lines

DESKS = 24


def test_concurrent_payments_never_pay_an_invoice_twice(resort: Resort, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's; SQLite runs one writer at a time")
    invoice = resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            kind="accommodation",
            description="Проживание",
            lines=lines(("Ночи", 10_000_00)),
            operation_id="night",
            actor=resort.actor,
        )
    )
    barrier = threading.Barrier(DESKS)
    outcomes: list[str] = []
    guard = threading.Lock()

    def desk(n: int) -> None:
        barrier.wait()
        try:
            run_transaction(
                engine,
                lambda c: folios.pay(
                    c,
                    tenant_id=resort.t,
                    folio_id=resort.folio_id,
                    payment_type_id=resort.cash if n % 2 else resort.card,
                    amount_minor=1_000_00,
                    invoice_id=invoice.id if n % 3 else None,
                    operation_id=f"desk-{n}",
                    actor=resort.actor,
                ),
            )
            result = "paid"
        except KopilkaError as error:
            result = error.code
        with guard:
            outcomes.append(result)

    threads = [threading.Thread(target=desk, args=(n,)) for n in range(DESKS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    folio = resort.folio()
    paid = outcomes.count("paid")
    # Payments for the invoice stop at its total; payments for the folio go on as credit.
    assert set(outcomes) <= {"paid", "overpayment"}, outcomes
    assert folio.invoices[0].paid_minor == 10_000_00 and folio.invoices[0].status == "paid"
    assert len(folio.payments) == paid
    assert folio.balance_minor == paid * 1_000_00 - 10_000_00
    assert folio.credit_minor == folio.balance_minor
    resort.assert_clean()
