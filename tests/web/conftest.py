"""Web UI tests over HTTP: the real app, real databases, real sessions and CSRF tokens.

``web`` gives the test a tenant of its own with one user of each role (password
``PASSWORD``), and signs people in through the real sign-in form. A signed-in ``Visitor``
sends its CSRF token with every POST, as the pages' forms do. Each visitor has its own
client address, so sign-in throttling by address never spills from one test to another.
"""

from __future__ import annotations

import itertools
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.core.actor import Actor
from kopilka.tenancy.actions import Tenant, User, create_branch, create_tenant, create_user

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx still works and is what we have.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
ROLES = ("owner", "administrator", "cashier", "front_desk")
_apps: dict[str, Any] = {}
_addresses = itertools.count(1)


def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session", autouse=True)
def _dispose_web_apps() -> Iterator[None]:
    yield
    for app in _apps.values():
        app.state.engine.dispose()


def text_of(html: str) -> str:
    """The visible text of a page, whitespace collapsed (for asserting what a person reads)."""
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&nbsp;", " ").strip()


def csrf_of(html: str) -> str:
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "the page carries no CSRF token"
    return match.group(1)


@dataclass
class Visitor:
    """A browser-like client: cookies kept, CSRF token sent with every form."""

    client: TestClient
    csrf: str = ""
    user: User | None = None

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        body = {"csrf_token": self.csrf, **(data or {})}
        kwargs.setdefault("follow_redirects", False)
        return self.client.post(url, data=body, **kwargs)

    def follow(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        return self.get(response.headers["location"])


@dataclass
class Web:
    engine: Engine
    tenant: Tenant
    users: dict[str, User] = field(default_factory=dict)
    branch_id: int = 0

    def app(self) -> Any:
        url = database_url(self.engine)
        if url not in _apps:
            _apps[url] = create_app(url)
        return _apps[url]

    def visitor(self, **headers: str) -> Visitor:
        address = f"10.{next(_addresses) // 250 % 250}.{next(_addresses) % 250}.7"
        client = TestClient(self.app(), client=(address, 50000), headers=headers)
        return Visitor(client)

    def sign_in(self, role: str = "owner", *, locale: str | None = None) -> Visitor:
        headers = {"Accept-Language": locale} if locale else {}
        visitor = self.visitor(**headers)
        form = visitor.get("/login")
        assert form.status_code == 200
        user = self.users[role]
        response = visitor.client.post(
            "/login",
            data={
                "csrf_token": csrf_of(form.text),
                "tenant": self.tenant.slug,
                "login": user.login,
                "password": PASSWORD,
                "next": "/",
            },
            follow_redirects=False,
        )
        assert response.status_code == 303, text_of(response.text)[:500]
        home = visitor.get("/")
        assert home.status_code == 200
        visitor.csrf = csrf_of(home.text)
        visitor.user = user
        return visitor


@pytest.fixture
def web(engine: Engine) -> Web:
    actor = Actor.cli("tests")
    with engine.begin() as conn:
        tenant = create_tenant(
            conn, slug=f"w-{uuid.uuid4().hex[:10]}", name="Гостиница «Берёзка»", actor=actor
        )
        branch_id = create_branch(conn, tenant_id=tenant.id, name="Main building", actor=actor)
        users = {
            role: create_user(
                conn,
                tenant_id=tenant.id,
                login=f"{role.replace('_', '')}1",
                password=PASSWORD,
                role=role,
                full_name=f"{role.title()} Person",
                actor=actor,
            )
            for role in ROLES
        }
    return Web(engine, tenant, users, branch_id)
