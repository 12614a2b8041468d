"""In a real browser: find a card of the demo's bonus program by its holder, post a gift by
hand and see it explained in the card's history; issue a range and watch its job finish;
and a cashier who may look cards up but not change them."""

from __future__ import annotations

import re

from kopilka.demo import DEMO_LOYALTY_CARDS

from .conftest import Watched


def test_find_a_card_and_accrue_a_gift_by_hand(page: Watched) -> None:
    page.sign_in("administrator")
    page.page.click("nav.sidebar >> text=Карты и бонусы")
    page.page.wait_for_selector("[data-testid=cards-table]")
    page.page.fill("input[name=q]", "Игорь")
    page.page.press("input[name=q]", "Enter")
    page.page.wait_for_url("**q=**")
    rows = page.page.locator("[data-testid=cards-table] tbody tr")
    assert rows.count() == 1
    rows.first.locator("a").first.click()
    page.page.wait_for_selector("[data-testid=card-title]")
    assert DEMO_LOYALTY_CARDS[1] in page.page.inner_text("[data-testid=card-title]")
    before = page.page.inner_text("[data-testid=card-balance]")

    # A wrong amount is said by its field; nothing is posted.
    page.page.select_option("select[name=kind]", "accrual")
    page.page.fill("input[name=amount]", "12,345")
    page.page.fill("input[name=reason]", "Извинение за ожидание")
    page.page.click("[data-testid=post-document]")
    page.page.wait_for_selector("[data-testid=error-amount]")
    assert page.page.inner_text("[data-testid=card-balance]") == before

    page.page.fill("input[name=amount]", "150")
    page.page.click("[data-testid=post-document]")
    page.page.wait_for_selector("text=Документ проведён.")
    history = page.page.locator("[data-testid=card-history] tbody tr").first
    assert "Начислено вручную" in history.inner_text()
    assert "Извинение за ожидание" in history.inner_text()
    assert "+150,00" in history.inner_text()
    # Checks of the demo are explained with their till and rate.
    checks = page.page.locator("tr[data-kind=check_accrual]")
    assert checks.count() >= 2
    assert re.search(r"касса Bar POS 1; ставка \d+,\d\d", checks.first.inner_text())
    page.shot("card")


def test_a_range_is_issued_with_its_progress_shown(page: Watched) -> None:
    page.sign_in("owner")
    page.goto("/cards/range")
    page.page.fill("input[name=prefix]", "3330")
    page.page.fill("input[name=first]", "1")
    page.page.fill("input[name=last]", "300")
    page.page.check("input[name=check_digit]")
    page.page.click("[data-testid=start-range]")
    page.page.wait_for_selector("[data-testid=job-progress][data-status=done]", timeout=30_000)
    assert "300 карт выпущено." in page.page.inner_text("[data-testid=job-result]")
    page.goto("/cards?q=3330")
    assert "1–25 из 300" in page.page.inner_text(".pager")
    page.shot("cards")


def test_a_cashier_looks_cards_up_but_changes_nothing(page: Watched) -> None:
    page.sign_in("cashier")
    page.goto(f"/cards?q={DEMO_LOYALTY_CARDS[0]}")
    page.page.wait_for_selector("[data-testid=cards-table]")
    assert page.page.locator("[data-testid=issue-card]").count() == 0
    page.page.locator("[data-testid=cards-table] tbody tr a").first.click()
    page.page.wait_for_selector("[data-testid=card-title]")
    assert page.page.locator("[data-testid=document-form]").count() == 0
    response = page.goto("/cards/programs")
    assert response.status == 403
