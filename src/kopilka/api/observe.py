"""Around every request: a request id, one JSON access-log line, Prometheus metrics, and
the last-resort 500.

This is a plain ASGI middleware, the outermost layer, so it sees the final status of
every reply (including the problem replies made by the handlers inside it) and catches
whatever escaped them: such an error is logged with its traceback and answered with a
500 ``internal_error`` problem that carries no trace of it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kopilka.api.problems import internal_error

access_log = logging.getLogger("kopilka.api.access")
error_log = logging.getLogger("kopilka.api")

REQUEST_ID_HEADER = "x-request-id"
_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Unmatched paths share one label, so a scanner cannot blow up the series count.
UNMATCHED = "<unmatched>"


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    postings: Counter

    @classmethod
    def create(cls) -> Metrics:
        # A registry per app: tests build many apps in one process.
        registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        return cls(
            registry=registry,
            requests=Counter(
                "kopilka_http_requests",
                "HTTP requests by method, route template and status",
                labels,
                registry=registry,
            ),
            latency=Histogram(
                "kopilka_http_request_duration_seconds",
                "HTTP request latency by method, route template and status",
                labels,
                registry=registry,
            ),
            postings=Counter(
                "kopilka_ledger_postings",
                "Ledger transfers posted through the API (replays not counted), by kind",
                ("kind",),
                registry=registry,
            ),
        )


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                # No reply is ever to be sniffed into another type (the web's pages set
                # it among their security headers already).
                if not any(name == b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            error_log.exception(
                "unhandled error",
                extra={"request_id": request_id, "path": _loggable(str(scope.get("path", "")))},
            )
            if response_started:
                raise
            status = 500
            await internal_error(str(scope.get("path", "")))(scope, receive, send_wrapper)
        finally:
            self._record(scope, state, request_id, status, time.perf_counter() - started)

    def _record(
        self, scope: Scope, state: dict[str, Any], request_id: str, status: int, seconds: float
    ) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        method = str(scope.get("method", ""))
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.latency.labels(method, template, str(status)).observe(seconds)
        client = scope.get("client")
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "path": _loggable(str(scope.get("path", ""))),
                "route": template,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "tenant_id": state.get("tenant_id"),
                "actor": state.get("actor"),
                "client_ip": client[0] if client else None,
            },
        )


# FarCards carries a terminal's secret in its URL (ExtDllHttp.ini has no header for it).
_SECRET_IN_PATH = re.compile(r"^(/farcards/[^/]+/)[^/]+")


def _loggable(path: str) -> str:
    """The path as logged: a secret in it replaced by ``***``."""
    return _SECRET_IN_PATH.sub(r"\1***", path)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1")
            if _GOOD_REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex
