"""Many front desks at once against one card, on PostgreSQL with real threads (SPEC L-4,
L-3): write-offs never overspend, the same operation is written once, refunds never give
back more than was taken."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.errors import KopilkaError
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import redemptions as rd
from kopilka.loyalty.schema import loyalty_redemptions

from .conftest import Hotel

THREADS = 40


def together(count: int, work: Callable[[int, Connection], object], engine: Engine) -> list[str]:
    """Run ``work`` in ``count`` threads released at once; each outcome "ok" or a code."""
    barrier = threading.Barrier(count)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        barrier.wait()
        try:
            run_transaction(engine, lambda conn: work(n, conn))
            result = "ok"
        except KopilkaError as error:
            result = error.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == count
    return outcomes


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's; SQLite runs one writer at a time")
    return engine


def test_forty_desks_paying_with_one_card_never_overspend(hotel: Hotel, pg: Engine) -> None:
    card = hotel.card(100_00)

    def pay(n: int, conn: Connection) -> object:
        return rd.redeem(
            conn,
            tenant_id=hotel.t,
            number=card.number,
            unit_code="BONUS",
            amount_minor=10_00,
            channel=rd.FOLIO_CHANNEL,
            operation_id=f"desk-{n}",
            description=f"folio {n}",
            actor=hotel.actor,
        )

    outcomes = together(THREADS, pay, pg)

    assert outcomes.count("ok") == 10, outcomes
    assert set(outcomes) == {"ok", "insufficient_points"}
    assert hotel.get(card).balance_minor == 0
    hotel.assert_clean()


def test_one_operation_asked_by_many_at_once_is_written_once(hotel: Hotel, pg: Engine) -> None:
    card = hotel.card(100_00)

    def pay(_n: int, conn: Connection) -> object:
        return rd.redeem(
            conn,
            tenant_id=hotel.t,
            number=card.number,
            unit_code="BONUS",
            amount_minor=30_00,
            channel=rd.FOLIO_CHANNEL,
            operation_id="the-same-payment",
            description="folio 1",
            actor=hotel.actor,
        )

    outcomes = together(20, pay, pg)

    assert outcomes == ["ok"] * 20
    assert hotel.get(card).balance_minor == 70_00
    written = hotel.read(
        lambda c: c.execute(
            select(func.count())
            .select_from(loyalty_redemptions)
            .where(loyalty_redemptions.c.card_id == card.id)
        ).scalar_one()
    )
    assert written == 1
    hotel.assert_clean()


def test_refunds_at_once_never_give_back_more_than_was_taken(hotel: Hotel, pg: Engine) -> None:
    card = hotel.card(100_00)
    paid = hotel.tx(
        lambda c: rd.redeem(
            c,
            tenant_id=hotel.t,
            number=card.number,
            unit_code="BONUS",
            amount_minor=100_00,
            channel=rd.FOLIO_CHANNEL,
            operation_id="big-bill",
            description="",
            actor=hotel.actor,
        )
    )

    def give_back(n: int, conn: Connection) -> object:
        return rd.refund_redemption(
            conn,
            tenant_id=hotel.t,
            channel=rd.FOLIO_CHANNEL,
            ref=paid.ref,
            amount_minor=15_00,
            operation_id=f"back-{n}",
            actor=hotel.actor,
        )

    outcomes = together(20, give_back, pg)

    assert outcomes.count("ok") == 6, outcomes  # 6 x 15 = 90; a seventh would be 105
    assert set(outcomes) == {"ok", "refund_too_large"}
    assert hotel.get(card).balance_minor == 90_00
    hotel.assert_clean()
