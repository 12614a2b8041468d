"""Sign-in and sign-out, the language switch and the branch switch."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from kopilka.core.errors import Unauthenticated
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import actor_for_user, set_user_locale
from kopilka.tenancy.sessions import (
    SESSION_MAX,
    TooManyAttempts,
    authenticate_throttled,
    close_session,
    open_session,
    resolve_session,
    set_branch,
)
from kopilka.web import i18n
from kopilka.web.deps import (
    CSRF_FIELD,
    LOCALE_COOKIE,
    SESSION_COOKIE,
    CsrfFailed,
    PageDep,
    get_engine,
    redirect,
    render,
    request_locale,
    safe_next,
)
from kopilka.web.forms import WebForm
from kopilka.web.i18n import _, lazy

router = APIRouter(include_in_schema=False)

# Before sign-in there is no session to hold a CSRF token, so the sign-in form uses a
# double-submit cookie: a random value in a cookie and in the form, which must match.
LOGIN_CSRF_COOKIE = "kopilka_login_csrf"


class SignInForm(WebForm):
    tenant = StringField(lazy("Company"), validators=[DataRequired(), Length(max=64)])
    login = StringField(lazy("Login"), validators=[DataRequired(), Length(max=100)])
    password = PasswordField(lazy("Password"), validators=[DataRequired(), Length(max=200)])


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(
    request: Request, form: SignInForm, next_url: str, status_code: int = 200
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        None,
        "login.html",
        request=request,
        status_code=status_code,
        form=form,
        next_url=next_url,
        login_csrf=token,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    i18n.set_locale(request_locale(request))
    engine = get_engine(request)
    with engine.begin() as conn:
        if resolve_session(conn, request.cookies.get(SESSION_COOKIE, "")) is not None:
            return redirect(safe_next(next))
    tenant = request.cookies.get("kopilka_tenant", "")
    return _login_page(request, SignInForm(data={"tenant": tenant}), safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    i18n.set_locale(request_locale(request))
    data = await request.form()
    next_url = safe_next(str(data.get("next") or "/"))
    sent = str(data.get(CSRF_FIELD) or "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent, expected):
        raise CsrfFailed()
    form = SignInForm(data)
    if not form.validate():
        return _login_page(request, form, next_url, status_code=422)
    source_ip = request.client.host if request.client else None
    engine = get_engine(request)
    try:
        user = authenticate_throttled(
            engine,
            tenant_slug=form.tenant.data or "",
            login=form.login.data or "",
            password=form.password.data or "",
            source_ip=source_ip,
        )
    except TooManyAttempts as error:
        minutes = max(1, int(error.retry_after.total_seconds() // 60) + 1)
        form.add_error(
            "__all__",
            i18n.ngettext(
                "Too many failed attempts. Try again in %(num)d minute.",
                "Too many failed attempts. Try again in %(num)d minutes.",
                minutes,
            ),
        )
        return _login_page(request, form, next_url, status_code=429)
    except Unauthenticated:
        form.add_error("__all__", _("Unknown company, login or password."))
        return _login_page(request, form, next_url, status_code=401)

    secret = run_transaction(
        engine,
        lambda conn: open_session(
            conn,
            user=user,
            source_ip=source_ip,
            user_agent=request.headers.get("user-agent", ""),
            actor=actor_for_user(user, source_ip),
        ),
    )
    response = redirect(next_url)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_MAX.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.set_cookie(
        "kopilka_tenant",
        (form.tenant.data or "").strip().lower(),
        max_age=365 * 86400,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(page: PageDep) -> Response:
    run_transaction(page.engine, lambda conn: close_session(conn, page.session, page.actor))
    response = redirect("/login", page.request)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language")
async def switch_language(request: Request) -> Response:
    """Anyone may switch; a signed-in user's choice is kept with their account."""
    data = await request.form()
    locale = i18n.normalise_locale(str(data.get("locale") or ""))
    next_url = safe_next(str(data.get("next") or "/"))
    engine = get_engine(request)
    if locale is None:
        return redirect(next_url, request)
    with engine.begin() as conn:
        session = resolve_session(conn, request.cookies.get(SESSION_COOKIE, ""))
        if session is not None:
            sent = request.headers.get("X-CSRF-Token") or str(data.get(CSRF_FIELD) or "")
            if not hmac.compare_digest(sent, session.csrf_token):
                raise CsrfFailed()
            set_user_locale(
                conn,
                tenant_id=session.user.tenant_id,
                user_id=session.user.id,
                locale=locale,
                actor=actor_for_user(session.user, request.client.host if request.client else None),
            )
    response = redirect(next_url, request)
    response.set_cookie(
        LOCALE_COOKIE, locale, max_age=365 * 86400, samesite="lax", secure=_secure(request)
    )
    return response


@router.post("/branch")
async def switch_branch(page: PageDep) -> Response:
    data = await page.request.form()
    raw = str(data.get("branch_id") or "")
    next_url = safe_next(str(data.get("next") or "/"))
    chosen = int(raw) if (raw.isascii() and raw.isdigit()) else None
    if chosen is not None and all(b.id != chosen for b in page.branches):
        chosen = None
    with page.engine.begin() as conn:
        set_branch(conn, page.session, chosen)
    return redirect(next_url, page.request)
