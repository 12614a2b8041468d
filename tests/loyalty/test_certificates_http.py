"""Gift certificates over HTTP (SPEC C-9): staff issue, sell, list and block; a terminal
checks the balance, pays and refunds. Errors are problem+json with their codes."""

from __future__ import annotations

import uuid
import warnings
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
STAFF = "/api/v1/certificates"
POS = "/api/v1/pos/certificates"


class Door:
    def __init__(self, shop: Shop) -> None:
        url = shop.engine.url.render_as_string(hide_password=False)
        if url not in _apps:
            _apps[url] = create_app(url)
        self.client = TestClient(_apps[url])
        self.shop = shop
        self.owner = self.token("owner")
        self.terminal = shop.terminal_key

    def token(self, role: str) -> str:
        with self.shop.engine.begin() as conn:
            user = create_user(
                conn,
                tenant_id=self.shop.tenant.id,
                login=f"{role}-{uuid.uuid4().hex[:6]}",
                password="correct horse battery",
                role=role,
                actor=self.shop.actor,
            )
            token, _ = issue_staff_token(conn, user=user, actor=self.shop.actor)
        return token

    def post(
        self, path: str, body: Any = None, *, token: str | None = None, key: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.owner}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post(path, json=body, headers=headers)

    def get(self, path: str, *, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.owner}"}
        return self.client.get(path, headers=headers, params=params)

    def pos_pay(self, number: str, amount: str, operation_id: str) -> httpx.Response:
        body = {"amount": amount, "operation_id": operation_id}
        return self.post(f"{POS}/{number}/payments", body, token=self.terminal)


@pytest.fixture
def door(shop: Shop) -> Door:
    return Door(shop)


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body, dict)
    return body


def test_sell_pay_refund_and_expire_over_http(door: Door) -> None:
    issued = ok(door.post(STAFF, {"number": "5000 0001", "validity_days": 365}), 201)
    assert (issued["number"], issued["status"], issued["balance"]) == ("50000001", "issued", "0.00")
    problem(door.get(f"{POS}/50000001", token=door.terminal), 422, "certificate_not_sold")

    problem(
        door.post(f"{STAFF}/50000001/sale", {"nominal": "3000.00"}), 400, "idempotency_key_required"
    )
    sold = ok(door.post(f"{STAFF}/50000001/sale", {"nominal": "3000.00"}, key="S-1"), 201)
    assert (sold["status"], sold["nominal"], sold["balance"]) == ("active", "3000.00", "3000.00")
    assert sold["expires_at"] is not None
    replay = door.post(f"{STAFF}/50000001/sale", {"nominal": "3000.00"}, key="S-1")
    assert ok(replay) == sold and replay.headers["Idempotent-Replayed"] == "true"
    problem(
        door.post(f"{STAFF}/50000001/sale", {"nominal": "3000.00"}, key="S-2"), 409, "already_sold"
    )

    balance = ok(door.get(f"{POS}/50000001", token=door.terminal))
    assert (balance["balance"], balance["currency"]) == ("3000.00", "RUB")
    first = ok(door.pos_pay("50000001", "1200.00", "P-1"), 201)
    assert (first["amount"], first["balance"]) == ("1200.00", "1800.00")
    again = door.pos_pay("50000001", "1200.00", "P-1")
    assert ok(again) == first and again.headers["Idempotent-Replayed"] == "true"
    problem(door.pos_pay("50000001", "1200.01", "P-1"), 409, "certificate_operation_conflict")
    ok(door.pos_pay("50000001", "1800.00", "P-2"), 201)
    body = problem(door.pos_pay("50000001", "0.01", "P-3"), 422, "insufficient_certificate_balance")
    assert body["available"] == "0.00"

    refund = door.post(
        f"{POS}/50000001/payments/P-2/refunds",
        {"refund_id": "R-1", "amount": "500.00"},
        token=door.terminal,
    )
    assert (ok(refund, 201)["balance"], ok(refund, 201)["payment"]["refunded"]) == (
        "500.00",
        "500.00",
    )
    problem(
        door.post(
            f"{POS}/50000001/payments/P-2/refunds",
            {"refund_id": "R-2", "amount": "1300.01"},
            token=door.terminal,
        ),
        422,
        "refund_too_large",
    )
    problem(
        door.post(f"{POS}/50000001/payments/nope/refunds", {"refund_id": "R"}, token=door.terminal),
        404,
        "certificate_payment_not_found",
    )
    assert ok(door.pos_pay("50000001", "500.00", "P-4"), 201)["balance"] == "0.00"
    door.shop.assert_clean()


def test_staff_issue_a_range_list_it_by_pages_and_block(door: Door) -> None:
    made = ok(
        door.post(
            f"{STAFF}/ranges",
            {"prefix": "77", "first": 1, "last": 5, "width": 6, "check_digit": True},
        ),
        201,
    )
    assert made["count"] == 5 and made["first_number"].startswith("77000001")
    page = ok(door.get(STAFF, limit=3, number="77"))
    assert len(page["items"]) == 3 and page["next_cursor"]
    rest = ok(door.get(STAFF, limit=3, number="77", cursor=page["next_cursor"]))
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    number = page["items"][0]["number"]
    ok(door.post(f"{STAFF}/{number}/sale", {"nominal": "100.00"}, key="S-x"), 201)
    assert [c["number"] for c in ok(door.get(STAFF, status="active"))["items"]] == [number]

    blocked = ok(door.post(f"{STAFF}/{number}/block", {"reason": "потерян"}))
    assert (blocked["status"], blocked["blocked_reason"]) == ("blocked", "потерян")
    problem(door.get(f"{POS}/{number}", token=door.terminal), 422, "certificate_blocked")
    problem(door.pos_pay(number, "1.00", "P-1"), 422, "certificate_blocked")
    assert ok(door.get(f"{STAFF}/{number}"))["status"] == "blocked"
    assert ok(door.post(f"{STAFF}/{number}/unblock"))["status"] == "active"

    # Staff may pay with it at the desk, keyed by the Idempotency-Key.
    paid = ok(door.post(f"{STAFF}/{number}/payments", {"amount": "40.00"}, key="D-1"), 201)
    assert paid["balance"] == "60.00"
    back = door.post(f"{STAFF}/{number}/payments/D-1/refunds", {"refund_id": "R-1"})
    assert ok(back, 201)["balance"] == "100.00"


def test_who_may_do_what(door: Door) -> None:
    ok(door.post(STAFF, {"number": "60000001"}), 201)
    cashier = door.token("cashier")
    problem(door.post(STAFF, {"number": "60000002"}, token=cashier), 403, "forbidden")
    ok(door.post(f"{STAFF}/60000001/sale", {"nominal": "10.00"}, token=cashier, key="k"), 201)
    problem(door.post(f"{STAFF}/60000001/block", {"reason": "x"}, token=cashier), 403, "forbidden")
    problem(door.get(f"{STAFF}/60000001", token=door.terminal), 403, "forbidden")
    problem(door.get(f"{POS}/60000001"), 403, "forbidden")
    problem(door.get(f"{STAFF}/99999999"), 404, "certificate_not_found")
    problem(door.get(f"{STAFF}/12ab"), 422, "invalid_certificate_number")
    problem(door.post(STAFF, {"number": "60000001"}), 409, "certificate_exists")
    problem(
        door.post(f"{STAFF}/60000001/sale", {"nominal": "1.001"}, key="k2"),
        422,
        "amount_too_precise",
    )
