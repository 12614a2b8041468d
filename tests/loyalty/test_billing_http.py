"""The loyalty switch over HTTP (SPEC P-9): off, every POS card request is refused with
``loyalty_module_disabled``; and the owner's export and two-step purge (SPEC C-7)."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.tenancy.actions import create_user, issue_staff_token

from .conftest import Shop

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

_apps: dict[str, Any] = {}
BILLING = "/api/v1/loyalty/billing"

# Every route of the POS gateway, with a request that succeeds while loyalty is on.
POS_REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/pos/cards/lookup?number={card}", None),
    ("POST", "/api/v1/pos/calculate", {"card": "{card}", "lines": ["100.00"]}),
    ("POST", "/api/v1/pos/checks", {"card": "{card}", "lines": ["100.00"], "check_id": "C-2"}),
    ("GET", "/api/v1/pos/checks/C-1", None),
    ("POST", "/api/v1/pos/checks/C-1/refunds", {"refund_id": "R-1", "amount": "10.00"}),
    (
        "POST",
        "/api/v1/pos/batches",
        {"items": [{"check_id": "B-1", "card": "{card}", "lines": ["50.00"]}]},
    ),
]


@pytest.fixture
def client(shop: Shop) -> TestClient:
    url = shop.engine.url.render_as_string(hide_password=False)
    if url not in _apps:
        _apps[url] = create_app(url)
    return TestClient(_apps[url], headers={"Authorization": f"Bearer {shop.terminal_key}"})


@pytest.fixture(scope="module", autouse=True)
def _dispose_apps() -> Any:
    yield
    for app in _apps.values():
        app.state.engine.dispose()
    _apps.clear()


def staff(shop: Shop, role: str = "owner") -> dict[str, str]:
    def make(conn: Any) -> str:
        user = create_user(
            conn,
            tenant_id=shop.tenant.id,
            login=f"{role}-1",
            password="long enough 1",
            role=role,
            actor=shop.actor,
        )
        return issue_staff_token(conn, user=user, actor=shop.actor)[0]

    return {"Authorization": f"Bearer {shop.tx(make)}"}


def call(client: TestClient, method: str, path: str, body: Any, card: str) -> httpx.Response:
    filled = json.loads(json.dumps(body).replace("{card}", card)) if body else None
    return client.request(method, path.replace("{card}", card), json=filled)


def assert_refused(reply: httpx.Response) -> None:
    assert reply.status_code == 403, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert body["code"] == "loyalty_module_disabled"
    assert body["type"] == "urn:kopilka:problem:loyalty_module_disabled"
    assert "switched off" in body["detail"]


@pytest.mark.parametrize(("method", "path", "body"), POS_REQUESTS, ids=lambda v: str(v)[:40])
def test_every_pos_request_is_refused_while_loyalty_is_off(
    shop: Shop, client: TestClient, method: str, path: str, body: Any
) -> None:
    card = shop.card().number
    first = {"card": card, "lines": ["100.00"], "check_id": "C-1"}
    assert client.post("/api/v1/pos/checks", json=first).status_code == 201
    owner = staff(shop)
    assert client.post(f"{BILLING}/disable", headers=owner).json()["enabled"] is False
    assert_refused(call(client, method, path, body, card))

    assert client.post(f"{BILLING}/enable", headers=owner).json()["enabled"] is True
    reply = call(client, method, path, body, card)
    assert reply.status_code in (200, 201), reply.text


# Terminal routes that are no card requests (SPEC P-9 refuses card requests only).
NOT_CARD_REQUESTS = (
    "/api/v1/pos/payment-codes",
    # Room charge (SPEC P-7) is the hotel's, not loyalty's.
    "/api/v1/pos/rooms/",
    "/api/v1/pos/room-charges",
)


def test_no_route_of_the_gateway_escapes_the_switch(shop: Shop, client: TestClient) -> None:
    """Routes added to the gateway later (certificates, FarCards) are refused too."""
    owner = staff(shop)
    client.post(f"{BILLING}/disable", headers=owner)
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    routes = [
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/v1/pos") and not path.startswith(NOT_CARD_REQUESTS)
        for method in operations
    ]
    assert len(routes) >= len(POS_REQUESTS)
    # Payment codes (SPEC P-8) serve room charge and cash as well as points: not refused.
    codes = client.get(NOT_CARD_REQUESTS[0])
    assert codes.status_code == 200 and codes.json() == {"items": []}, codes.text
    for method, path in routes:
        concrete = path.replace("{check_id}", "C-1").replace("{number}", "1")
        concrete = concrete.replace("{refund_id}", "R-1")
        concrete = concrete.replace("{operation_id}", "P-1")
        assert "{" not in concrete, f"give {path} a value in this test"
        assert_refused(client.request(method, concrete, json={}))


def test_billing_is_for_owners(shop: Shop, client: TestClient) -> None:
    admin = staff(shop, "administrator")
    for method, path in (("GET", BILLING), ("POST", f"{BILLING}/disable")):
        reply = client.request(method, path, headers=admin)
        assert reply.status_code == 403 and reply.json()["code"] == "forbidden"
    reply = client.get("/api/v1/pos/cards/lookup?number=1")  # still on: not refused
    assert reply.json()["code"] != "loyalty_module_disabled"


def test_export_then_purge_in_two_steps(shop: Shop, client: TestClient) -> None:
    card = shop.card(holder_name="Ирина").number
    assert (
        client.post(
            "/api/v1/pos/checks", json={"card": card, "lines": ["100.00"], "check_id": "C-1"}
        ).status_code
        == 201
    )
    owner = staff(shop)
    status = client.get(BILLING, headers=owner).json()
    assert status["enabled"] is True and status["rows"]["cards"] == 1

    exported = client.get(f"{BILLING}/export", headers=owner)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/zip"
    assert shop.tenant.slug in exported.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["rows"] == status["total_rows"]
    assert json.loads(archive.read("cards.jsonl"))["number"] == card

    refused = client.post(f"{BILLING}/purge-requests", headers=owner)
    assert refused.status_code == 422 and refused.json()["code"] == "loyalty_still_enabled"
    client.post(f"{BILLING}/disable", headers=owner)
    asked = client.post(f"{BILLING}/purge-requests", headers=owner)
    assert asked.status_code == 201, asked.text
    token = asked.json()["token"]
    assert asked.json()["confirm_with"] == shop.tenant.slug

    wrong = client.post(f"{BILLING}/purge", json={"token": token, "tenant": "demo"}, headers=owner)
    assert wrong.status_code == 422 and wrong.json()["code"] == "purge_not_confirmed"
    body = {"token": token, "tenant": shop.tenant.slug}
    done = client.post(f"{BILLING}/purge", json=body, headers=owner)
    assert done.status_code == 200, done.text
    assert done.json()["removed"]["cards"] == 1
    assert done.json()["total_rows"] == status["total_rows"]
    again = client.post(f"{BILLING}/purge", json=body, headers=owner)
    assert again.status_code == 422 and again.json()["code"] == "purge_request_invalid"
    assert client.get(BILLING, headers=owner).json()["total_rows"] == 0
