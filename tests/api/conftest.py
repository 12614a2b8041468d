"""HTTP tests: the real app on the real databases (SQLite and PostgreSQL), no mocks.

One app per database for the whole session (``create_app`` builds an engine and a pool);
each test gets its own tenant, so tests never see each other's rows. ``Api`` wraps a
client with the tenant's owner token and a few verbs that read like the examples.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.core.actor import Actor
from kopilka.tenancy.actions import (
    Tenant,
    create_tenant,
    create_terminal,
    create_user,
    issue_staff_token,
)

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx still works and is what we have.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
_apps: dict[str, Any] = {}
_keys = itertools.count(1)


def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def client(engine: Engine) -> TestClient:
    url = database_url(engine)
    if url not in _apps:
        _apps[url] = create_app(url)
    return TestClient(_apps[url])


@pytest.fixture(scope="session", autouse=True)
def _dispose_apps() -> Iterator[None]:
    yield
    for app in _apps.values():
        app.state.engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_key() -> str:
    return f"test-{uuid.uuid4().hex[:8]}-{next(_keys)}"


@dataclass
class Api:
    """The tenant's owner talking to the API, plus ways to make other callers."""

    client: TestClient
    engine: Engine
    tenant: Tenant
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers=bearer(token or self.token), **kwargs)

    def post(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        headers = bearer(token or self.token)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post(path, json=body, headers=headers)

    def ok(self, response: httpx.Response, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, response.text
        data = response.json()
        assert isinstance(data, dict)
        return data

    # --- callers

    def staff_token(self, role: str) -> str:
        with self.engine.begin() as conn:
            user = create_user(
                conn,
                tenant_id=self.tenant.id,
                login=f"{role}-{uuid.uuid4().hex[:6]}",
                password=PASSWORD,
                role=role,
                actor=Actor.cli("tests"),
            )
            token, _ = issue_staff_token(conn, user=user, actor=Actor.cli("tests"))
        return token

    def terminal_key(self) -> tuple[int, str]:
        with self.engine.begin() as conn:
            terminal, key = create_terminal(
                conn,
                tenant_id=self.tenant.id,
                name=f"till-{uuid.uuid4().hex[:6]}",
                actor=Actor.cli("tests"),
            )
        return terminal.id, key

    # --- ledger verbs

    def account(self, unit: str = "RUB", policy: str = "non_negative", **fields: Any) -> int:
        body = {"unit": unit, "kind": fields.pop("kind", "wallet"), "policy": policy, **fields}
        return int(self.ok(self.post("/api/v1/accounts", body), 201)["id"])

    def source(self, unit: str = "RUB") -> int:
        """An unlimited account to fund others from (the business's own money)."""
        return self.account(unit, "unlimited", kind="system")

    def transfer(self, debit: int, credit: int, amount: str, **fields: Any) -> dict[str, Any]:
        body = {"debit_account_id": debit, "credit_account_id": credit, "amount": amount}
        return self.ok(self.post("/api/v1/transfers", {**body, **fields}, key=new_key()), 201)

    def balance(self, account_id: int) -> str:
        return str(self.ok(self.get(f"/api/v1/accounts/{account_id}"))["balance"])

    def funded(self, amount: str, unit: str = "RUB", **fields: Any) -> tuple[int, int]:
        """A source and a wallet holding ``amount``."""
        source = self.source(unit)
        wallet = self.account(unit, **fields)
        self.transfer(source, wallet, amount)
        return source, wallet


def _owner_api(client: TestClient, engine: Engine, tenant: Tenant, actor: Actor) -> Api:
    with engine.begin() as conn:
        owner = create_user(
            conn,
            tenant_id=tenant.id,
            login="owner",
            password=PASSWORD,
            role="owner",
            actor=actor,
        )
        token, _ = issue_staff_token(conn, user=owner, actor=actor)
    return Api(client, engine, tenant, token)


@pytest.fixture
def api(client: TestClient, engine: Engine, tenant: Tenant, actor: Actor) -> Api:
    """The owner of this test's tenant."""
    return _owner_api(client, engine, tenant, actor)


@pytest.fixture
def other(client: TestClient, engine: Engine, actor: Actor) -> Api:
    """The owner of a second tenant, for isolation tests."""
    with engine.begin() as conn:
        tenant = create_tenant(
            conn, slug=f"o-{uuid.uuid4().hex[:12]}", name="Other tenant", actor=actor
        )
    return _owner_api(client, engine, tenant, actor)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The reply is an RFC 9457 problem with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    assert body["type"] == f"urn:kopilka:problem:{code}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    assert isinstance(body, dict)
    return body
