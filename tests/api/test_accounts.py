"""Units and accounts through HTTP: opening, listing by pages, history, balance, turnovers."""

from __future__ import annotations

from typing import Any

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.ledger.accounts import system_account
from tests.api.conftest import Api, assert_problem


def test_units_are_listed_and_defined(api: Api) -> None:
    created = api.ok(
        api.post("/api/v1/units", {"code": "bonus", "kind": "points", "name": "Bonus points"}),
        201,
    )
    assert (created["code"], created["kind"], created["exponent"]) == ("BONUS", "points", 0)
    api.ok(api.post("/api/v1/units", {"code": "EUR", "kind": "currency"}), 201)
    codes = [u["code"] for u in api.ok(api.get("/api/v1/units"))["items"]]
    assert codes == ["BONUS", "EUR", "RUB"]
    assert_problem(
        api.post("/api/v1/units", {"code": "BONUS", "kind": "points"}), 409, "unit_exists"
    )
    assert_problem(
        api.post("/api/v1/units", {"code": "QQQ", "kind": "currency"}), 422, "unknown_currency"
    )
    assert_problem(api.post("/api/v1/units", {"code": "X", "kind": "gold"}), 422, "invalid_request")


def test_an_account_opens_and_shows_its_figures(api: Api) -> None:
    body = {
        "unit": "RUB",
        "kind": "subscriber",
        "policy": "credit_limit",
        "credit_limit": "300.00",
        "name": "Flat 12",
        "code": "sub-12",
        "owner_type": "subscriber",
        "owner_id": "12",
    }
    account = api.ok(api.post("/api/v1/accounts", body), 201)
    assert account["balance"] == "0.00" and account["available"] == "300.00"
    assert account["credit_limit"] == "300.00" and account["policy"] == "credit_limit"
    assert api.ok(api.get(f"/api/v1/accounts/{account['id']}")) == account
    assert_problem(api.post("/api/v1/accounts", body), 409, "account_code_exists")
    for bad, code in (
        ({**body, "code": None, "unit": "EUR"}, "unknown_unit"),
        ({**body, "code": None, "credit_limit": "1.001"}, "amount_too_precise"),
        ({**body, "code": None, "policy": "non_negative"}, "invalid_account"),
        ({**body, "code": None, "policy": "sometimes"}, "invalid_request"),
        ({**body, "code": None, "colour": "red"}, "invalid_request"),
    ):
        assert_problem(api.post("/api/v1/accounts", bad), 422, code)
    assert_problem(api.get("/api/v1/accounts/987654321"), 404, "account_not_found")
    limit = api.post(
        f"/api/v1/accounts/{account['id']}/credit-limit", {"credit_limit": "-5", "reason": "x"}
    )
    assert_problem(limit, 422, "invalid_account")


