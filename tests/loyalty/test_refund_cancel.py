"""Taking a POS refund back (a return rolled back at the terminal; FarCards chmode 4).

Each test checks that the card, the check and the ledger are exactly as before the
refund, or that a refusal leaves them untouched."""

from __future__ import annotations

from sqlalchemy import select

from kopilka.core.db import read_only
from kopilka.ledger.schema import transfers
from kopilka.loyalty import pos
from kopilka.loyalty.cards import CardView
from kopilka.loyalty.schema import pos_refunds

from .conftest import Shop
from .test_pos import commit, gold_card, refund, refused
from .test_reports import history


def cancel(shop: Shop, check_id: str, refund_id: str) -> pos.Refund:
    return shop.tx(
        lambda c: pos.cancel_refund(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id=check_id,
            refund_id=refund_id,
            actor=shop.actor,
        )
    )


def figures(shop: Shop, card: CardView) -> tuple[int, int, int, int, int]:
    now = shop.get(card)
    return (
        now.balance_minor,
        now.available_minor,
        now.accumulation_minor,
        now.checks_count,
        now.debt_minor,
    )


def test_a_half_refund_taken_back_leaves_card_and_check_as_before(shop: Shop) -> None:
    card = gold_card(shop)
    commit(shop, card, "K-1", [1000_00], points=200_00)  # spends 200.00, accrues 40.00
    before = figures(shop, card)
    half = refund(shop, "K-1", "r1", 500_00)  # 100.00 back, 20.00 taken back
    assert figures(shop, card) != before
    undone = cancel(shop, "K-1", "r1")
    assert not undone.replayed
    assert (undone.points_returned_minor, undone.accrual_reversed_minor) == (
        half.points_returned_minor,
        half.accrual_reversed_minor,
    )
    assert undone.check.refunded_minor == 0 and undone.check.status == "committed"
    assert figures(shop, card) == before
    # Each transfer that undid it names the one it corrects.
    with read_only(shop.engine) as conn:
        row = conn.execute(
            select(pos_refunds).where(
                pos_refunds.c.tenant_id == shop.tenant.id, pos_refunds.c.refund_id == "r1"
            )
        ).one()
        kinds = conn.execute(
            select(transfers.c.kind, transfers.c.corrects_transfer_id).where(
                transfers.c.id.in_(row.cancel_transfer_ids)
            )
        ).all()
    assert row.cancelled_at is not None
    assert sorted(k for k, _ in kinds) == ["refund_cancel", "refund_cancel"]
    assert all(corrected is not None for _, corrected in kinds)
    shop.assert_clean()


def test_taking_back_twice_answers_as_the_first_time(shop: Shop) -> None:
    card = shop.card()
    commit(shop, card, "K-2", [1000_00])  # accrues 30.00
    refund(shop, "K-2", "r1", None)
    first = cancel(shop, "K-2", "r1")
    again = cancel(shop, "K-2", "r1")
    assert again.replayed
    assert again.accrual_reversed_minor == first.accrual_reversed_minor == 30_00
    assert shop.get(card).balance_minor == 30_00
    # The refund id is spent: refunding again takes a new one, and works.
    refused("refund_cancelled", lambda: refund(shop, "K-2", "r1", None))
    full = refund(shop, "K-2", "r2", None)
    assert full.accrual_reversed_minor == 30_00 and full.check.status == "refunded"
    shop.assert_clean()


def test_a_full_refund_taken_back_counts_the_check_again(shop: Shop) -> None:
    card = shop.card()
    commit(shop, card, "K-3", [400_00])
    before = figures(shop, card)
    refund(shop, "K-3", "r1", None)
    assert shop.get(card).checks_count == before[3] - 1
    cancel(shop, "K-3", "r1")
    assert figures(shop, card) == before
    shop.assert_clean()


def test_only_the_latest_refund_can_be_taken_back(shop: Shop) -> None:
    card = shop.card()
    commit(shop, card, "K-4", [1000_00])
    refund(shop, "K-4", "r1", 300_00)
    refund(shop, "K-4", "r2", 300_00)
    refused("refund_not_last", lambda: cancel(shop, "K-4", "r1"))
    cancel(shop, "K-4", "r2")
    after_one = shop.get(card)
    cancel(shop, "K-4", "r1")
    assert shop.get(card).balance_minor == after_one.balance_minor + 9_00
    assert shop.get(card).balance_minor == 30_00
    shop.assert_clean()


def test_points_given_back_and_spent_since_cannot_be_taken_back(shop: Shop) -> None:
    card = gold_card(shop)  # 300.00 points
    commit(shop, card, "K-5", [1000_00], points=300_00)  # spends all, accrues 35.00 on 700
    refund(shop, "K-5", "r1", None)  # 300.00 back, 35.00 taken back
    spent = shop.get(card).available_minor
    commit(shop, card, "K-6", [2000_00], points=spent)  # the points are gone again
    before = figures(shop, card)
    refused("refund_points_spent", lambda: cancel(shop, "K-5", "r1"))
    assert figures(shop, card) == before  # nothing half-written
    shop.assert_clean()


def test_unknown_check_or_refund(shop: Shop) -> None:
    card = shop.card()
    commit(shop, card, "K-7", [100_00])
    refused("check_not_found", lambda: cancel(shop, "nope", "r1"))
    refused("refund_not_found", lambda: cancel(shop, "K-7", "r1"))


def test_the_cards_history_explains_the_refund_taken_back(shop: Shop) -> None:
    card = gold_card(shop)
    commit(shop, card, "K-8", [1000_00], points=200_00)
    refund(shop, "K-8", "r1", 500_00)
    cancel(shop, "K-8", "r1")
    items = [i for i in history(shop, card, limit=100).items if i.kind == "refund_cancel"]
    assert sorted(i.amount_minor or 0 for i in items) == [-100_00, 20_00]
    for item in items:
        assert item.details["refund_id"] == "r1" and item.details["check_id"] == "K-8"
        assert "taken back" in item.title and item.details["cancelled_at"]
