"""The POS gateway over HTTP with a terminal key (SPEC P-1..P-5, X-6)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.tenancy.actions import create_user, issue_staff_token

from .conftest import Shop

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

_apps: dict[str, Any] = {}


@pytest.fixture
def client(shop: Shop) -> TestClient:
    url = shop.engine.url.render_as_string(hide_password=False)
    if url not in _apps:
        _apps[url] = create_app(url)
    return TestClient(_apps[url], headers={"Authorization": f"Bearer {shop.terminal_key}"})


def test_lookup_calculate_commit_refund(shop: Shop, client: TestClient) -> None:
    card = shop.card(holder_name="Ирина Петрова", holder_phone="+79161234567")
    found = client.get("/api/v1/pos/cards/lookup", params={"phone": "8 916 123-45-67"})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["number"] == card.number and body["holder_name"] == "Ирина Петрова"
    assert (body["balance"], body["available"], body["unit"]) == ("0.00", "0.00", "BONUS")
    assert (body["accrual_percent"], body["tier"]) == ("3.00", None)

    check = {"card": card.number, "lines": ["600.00", "400.00"], "total": "1000.00"}
    quote = client.post("/api/v1/pos/calculate", json=check)
    assert quote.status_code == 200, quote.text
    assert (quote.json()["due"], quote.json()["accrual"]) == ("1000.00", "30.00")

    committed = client.post("/api/v1/pos/checks", json={**check, "check_id": "1001"})
    assert committed.status_code == 201, committed.text
    assert committed.json()["accrued"] == "30.00"
    replay = client.post("/api/v1/pos/checks", json={**check, "check_id": "1001"})
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    conflict = client.post(
        "/api/v1/pos/checks", json={**check, "check_id": "1001", "lines": ["1000.00"]}
    )
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "check_conflict"
    assert conflict.headers["content-type"].startswith("application/problem+json")

    half = client.post(
        "/api/v1/pos/checks/1001/refunds", json={"refund_id": "R1", "amount": "500.00"}
    )
    assert half.status_code == 201, half.text
    assert (half.json()["accrual_reversed"], half.json()["check"]["status"]) == (
        "15.00",
        "partly_refunded",
    )
    too_much = client.post(
        "/api/v1/pos/checks/1001/refunds", json={"refund_id": "R2", "amount": "500.01"}
    )
    assert too_much.status_code == 422 and too_much.json()["code"] == "refund_too_large"
    assert (
        client.get("/api/v1/pos/cards/lookup", params={"number": card.number}).json()["balance"]
        == "15.00"
    )
    # The return rolled back: the refund is taken back, once.
    undone = client.post("/api/v1/pos/checks/1001/refunds/R1/cancel")
    assert undone.status_code == 200, undone.text
    assert (undone.json()["accrual_reversed"], undone.json()["check"]["status"]) == (
        "15.00",
        "committed",
    )
    again = client.post("/api/v1/pos/checks/1001/refunds/R1/cancel")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (
        client.get("/api/v1/pos/cards/lookup", params={"number": card.number}).json()["balance"]
        == "30.00"
    )
    unknown = client.post("/api/v1/pos/checks/1001/refunds/R9/cancel")
    assert unknown.status_code == 404 and unknown.json()["code"] == "refund_not_found"


def test_bad_input_gets_its_own_code(shop: Shop, client: TestClient) -> None:
    card = shop.card()
    cases = [
        ({"card": card.number, "lines": ["10.001"]}, "amount_too_precise"),
        ({"card": card.number, "lines": ["100.00"], "total": "99.00"}, "check_lines_mismatch"),
        ({"card": "123456789", "lines": ["100.00"]}, "card_not_found"),
        ({"card": card.number, "lines": ["100.00"], "points": "1.00"}, "insufficient_points"),
    ]
    for n, (check, code) in enumerate(cases):
        reply = client.post("/api/v1/pos/checks", json={**check, "check_id": f"bad-{n}"})
        assert reply.json().get("code") == code, (check, reply.text)
    unknown = client.post("/api/v1/pos/checks/nope/refunds", json={"refund_id": "x"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "check_not_found"


def test_only_terminals_use_the_gateway(shop: Shop, client: TestClient) -> None:
    def staff_token(conn):  # type: ignore[no-untyped-def]
        user = create_user(
            conn,
            tenant_id=shop.tenant.id,
            login="cashier9",
            password="long enough 1",
            role="cashier",
            actor=shop.actor,
        )
        return issue_staff_token(conn, user=user, actor=shop.actor)[0]

    token = shop.tx(staff_token)
    reply = client.get(
        "/api/v1/pos/cards/lookup",
        params={"number": "1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 403


def test_an_offline_batch_over_http(shop: Shop, client: TestClient) -> None:
    card = shop.card()
    items = [
        {"check_id": "B-1", "card": card.number, "lines": ["1000.00"]},
        {"check_id": "B-2", "card": card.number, "lines": ["abc"]},
        {"check_id": "B-3", "card": card.number, "lines": ["60.00"], "points": "40.00"},
        {"check_id": "B-4", "lines": ["1.00"]},
    ]
    reply = client.post("/api/v1/pos/batches", json={"items": items})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["applied"], body["duplicates"], body["refused"]) == (2, 0, 2)
    by_id = {item["check_id"]: item for item in body["items"]}
    assert by_id["B-2"]["code"] == "invalid_amount"
    assert by_id["B-4"]["code"] == "invalid_check"
    # B-3 took 40.00 points; the card had the 30.00 B-1 accrued: 10.00 is its debt.
    assert by_id["B-3"]["debt"] == "10.00"
    again = client.post("/api/v1/pos/batches", json={"items": items}).json()
    assert (again["applied"], again["duplicates"]) == (0, 2)
    card_now = client.get("/api/v1/pos/cards/lookup", params={"number": card.number}).json()
    assert card_now["debt"] == "10.00"


def test_staff_see_the_cards_that_owe_points(shop: Shop, client: TestClient) -> None:
    card = shop.card(holder_name="Олег")
    client.post(
        "/api/v1/pos/batches",
        json={
            "items": [
                {"check_id": "D-1", "card": card.number, "lines": ["50.00"], "points": "5.00"}
            ]
        },
    )

    def owner_token(conn):  # type: ignore[no-untyped-def]
        user = create_user(
            conn,
            tenant_id=shop.tenant.id,
            login="owner9",
            password="long enough 1",
            role="owner",
            actor=shop.actor,
        )
        return issue_staff_token(conn, user=user, actor=shop.actor)[0]

    staff = {"Authorization": f"Bearer {shop.tx(owner_token)}"}
    debts = client.get("/api/v1/loyalty/debts", headers=staff)
    assert debts.status_code == 200, debts.text
    assert debts.json()["items"] == [
        {
            "card": card.number,
            "holder_name": "Олег",
            "holder_phone": None,
            "program": "Бонусы",
            "debt": "5.00",
            "unit": "BONUS",
        }
    ]
    assert client.get("/api/v1/loyalty/debts").status_code == 403  # a terminal's key


def test_a_check_says_how_its_money_was_paid(shop: Shop, client: TestClient) -> None:
    from .test_check_payments import setup_types

    types = setup_types(shop)
    card = shop.card()
    codes = client.get("/api/v1/pos/payment-codes").json()["items"]
    assert {c["code"] for c in codes} == {"1", "2", "7"}
    check = {
        "card": card.number,
        "lines": ["600.00", "400.00"],
        "check_id": "PAY-1",
        "payments": [{"code": "1", "amount": "250.00"}, {"code": "2", "amount": "750.00"}],
    }
    committed = client.post("/api/v1/pos/checks", json=check)
    assert committed.status_code == 201, committed.text
    assert committed.json()["payments"] == [
        {
            "code": "1",
            "payment_type_id": types["cash"],
            "payment_type": "Наличные",
            "kind": "cash",
            "amount": "250.00",
        },
        {
            "code": "2",
            "payment_type_id": types["card"],
            "payment_type": "Карта",
            "kind": "card",
            "amount": "750.00",
        },
    ]
    assert client.get("/api/v1/pos/checks/PAY-1").json()["payments"] == committed.json()["payments"]
    short = client.post(
        "/api/v1/pos/checks",
        json={**check, "check_id": "PAY-2", "payments": [{"code": "1", "amount": "999.99"}]},
    )
    assert short.status_code == 422 and short.json()["code"] == "payments_mismatch"
    unknown = client.post(
        "/api/v1/pos/checks",
        json={**check, "check_id": "PAY-3", "payments": [{"code": "X", "amount": "1000.00"}]},
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_payment_code"
