"""Request bodies are refused when too long, before they are read whole.

``BodyLimitMiddleware`` sits under the access log (``ObserveMiddleware``) and above
everything else, so no route, form parser or multipart spooler ever holds more than the
limit of one request:

* a ``Content-Length`` above the limit is answered 413 ``body_too_large`` at once, the
  body left unread;
* a body sent without one (chunked) is counted as it arrives, and the first chunk past
  the limit ends the request with the same 413; whatever the application had begun to
  answer is dropped.

The limit is ``KOPILKA_MAX_BODY_BYTES`` (1 MiB by default: a POS check, a form, a
FarCards document are a few kilobytes), and larger for the few routes that take files:
card imports, reconciliation files, offline batches of the POS (and FarCards, which says
it in its protocol's words).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kopilka.api.problems import problem_response
from kopilka.core.errors import CommonErrorCode
from kopilka.loyalty.imports import MAX_FILE_BYTES

MIB = 1024 * 1024
# A multipart envelope around a file: its boundaries, headers and the form's other fields.
ENVELOPE = 64 * 1024

# The routes that take more than the default, each with its own route's limit plus room
# for the envelope; the route itself then says in its own words when a file is too long.
UPLOAD_LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"^/api/v1/loyalty/imports/"), MAX_FILE_BYTES + ENVELOPE),
    (re.compile(r"^/api/v1/loyalty/reconciliation$"), 20 * MIB + ENVELOPE),
    (re.compile(r"^/api/v1/pos/batches$"), 16 * MIB),
    (re.compile(r"^/cards/import$"), 16 * MIB + ENVELOPE),
    (re.compile(r"^/reports/reconciliation$"), 20 * MIB + ENVELOPE),
)
# FarCards counts its documents itself as they arrive, to its own limit, and refuses a
# longer one in its protocol's words, which a station shows to its cashier.
SELF_COUNTED = re.compile(r"^/farcards/")


class _TooLarge(Exception):
    pass


def limit_for(path: str, default: int) -> int:
    for pattern, limit in UPLOAD_LIMITS:
        if pattern.match(path):
            return max(limit, default)
    return default


def too_large(instance: str, limit: int) -> Any:
    return problem_response(
        code=CommonErrorCode.BODY_TOO_LARGE,
        title="Payload too large",
        status=413,
        detail=f"the request's body is longer than {limit} bytes",
        instance=instance,
        limit=limit,
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.default = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if SELF_COUNTED.match(path):
            await self.app(scope, receive, send)
            return
        limit = limit_for(path, self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await too_large(path, limit)(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counted() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the application's answer to a body cut short is not sent
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await too_large(path, limit)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None
