"""What every web page needs: who is signed in, their tenant and branch, locale, CSRF.

A route declares ``page: PageDep`` (any signed-in user) or
``page: Annotated[Page, Depends(require("settings.users"))]`` (only roles with that
permission); unsafe methods are CSRF-checked here, before the route runs.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection, Engine, select

from kopilka.core.actor import Actor
from kopilka.tenancy.actions import Tenant, User, actor_for_user, get_tenant
from kopilka.tenancy.roles import PERMISSIONS, allowed
from kopilka.tenancy.schema import branches
from kopilka.tenancy.sessions import WebSession, push_flash, resolve_session, take_flash
from kopilka.web import i18n
from kopilka.web.templating import render_template

SESSION_COOKIE = "kopilka_session"
LOCALE_COOKIE = "kopilka_locale"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NeedsSignIn(Exception):
    """No live session: the browser goes to the sign-in page (and comes back after)."""


class WebForbidden(Exception):
    def __init__(self, permission: str) -> None:
        super().__init__(permission)
        self.permission = permission


class CsrfFailed(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Branch:
    id: int
    name: str


@dataclass
class Page:
    request: Request
    engine: Engine
    session: WebSession
    user: User
    tenant: Tenant
    branches: list[Branch]
    locale: str
    flash: list[dict[str, Any]] = field(default_factory=list)

    @property
    def branch(self) -> Branch | None:
        return next((b for b in self.branches if b.id == self.session.branch_id), None)

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token

    @property
    def source_ip(self) -> str | None:
        return self.request.client.host if self.request.client else None

    @property
    def actor(self) -> Actor:
        return actor_for_user(self.user, self.source_ip)

    def can(self, permission: str) -> bool:
        return allowed(self.user.role, permission)

    def flash_next(self, conn: Connection, kind: str, text: str) -> None:
        """Show ``text`` on the next page (after a redirect)."""
        push_flash(conn, self.session.id, kind, text)


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def request_locale(request: Request) -> str:
    """For pages before sign-in: the cookie a visitor chose, else their browser's wish."""
    return i18n.normalise_locale(request.cookies.get(LOCALE_COOKIE)) or i18n.negotiate(
        request.headers.get("accept-language")
    )


async def get_page(request: Request) -> Page:
    engine = get_engine(request)
    secret = request.cookies.get(SESSION_COOKIE, "")
    with engine.begin() as conn:
        session = resolve_session(conn, secret)
        if session is None:
            i18n.set_locale(request_locale(request))
            raise NeedsSignIn()
        tenant = get_tenant(conn, session.user.tenant_id)
        rows = conn.execute(
            select(branches.c.id, branches.c.name)
            .where(branches.c.tenant_id == tenant.id)
            .order_by(branches.c.name)
        ).all()
    locale = session.user.locale or tenant.locale
    locale = i18n.normalise_locale(locale) or i18n.DEFAULT_LOCALE
    i18n.set_locale(locale, tenant.timezone)
    page = Page(
        request=request,
        engine=engine,
        session=session,
        user=session.user,
        tenant=tenant,
        branches=[Branch(r.id, r.name) for r in rows],
        locale=locale,
    )
    request.state.tenant_id = tenant.id
    request.state.actor = f"user:{session.user.id}"
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session.csrf_token)
    return page


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, expected):
        raise CsrfFailed()


PageDep = Annotated[Page, Depends(get_page)]


def require(permission: str) -> Callable[..., Any]:
    assert permission in PERMISSIONS, permission

    async def check(page: PageDep) -> Page:
        if not page.can(permission):
            raise WebForbidden(permission)
        return page

    return check


def render(
    page: Page | None,
    template: str,
    *,
    request: Request | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page of the UI. Flash messages waiting for this session are shown, once."""
    flash: list[dict[str, Any]] = []
    if page is not None and page.session.flash and not _is_fragment(page.request):
        with page.engine.begin() as conn:
            flash = take_flash(conn, page.session)
    req = page.request if page is not None else request
    assert req is not None
    html = render_template(
        template,
        {
            "page": page,
            "request": req,
            "flash": flash + (page.flash if page else []),
            "csrf_field": CSRF_FIELD,
            "is_fragment": _is_fragment(req),
            **context,
        },
    )
    return HTMLResponse(html, status_code=status_code)


def _is_fragment(request: Request) -> bool:
    """An htmx request that swaps part of a page (not a boosted full navigation)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-Boosted") is None


def redirect(url: str, request: Request | None = None) -> Response:
    """303 See Other after a POST; for htmx, a client-side redirect it follows."""
    if request is not None and request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def safe_next(value: str | None) -> str:
    """Only a path on this site: never ``//evil`` or ``https://evil``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
