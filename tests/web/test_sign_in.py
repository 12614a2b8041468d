"""Signing in and out of the web UI: cookies, CSRF, throttling, language (SPEC X-1, X-4)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from kopilka.core.clock import utcnow
from kopilka.tenancy.schema import login_failures, users, web_sessions
from kopilka.tenancy.sessions import MAX_FAILURES_PER_LOGIN

from .conftest import PASSWORD, Visitor, Web, csrf_of, text_of


def _login(visitor: Visitor, web: Web, login: str, password: str, next_url: str = "/") -> object:
    form = visitor.get("/login")
    return visitor.client.post(
        "/login",
        data={
            "csrf_token": csrf_of(form.text),
            "tenant": web.tenant.slug,
            "login": login,
            "password": password,
            "next": next_url,
        },
        follow_redirects=False,
    )


def test_a_visitor_is_sent_to_sign_in_and_back(web: Web) -> None:
    visitor = web.visitor()
    response = visitor.get("/?page=2&q=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F%3Fpage%3D2%26q%3Dx"
    signed = _login(visitor, web, "owner1", PASSWORD, next_url="/?page=2&q=x")
    assert signed.status_code == 303  # type: ignore[attr-defined]
    assert signed.headers["location"] == "/?page=2&q=x"  # type: ignore[attr-defined]


def test_session_cookie_is_http_only_and_same_site(web: Web) -> None:
    response = _login(web.visitor(), web, "owner1", PASSWORD)
    cookie = next(
        c
        for c in response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
        if c.startswith("kopilka_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie


def test_only_paths_of_this_site_are_followed_after_sign_in(web: Web) -> None:
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = _login(web.visitor(), web, "owner1", PASSWORD, next_url=evil)
        assert response.headers["location"] == "/"  # type: ignore[attr-defined]


def test_wrong_password_is_refused_with_one_vague_message(web: Web) -> None:
    visitor = web.visitor()
    response = _login(visitor, web, "owner1", "not the password")
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert "Неизвестная компания, логин или пароль." in text_of(response.text)  # type: ignore[attr-defined]
    unknown = _login(visitor, web, "nobody", "whatever")
    assert text_of(unknown.text).count("Неизвестная компания, логин или пароль.") == 1  # type: ignore[attr-defined]
    assert "kopilka_session" not in visitor.client.cookies


def test_empty_fields_are_marked_next_to_themselves(web: Web) -> None:
    visitor = web.visitor()
    form = visitor.get("/login")
    response = visitor.client.post(
        "/login",
        data={
            "csrf_token": csrf_of(form.text),
            "tenant": web.tenant.slug,
            "login": "",
            "password": "",
        },
    )
    assert response.status_code == 422
    assert 'data-testid="error-login"' in response.text
    assert 'data-testid="error-password"' in response.text
    assert 'data-testid="error-tenant"' not in response.text


def test_sign_in_form_needs_its_csrf_token(web: Web) -> None:
    visitor = web.visitor()
    visitor.get("/login")
    response = visitor.client.post(
        "/login",
        data={
            "csrf_token": "forged",
            "tenant": web.tenant.slug,
            "login": "owner1",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 403
    assert "kopilka_session" not in visitor.client.cookies


def test_throttling_after_repeated_failures_even_with_the_right_password(web: Web) -> None:
    visitor = web.visitor()
    for _ in range(MAX_FAILURES_PER_LOGIN):
        assert _login(visitor, web, "cashier1", "guess").status_code == 401  # type: ignore[attr-defined]
    blocked = _login(visitor, web, "cashier1", PASSWORD)
    assert blocked.status_code == 429  # type: ignore[attr-defined]
    assert "Слишком много неудачных попыток" in text_of(blocked.text)  # type: ignore[attr-defined]
    # The API's token endpoint shares the throttle, with a Retry-After.
    api = visitor.client.post(
        "/api/v1/auth/token",
        json={"tenant": web.tenant.slug, "login": "cashier1", "password": PASSWORD},
    )
    assert api.status_code == 429
    assert api.json()["code"] == "too_many_attempts"
    assert int(api.headers["Retry-After"]) > 0
    # Other logins of the tenant are not affected.
    assert _login(web.visitor(), web, "owner1", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    # When the window has passed, the right password works again.
    with web.engine.begin() as conn:
        conn.execute(update(login_failures).values(at=utcnow() - timedelta(hours=1)))
    assert _login(visitor, web, "cashier1", PASSWORD).status_code == 303  # type: ignore[attr-defined]


def test_a_successful_sign_in_clears_earlier_failures(web: Web) -> None:
    visitor = web.visitor()
    for _ in range(MAX_FAILURES_PER_LOGIN - 1):
        _login(visitor, web, "frontdesk1", "guess")
    assert _login(visitor, web, "frontdesk1", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    with web.engine.connect() as conn:
        left = conn.execute(
            select(func.count()).where(login_failures.c.login == "frontdesk1")
        ).scalar_one()
    assert left == 0


def test_sign_out_ends_the_session_everywhere(web: Web) -> None:
    visitor = web.sign_in("owner")
    cookie = visitor.client.cookies["kopilka_session"]
    response = visitor.post("/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    # The old cookie, replayed, no longer opens anything.
    stolen = web.visitor()
    stolen.client.cookies.set("kopilka_session", cookie)
    assert stolen.get("/", follow_redirects=False).status_code == 303


def test_unsafe_requests_need_the_sessions_csrf_token(web: Web) -> None:
    visitor = web.sign_in("owner")
    refused = visitor.client.post("/logout", data={}, follow_redirects=False)
    assert refused.status_code == 403
    refused = visitor.client.post("/logout", data={"csrf_token": "x" * 43}, follow_redirects=False)
    assert refused.status_code == 403
    assert visitor.get("/").status_code == 200, "the session is still alive"
    # htmx sends the token in a header instead of a form field.
    ok = visitor.client.post(
        "/logout", headers={"X-CSRF-Token": visitor.csrf}, follow_redirects=False
    )
    assert ok.status_code == 303


def test_an_idle_session_expires(web: Web) -> None:
    visitor = web.sign_in("owner")
    with web.engine.begin() as conn:
        conn.execute(
            update(web_sessions)
            .where(web_sessions.c.tenant_id == web.tenant.id)
            .values(last_seen_at=utcnow() - timedelta(hours=9))
        )
    assert visitor.get("/", follow_redirects=False).status_code == 303


def test_a_deactivated_user_is_signed_out(web: Web) -> None:
    visitor = web.sign_in("cashier")
    with web.engine.begin() as conn:
        conn.execute(update(users).where(users.c.login == "cashier1").values(is_active=False))
    assert visitor.get("/", follow_redirects=False).status_code == 303


def test_language_switch_is_kept_with_the_user(web: Web) -> None:
    visitor = web.sign_in("owner")
    assert "Обзор" in text_of(visitor.get("/").text)  # the tenant speaks Russian
    response = visitor.post("/language", {"locale": "en", "next": "/"})
    assert response.status_code == 303
    page = text_of(visitor.get("/").text)
    assert "Overview" in page and "Sign out" in page
    # A new session of the same user opens in English too.
    again = web.sign_in("owner")
    assert "Sign out" in text_of(again.get("/").text)
    # The others of the tenant still see Russian.
    assert "Выйти" in text_of(web.sign_in("cashier").get("/").text)


def test_sign_in_page_speaks_the_browsers_language_or_the_chosen_one(web: Web) -> None:
    english = web.visitor(**{"Accept-Language": "en-US,en;q=0.9"})
    assert "Sign in" in text_of(english.get("/login").text)
    russian = web.visitor(**{"Accept-Language": "ru"})
    assert "Войти" in text_of(russian.get("/login").text)
    chose = russian.client.post("/language", data={"locale": "en", "next": "/login"})
    assert chose.status_code == 200
    assert "Sign in" in text_of(chose.text)


def test_the_layout_shows_only_what_the_role_may_open(web: Web) -> None:
    owner = text_of(web.sign_in("owner").get("/").text)
    cashier = text_of(web.sign_in("cashier").get("/").text)
    for section in ("Настройки", "Отчёты", "Карты и бонусы", "Ресепшн"):
        assert section in owner
    assert "Карты и бонусы скоро" not in owner, "the cards section is open"
    assert "Настройки" not in cashier and "Отчёты" not in cashier
    assert "Карты и бонусы" in cashier and "Ресепшн" not in cashier
    assert "Гостиница «Берёзка»" in owner, "the tenant is named in the header"
    assert "Main building" in owner, "and its branch"


def test_pages_carry_security_headers(web: Web) -> None:
    response = web.sign_in("owner").get("/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_unknown_pages_are_pages_and_unknown_api_paths_are_problems(web: Web) -> None:
    visitor = web.sign_in("owner")
    page = visitor.get("/no/such/page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    api = visitor.get("/api/v1/no/such")
    assert api.status_code == 404
    assert api.headers["content-type"].startswith("application/problem+json")
