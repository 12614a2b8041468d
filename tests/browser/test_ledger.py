"""In a real browser: an account's history and chart, a ledger check's progress, and a
screen the role may not open."""

from __future__ import annotations

from datetime import datetime, timedelta

from kopilka.demo import HISTORY_CARD

from .conftest import Watched


def test_an_accounts_history_balance_at_a_date_and_chart(page: Watched) -> None:
    page.sign_in("owner")
    page.page.click("nav.sidebar >> text=Отчёты")
    page.page.wait_for_selector("[data-testid=turnovers-report], nav.subnav")
    page.page.click("nav.subnav >> text=Счета")
    page.page.wait_for_selector("[data-testid=accounts-table]")
    page.page.fill("input[name=q]", HISTORY_CARD)
    page.page.press("input[name=q]", "Enter")
    page.page.wait_for_url(f"**q={HISTORY_CARD}**")
    rows = page.page.locator("[data-testid=accounts-table] tbody tr")
    assert rows.count() == 1
    rows.first.locator("a").first.click()
    page.page.wait_for_selector("[data-testid=history-table]")
    # Ninety days of history: many lines, each with its running balance.
    lines = page.page.locator("[data-testid=history-table] tbody tr")
    assert lines.count() > 10
    assert page.page.locator("[data-testid=balance-after]").first.inner_text().strip()
    # The chart is drawn, with a line of the balance.
    chart = page.page.locator("[data-testid=balance-chart]")
    assert chart.is_visible()
    assert chart.locator("path").count() >= 1
    # The balance a month ago, chosen with the date-time input.
    month_ago = (datetime.now() - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
    page.page.fill("input[name=at]", month_ago)
    page.page.click("form:has(input[name=at]) >> button[type=submit]")
    page.page.wait_for_selector("[data-testid=balance-at]")
    assert "Остаток на" in page.page.inner_text("[data-testid=balance-at]")
    page.shot("account")


def test_a_ledger_check_shows_its_progress_to_the_end(page: Watched) -> None:
    page.sign_in("administrator")
    page.goto("/ledger/check")
    page.page.click("[data-testid=start-check]")
    page.page.wait_for_selector("[data-testid=job-progress]")
    assert page.page.locator("progress").count() >= 1 or page.page.is_visible(
        "[data-testid=job-progress][data-status=done]"
    )
    # htmx polls the progress until the job is done; no reload by the test.
    page.page.wait_for_selector("[data-testid=job-progress][data-status=done]", timeout=30_000)
    assert page.page.is_visible("[data-testid=job-result]")
    page.shot("ledger-check")


def test_a_screen_the_role_may_not_open_is_refused(page: Watched) -> None:
    page.sign_in("cashier")
    assert page.page.locator("nav.sidebar >> text=Отчёты").count() == 0
    response = page.goto("/ledger/accounts")
    assert response.status == 403
    assert "Нет доступа" in page.page.inner_text("[data-testid=error-page]")
