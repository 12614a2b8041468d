"""Operations and the API's own plumbing: health, readiness, metrics, logs, OpenAPI, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy import Engine

from kopilka.api.app import create_app
from kopilka.core.logging import JsonFormatter
from tests.api.conftest import Api, TestClient, assert_problem, bearer, database_url


def test_health_is_always_ok_and_ready_when_migrated(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})


def test_not_ready_when_the_schema_is_behind(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path / 'empty.db'}")
    client = TestClient(app)
    assert client.get("/healthz").status_code == 200
    body = assert_problem(client.get("/readyz"), 503, "service_unavailable")
    assert "migration" in body["detail"]
    app.state.engine.dispose()


def test_an_unreachable_database_is_503_not_500() -> None:
    app = create_app("postgresql://nobody@127.0.0.1:9/nowhere?connect_timeout=2")
    client = TestClient(app)
    assert client.get("/healthz").status_code == 200
    assert_problem(client.get("/readyz"), 503, "service_unavailable")
    reply = client.get("/api/v1/accounts", headers=bearer("kps_anything"))
    assert_problem(reply, 503, "service_unavailable")
    assert reply.headers["retry-after"]
    # A person gets a page in their language, with the same status.
    page = client.get("/cards", headers={"Accept-Language": "ru", "Cookie": "kopilka_session=x"})
    assert page.status_code == 503 and page.headers["retry-after"]
    assert "text/html" in page.headers["content-type"]
    assert "Копилка ненадолго недоступна" in page.text
    login = client.get("/login", headers={"Accept-Language": "en"})
    assert login.status_code in (200, 503)  # the sign-in form needs no database
    app.state.engine.dispose()


def test_an_unexpected_error_is_a_bare_500(engine: Engine) -> None:
    app = create_app(database_url(engine))

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    records = capture("kopilka.api")
    try:
        reply = TestClient(app).get("/api/v1/boom")
    finally:
        release("kopilka.api")
    body = assert_problem(reply, 500, "internal_error")
    assert body["instance"] == "/api/v1/boom"
    assert "secret" not in reply.text and "Traceback" not in reply.text
    assert reply.headers["x-request-id"]
    logged = [JsonFormatter().format(r) for r in records if r.levelno >= logging.ERROR]
    assert any("secret internals" in line and "Traceback" in line for line in logged)
    app.state.engine.dispose()


_handlers: dict[str, logging.Handler] = {}  # logger name -> collector


def capture(logger: str) -> list[logging.LogRecord]:
    """Collect what ``logger`` emits until ``release``."""
    handler = _Collector()
    logging.getLogger(logger).addHandler(handler)
    _handlers[logger] = handler
    return handler.records


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def release(logger: str) -> None:
    logging.getLogger(logger).removeHandler(_handlers.pop(logger))


def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    assert_problem(api.client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_problem(api.client.delete("/api/v1/units", headers=api.auth), 405, "method_not_allowed")
    broken = api.client.post(
        "/api/v1/units",
        content=b"{not json",
        headers={**api.auth, "content-type": "application/json"},
    )
    assert_problem(broken, 422, "invalid_request")
    # Bodies the framework cannot read at all were a bare 400 `http_400` (schemathesis).
    not_utf8 = api.client.post(
        "/api/v1/units",
        content=b'{"code": "\xff\xfe"}',
        headers={**api.auth, "content-type": "application/json"},
    )
    assert assert_problem(not_utf8, 422, "invalid_request")["errors"][0]["field"] == "body"
    torn = api.client.post(
        "/api/v1/loyalty/reconciliation",
        content=b"--x\r\n1971--x--\r\n",
        headers={**api.auth, "content-type": "multipart/form-data; boundary=x"},
    )
    assert_problem(torn, 422, "invalid_request")
    huge = api.client.get("/api/v1/accounts/99999999999999999999", headers=api.auth)
    assert_problem(huge, 422, "invalid_request")
    source, wallet = api.funded("5.00")
    nul = {"debit_account_id": wallet, "credit_account_id": source, "amount": "1"}
    reply = api.post("/api/v1/transfers", {**nul, "description": "a\x00b"}, key="nul")
    # SQLite stores it; PostgreSQL cannot, and that is the request's fault, never a 500.
    assert reply.status_code in (201, 422), reply.text


def test_requests_are_counted_timed_and_logged(api: Api) -> None:
    records = capture("kopilka.api.access")
    try:
        _source, wallet = api.funded("5.00")
        reply = api.client.get(
            f"/api/v1/accounts/{wallet}", headers={**api.auth, "X-Request-ID": "req-42"}
        )
    finally:
        release("kopilka.api.access")
    assert reply.headers["x-request-id"] == "req-42"
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "req-42"
    assert line["method"] == "GET" and line["status"] == 200
    assert line["path"] == f"/api/v1/accounts/{wallet}"
    assert line["route"] == "/api/v1/accounts/{account_id}"
    assert line["tenant_id"] == api.tenant.id and line["actor"].startswith("user:")
    assert isinstance(line["duration_ms"], float)
    generated = api.client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32

    metrics = api.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert (
        'kopilka_http_requests_total{method="GET",route="/api/v1/accounts/{account_id}",'
        'status="200"}' in text
    )
    assert "kopilka_http_request_duration_seconds_bucket" in text
    assert 'kopilka_ledger_postings_total{kind="transfer"}' in text


def test_the_openapi_document_lists_the_api(api: Api) -> None:
    reply = api.client.get("/api/v1/openapi.json")
    assert reply.status_code == 200
    document = reply.json()
    paths = document["paths"]
    for path in (
        "/api/v1/auth/token",
        "/api/v1/units",
        "/api/v1/accounts",
        "/api/v1/accounts/{account_id}",
        "/api/v1/accounts/{account_id}/credit-limit",
        "/api/v1/accounts/{account_id}/balance",
        "/api/v1/accounts/{account_id}/entries",
        "/api/v1/accounts/{account_id}/turnovers",
        "/api/v1/turnovers",
        "/api/v1/transfers",
        "/api/v1/transfers/{transfer_id}",
        "/api/v1/transfers/{transfer_id}/reverse",
        "/api/v1/holds",
        "/api/v1/holds/{hold_id}",
        "/api/v1/holds/{hold_id}/capture",
        "/api/v1/holds/{hold_id}/void",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    post = paths["/api/v1/transfers"]["post"]
    assert "application/problem+json" in post["responses"]["409"]["content"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    assert "Problem" in document["components"]["schemas"]
    assert "bearer" in document["components"]["securitySchemes"]
    docs = api.client.get("/api/docs")
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text
    # "/" is the web UI: a visitor without a session is sent to sign in.
    home = api.client.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"].startswith("/login")
    assert not any(p == "/" or p.startswith(("/login", "/settings")) for p in paths)