def test_accounts_are_filtered_and_paged(api: Api) -> None:
    ids = [api.account(owner_type="card", owner_id=str(n)) for n in range(5)]
    api.account(kind="deposit")
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2, "owner_type": "card"}
    while True:
        page = api.ok(api.get("/api/v1/accounts", params=params))
        assert len(page["items"]) <= 2
        seen += [a["id"] for a in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == ids
    one = api.ok(api.get("/api/v1/accounts", params={"owner_type": "card", "owner_id": "3"}))
    assert [a["id"] for a in one["items"]] == [ids[3]]
    deposits = api.ok(api.get("/api/v1/accounts", params={"kind": "deposit", "unit": "rub"}))
    assert len(deposits["items"]) == 1 and deposits["next_cursor"] is None
    assert api.ok(api.get("/api/v1/accounts", params={"unit": "EUR"}))["items"] == []


def test_history_carries_the_running_balance(api: Api) -> None:
    source, wallet = api.funded("10.00")
    api.transfer(wallet, source, "3.00", description="spend")
    api.transfer(source, wallet, "5.00")
    first = api.ok(api.get(f"/api/v1/accounts/{wallet}/entries", params={"limit": 2}))
    assert [(e["amount"], e["balance_after"]) for e in first["items"]] == [
        ("10.00", "10.00"),
        ("-3.00", "7.00"),
    ]
    assert first["items"][1]["description"] == "spend"
    rest = api.ok(
        api.get(
            f"/api/v1/accounts/{wallet}/entries",
            params={"limit": 2, "cursor": first["next_cursor"]},
        )
    )
    assert [(e["amount"], e["balance_after"]) for e in rest["items"]] == [("5.00", "12.00")]
    assert rest["next_cursor"] is None


def test_balance_at_a_moment_and_turnovers_over_a_period(api: Api) -> None:
    start = utcnow()
    source, wallet = api.funded("100.00")
    shop = api.account()
    between = utcnow()
    api.transfer(wallet, shop, "30.00")
    api.transfer(source, wallet, "5.00")
    end = utcnow()

    at = api.ok(api.get(f"/api/v1/accounts/{wallet}/balance", params={"at": between.isoformat()}))
    assert (at["balance"], at["unit"]) == ("100.00", "RUB")
    before = api.get(f"/api/v1/accounts/{wallet}/balance", params={"at": start.isoformat()})
    assert api.ok(before)["balance"] == "0.00"
    assert api.ok(api.get(f"/api/v1/accounts/{wallet}/balance"))["balance"] == "75.00"
    naive = api.get(f"/api/v1/accounts/{wallet}/balance", params={"at": "2030-01-01T00:00:00"})
    assert_problem(naive, 422, "invalid_request")

    period = {"from": between.isoformat(), "to": end.isoformat()}
    one = api.ok(api.get(f"/api/v1/accounts/{wallet}/turnovers", params=period))
    assert one == {
        "account_ids": [wallet],
        "unit": "RUB",
        "from": one["from"],
        "to": one["to"],
        "opening": "100.00",
        "debit": "30.00",
        "credit": "5.00",
        "closing": "75.00",
    }
    group = api.ok(api.get("/api/v1/turnovers", params={**period, "account_id": [wallet, shop]}))
    assert (group["opening"], group["debit"], group["credit"], group["closing"]) == (
        "100.00",
        "30.00",
        "35.00",
        "105.00",
    )
    backwards = {"from": end.isoformat(), "to": between.isoformat()}
    assert_problem(
        api.get(f"/api/v1/accounts/{wallet}/turnovers", params=backwards), 422, "invalid_period"
    )
    api.ok(api.post("/api/v1/units", {"code": "BONUS", "kind": "points"}), 201)
    points = api.account("BONUS")
    mixed = api.get("/api/v1/turnovers", params={**period, "account_id": [wallet, points]})
    assert_problem(mixed, 422, "mixed_units")
    missing = api.get("/api/v1/turnovers", params=period)
    assert_problem(missing, 422, "invalid_request")


def test_a_hot_system_account_shows_its_balance(api: Api) -> None:
    """A hot account's balance is the sum of its shards (a NUMERIC on PostgreSQL): it was
    a 500 there, found by schemathesis."""
    with api.engine.begin() as conn:
        issuance = system_account(
            conn, tenant_id=api.tenant.id, unit_code="RUB", purpose="issuance", actor=Actor.cli("t")
        ).id
    wallet = api.account()
    api.transfer(issuance, wallet, "12.50")
    account = api.ok(api.get(f"/api/v1/accounts/{issuance}"))
    assert account["is_hot"] is True and account["balance"] == "-12.50"
    listed = api.ok(api.get("/api/v1/accounts", params={"kind": "system"}))["items"]
    assert [(a["id"], a["balance"]) for a in listed] == [(issuance, "-12.50")]


def test_a_moment_without_a_utc_equivalent_is_refused(api: Api) -> None:
    """0001-01-01T00:00+00:01 is a valid ISO moment before year 1 in UTC: it was a 500."""
    account = api.account()
    early, late = "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"
    for path, params in (
        ("/api/v1/turnovers", {"account_id": account, "from": early, "to": late}),
        (f"/api/v1/accounts/{account}/turnovers", {"from": early, "to": late}),
        (f"/api/v1/accounts/{account}/balance", {"at": late}),
        (f"/api/v1/accounts/{account}/entries", {"from": early}),
    ):
        assert_problem(api.get(path, params=params), 422, "invalid_request")
