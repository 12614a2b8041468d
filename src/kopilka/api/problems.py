"""Errors as ``application/problem+json`` (RFC 9457), one mapping for the whole API.

Every reply that is not a success has the same shape::

    {"type": "urn:kopilka:problem:<code>", "title": ..., "status": ..., "detail": ...,
     "code": "<code>", "instance": "<request path>", ...params}

``code`` is the stable string integrators match on; ``detail`` is for people. Our own
refusals (``KopilkaError``) carry their status; a malformed request is 422
``invalid_request`` with an ``errors`` list; an unknown route 404 ``not_found``; a
database that cannot be reached 503 ``service_unavailable``; anything unexpected 500
``internal_error``, logged with its traceback, which never goes into the body.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kopilka.core.errors import CommonErrorCode, KopilkaError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("kopilka.api")


class ApiErrorCode(StrEnum):
    INTERNAL_ERROR = "internal_error"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_CURSOR = "invalid_cursor"


class FieldError(BaseModel):
    field: str = Field(description="Where the bad value is, e.g. `body.amount`, `query.limit`")
    message: str
    type: str


class RowProblem(BaseModel):
    line: int = Field(description="Line of the file; the header is line 1")
    column: str | None = Field(description="As the file's header names it; null: the row")
    code: str = Field(examples=["amount_too_precise"])
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem; further members carry the error's parameters."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:kopilka:problem:insufficient_funds"])
    title: str = Field(examples=["Refused"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["account 7 has 3.00 RUB available, 10.00 was asked"])
    code: str = Field(examples=["insufficient_funds"])
    instance: str = Field(examples=["/api/v1/transfers"])
    errors: list[FieldError] | list[RowProblem] | None = Field(
        default=None,
        description="For `invalid_request`: each bad field and why; for `invalid_import`: "
        "each bad row of the file",
    )


_DESCRIPTIONS = {
    400: "Bad request (e.g. `idempotency_key_required`)",
    401: "No or bad credentials (`not_authenticated`)",
    403: "The caller's role may not do this (`forbidden`)",
    404: "No such object in the caller's tenant",
    409: "Conflict (e.g. `idempotency_conflict`, `already_reversed`)",
    413: "The request's body is too long (`body_too_large`)",
    422: "Invalid input or refused by the rules (e.g. `invalid_request`, `insufficient_funds`)",
    429: "Too many failed sign-ins from this login or address (`too_many_attempts`)",
    500: "Unexpected error (`internal_error`)",
    503: "The database cannot be reached (`service_unavailable`)",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these statuses (and 500), all shaped as ``Problem``."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in sorted({*statuses, 500})
    }


def problem_body(
    *, code: str, title: str, status: int, detail: str, instance: str, **params: Any
) -> dict[str, Any]:
    # Parameters never overwrite the standard members.
    extra = {k: v for k, v in params.items() if k not in _RESERVED}
    return {
        "type": f"urn:kopilka:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": instance,
        **extra,
    }


_RESERVED = frozenset({"type", "title", "status", "detail", "code", "instance"})


def problem_response(
    *,
    code: str,
    title: str,
    status: int,
    detail: str,
    instance: str,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> JSONResponse:
    body = problem_body(
        code=code, title=title, status=status, detail=detail, instance=instance, **params
    )
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def from_error(error: KopilkaError, instance: str) -> JSONResponse:
    headers = None
    if error.status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="kopilka"'}
    if "retry_after_seconds" in error.params:
        headers = {"Retry-After": str(error.params["retry_after_seconds"])}
    # A parameter named like a standard member (a subscriber's ``status``) never replaces
    # it, nor collides with this call's own arguments.
    params = {k: v for k, v in error.params.items() if k not in _RESERVED and k != "headers"}
    return problem_response(
        code=error.code,
        title=error.title,
        status=error.status,
        detail=error.detail,
        instance=instance,
        headers=headers,
        **params,
    )


def internal_error(instance: str) -> JSONResponse:
    return problem_response(
        code=ApiErrorCode.INTERNAL_ERROR,
        title="Internal server error",
        status=500,
        detail="the server failed to handle the request; it has been logged",
        instance=instance,
    )


def service_unavailable(instance: str, detail: str) -> JSONResponse:
    return problem_response(
        code=CommonErrorCode.SERVICE_UNAVAILABLE,
        title="Service unavailable",
        status=503,
        detail=detail,
        instance=instance,
        headers={"Retry-After": "5"},
    )


# --------------------------------------------------------------------------- handlers


def _kopilka_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, KopilkaError)
    return from_error(error, request.url.path)


def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(part) for part in item.get("loc", ())),
            "message": str(item.get("msg", "")),
            "type": str(item.get("type", "")),
        }
        for item in error.errors()
    ]
    first = errors[0] if errors else {"field": "", "message": "the request is malformed"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return problem_response(
        code=CommonErrorCode.INVALID_REQUEST,
        title="Invalid request",
        status=422,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )


def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400:
        # Only the framework raises a bare 400: a body it cannot read at all (JSON that is
        # not UTF-8, a broken multipart form). Malformed input like any other: 422.
        message = f"the body cannot be read ({error.detail})"
        return problem_response(
            code=CommonErrorCode.INVALID_REQUEST,
            title="Invalid request",
            status=422,
            detail=f"body: {message}",
            instance=request.url.path,
            errors=[{"field": "body", "message": message, "type": "body_unreadable"}],
        )
    if error.status_code == 404:
        code, detail = str(CommonErrorCode.NOT_FOUND), f"there is nothing at {request.url.path}"
    elif error.status_code == 405:
        code = str(ApiErrorCode.METHOD_NOT_ALLOWED)
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        code, detail = f"http_{error.status_code}", str(error.detail)
    response = problem_response(
        code=code,
        title=_title(error.status_code),
        status=error.status_code,
        detail=detail,
        instance=request.url.path,
    )
    for name, value in (error.headers or {}).items():
        response.headers[name] = value
    return response


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _database_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DBAPIError | PoolTimeoutError)
    unreachable = isinstance(error, OperationalError | PoolTimeoutError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )
    if unreachable:
        log.warning(
            "database unavailable: %s",
            type(getattr(error, "orig", error)).__name__,
            extra={"path": request.url.path},
        )
        return service_unavailable(
            request.url.path, "the database cannot be reached or is busy; try again shortly"
        )
    if isinstance(error, DataError):
        # A value the database cannot store (a number out of range, a NUL in text):
        # the request's fault, though validation did not catch it.
        log.warning("data error: %s", error.orig, extra={"path": request.url.path})
        return problem_response(
            code=CommonErrorCode.INVALID_REQUEST,
            title="Invalid request",
            status=422,
            detail="a value in the request is out of range or cannot be stored",
            instance=request.url.path,
        )
    log.error("database error", exc_info=error, extra={"path": request.url.path})
    return internal_error(request.url.path)


def _driver_error(request: Request, error: Exception) -> JSONResponse:
    """A DB-API error that reached us without SQLAlchemy's wrapper (driver-level writes).

    Classified by the PEP 249 class names every driver uses, so no driver is imported here.
    """
    names = {cls.__name__ for cls in type(error).__mro__}
    if "OperationalError" in names:
        log.warning("database unavailable: %s", type(error).__name__)
        return service_unavailable(
            request.url.path, "the database cannot be reached or is busy; try again shortly"
        )
    if "DataError" in names:
        log.warning("data error: %s", error, extra={"path": request.url.path})
        return problem_response(
            code=CommonErrorCode.INVALID_REQUEST,
            title="Invalid request",
            status=422,
            detail="a value in the request is out of range or cannot be stored",
            instance=request.url.path,
        )
    log.error("database error", exc_info=error, extra={"path": request.url.path})
    return internal_error(request.url.path)


def _driver_error_classes() -> list[type[Exception]]:
    import sqlite3

    classes: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg
    except ImportError:  # pragma: no cover (psycopg is a dependency)
        return classes
    classes.append(psycopg.Error)
    return classes


def database_error_classes() -> list[type[Exception]]:
    """What a database that cannot be reached raises: each has a handler here."""
    return [DBAPIError, PoolTimeoutError, *_driver_error_classes()]


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KopilkaError, _kopilka_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    for driver_error in _driver_error_classes():
        app.add_exception_handler(driver_error, _driver_error)
