"""Contention over HTTP against the real server on PostgreSQL (issue 9c): 64 terminals
spending one card at the same moment, 64 front-desk payments on one folio at the same
moment. No limit is broken, nothing deadlocks (every request answered, none 5xx), no
update is lost (the final balances are what the acknowledged operations add up to)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from kopilka.core.db import read_only
from kopilka.hotel.folios import get_folio
from kopilka.hotel.schema import hotel_payments
from kopilka.ledger.schema import transfers
from kopilka.ledger.verify import verify
from tests.soak.common import (
    KopilkaServer,
    Op,
    audit_pos,
    audit_rows,
    balances,
    burst,
    make_hotel_world,
    make_pos_world,
    minor,
    print_table,
)

pytestmark = pytest.mark.pg_only

CALLERS = 64


@pytest.fixture(scope="module")
def server(pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KopilkaServer]:
    url = pg_engine.url.render_as_string(hide_password=False)
    log = Path(tmp_path_factory.mktemp("contention")) / "serve.log"
    with KopilkaServer(url, workers=2, log_path=log) as running:
        yield running


def _outcome(op: Op) -> str:
    """The reply's status with its problem code, or why there was none."""
    if op.status is None:
        return f"no answer: {op.attempts[-1].error}"
    code = op.reply.get("code", "") if op.status >= 400 and op.reply else ""
    return f"{op.status} {code}".strip()


def _outcomes(ops: list[Op]) -> Counter[str]:
    return Counter(_outcome(op) for op in ops)


def test_64_terminals_spending_one_card_at_once(pg_engine: Engine, server: KopilkaServer) -> None:
    # 100.00 points on the card, no accrual; each check of 20.00 asks 10.00 points (the
    # most half a check may take): exactly ten can be paid, whatever the order.
    world = make_pos_world(
        pg_engine, terminals=CALLERS, cards_count=1, opening_minor=100_00, accrual_bp=0
    )
    card = world.cards[0]
    ops = [
        Op(
            "check",
            f"spend-{n}",
            "/api/v1/pos/checks",
            {"check_id": f"spend-{n}", "card": card, "lines": ["20.00"], "points": "10.00"},
            card=card,
            terminal=n,
        )
        for n in range(CALLERS)
    ]
    burst(
        server.base,
        [(op, {"Authorization": f"Bearer {world.keys[n]}"}) for n, op in enumerate(ops)],
    )

    outcomes = _outcomes(ops)
    audit = audit_pos(pg_engine, world, ops)
    print_table("64 terminals, one card", [("answers", dict(outcomes)), *audit_rows(audit)])
    assert set(outcomes) <= {"201", "422 insufficient_points"}, outcomes  # no 5xx, all answered
    assert outcomes["201"] == 10, outcomes
    spent = sum(minor(op.reply["spent"]) for op in ops if op.outcome == "acked" and op.reply)
    assert spent == 100_00
    assert balances(pg_engine, world.wallets)[card] == world.opening[card] - spent == 0
    assert audit.broken == 0, audit.problems
    with read_only(pg_engine) as conn:
        assert verify(conn, tenant_id=world.tenant_id) == []


def test_64_front_desk_payments_on_one_folio_at_once(
    pg_engine: Engine, server: KopilkaServer
) -> None:
    # An invoice of 10,000.00; 64 payments of 1,000.00 at once, every other one for the
    # invoice (refused once it is paid: never paid above its total), the rest for the
    # folio (oldest invoice first, then the guest's credit).
    world = make_hotel_world(pg_engine, invoice_minor=10_000_00)
    ops = []
    for n in range(CALLERS):
        body: dict[str, object] = {
            "payment_type_id": world.cash_type if n % 3 else world.card_type,
            "amount": "1000.00",
        }
        if n % 2 == 0:
            body["invoice_id"] = world.invoice_id
        ops.append(
            Op("payment", f"desk-{n}", f"/api/v1/hotel/folios/{world.folio_id}/payments", body)
        )
    burst(
        server.base,
        [(op, {"Authorization": f"Bearer {world.token}", "Idempotency-Key": op.key}) for op in ops],
    )

    outcomes = _outcomes(ops)
    acked = [op for op in ops if op.outcome == "acked"]
    with read_only(pg_engine) as conn:
        folio = get_folio(conn, world.tenant_id, world.folio_id)
        rows = conn.execute(
            select(hotel_payments.c.operation_id, func.count())
            .where(hotel_payments.c.tenant_id == world.tenant_id)
            .group_by(hotel_payments.c.operation_id)
        ).all()
        payment_transfers = conn.execute(
            select(func.count())
            .select_from(transfers)
            .where(transfers.c.tenant_id == world.tenant_id, transfers.c.kind == "hotel_payment")
        ).scalar_one()
        problems = verify(conn, tenant_id=world.tenant_id)
    paid = sum(minor(op.reply["amount"]) for op in acked if op.reply)
    invoice = next(i for i in folio.invoices if i.id == world.invoice_id)
    print_table(
        "64 front-desk payments, one folio",
        [
            ("answers", dict(outcomes)),
            ("acknowledged", len(acked)),
            ("paid", paid),
            ("invoice paid", invoice.paid_minor),
            ("folio balance", folio.balance_minor),
            ("payment transfers", payment_transfers),
        ],
    )
    assert set(outcomes) <= {"201", "422 overpayment"}, outcomes  # no 5xx, all answered
    assert all(op.key.startswith("desk-") for op in acked)
    # Folio-wide payments never exceed anything; invoice ones stop at its total.
    assert sum(1 for op in acked if "invoice_id" not in op.body) == CALLERS // 2
    assert invoice.paid_minor == world.invoice_minor and invoice.status == "paid"
    # Each acknowledged payment once, nothing refused written, nothing lost.
    assert {key for key, _ in rows} == {op.key for op in acked}
    assert all(count == 1 for _, count in rows)
    assert len(folio.payments) == len(acked)
    assert folio.balance_minor == paid - world.invoice_minor
    assert folio.credit_minor == folio.balance_minor
    assert problems == []
