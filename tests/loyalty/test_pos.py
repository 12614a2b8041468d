"""The POS gateway's arithmetic and bookkeeping, with the seed's own kind of numbers
(SPEC C-3, C-4, P-3..P-5). Money and points in minor units: 1000_00 is 1,000.00."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.ledger.lots import account_lots, expire_lots
from kopilka.ledger.schema import transfers
from kopilka.loyalty import pos
from kopilka.loyalty.cards import CardView, block_cards
from kopilka.loyalty.schema import pos_checks

from .conftest import Shop


def commit(
    shop: Shop,
    card: CardView,
    check_id: str,
    lines: list[int],
    points: int = 0,
    **extra: object,
) -> pos.CommittedCheck:
    return shop.tx(
        lambda c: pos.commit_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id=check_id,
            card_number=card.number,
            lines=lines,
            points_minor=points,
            actor=shop.actor,
            **extra,  # type: ignore[arg-type]
        )
    )


def refund(shop: Shop, check_id: str, refund_id: str, amount: int | None) -> pos.Refund:
    return shop.tx(
        lambda c: pos.refund_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id=check_id,
            refund_id=refund_id,
            amount_minor=amount,
            actor=shop.actor,
        )
    )


def refused(code: str, work: object) -> KopilkaError:
    with pytest.raises(KopilkaError) as caught:
        work()  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value


def gold_card(shop: Shop) -> CardView:
    """A card that has bought 10,000.00 in money: the 5 % tier, 300.00 points on it."""
    card = shop.card(holder_name="Ирина")
    commit(shop, card, "warm-up", [10_000_00])
    assert shop.get(card).accumulation_minor == 10_000_00
    return shop.get(card)


def test_a_5_percent_card_accrues_on_the_money_part_not_the_points_part(shop: Shop) -> None:
    card = gold_card(shop)
    assert shop.get(card).balance_minor == 300_00  # 3 % of 10,000.00 before the tier
    # A check of 1,000.00: 200.00 paid with points, 800.00 in money; 5 % of 800.00 = 40.00.
    with read_only(shop.engine) as conn:
        _, _, q = pos.calculate(
            conn,
            tenant_id=shop.tenant.id,
            card_number=card.number,
            lines=[600_00, 400_00],
            points_asked=200_00,
        )
    assert (q.total_minor, q.points_minor, q.money_minor, q.accrual_minor) == (
        1000_00,
        200_00,
        800_00,
        40_00,
    )
    check = commit(shop, card, "A-1", [600_00, 400_00], points=200_00)
    assert (check.spent_minor, check.accrued_minor, check.money_minor) == (200_00, 40_00, 800_00)
    after = shop.get(card)
    assert after.balance_minor == 300_00 - 200_00 + 40_00
    assert after.accumulation_minor == 10_800_00
    assert after.checks_count == 2
    shop.assert_clean()


def test_the_cap_and_the_balance_limit_what_points_may_pay(shop: Shop) -> None:
    card = gold_card(shop)  # 300.00 points
    # Half of a 400.00 check is 200.00: more is over the cap.
    refused("points_over_cap", lambda: commit(shop, card, "B-1", [400_00], points=200_01))
    # 2,000.00 check: the cap is 1,000.00 but the card has 300.00.
    refused("insufficient_points", lambda: commit(shop, card, "B-2", [2000_00], points=300_01))
    with read_only(shop.engine) as conn:
        _, _, q = pos.calculate(
            conn,
            tenant_id=shop.tenant.id,
            card_number=card.number,
            lines=[2000_00],
            points_asked=10_000_00,
        )
    assert q.points_cap_minor == 300_00 and q.points_minor == 300_00
    assert shop.get(card).balance_minor == 300_00, "refusals wrote nothing"


def test_below_the_minimum_check_nothing_is_spent_or_accrued(shop: Shop) -> None:
    from kopilka.loyalty.schema import loyalty_programs

    with shop.engine.begin() as conn:
        conn.execute(
            loyalty_programs.update()
            .where(loyalty_programs.c.id == shop.program.id)
            .values(min_check_minor=500_00)
        )
    card = shop.card()
    check = commit(shop, card, "C-1", [499_99])
    assert check.accrued_minor == 0
    assert commit(shop, card, "C-2", [500_00]).accrued_minor == 15_00


def test_a_lot_accrued_on_1_march_lives_30_days(shop: Shop) -> None:
    card = shop.card()
    march_1 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    commit(shop, card, "D-1", [1000_00], now=march_1)
    with read_only(shop.engine) as conn:
        (lot,) = account_lots(conn, shop.tenant.id, card.account_id)
    assert lot.amount_minor == 30_00
    assert lot.expires_at == datetime(2027, 3, 31, 12, 0, tzinfo=UTC)
    # Spendable until 31 March; written off by the expiry run once that moment has come.
    assert shop.get(card).balance_minor == 30_00
    assert (
        expire_lots(
            shop.engine,
            tenant_id=shop.tenant.id,
            actor=shop.actor,
            now=march_1 + timedelta(days=30, seconds=-1),
        )
        == 0
    )
    written_off = expire_lots(
        shop.engine, tenant_id=shop.tenant.id, actor=shop.actor, now=march_1 + timedelta(days=30)
    )
    assert written_off
    assert shop.get(card).balance_minor == 0
    shop.assert_clean()


def test_a_refund_of_half_the_check_returns_half_of_both(shop: Shop) -> None:
    card = gold_card(shop)
    commit(shop, card, "E-1", [1000_00], points=200_00)  # spends 200.00, accrues 40.00
    before = shop.get(card).balance_minor
    half = refund(shop, "E-1", "r1", 500_00)
    assert (half.points_returned_minor, half.accrual_reversed_minor, half.debt_minor) == (
        100_00,
        20_00,
        0,
    )
    assert shop.get(card).balance_minor == before + 100_00 - 20_00
    assert half.check.status == "partly_refunded"
    # The rest, in an odd part and the remainder: the parts add up to exactly the whole.
    third = refund(shop, "E-1", "r2", 333_33)
    rest = refund(shop, "E-1", "r3", None)
    assert (
        half.points_returned_minor + third.points_returned_minor + rest.points_returned_minor
        == 200_00
    )
    assert (
        half.accrual_reversed_minor + third.accrual_reversed_minor + rest.accrual_reversed_minor
        == 40_00
    )
    assert rest.check.status == "refunded"
    # Never more than the check.
    refused("refund_too_large", lambda: refund(shop, "E-1", "r4", 1))
    # The money refunded leaves the accumulation.
    assert shop.get(card).accumulation_minor == 10_000_00
    shop.assert_clean()


def test_accrued_points_already_spent_become_the_cards_debt(shop: Shop) -> None:
    card = shop.card()
    commit(shop, card, "F-1", [1000_00])  # accrues 30.00
    commit(shop, card, "F-2", [100_00], points=30_00)  # spends them all
    back = refund(shop, "F-1", "r1", None)
    # F-2 accrued 2.10 on its 70.00 of money: that much could be taken back, the rest
    # of the 30.00 is owed.
    assert (back.accrual_reversed_minor, back.debt_minor) == (2_10, 27_90)
    assert shop.get(card).debt_minor == 27_90
    assert shop.get(card).balance_minor == 0
    shop.assert_clean()


def test_a_check_is_applied_once_per_terminal_and_id(shop: Shop) -> None:
    card = shop.card()
    first = commit(shop, card, "G-1", [100_00, 50_00])
    again = commit(shop, card, "G-1", [100_00, 50_00])
    assert again.replayed and again.id == first.id
    assert shop.get(card).balance_minor == 4_50
    refused("check_conflict", lambda: commit(shop, card, "G-1", [100_00, 50_01]))
    with read_only(shop.engine) as conn:
        count = len(
            conn.execute(
                select(pos_checks.c.id).where(pos_checks.c.tenant_id == shop.tenant.id)
            ).all()
        )
        kinds = (
            conn.execute(select(transfers.c.kind).where(transfers.c.tenant_id == shop.tenant.id))
            .scalars()
            .all()
        )
    assert count == 1 and kinds.count("accrual") == 1
    # A refund is applied once by its id too.
    assert refund(shop, "G-1", "x", 50_00).replayed is False
    assert refund(shop, "G-1", "x", 50_00).replayed is True
    refused("refund_conflict", lambda: refund(shop, "G-1", "x", 60_00))
    refused("check_not_found", lambda: refund(shop, "NO-SUCH", "x", 1))


def test_bad_checks_and_cards_are_refused_with_their_own_codes(shop: Shop) -> None:
    card = shop.card()
    refused("invalid_check", lambda: commit(shop, card, "H-1", []))
    refused("invalid_check", lambda: commit(shop, card, "H-2", [100_00, 0]))
    refused("check_lines_mismatch", lambda: commit(shop, card, "H-3", [100_00], total_minor=99_00))
    refused(
        "card_not_found",
        lambda: shop.tx(
            lambda c: pos.commit_check(
                c,
                tenant_id=shop.tenant.id,
                terminal_id=shop.terminal_id,
                check_id="H-4",
                card_number="999999999",
                lines=[1_00],
                points_minor=0,
                actor=shop.actor,
            )
        ),
    )
    shop.tx(
        lambda c: block_cards(
            c, tenant_id=shop.tenant.id, card_ids=[card.id], reason="утеряна", actor=shop.actor
        )
    )
    refused("card_blocked", lambda: commit(shop, card, "H-5", [100_00]))
    with read_only(shop.engine) as conn:
        assert not conn.execute(
            select(pos_checks.c.id).where(pos_checks.c.tenant_id == shop.tenant.id)
        ).first(), "nothing was written"
