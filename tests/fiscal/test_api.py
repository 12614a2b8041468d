"""Cash registers and receipts over HTTP (SPEC H-6, X-1, X-6): managers configure
registers, hotel staff read and retry receipts, the password never comes back, and
another tenant's ids do not exist."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.core.actor import Actor
from kopilka.fiscal import receipts as rc
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import Tenant, create_tenant
from tests.api.conftest import Api, _owner_api, assert_problem, database_url
from tests.fiscal.atol_server import AtolStandIn
from tests.fiscal.conftest import payload

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx still works and is what we have.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

REGISTERS = "/api/v1/cash-registers"
RECEIPTS = "/api/v1/receipts"
_apps: dict[str, Any] = {}


@pytest.fixture(scope="session", autouse=True)
def _dispose_fiscal_apps() -> Iterator[None]:
    yield
    for app in _apps.values():
        app.state.engine.dispose()


def _client(engine: Engine) -> TestClient:
    url = database_url(engine)
    if url not in _apps:
        _apps[url] = create_app(url)
    return TestClient(_apps[url])


@pytest.fixture
def api(engine: Engine, tenant: Tenant, actor: Actor) -> Api:
    return _owner_api(_client(engine), engine, tenant, actor)


@pytest.fixture
def other(engine: Engine, actor: Actor) -> Api:
    with engine.begin() as conn:
        tenant = create_tenant(
            conn, slug=f"o-{uuid.uuid4().hex[:12]}", name="Other tenant", actor=actor
        )
    return _owner_api(_client(engine), engine, tenant, actor)


def patch(api: Api, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    return api.client.patch(
        path, json=body, headers={"Authorization": f"Bearer {token or api.token}"}
    )


def add_register(api: Api, atol: AtolStandIn, name: str = "Ресепшен", **settings: Any) -> Any:
    body = {"name": name, "settings": atol.register_settings(**settings)}
    return api.post(REGISTERS, body)


def ask(api: Api, register_id: int, source_id: int) -> rc.ReceiptView:
    return run_transaction(
        api.engine,
        lambda conn: rc.request_receipt(
            conn,
            tenant_id=api.tenant.id,
            register_id=register_id,
            operation="sell",
            source_type="hotel_payment",
            source_id=source_id,
            payload=payload(),
            email="guest@example.ru",
            phone=None,
            actor=Actor.cli("tests"),
        ),
    )


def test_registers_are_added_read_and_changed_and_the_password_never_shown(
    api: Api, atol: AtolStandIn
) -> None:
    reply = add_register(api, atol)
    made = api.ok(reply, 201)
    assert atol.password not in reply.text
    assert made["name"] == "Ресепшен" and made["enabled"] is True
    assert made["adapter"] == "atol_online_v5"
    assert made["settings"]["password_set"] is True and "password" not in made["settings"]
    assert made["settings"]["inn"] == "5544332219"
    assert api.ok(api.get(f"{REGISTERS}/{made['id']}")) == made
    assert api.ok(api.get(REGISTERS))["items"] == [made]

    changed = patch(
        api, f"{REGISTERS}/{made['id']}", {"name": "Касса 2", "settings": {"sno": "osn"}}
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["name"] == "Касса 2" and body["settings"]["sno"] == "osn"
    assert body["settings"]["password_set"] is True
    off = api.ok(patch(api, f"{REGISTERS}/{made['id']}", {"enabled": False}))
    assert off["enabled"] is False


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"settings": {"inn": "1234567890"}}, 422, "invalid_register_setting"),
        ({"settings": {"base_url": "gopher://x"}}, 422, "invalid_register_setting"),
        ({"settings": {"sno": "envd"}}, 422, "invalid_request"),
        ({"settings": {"token": "x"}}, 422, "invalid_request"),
        ({"name": None}, 422, "invalid_cash_register"),
        ({"name": "Бар"}, 409, "cash_register_exists"),
    ],
)
def test_bad_changes_are_refused_with_their_codes(
    api: Api, atol: AtolStandIn, change: dict[str, Any], status: int, code: str
) -> None:
    api.ok(add_register(api, atol, "Бар"), 201)
    made = api.ok(add_register(api, atol), 201)
    problem = assert_problem(patch(api, f"{REGISTERS}/{made['id']}", change), status, code)
    if code == "invalid_register_setting":
        assert problem["field"] in ("inn", "base_url")


def test_a_new_register_needs_its_settings(api: Api, atol: AtolStandIn) -> None:
    problem = assert_problem(add_register(api, atol, password=""), 422, "invalid_register_setting")
    assert problem["field"] == "password"
    assert api.ok(api.get(REGISTERS))["items"] == []


def test_roles_managers_configure_hotel_staff_read_and_retry(api: Api, atol: AtolStandIn) -> None:
    register = api.ok(add_register(api, atol), 201)
    receipt = ask(api, register["id"], 1)
    admin, cashier, front = (api.staff_token(r) for r in ("administrator", "cashier", "front_desk"))
    assert api.get(REGISTERS, token=admin).status_code == 200
    for token in (cashier, front):
        assert_problem(api.get(REGISTERS, token=token), 403, "forbidden")
        assert_problem(
            patch(api, f"{REGISTERS}/{register['id']}", {"enabled": False}, token), 403, "forbidden"
        )
    assert_problem(api.get(RECEIPTS, token=cashier), 403, "forbidden")
    assert api.ok(api.get(RECEIPTS, token=front))["items"][0]["id"] == receipt.id
    retried = api.ok(api.post(f"{RECEIPTS}/{receipt.id}/retry", token=front))
    assert retried["status"] == "wait"
    _, terminal_key = api.terminal_key()
    assert_problem(api.get(RECEIPTS, token=terminal_key), 403, "forbidden")


def test_receipts_are_listed_by_pages_read_and_retried(api: Api, atol: AtolStandIn) -> None:
    register = api.ok(add_register(api, atol, password="wrong"), 201)
    first, second = ask(api, register["id"], 1), ask(api, register["id"], 2)
    failed = rc.send_receipt(api.engine, api.tenant.id, first.id)
    assert failed.status == "failed"

    page = api.ok(api.get(RECEIPTS, params={"limit": 1}))
    assert [r["id"] for r in page["items"]] == [first.id]
    rest = api.ok(api.get(RECEIPTS, params={"limit": 1, "cursor": page["next_cursor"]}))
    assert [r["id"] for r in rest["items"]] == [second.id] and rest["next_cursor"] is None
    only_failed = api.ok(api.get(RECEIPTS, params={"status": "failed"}))["items"]
    assert [r["id"] for r in only_failed] == [first.id]
    by_source = api.ok(api.get(RECEIPTS, params={"source_type": "hotel_payment", "source_id": 2}))
    assert [r["id"] for r in by_source["items"]] == [second.id]
    assert_problem(api.get(RECEIPTS, params={"status": "lost"}), 422, "invalid_request")

    shown = api.ok(api.get(f"{RECEIPTS}/{first.id}"))
    assert shown["status"] == "failed" and "Неверный логин или пароль" in shown["last_error"]
    assert (shown["total"], shown["unit"]) == ("3500.00", "RUB")
    assert shown["items"][0]["price"] == "3500.00" and shown["items"][0]["quantity"] == "1.000"
    assert shown["payments"] == [{"kind": "card", "amount": "3500.00"}]
    assert shown["email"] == "guest@example.ru" and shown["fiscal"] is None

    fixed = patch(api, f"{REGISTERS}/{register['id']}", {"settings": {"password": atol.password}})
    assert fixed.status_code == 200
    retried = api.ok(api.post(f"{RECEIPTS}/{first.id}/retry"))
    assert retried["status"] == "wait" and retried["external_id"].endswith("-r2")
    assert retried["provider_uuid"] in atol.documents
    api.ok(api.post(f"{RECEIPTS}/{first.id}/retry"))  # asked about: wait
    done = api.ok(api.post(f"{RECEIPTS}/{first.id}/retry"))
    assert done["status"] == "done" and done["fiscal"]["fn_number"]
    assert_problem(api.post(f"{RECEIPTS}/{first.id}/retry"), 422, "receipt_not_retryable")


def test_another_tenants_registers_and_receipts_do_not_exist(
    api: Api, other: Api, atol: AtolStandIn
) -> None:
    register = api.ok(add_register(api, atol), 201)
    receipt = ask(api, register["id"], 1)
    assert_problem(other.get(f"{REGISTERS}/{register['id']}"), 404, "cash_register_not_found")
    assert_problem(
        patch(other, f"{REGISTERS}/{register['id']}", {"enabled": False}),
        404,
        "cash_register_not_found",
    )
    assert other.ok(other.get(REGISTERS))["items"] == []
    assert other.ok(other.get(RECEIPTS))["items"] == []
    assert_problem(other.get(f"{RECEIPTS}/{receipt.id}"), 404, "receipt_not_found")
    assert_problem(other.post(f"{RECEIPTS}/{receipt.id}/retry"), 404, "receipt_not_found")
    assert api.ok(api.get(f"{REGISTERS}/{register['id']}"))["enabled"] is True


def test_the_routes_are_in_the_openapi_document(api: Api) -> None:
    paths = api.ok(api.client.get("/api/v1/openapi.json"))["paths"]
    for path in (
        REGISTERS,
        REGISTERS + "/{register_id}",
        RECEIPTS,
        RECEIPTS + "/{receipt_id}",
        RECEIPTS + "/{receipt_id}/retry",
    ):
        assert path in paths, sorted(paths)
