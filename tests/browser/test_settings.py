"""In a real browser: making a staff user (and being told what is wrong with the form),
making a terminal whose key is shown once."""

from __future__ import annotations

import uuid

from .conftest import Watched


def test_create_a_staff_user_who_then_signs_in(page: Watched) -> None:
    login = f"anna{uuid.uuid4().hex[:6]}"
    page.sign_in("owner")
    page.page.click("nav.sidebar >> text=Настройки")
    page.page.click(".subnav >> text=Сотрудники")
    page.page.wait_for_selector("[data-testid=users-table]")
    page.page.click("[data-testid=add-user]")
    form = page.page.locator("[data-testid=new-user-form]")
    # A password too short and no login: each error stands by its own field.
    form.locator("input[name=full_name]").fill("Анна Кассирова")
    form.locator("input[name=password]").fill("short")
    form.locator("[data-testid=create-user]").click()
    page.page.wait_for_selector("[data-testid=error-login]")
    assert page.page.is_visible("[data-testid=error-password]")
    assert page.page.locator("[data-testid=error-role]").count() == 0
    page.shot("user-form-errors")
    # Corrected, it goes through.
    form = page.page.locator("[data-testid=new-user-form]")
    form.locator("input[name=login]").fill(login)
    form.locator("input[name=password]").fill("kassa-2026-secret")
    form.locator("select[name=role]").select_option("cashier")
    form.locator("[data-testid=create-user]").click()
    page.page.wait_for_selector("[data-testid=users-table]")
    assert login in page.page.inner_text("[data-testid=users-table]")
    assert page.page.locator(".flash-success").count() == 1
    page.shot("users")
    # The new cashier signs in and sees the cashier's sections only.
    page.page.click("[data-testid=sign-out]")
    page.page.fill("input[name=tenant]", "demo")
    page.page.fill("input[name=login]", login)
    page.page.fill("input[name=password]", "kassa-2026-secret")
    page.page.click("[data-testid=sign-in]")
    page.page.wait_for_selector("[data-testid=sign-out]")
    nav = page.page.inner_text("nav.sidebar")
    assert "Карты и бонусы" in nav and "Настройки" not in nav


def test_create_a_terminal_and_see_its_key_once(page: Watched) -> None:
    name = f"Касса {uuid.uuid4().hex[:4]}"
    page.sign_in("administrator")
    page.goto("/settings/terminals")
    form = page.page.locator("[data-testid=new-terminal-form]")
    form.locator("input[name=name]").fill(name)
    form.locator("[data-testid=create-terminal]").click()
    key = page.page.inner_text("[data-testid=terminal-key]").strip()
    assert key.startswith("kpt_")
    page.shot("terminal-key")
    # The key works against the API, and the list never shows it again.
    answer = page.page.request.get(
        page.live.url + "/api/v1/units", headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status == 200
    page.goto("/settings/terminals")
    table = page.page.inner_text("[data-testid=terminals-table]")
    assert name in table and key not in table
