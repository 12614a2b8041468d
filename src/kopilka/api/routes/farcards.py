"""r_keeper's FarCards over HTTP (SPEC P-10): the two functions ``ExtDllHttp.ini`` points at.

``POST /farcards/{tenant}/{secret}/GetCardInfoEx`` and ``.../TransactionsEx`` (the
function's name in any case). The secret is the FarCards terminal's own
(``kopilka farcards configure``), checked with the terminal's address allow-list.
``.../room/{function}`` is the second interface, room charge (SPEC P-7): the same two
functions with a room number or a guest's code as the card (``kopilka.farcards.room``).

Every answer is HTTP 200 with FarCards XML: r_keeper shows a failure's text to the
cashier only when it comes as a FarCards reply, so a bad body, an unknown secret or a
refusal is ``Result="1"`` with the reason, never a bare HTTP error. Each failure writes
one log line (without the secret). The body is read up to ``MAX_BODY_BYTES`` and no
further; the work runs in the thread pool, like the JSON routes.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from kopilka.api.deps import engine_of
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.errors import Forbidden, InvalidInput, KopilkaError, NotFound
from kopilka.farcards import room, service
from kopilka.farcards.error_codes import E
from kopilka.farcards.protocol import MAX_BODY_BYTES, parse_card_query, parse_transactions
from kopilka.farcards.terminals import Caller, address_allowed, authenticate
from kopilka.tenancy.schema import tenants

router = APIRouter(prefix="/farcards", tags=["farcards"], include_in_schema=False)
log = logging.getLogger("kopilka.farcards")
XML = "application/xml; charset=utf-8"
FUNCTIONS = {"getcardinfoex": "GetCardInfoEx", "transactionsex": "TransactionsEx"}
Slug = Annotated[str, Path(max_length=64)]
Secret = Annotated[str, Path(max_length=128)]
Name = Annotated[str, Path(max_length=64)]


async def _body(request: Request) -> bytes:
    """The body, refused as soon as it grows past the limit (never read whole)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidInput(E.BODY_TOO_LARGE, "the body is too large", limit=MAX_BODY_BYTES)
        chunks.append(chunk)
    return b"".join(chunks)


def _locale(request: Request, slug: str) -> str:
    """The tenant's language for a reply to a caller not signed in (unknown: Russian)."""
    engine = engine_of(request)
    with read_only(engine) as conn:
        found = conn.execute(tenants.select().where(tenants.c.slug == slug)).first()
    return found.locale if found is not None else "ru"


def _handle(
    request: Request, slug: str, secret: str, function: str, body: bytes | KopilkaError
) -> bytes:
    engine = engine_of(request)
    source_ip = request.client.host if request.client else None
    now = utcnow()
    caller: Caller | None = None
    name = FUNCTIONS.get(function.lower(), function)
    try:
        with read_only(engine) as conn:
            caller = authenticate(conn, tenant_slug=slug, secret=secret)
        # The access log line names who asked.
        request.state.tenant_id = caller.link.tenant_id
        request.state.actor = f"terminal:{caller.link.terminal_id}"
        if not address_allowed(caller.link, source_ip):
            raise Forbidden(E.ADDRESS_NOT_ALLOWED, f"{source_ip} may not call", ip=source_ip)
        if name not in FUNCTIONS.values():
            raise NotFound(E.UNKNOWN_FUNCTION, f"unknown function {function!r}", function=function)
        if isinstance(body, KopilkaError):
            raise body
        if request.scope.get("kopilka_farcards_room"):
            # The hotel's, not loyalty's: answered whether the loyalty module is on or off.
            if name == "GetCardInfoEx":
                query = parse_card_query(body)
                with read_only(engine) as conn:
                    return room.card_info(conn, caller, query)
            return room.post_transactions(engine, caller, body, source_ip=source_ip, now=now)
        if name == "GetCardInfoEx":
            query = parse_card_query(body)
            with read_only(engine) as conn:
                return service.card_info(conn, caller, query, now=now)
        call = parse_transactions(body)
        return service.post_transactions(engine, caller, call, source_ip=source_ip, now=now)
    except KopilkaError as error:
        return _failure(request, slug, caller, name, error)
    except Exception:
        # r_keeper shows nothing useful for an HTTP 500; the cashier gets a reason, the
        # log the traceback, and nothing was written (the transaction rolled back).
        log.exception("farcards failed", extra={"function": name, "tenant": slug})
        internal = KopilkaError(E.INTERNAL, "internal error")
        return _failure(request, slug, caller, name, internal)


def _failure(
    request: Request, slug: str, caller: Caller | None, function: str, error: KopilkaError
) -> bytes:
    log.warning(
        "farcards refused",
        extra={
            "function": function,
            "tenant": slug,
            "terminal_id": caller.link.terminal_id if caller else None,
            "code": error.code,
            "detail": error.detail,
        },
    )
    locale = caller.locale if caller is not None else _locale(request, slug)
    if function == "GetCardInfoEx":
        return service.card_failure(error, locale)
    return service.transactions_failure(error, locale, utcnow())


async def _reply(request: Request, slug: str, secret: str, function: str) -> Response:
    body: bytes | KopilkaError
    try:
        body = await _body(request)
    except KopilkaError as error:
        body = error
    content = await run_in_threadpool(_handle, request, slug, secret, function, body)
    return Response(content, media_type=XML)


@router.post("/{tenant}/{secret}/{function}")
async def farcards(request: Request, tenant: Slug, secret: Secret, function: Name) -> Response:
    """GetCardInfoEx or TransactionsEx of the terminal whose FarCards secret this is."""
    return await _reply(request, tenant, secret, function)


@router.post("/{tenant}/{secret}/room/{function}")
async def room_charge(request: Request, tenant: Slug, secret: Secret, function: Name) -> Response:
    """Room charge (SPEC P-7) over FarCards: the guests of a room, and orders charged to
    a guest's folio (``kopilka.farcards.room``)."""
    request.scope["kopilka_farcards_room"] = True
    return await _reply(request, tenant, secret, function)
