"""Holds through HTTP: reserve, capture (partly), void, lapse; every refusal by its code."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from kopilka.core.clock import utcnow
from tests.api.conftest import Api, assert_problem, new_key


def hold_body(debit: int, credit: int, amount: str, **fields: Any) -> dict[str, Any]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, **fields}


def place(api: Api, debit: int, credit: int, amount: str, **fields: Any) -> dict[str, Any]:
    reply = api.post("/api/v1/holds", hold_body(debit, credit, amount, **fields), key=new_key())
    return api.ok(reply, 201)


def test_a_hold_reserves_and_a_capture_takes_part(api: Api) -> None:
    shop, wallet = api.funded("100.00")
    hold = place(api, wallet, shop, "40.00", ttl_seconds=600, description="table 5")
    assert (hold["status"], hold["amount"], hold["unit"]) == ("pending", "40.00", "RUB")
    assert api.ok(api.get(f"/api/v1/holds/{hold['id']}")) == hold
    account = api.ok(api.get(f"/api/v1/accounts/{wallet}"))
    assert (account["balance"], account["held"], account["available"]) == (
        "100.00",
        "40.00",
        "60.00",
    )
    # What is held cannot be spent elsewhere.
    spend = api.post(
        "/api/v1/transfers",
        {"debit_account_id": wallet, "credit_account_id": shop, "amount": "60.01"},
        key=new_key(),
    )
    assert_problem(spend, 422, "insufficient_funds")

    key = new_key()
    first = api.post(f"/api/v1/holds/{hold['id']}/capture", {"amount": "25.50"}, key=key)
    captured = api.ok(first, 201)
    assert captured["hold"]["status"] == "captured"
    assert captured["hold"]["captured"] == "25.50"
    assert captured["transfer"]["kind"] == "capture"
    assert captured["transfer"]["hold_id"] == hold["id"]
    account = api.ok(api.get(f"/api/v1/accounts/{wallet}"))
    assert (account["balance"], account["held"], account["available"]) == (
        "74.50",
        "0.00",
        "74.50",
    )
    again = api.post(f"/api/v1/holds/{hold['id']}/capture", {"amount": "25.50"}, key=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    other = api.post(f"/api/v1/holds/{hold['id']}/capture", {"amount": "1"}, key=key)
    assert_problem(other, 409, "idempotency_conflict")
    twice = api.post(f"/api/v1/holds/{hold['id']}/capture", {}, key=new_key())
    assert_problem(twice, 422, "hold_captured")
    assert api.balance(wallet) == "74.50"


def test_a_hold_replay_answers_with_the_same_hold(api: Api) -> None:
    shop, wallet = api.funded("100.00")
    key = new_key()
    body = hold_body(wallet, shop, "10")
    first = api.ok(api.post("/api/v1/holds", body, key=key), 201)
    again = api.post("/api/v1/holds", body, key=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first
    conflict = api.post("/api/v1/holds", hold_body(wallet, shop, "11"), key=key)
    assert_problem(conflict, 409, "idempotency_conflict")
    assert api.ok(api.get(f"/api/v1/accounts/{wallet}"))["held"] == "10.00"


def test_capturing_more_than_held_is_refused(api: Api) -> None:
    shop, wallet = api.funded("100.00")
    hold = place(api, wallet, shop, "40.00")
    over = api.post(f"/api/v1/holds/{hold['id']}/capture", {"amount": "40.01"}, key=new_key())
    assert_problem(over, 422, "capture_exceeds_hold")
    precise = api.post(f"/api/v1/holds/{hold['id']}/capture", {"amount": "1.001"}, key=new_key())
    assert_problem(precise, 422, "amount_too_precise")
    zero = api.post(f"/api/v1/holds/{hold['id']}/capture", {"amount": "0"}, key=new_key())
    assert_problem(zero, 422, "amount_not_positive")
    assert api.ok(api.get(f"/api/v1/holds/{hold['id']}"))["status"] == "pending"
    assert api.balance(wallet) == "100.00"


def test_a_voided_hold_cannot_be_captured(api: Api) -> None:
    shop, wallet = api.funded("100.00")
    hold = place(api, wallet, shop, "40.00")
    key = new_key()
    voided = api.post(f"/api/v1/holds/{hold['id']}/void", key=key)
    assert api.ok(voided)["status"] == "voided"
    again = api.post(f"/api/v1/holds/{hold['id']}/void", key=key)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == voided.content
    capture = api.post(f"/api/v1/holds/{hold['id']}/capture", {}, key=new_key())
    assert_problem(capture, 422, "hold_voided")
    account = api.ok(api.get(f"/api/v1/accounts/{wallet}"))
    assert (account["balance"], account["held"]) == ("100.00", "0.00")
    assert_problem(api.post("/api/v1/holds/987654321/void", key=new_key()), 404, "hold_not_found")


def test_an_expired_hold_cannot_be_captured(api: Api) -> None:
    shop, wallet = api.funded("100.00")
    soon = (utcnow() + timedelta(seconds=1)).isoformat()
    hold = place(api, wallet, shop, "40.00", expires_at=soon)
    assert api.ok(api.get(f"/api/v1/accounts/{wallet}"))["available"] == "60.00"
    time.sleep(1.1)
    assert api.ok(api.get(f"/api/v1/holds/{hold['id']}"))["status"] == "expired"
    assert api.ok(api.get(f"/api/v1/accounts/{wallet}"))["available"] == "100.00"
    capture = api.post(f"/api/v1/holds/{hold['id']}/capture", {}, key=new_key())
    assert_problem(capture, 422, "hold_expired")
    assert api.balance(wallet) == "100.00"


def test_bad_holds_are_refused_with_their_code(api: Api) -> None:
    shop, wallet = api.funded("100.00")
    past = (utcnow() - timedelta(seconds=5)).isoformat()
    for body, status, code in (
        (hold_body(wallet, shop, "100.01"), 422, "insufficient_funds"),
        (hold_body(wallet, shop, "-1"), 422, "amount_not_positive"),
        (hold_body(wallet, shop, "1", unit="EUR"), 422, "unknown_unit"),
        (hold_body(wallet, shop, "1", expires_at=past), 422, "invalid_expiry"),
        (hold_body(wallet, 987654321, "1"), 404, "account_not_found"),
        (hold_body(wallet, shop, "1", ttl_seconds=5, expires_at=past), 422, "invalid_request"),
        (hold_body(wallet, shop, "1", expires_at="2030-01-01T00:00:00"), 422, "invalid_request"),
    ):
        assert_problem(api.post("/api/v1/holds", body, key=new_key()), status, code)
    assert api.ok(api.get(f"/api/v1/accounts/{wallet}"))["held"] == "0.00"


def test_a_retried_hold_with_a_time_to_live_is_a_replay(api: Api) -> None:
    """The same body sent again a moment later is the same request, though "now + ttl"
    has moved; another time to live under the same key is a conflict."""
    shop, wallet = api.funded("100.00")
    key = new_key()
    body = hold_body(wallet, shop, "10.00", ttl_seconds=600)
    first = api.ok(api.post("/api/v1/holds", body, key=key), 201)
    time.sleep(0.01)
    again = api.post("/api/v1/holds", body, key=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    assert again.json()["expires_at"] == first["expires_at"]
    other = api.post("/api/v1/holds", {**body, "ttl_seconds": 900}, key=key)
    assert_problem(other, 409, "idempotency_conflict")
