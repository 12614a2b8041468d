"""In a real browser: signing in, the layout, switching language, being refused."""

from __future__ import annotations

from .conftest import Watched


def test_sign_in_and_the_overview(page: Watched) -> None:
    page.goto("/")
    assert "/login" in page.page.url, "a visitor is sent to sign in"
    page.shot("login")
    page.sign_in("owner")
    body = page.page.inner_text("body")
    assert "Kopilka Demo" in body
    assert "Ольга Смирнова" in body
    assert "Обзор" in body
    page.shot("overview")


def test_a_wrong_password_is_said_next_to_the_form(page: Watched) -> None:
    page.goto("/login")
    page.page.fill("input[name=tenant]", "demo")
    page.page.fill("input[name=login]", "owner")
    page.page.fill("input[name=password]", "wrong")
    page.page.click("[data-testid=sign-in]")
    assert "Неизвестная компания, логин или пароль." in page.page.inner_text(
        "[data-testid=form-error]"
    )
    # An empty field is marked where it is.
    page.page.fill("input[name=login]", "")
    page.page.click("[data-testid=sign-in]")
    assert page.page.is_visible("[data-testid=error-login]")


def test_switching_language(page: Watched) -> None:
    page.sign_in("administrator")
    page.page.click("[data-testid=lang-en]")
    page.page.wait_for_selector("text=Sign out")
    assert "Overview" in page.page.inner_text("nav.sidebar")
    page.page.click("[data-testid=lang-ru]")
    page.page.wait_for_selector("text=Выйти")
    assert "Обзор" in page.page.inner_text("nav.sidebar")


def test_sign_out(page: Watched) -> None:
    page.sign_in("cashier")
    page.page.click("[data-testid=sign-out]")
    page.page.wait_for_url("**/login")
    page.goto("/")
    assert "/login" in page.page.url


def test_switching_branch_in_the_header(page: Watched) -> None:
    page.sign_in("owner")
    assert "Central office" in page.page.inner_text("main h1 + p")
    # htmx posts the choice as soon as it is made, and the page comes back with it kept
    # in the session.
    with page.page.expect_navigation(), page.page.expect_response("**/branch") as answer:
        page.page.locator("#branch-select").select_option(label="Все филиалы")
    assert answer.value.status == 204
    assert page.page.locator("#branch-select").input_value() == ""
    assert "Central office" not in page.page.inner_text("main h1 + p")
