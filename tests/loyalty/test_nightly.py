"""The nightly routine (SPEC C-8): lots and holds expire, accumulations age, tiers move,
cards expire; a second run changes nothing more."""

from __future__ import annotations

from datetime import timedelta

from kopilka.core.clock import utcnow
from kopilka.loyalty import pos
from kopilka.loyalty.cards import CardView
from kopilka.loyalty.nightly import NightlyReport, run_nightly
from kopilka.loyalty.schema import card_purchases, cards, loyalty_programs

from .conftest import Shop


def nightly(shop: Shop, days_later: float = 0) -> NightlyReport:
    return run_nightly(
        shop.engine,
        tenant_id=shop.tenant.id,
        actor=shop.actor,
        now=utcnow() + timedelta(days=days_later),
    )


def buy(shop: Shop, card: CardView, check_id: str, amount: int) -> None:
    shop.tx(
        lambda c: pos.commit_check(
            c,
            tenant_id=shop.tenant.id,
            terminal_id=shop.terminal_id,
            check_id=check_id,
            card_number=card.number,
            lines=[amount],
            points_minor=0,
            actor=shop.actor,
        )
    )


def test_accumulation_ages_out_of_its_window_and_the_tier_follows(shop: Shop) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            loyalty_programs.update()
            .where(loyalty_programs.c.id == shop.program.id)
            .values(accumulation_window_days=365)
        )
    card = shop.card()
    buy(shop, card, "N-1", 8_000_00)
    # A purchase of 4,000.00 made 400 days ago (brought over with the card's history).
    with shop.engine.begin() as conn:
        conn.execute(
            card_purchases.insert(),
            {
                "tenant_id": shop.tenant.id,
                "card_id": card.id,
                "amount_minor": 4_000_00,
                "checks": 1,
                "at": utcnow() - timedelta(days=400),
            },
        )
        conn.execute(
            cards.update()
            .where(cards.c.id == card.id)
            .values(accumulation_minor=12_000_00, checks_count=2, tier_id=shop.program.tiers[0].id)
        )
    first = nightly(shop)
    after = shop.get(card)
    assert (after.accumulation_minor, after.checks_count, after.tier_id) == (8_000_00, 1, None)
    assert (first.cards_aged, first.tiers_moved) == (1, 1)
    # Another 2,000.00 brings it back over 10,000.00 within the window: the gold tier.
    buy(shop, card, "N-2", 2_000_00)
    assert shop.get(card).tier_id == shop.program.tiers[0].id
    # A year on, both purchases have aged out.
    later = nightly(shop, days_later=366)
    assert shop.get(card).accumulation_minor == 0 and shop.get(card).tier_id is None
    assert later.cards_aged == 1
    assert nightly(shop, days_later=366) == NightlyReport(0, 0, 0, 0, 0)


def test_lots_and_cards_expire_once(shop: Shop) -> None:
    card = shop.card()
    buy(shop, card, "L-1", 1_000_00)  # 30.00 points, 30-day lifetime
    assert nightly(shop, days_later=29).lots_expired == 0
    assert shop.get(card).balance_minor == 30_00
    report = nightly(shop, days_later=31)
    assert report.lots_expired == 1
    assert shop.get(card).balance_minor == 0
    with shop.engine.begin() as conn:
        conn.execute(
            cards.update()
            .where(cards.c.id == card.id)
            .values(expires_at=utcnow() + timedelta(days=40))
        )
    assert nightly(shop, days_later=41).cards_expired == 1
    assert shop.get(card).status == "expired"
    assert nightly(shop, days_later=42) == NightlyReport(0, 0, 0, 0, 0)
    shop.assert_clean()
