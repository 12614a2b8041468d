"""Bodies longer than the limit are refused before they are read whole (issue 9).

The application is driven through ASGI directly, with a ``receive`` that counts what it
hands out: so "before it is read" is measured, not assumed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kopilka.api.limits import limit_for
from kopilka.core.settings import get_settings

from .conftest import Api

CHUNK = 64 * 1024


class Sent:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""


def drive(
    app: FastAPI,
    path: str,
    *,
    total: int,
    declared: bool,
    headers: dict[str, str] | None = None,
) -> tuple[Sent, int]:
    """POST ``total`` bytes to ``path``; the reply and how many bytes the app pulled."""
    pulled = 0
    remaining = total
    raw = [(b"content-type", b"application/json"), (b"host", b"testserver")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if declared:
        raw.append((b"content-length", str(total).encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        nonlocal pulled, remaining
        if remaining <= 0:
            await asyncio.sleep(3600)  # a client that sent all: the app waits for nothing
        size = min(CHUNK, remaining)
        remaining -= size
        pulled += size
        return {"type": "http.request", "body": b"x" * size, "more_body": remaining > 0}

    sent = Sent()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]
            sent.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            sent.body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return sent, pulled


@pytest.fixture
def app(client: TestClient) -> FastAPI:
    return client.app  # type: ignore[return-value]


def test_a_declared_length_above_the_limit_is_refused_unread(app: FastAPI) -> None:
    limit = get_settings().max_body_bytes
    sent, pulled = drive(app, "/api/v1/transfers", total=limit * 50, declared=True)
    assert sent.status == 413
    assert pulled == 0
    problem = json.loads(sent.body)
    assert problem["code"] == "body_too_large" and problem["limit"] == limit
    assert sent.headers["content-type"] == "application/problem+json"
    assert sent.headers["x-content-type-options"] == "nosniff"


def test_a_body_without_its_length_is_cut_at_the_limit(app: FastAPI) -> None:
    limit = get_settings().max_body_bytes
    sent, pulled = drive(app, "/api/v1/transfers", total=limit * 50, declared=False)
    assert sent.status == 413, sent.body
    assert json.loads(sent.body)["code"] == "body_too_large"
    assert pulled <= limit + CHUNK  # one chunk past the limit, never the whole body


def test_web_forms_are_cut_too(app: FastAPI) -> None:
    limit = get_settings().max_body_bytes
    for path in ("/login", "/buy/somewhere/1", "/cabinet/somewhere/login"):
        sent, pulled = drive(app, path, total=limit * 10, declared=False)
        # Cut at the limit, or refused for another reason before the body was read.
        assert sent.status in (403, 404, 413), (path, sent.status)
        assert pulled <= limit + CHUNK, path


def test_routes_that_take_files_have_room_for_them(app: FastAPI, api: Api) -> None:
    # An offline batch of 2 MiB is within its route's limit: the route reads it and
    # answers about its content (not JSON), not about its length.
    key = api.terminal_key()[1]
    sent, pulled = drive(
        app,
        "/api/v1/pos/batches",
        total=2 * 1024 * 1024,
        declared=True,
        headers={"authorization": f"Bearer {key}"},
    )
    assert sent.status == 422, sent.body[:300]
    assert pulled == 2 * 1024 * 1024
    assert limit_for("/api/v1/pos/batches", 1) > 2 * 1024 * 1024
    assert limit_for("/api/v1/pos/checks", 1024) == 1024


def test_a_body_within_the_limit_is_read_and_judged_on_its_content(api: Api) -> None:
    body = json.dumps({"entries": [], "padding": "x" * 500_000})
    response = api.client.post(
        "/api/v1/transfers",
        content=body,
        headers={
            **api.auth,
            "Idempotency-Key": "long-but-allowed",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_length_that_only_looks_like_digits_is_no_length() -> None:
    # "¹".isdigit() is true, int("¹") fails: such a header is read as no length at all.
    from kopilka.api.limits import _content_length

    assert _content_length({"headers": [(b"content-length", "¹".encode("latin-1"))]}) is None
    assert _content_length({"headers": [(b"content-length", b"12")]}) == 12
