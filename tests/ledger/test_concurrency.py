"""Limits, idempotency and holds under real concurrency (SPEC L-3, L-4, L-5).

Real threads, each with its own connection and transaction (``run_transaction``), released
together by a barrier. PostgreSQL is where concurrency is real (row locks at READ
COMMITTED); SQLite serialises writers with BEGIN IMMEDIATE and must be just as exact.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, func, select, text

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.holds import HoldView, capture_hold, place_hold, void_hold
from kopilka.ledger.posting import (
    PostedTransfer,
    TransferSpec,
    post_one,
    post_transfers,
    run_transaction,
    simple_transfer,
)
from kopilka.ledger.schema import hold_resolutions, transfers

from .conftest import Book, key, new_tenant

T = TypeVar("T")


def race(n: int, work: Callable[[int], T]) -> list[T | KopilkaError]:
    """Run ``work(i)`` for i in 0..n-1 on n threads at once; refusals are returned."""
    barrier = threading.Barrier(n)

    def one(i: int) -> T | KopilkaError:
        barrier.wait()
        try:
            return work(i)
        except KopilkaError as error:
            return error

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def codes(results: list[Any]) -> Counter[str]:
    return Counter(r.code if isinstance(r, KopilkaError) else "ok" for r in results)


def make_book(engine: Engine) -> Book:
    actor = Actor.cli("concurrency")
    book = Book(engine, new_tenant(engine, actor).id, actor)
    book.unit("BONUS")
    return book


@pytest.fixture
def pg_book(pg_engine: Engine) -> Book:
    return make_book(pg_engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_book(request: pytest.FixtureRequest) -> Book:
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return make_book(request.getfixturevalue(name))


def funded_wallet(book: Book, amount: int) -> tuple[int, int]:
    wallet = book.account("RUB")
    cash = book.system("cash", "RUB")
    book.post(
        simple_transfer(key(), debit_account_id=cash, credit_account_id=wallet, amount_minor=amount)
    )
    return wallet, book.system("revenue", "RUB")


def post(book: Book, spec: TransferSpec) -> PostedTransfer:
    return run_transaction(
        book.engine,
        lambda c: post_one(c, tenant_id=book.tenant_id, spec=spec, actor=book.actor),
    )


# --------------------------------------------------------------------------- (a) and (b)


def test_concurrent_spends_never_overspend(any_book: Book) -> None:
    book = any_book
    wallet, revenue = funded_wallet(book, 10 * 7_00)
    results = race(
        32,
        lambda _i: post(
            book,
            simple_transfer(
                key(), debit_account_id=wallet, credit_account_id=revenue, amount_minor=7_00
            ),
        ),
    )
    assert codes(results) == {"ok": 10, "insufficient_funds": 22}
    assert book.get(wallet).balance_minor == 0
    assert book.get(revenue).balance_minor == 70_00
    book.assert_clean()


def test_one_idempotency_key_posted_at_once_makes_one_transfer(any_book: Book) -> None:
    book = any_book
    wallet = book.account("BONUS", uses_lots=True)
    issuance = book.system("issuance", "BONUS")
    spec = simple_transfer(
        "offline-batch-7:check-1",
        debit_account_id=issuance,
        credit_account_id=wallet,
        amount_minor=25,
    )
    results = race(16, lambda _i: post(book, spec))
    assert all(isinstance(r, PostedTransfer) for r in results), codes(results)
    ids = {r.id for r in results if isinstance(r, PostedTransfer)}
    assert len(ids) == 1
    assert sum(1 for r in results if isinstance(r, PostedTransfer) and not r.replayed) == 1
    with read_only(book.engine) as conn:
        stored = conn.execute(
            select(func.count()).where(
                transfers.c.tenant_id == book.tenant_id,
                transfers.c.idempotency_key == spec.idempotency_key,
            )
        ).scalar_one()
    assert stored == 1
    assert book.get(wallet).balance_minor == 25
    assert [lot.remaining_minor for lot in book.lots(wallet)] == [25]
    book.assert_clean()


# --------------------------------------------------------------------------- (c) hot accounts


def test_many_wallets_post_against_one_hot_account_without_deadlock(pg_book: Book) -> None:
    book = pg_book
    issuance = book.system("issuance", "BONUS")
    redeemed = book.system("redeemed", "BONUS")
    wallets = [book.account("BONUS", uses_lots=True) for _ in range(12)]
    rounds = 10

    def worker(i: int) -> int:
        wallet = wallets[i]
        for n in range(rounds):
            earn = simple_transfer(
                key(), debit_account_id=issuance, credit_account_id=wallet, amount_minor=10 + n
            )
            burn = simple_transfer(
                key(), debit_account_id=wallet, credit_account_id=redeemed, amount_minor=5
            )
            if n % 2:
                # A batch: both hot accounts in one transaction, shards in a fixed order.
                outcomes = run_transaction(
                    book.engine,
                    lambda c, earn=earn, burn=burn: post_transfers(
                        c, tenant_id=book.tenant_id, specs=[earn, burn], actor=book.actor
                    ),
                )
                assert all(isinstance(o, PostedTransfer) for o in outcomes), outcomes
            else:
                post(book, earn)
                post(book, burn)
        return i

    results = race(len(wallets), worker)
    assert all(not isinstance(r, KopilkaError) for r in results), results
    earned = sum(10 + n for n in range(rounds))
    for wallet in wallets:
        assert book.get(wallet).balance_minor == earned - 5 * rounds
    assert book.get(issuance).balance_minor == -earned * len(wallets)
    assert book.get(redeemed).balance_minor == 5 * rounds * len(wallets)
    book.assert_clean()


def test_hot_account_postings_do_not_wait_for_each_other(pg_book: Book) -> None:
    """One transaction has posted against the hot account and stays open; another posts
    against the same hot account and commits before the first one does.

    No timing is involved: the second transaction is told never to wait for a lock
    (``lock_timeout`` turns any wait into an error, which ``run_transaction`` retries in a
    fresh transaction). Only the balance shard the first one happened to pick is locked,
    so a retry that picks another shard goes through; were the hot account's row locked,
    every attempt would fail and the test with it.
    """
    book = pg_book
    issuance = book.system("issuance", "BONUS")
    first_wallet = book.account("BONUS", uses_lots=True)
    second_wallet = book.account("BONUS", uses_lots=True)

    def accrue(wallet: int) -> TransferSpec:
        return simple_transfer(
            key(), debit_account_id=issuance, credit_account_id=wallet, amount_minor=3
        )

    with book.engine.connect() as first:
        open_tx = first.begin()
        post_one(first, tenant_id=book.tenant_id, spec=accrue(first_wallet), actor=book.actor)

        def no_waiting(conn: Any) -> PostedTransfer:
            conn.execute(text("SET LOCAL lock_timeout = '50ms'"))
            return post_one(
                conn, tenant_id=book.tenant_id, spec=accrue(second_wallet), actor=book.actor
            )

        second = run_transaction(book.engine, no_waiting, attempts=8)
        # Committed while the first is still open:
        assert book.get(second_wallet).balance_minor == 3
        assert book.get(first_wallet).balance_minor == 0
        assert book.get(issuance).balance_minor == -3
        open_tx.commit()
    assert second.id > 0
    assert book.get(first_wallet).balance_minor == 3
    assert book.get(issuance).balance_minor == -6
    book.assert_clean()


# --------------------------------------------------------------------------- (d) and (e) holds


def hold_on(book: Book, wallet: int, credit: int, amount: int) -> HoldView:
    return run_transaction(
        book.engine,
        lambda c: place_hold(
            c,
            tenant_id=book.tenant_id,
            idempotency_key=key(),
            debit_account_id=wallet,
            credit_account_id=credit,
            amount_minor=amount,
            actor=book.actor,
        ),
    )


def test_concurrent_holds_and_spends_never_reserve_more_than_the_balance(pg_book: Book) -> None:
    book = pg_book
    wallet, revenue = funded_wallet(book, 100_00)

    def work(i: int) -> tuple[str, int]:
        if i % 2:
            hold_on(book, wallet, revenue, 15_00)
            return ("hold", 15_00)
        spec = simple_transfer(
            key(), debit_account_id=wallet, credit_account_id=revenue, amount_minor=10_00
        )
        post(book, spec)
        return ("spend", 10_00)

    results = race(24, work)
    held = sum(r[1] for r in results if isinstance(r, tuple) and r[0] == "hold")
    spent = sum(r[1] for r in results if isinstance(r, tuple) and r[0] == "spend")
    refusals = [r for r in results if isinstance(r, KopilkaError)]
    assert {r.code for r in refusals} <= {"insufficient_funds"}
    assert held + spent <= 100_00
    view = book.get(wallet)
    assert (view.balance_minor, view.held_minor) == (100_00 - spent, held)
    # Nothing is ever credited, so once a request was refused, what is left is too little.
    assert refusals and view.available_minor == 100_00 - spent - held < 15_00
    book.assert_clean()


def test_a_hold_captured_and_voided_at_once_ends_exactly_once(pg_book: Book) -> None:
    book = pg_book
    wallet, revenue = funded_wallet(book, 1_000_00)
    for _ in range(8):
        hold = hold_on(book, wallet, revenue, 30_00)
        before = book.get(wallet).balance_minor

        def end(i: int, hold: HoldView = hold) -> str:
            if i == 0:
                run_transaction(
                    book.engine,
                    lambda c: capture_hold(
                        c,
                        tenant_id=book.tenant_id,
                        hold_id=hold.id,
                        idempotency_key=key(),
                        amount_minor=20_00,
                        actor=book.actor,
                    ),
                )
                return "captured"
            run_transaction(
                book.engine,
                lambda c: void_hold(
                    c,
                    tenant_id=book.tenant_id,
                    hold_id=hold.id,
                    idempotency_key=key(),
                    actor=book.actor,
                ),
            )
            return "voided"

        captured, voided = race(2, end)
        outcome = book.hold(hold.id)
        if outcome.status == "captured":
            assert captured == "captured"
            assert isinstance(voided, KopilkaError) and voided.code == "hold_captured"
            assert book.get(wallet).balance_minor == before - 20_00
        else:
            assert outcome.status == "voided" and voided == "voided"
            assert isinstance(captured, KopilkaError) and captured.code == "hold_voided"
            assert book.get(wallet).balance_minor == before
        assert book.get(wallet).held_minor == 0
        with read_only(book.engine) as conn:
            endings = conn.execute(
                select(func.count()).where(hold_resolutions.c.hold_id == hold.id)
            ).scalar_one()
        assert endings == 1
    book.assert_clean()
