"""Offline checks uploaded later (SPEC P-6): each applied once, duplicates reported, a
bad item reported while the rest apply, overspend kept as the card's debt."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, func, select

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError, NotFound
from kopilka.loyalty import pos
from kopilka.loyalty.schema import pos_checks

from .conftest import Shop


def upload(shop: Shop, items: list[pos.BatchItem | KopilkaError]) -> list[pos.BatchResult]:
    return pos.upload_batch(
        shop.engine,
        tenant_id=shop.tenant.id,
        terminal_id=shop.terminal_id,
        items=items,
        actor=shop.actor,
    )


def checks_of(shop: Shop) -> int:
    with read_only(shop.engine) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(pos_checks)
                .where(pos_checks.c.tenant_id == shop.tenant.id)
            ).scalar_one()
        )


def test_a_batch_applies_each_check_once_and_reports_the_rest(shop: Shop) -> None:
    card = shop.card()
    items: list[pos.BatchItem | KopilkaError] = [
        pos.BatchItem("O-1", card.number, [1000_00]),  # accrues 30.00
        pos.BatchItem("O-2", card.number, [100_00], points_minor=20_00),
        pos.BatchItem("O-1", card.number, [1000_00]),  # the same check again
        pos.BatchItem("O-1", card.number, [999_00]),  # the same id, other content
        NotFound("card_not_found", "card 42 does not exist", check_id="O-3"),
        pos.BatchItem("O-4", "000042", [5_00]),
    ]
    results = upload(shop, items)
    assert [(r.check_id, r.status, r.code) for r in results] == [
        ("O-1", "applied", None),
        ("O-2", "applied", None),
        ("O-1", "duplicate", None),
        ("O-1", "refused", "check_conflict"),
        ("O-3", "refused", "card_not_found"),
        ("O-4", "refused", "card_not_found"),
    ]
    # 30.00 accrued, 20.00 spent, then 3 % of the 80.00 paid in money: 2.40.
    assert shop.get(card).balance_minor == 30_00 - 20_00 + 2_40
    # Uploaded again (the terminal did not hear the answer): nothing is applied twice.
    again = upload(shop, items)
    assert [r.status for r in again[:3]] == ["duplicate"] * 3
    assert shop.get(card).balance_minor == 12_40
    assert checks_of(shop) == 2
    shop.assert_clean()


def test_points_spent_offline_that_the_card_no_longer_has_become_its_debt(shop: Shop) -> None:
    card = shop.card()
    upload(shop, [pos.BatchItem("P-1", card.number, [1000_00])])  # 30.00 points
    # Two tills took the same 30.00 while offline; the second finds 0.
    results = upload(
        shop,
        [
            pos.BatchItem("P-2", card.number, [60_00], points_minor=30_00),
            pos.BatchItem("P-3", card.number, [60_00], points_minor=30_00),
        ],
    )
    # P-2 takes the 30.00 and accrues 0.90 (3 % of the 30.00 paid in money); P-3 finds
    # only those 0.90: the other 29.10 it took become the card's debt.
    assert [(r.status, r.debt_minor) for r in results] == [("applied", 0), ("applied", 29_10)]
    after = shop.get(card)
    assert after.debt_minor == 29_10
    assert after.balance_minor == 90  # P-3's own accrual
    # The answer to a repeat says the same.
    assert (
        upload(shop, [pos.BatchItem("P-3", card.number, [60_00], points_minor=30_00)])[0].debt_minor
        == 29_10
    )
    # Refunding P-3 in full: the 0.90 it took comes back, its 0.90 accrual goes, and the
    # 29.10 it could not take is no longer owed.
    back = shop.tx(
        lambda c: pos.refund_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id="P-3",
            refund_id="r",
            amount_minor=None,
            actor=shop.actor,
        )
    )
    assert (back.points_returned_minor, back.accrual_reversed_minor) == (90, 90)
    assert (shop.get(card).debt_minor, shop.get(card).balance_minor) == (0, 90)
    shop.assert_clean()


def test_the_same_batch_uploaded_twice_at_once_applies_once(shop: Shop, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent uploads are PostgreSQL's; SQLite runs one writer at a time")
    cards = [shop.card() for _ in range(5)]
    items: list[pos.BatchItem | KopilkaError] = [
        pos.BatchItem(f"Q-{n}", cards[n % 5].number, [100_00 + n]) for n in range(60)
    ]
    outcomes: list[list[pos.BatchResult]] = []
    barrier = threading.Barrier(2)

    def terminal() -> None:
        barrier.wait()
        outcomes.append(upload(shop, items))

    threads = [threading.Thread(target=terminal) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [r.status for result in outcomes for r in result]
    refused = [r for result in outcomes for r in result if r.status == "refused"]
    assert not refused, refused
    assert statuses.count("applied") == 60 and statuses.count("duplicate") == 60
    assert checks_of(shop) == 60
    shop.assert_clean()
