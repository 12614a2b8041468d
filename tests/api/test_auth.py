"""Who may call: staff tokens, terminal keys, roles, and one tenant never seeing another."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.tenancy.actions import revoke_terminal
from kopilka.tenancy.schema import staff_tokens
from tests.api.conftest import PASSWORD, Api, assert_problem, bearer, new_key


def test_a_password_buys_a_bearer_token_that_works(api: Api) -> None:
    reply = api.client.post(
        "/api/v1/auth/token",
        json={"tenant": api.tenant.slug, "login": "owner", "password": PASSWORD},
    )
    token = api.ok(reply, 201)
    assert token["token_type"] == "bearer"
    assert token["access_token"].startswith("kps_")
    assert "+" in token["expires_at"] or token["expires_at"].endswith("Z")
    units = api.ok(api.get("/api/v1/units", token=token["access_token"]))
    assert [u["code"] for u in units["items"]] == ["RUB"]


def test_a_wrong_password_is_refused(api: Api) -> None:
    reply = api.client.post(
        "/api/v1/auth/token",
        json={"tenant": api.tenant.slug, "login": "owner", "password": "not it at all"},
    )
    assert_problem(reply, 401, "bad_credentials")
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_no_token_or_a_bad_one_is_401(api: Api) -> None:
    missing = api.client.get("/api/v1/accounts")
    assert_problem(missing, 401, "not_authenticated")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for token in ("kps_forged", "kpt_forged_key", "whatever", ""):
        reply = api.client.get("/api/v1/accounts", headers=bearer(token))
        assert_problem(reply, 401, "not_authenticated")
    basic = api.client.get("/api/v1/accounts", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert_problem(basic, 401, "not_authenticated")


def test_an_expired_staff_token_is_401(api: Api) -> None:
    token = api.staff_token("cashier")
    api.ok(api.get("/api/v1/units", token=token))
    with api.engine.begin() as conn:
        conn.execute(
            update(staff_tokens)
            .where(staff_tokens.c.tenant_id == api.tenant.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_problem(api.get("/api/v1/units", token=token), 401, "not_authenticated")


def test_a_terminal_key_works_until_revoked(api: Api) -> None:
    source, wallet = api.funded("50.00")
    terminal_id, key = api.terminal_key()
    assert api.ok(api.get(f"/api/v1/accounts/{wallet}", token=key))["balance"] == "50.00"
    spent = api.post(
        "/api/v1/transfers",
        {"debit_account_id": wallet, "credit_account_id": source, "amount": "5"},
        key=new_key(),
        token=key,
    )
    api.ok(spent, 201)
    with api.engine.begin() as conn:
        revoke_terminal(
            conn, tenant_id=api.tenant.id, terminal_id=terminal_id, actor=Actor.cli("tests")
        )
    assert_problem(api.get(f"/api/v1/accounts/{wallet}", token=key), 401, "not_authenticated")


def test_cashiers_and_terminals_may_not_configure(api: Api) -> None:
    wallet = api.account("RUB", "credit_limit", credit_limit="10")
    cashier = api.staff_token("cashier")
    _, terminal = api.terminal_key()
    for token in (cashier, terminal):
        unit = api.post("/api/v1/units", {"code": "BONUS", "kind": "points"}, token=token)
        body = assert_problem(unit, 403, "forbidden")
        assert body["role"] in ("cashier", "terminal")
        account = api.post(
            "/api/v1/accounts", {"unit": "RUB", "kind": "x", "policy": "unlimited"}, token=token
        )
        assert_problem(account, 403, "forbidden")
        limit = api.post(
            f"/api/v1/accounts/{wallet}/credit-limit",
            {"credit_limit": "1000", "reason": "friend"},
            token=token,
        )
        assert_problem(limit, 403, "forbidden")
        # Reading is fine.
        api.ok(api.get(f"/api/v1/accounts/{wallet}", token=token))
    assert api.ok(api.get(f"/api/v1/accounts/{wallet}"))["credit_limit"] == "10.00"


def test_another_tenants_objects_do_not_exist(api: Api, other: Api) -> None:
    source, wallet = other.funded("76.00")
    posted = other.transfer(source, wallet, "1.00")
    hold = other.ok(
        other.post(
            "/api/v1/holds",
            {"debit_account_id": wallet, "credit_account_id": source, "amount": "2"},
            key=new_key(),
        ),
        201,
    )
    for path in (
        f"/api/v1/accounts/{wallet}",
        f"/api/v1/accounts/{wallet}/balance",
        f"/api/v1/accounts/{wallet}/entries",
        f"/api/v1/accounts/{wallet}/turnovers?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
    ):
        reply = api.get(path)
        body = assert_problem(reply, 404, "account_not_found")
        assert "77" not in reply.text and "balance" not in body
    assert_problem(api.get(f"/api/v1/transfers/{posted['id']}"), 404, "transfer_not_found")
    assert_problem(api.get(f"/api/v1/holds/{hold['id']}"), 404, "hold_not_found")
    # Nor can it be moved, reversed or listed.
    mine = api.source()
    steal = api.post(
        "/api/v1/transfers",
        {"debit_account_id": wallet, "credit_account_id": mine, "amount": "1"},
        key=new_key(),
    )
    assert_problem(steal, 404, "account_not_found")
    reverse = api.post(f"/api/v1/transfers/{posted['id']}/reverse", {}, key=new_key())
    assert_problem(reverse, 404, "transfer_not_found")
    assert_problem(
        api.post(f"/api/v1/holds/{hold['id']}/void", key=new_key()), 404, "hold_not_found"
    )
    listed = api.ok(api.get("/api/v1/accounts"))["items"]
    assert [a["id"] for a in listed] == [mine]
    assert api.ok(api.get("/api/v1/transfers"))["items"] == []
    assert other.balance(wallet) == "77.00"
