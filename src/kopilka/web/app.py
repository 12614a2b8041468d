"""The web UI, mounted on the API's application at ``/``.

Pages are rendered on the server (Jinja2) and made lively with htmx; every page also
works as plain HTML forms and links. Errors of web pages are pages (sign-in, 403, 404,
"the form expired"), never problem+json; the API keeps its own handlers.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kopilka.api.problems import database_error_classes
from kopilka.api.routes import API_PREFIX
from kopilka.web import i18n
from kopilka.web.deps import (
    CsrfFailed,
    NeedsSignIn,
    WebForbidden,
    get_page,
    redirect,
    render,
    request_locale,
    sign_in_url,
)
from kopilka.web.routes import ROUTERS
from kopilka.web.templating import STATIC

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def _is_web(path: str) -> bool:
    return not (
        path.startswith(API_PREFIX)
        or path.startswith("/api/")
        or path in {"/healthz", "/readyz", "/metrics"}
    )


_SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


class SecurityHeaders:
    """The web pages' security headers (a header the page set itself is kept). A plain
    ASGI middleware: the API and the terminals' hot paths pass straight through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not _is_web(path) or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _call(handler: Any, request: Request, exc: Exception) -> Any:
    result = handler(request, exc)
    return await result if inspect.isawaitable(result) else result


def install_web(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(SecurityHeaders)

    api_not_found = app.exception_handlers.get(StarletteHTTPException)
    api_invalid = app.exception_handlers.get(RequestValidationError)

    async def needs_sign_in(request: Request, exc: Exception) -> Response:
        return redirect(sign_in_url(request), request)

    async def forbidden(request: Request, exc: Exception) -> Response:
        page = await get_page(request) if request.method == "GET" else None
        return render(page, "error.html", request=request, status_code=403, error="forbidden")

    async def csrf_failed(request: Request, exc: Exception) -> Response:
        i18n.set_locale(request_locale(request))
        return render(None, "error.html", request=request, status_code=403, error="csrf")

    async def http_error(request: Request, exc: Exception) -> Any:
        if not _is_web(request.url.path) and api_not_found is not None:
            return await _call(api_not_found, request, exc)
        assert isinstance(exc, StarletteHTTPException)
        i18n.set_locale(request_locale(request))
        error = "not_found" if exc.status_code == 404 else "http"
        return render(None, "error.html", request=request, status_code=exc.status_code, error=error)

    async def invalid(request: Request, exc: Exception) -> Any:
        if not _is_web(request.url.path) and api_invalid is not None:
            return await _call(api_invalid, request, exc)
        i18n.set_locale(request_locale(request))
        return render(None, "error.html", request=request, status_code=400, error="bad_request")

    def unavailable_as_page(api_handler: Any) -> Any:
        """The database down: an API caller gets its 503 problem, a person a page that
        says so in their language (the same status and ``Retry-After``)."""

        async def handler(request: Request, exc: Exception) -> Any:
            response = await _call(api_handler, request, exc)
            if not _is_web(request.url.path) or response.status_code != 503:
                return response
            i18n.set_locale(request_locale(request))
            page = render(None, "error.html", request=request, status_code=503, error="unavailable")
            page.headers["Retry-After"] = response.headers.get("Retry-After", "5")
            return page

        return handler

    for error_class in database_error_classes():
        api_handler = app.exception_handlers[error_class]
        app.add_exception_handler(error_class, unavailable_as_page(api_handler))
    app.add_exception_handler(NeedsSignIn, needs_sign_in)
    app.add_exception_handler(WebForbidden, forbidden)
    app.add_exception_handler(CsrfFailed, csrf_failed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
