"""Posting through HTTP: the shapes, every bad input with its code, idempotency, reversal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from kopilka.core.clock import utcnow
from kopilka.ledger.schema import lots
from tests.api.conftest import Api, assert_problem, new_key


def move(debit: int, credit: int, amount: Any, **fields: Any) -> dict[str, Any]:
    return {"debit_account_id": debit, "credit_account_id": credit, "amount": amount, **fields}


def test_a_transfer_moves_money_and_reads_back(api: Api) -> None:
    _source, wallet = api.funded("100.00")
    shop = api.account()
    posted = api.transfer(
        wallet, shop, "10.50", unit="RUB", description="coffee", metadata={"check": "A-17"}
    )
    assert posted["kind"] == "transfer"
    assert posted["description"] == "coffee"
    assert posted["metadata"] == {"check": "A-17"}
    assert sorted(posted["entries"], key=lambda e: e["amount"]) == [
        {"account_id": wallet, "amount": "-10.50", "unit": "RUB", "balance_after": "89.50"},
        {"account_id": shop, "amount": "10.50", "unit": "RUB", "balance_after": "10.50"},
    ]
    assert posted["posted_at"].endswith(("Z", "+00:00"))
    assert api.ok(api.get(f"/api/v1/transfers/{posted['id']}")) == posted
    account = api.ok(api.get(f"/api/v1/accounts/{wallet}"))
    assert (account["balance"], account["available"], account["unit"]) == ("89.50", "89.50", "RUB")


def test_explicit_entries_split_one_payment(api: Api) -> None:
    _source, wallet = api.funded("100.00")
    cafe, bar = api.account(), api.account()
    body = {
        "entries": [
            {"account_id": wallet, "amount": "-30"},
            {"account_id": cafe, "amount": "20.00"},
            {"account_id": bar, "amount": "10"},
        ],
        "description": "dinner",
    }
    posted = api.ok(api.post("/api/v1/transfers", body, key=new_key()), 201)
    legs = {e["account_id"]: e["amount"] for e in posted["entries"]}
    assert legs == {wallet: "-30.00", cafe: "20.00", bar: "10.00"}
    assert (api.balance(wallet), api.balance(cafe), api.balance(bar)) == (
        "70.00",
        "20.00",
        "10.00",
    )


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0", "amount_not_positive"),
        ("0.00", "amount_not_positive"),
        ("-5.00", "amount_not_positive"),
        ("10.001", "amount_too_precise"),
        ("ten", "invalid_amount"),
        ("1e3", "invalid_amount"),
        ("10,50", "invalid_amount"),
        ("9999999999999999999", "invalid_amount"),
    ],
)
def test_bad_amounts_are_refused_with_their_code(api: Api, amount: str, code: str) -> None:
    source, wallet = api.funded("100.00")
    reply = api.post("/api/v1/transfers", move(wallet, source, amount), key=new_key())
    body = assert_problem(reply, 422, code)
    assert repr(amount) in body["detail"] or code == "amount_not_positive"
    assert api.balance(wallet) == "100.00"


def test_an_amount_must_be_a_string_not_a_float(api: Api) -> None:
    source, wallet = api.funded("100.00")
    reply = api.post("/api/v1/transfers", move(wallet, source, 10.5), key=new_key())
    body = assert_problem(reply, 422, "invalid_request")
    assert body["errors"][0]["field"] == "body.amount"


def test_units_must_exist_and_match(api: Api) -> None:
    source, wallet = api.funded("100.00")
    unknown = api.post("/api/v1/transfers", move(wallet, source, "1", unit="XYZ"), key=new_key())
    assert_problem(unknown, 422, "unknown_unit")
    api.ok(api.post("/api/v1/units", {"code": "BONUS", "kind": "points"}), 201)
    named = api.post("/api/v1/transfers", move(wallet, source, "1", unit="BONUS"), key=new_key())
    assert_problem(named, 422, "mixed_units")
    points = api.account("BONUS")
    across = api.post("/api/v1/transfers", move(wallet, points, "1"), key=new_key())
    assert_problem(across, 422, "mixed_units")
    legs = [{"account_id": wallet, "amount": "-1"}, {"account_id": source, "amount": "1"}]
    named_legs = api.post("/api/v1/transfers", {"entries": legs, "unit": "BONUS"}, key=new_key())
    assert_problem(named_legs, 422, "mixed_units")
    assert api.balance(wallet) == "100.00"


def test_entries_that_do_not_balance_are_refused(api: Api) -> None:
    source, wallet = api.funded("100.00")
    shop = api.account()
    for entries, code in (
        ([("-10", wallet), ("9.99", shop)], "unbalanced_transfer"),
        ([("-10", wallet), ("10", shop), ("0", source)], "zero_amount"),
        ([("-10", wallet), ("10", wallet)], "duplicate_account"),
        ([("-10", wallet), ("10", 987654321)], "account_not_found"),
    ):
        body = {"entries": [{"account_id": a, "amount": m} for m, a in entries]}
        reply = api.post("/api/v1/transfers", body, key=new_key())
        assert_problem(reply, 404 if code == "account_not_found" else 422, code)
    one = {"entries": [{"account_id": wallet, "amount": "-1"}]}
    assert_problem(api.post("/api/v1/transfers", one, key=new_key()), 422, "invalid_request")
    both = {"entries": one["entries"] * 2, "amount": "1"}
    assert_problem(api.post("/api/v1/transfers", both, key=new_key()), 422, "invalid_request")
    neither = {"description": "?"}
    assert_problem(api.post("/api/v1/transfers", neither, key=new_key()), 422, "invalid_request")
    assert api.balance(wallet) == "100.00"


def test_spending_past_what_is_there_is_refused_and_leaves_nothing(api: Api) -> None:
    source, wallet = api.funded("10.00")
    before = api.ok(api.get("/api/v1/transfers"))["items"]
    reply = api.post("/api/v1/transfers", move(wallet, source, "10.01"), key=new_key())
    body = assert_problem(reply, 422, "insufficient_funds")
    assert body["available"] == "10.00" and body["account_id"] == wallet
    assert api.ok(api.get("/api/v1/transfers"))["items"] == before

    subscriber = api.account("RUB", "credit_limit", credit_limit="50")
    api.transfer(subscriber, source, "50.00")
    over = api.post("/api/v1/transfers", move(subscriber, source, "0.01"), key=new_key())
    assert_problem(over, 422, "credit_limit_exceeded")
    raised = api.post(
        f"/api/v1/accounts/{subscriber}/credit-limit",
        {"credit_limit": "60", "reason": "promised payment"},
    )
    assert api.ok(raised)["credit_limit"] == "60.00"
    assert api.ok(raised)["available"] == "10.00"
    api.transfer(subscriber, source, "10.00")
    assert api.balance(subscriber) == "-60.00"


def test_a_replay_returns_the_first_reply_byte_for_byte(api: Api) -> None:
    source, wallet = api.funded("100.00")
    key = new_key()
    body = move(wallet, source, "12.34", metadata={"b": 1, "a": [1, 2]}, description="x")
    first = api.post("/api/v1/transfers", body, key=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    # Something else happens to the account in between.
    api.transfer(source, wallet, "1.00")
    again = api.post("/api/v1/transfers", body, key=key)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert api.balance(wallet) == "88.66"


def test_a_key_reused_for_another_request_is_409(api: Api) -> None:
    source, wallet = api.funded("100.00")
    key = new_key()
    api.ok(api.post("/api/v1/transfers", move(wallet, source, "1"), key=key), 201)
    reply = api.post("/api/v1/transfers", move(wallet, source, "2"), key=key)
    body = assert_problem(reply, 409, "idempotency_conflict")
    assert body["idempotency_key"] == key
    assert api.balance(wallet) == "99.00"


def test_money_moving_posts_require_a_key(api: Api) -> None:
    source, wallet = api.funded("100.00")
    posted = api.transfer(wallet, source, "1")
    hold = {"debit_account_id": wallet, "credit_account_id": source, "amount": "1"}
    for path, body in (
        ("/api/v1/transfers", move(wallet, source, "1")),
        (f"/api/v1/transfers/{posted['id']}/reverse", {}),
        ("/api/v1/holds", hold),
        ("/api/v1/holds/1/capture", {}),
        ("/api/v1/holds/1/void", None),
    ):
        assert_problem(api.post(path, body), 400, "idempotency_key_required")
        assert_problem(api.post(path, body, key="  "), 400, "idempotency_key_required")
    too_long = api.post("/api/v1/transfers", move(wallet, source, "1"), key="k" * 201)
    assert_problem(too_long, 422, "invalid_idempotency_key")
    assert api.balance(wallet) == "99.00"


def test_transfers_are_listed_newest_first_page_by_page(api: Api) -> None:
    source, wallet = api.funded("100.00")
    ids = [api.transfer(wallet, source, f"{n}.00")["id"] for n in range(1, 5)]
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.ok(api.get("/api/v1/transfers", params=params))
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:4] == ids[::-1]
    assert len(seen) == 5  # and the funding transfer last
    bad = api.get("/api/v1/transfers", params={"cursor": "not-a-cursor"})
    assert_problem(bad, 422, "invalid_cursor")
    assert_problem(api.get("/api/v1/transfers", params={"limit": 0}), 422, "invalid_request")


def test_a_reversal_mirrors_the_transfer_once(api: Api) -> None:
    _source, wallet = api.funded("100.00")
    shop = api.account()
    posted = api.transfer(wallet, shop, "30.00")
    key = new_key()
    reversal = api.post(f"/api/v1/transfers/{posted['id']}/reverse", {}, key=key)
    body = api.ok(reversal, 201)
    assert body["kind"] == "reversal"
    assert body["corrects_transfer_id"] == posted["id"]
    assert {e["account_id"]: e["amount"] for e in body["entries"]} == {
        shop: "-30.00",
        wallet: "30.00",
    }
    assert (api.balance(wallet), api.balance(shop)) == ("100.00", "0.00")

    replay = api.post(f"/api/v1/transfers/{posted['id']}/reverse", {}, key=key)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.content == reversal.content
    second = api.post(f"/api/v1/transfers/{posted['id']}/reverse", {}, key=new_key())
    problem = assert_problem(second, 409, "already_reversed")
    assert problem["reversal_transfer_id"] == body["id"]
    assert (api.balance(wallet), api.balance(shop)) == ("100.00", "0.00")
    missing = api.post("/api/v1/transfers/987654321/reverse", {}, key=new_key())
    assert_problem(missing, 404, "transfer_not_found")
    reserved = api.post(
        "/api/v1/transfers", move(wallet, shop, "1", kind="reversal"), key=new_key()
    )
    assert_problem(reserved, 422, "invalid_request")


def test_reversing_an_accrual_takes_back_that_very_lot(api: Api) -> None:
    api.ok(api.post("/api/v1/units", {"code": "BONUS", "kind": "points"}), 201)
    issuance = api.source("BONUS")
    card = api.account("BONUS", uses_lots=True)
    expires = (utcnow() + timedelta(days=30)).isoformat()
    old = api.transfer(issuance, card, "100", expires_at=expires)
    accrual = api.transfer(issuance, card, "40")
    assert api.balance(card) == "140"
    api.ok(api.post(f"/api/v1/transfers/{accrual['id']}/reverse", {}, key=new_key()), 201)
    assert api.balance(card) == "100"
    with api.engine.connect() as conn:
        remaining = dict(
            conn.execute(
                select(lots.c.transfer_id, lots.c.remaining_minor).where(lots.c.account_id == card)
            ).all()
        )
    # The earlier lot (which expires first, so plain spending would eat it) is intact.
    assert remaining == {old["id"]: 100, accrual["id"]: 0}

    # A lot already spent cannot be reversed: the points are gone.
    api.transfer(card, issuance, "100")
    spent = api.post(f"/api/v1/transfers/{old['id']}/reverse", {}, key=new_key())
    problem = assert_problem(spent, 422, "insufficient_funds")
    assert problem["available"] == "0" and problem["account_id"] == card
    assert api.balance(card) == "0"


def test_concurrent_retries_of_one_key_post_once(api: Api) -> None:
    """A terminal that retries before the first answer arrives still pays once (SPEC L-3)."""
    source, wallet = api.funded("100.00")
    key = new_key()
    body = move(wallet, source, "7.00")
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: api.post("/api/v1/transfers", body, key=key), range(6)))
    assert {r.status_code for r in replies} == {201}, [r.text for r in replies]
    assert len({r.content for r in replies}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in replies) == 1
    assert api.balance(wallet) == "93.00"
