"""The processing API over HTTP with a terminal key (SPEC H-5, X-6, P-9): what a hotel's
PMS (or another Kopilka) calls to pay bills with this server's cards."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from kopilka.loyalty.billing import set_loyalty_enabled
from kopilka.tenancy.actions import create_tenant, create_terminal, create_user, issue_staff_token

from .conftest import Hotel, TestClient, app_for, make_hotel

API = "/api/v1/processing"


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"pay-{uuid.uuid4().hex[:10]}"}


def problem(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = reply.json()
    assert body["code"] == code and body["detail"], body
    assert isinstance(body, dict)
    return body


def redeem(client: TestClient, card: str, amount: str, **fields: Any) -> httpx.Response:
    headers = fields.pop("headers", None) or key()
    body = {"card": card, "unit": "BONUS", "amount": amount, "description": "folio 7", **fields}
    return client.post(f"{API}/redemptions", json=body, headers=headers)


def test_a_pms_pays_a_bill_with_points_and_gives_some_back(
    hotel: Hotel, client: TestClient
) -> None:
    card = hotel.card(5000_00, holder_name="Анна Петрова")
    seen = client.get(f"{API}/cards/{card.number}")
    assert seen.status_code == 200, seen.text
    assert seen.json() == {
        "number": card.number,
        "holder": "Анна Петрова",
        "status": "active",
        "balances": [{"unit": "BONUS", "exponent": 2, "balance": "5000.00"}],
    }

    headers = {"Idempotency-Key": "folio-7-payment-1"}
    paid = redeem(client, card.number, "3000.00", headers=headers)
    assert paid.status_code == 201, paid.text
    body = paid.json()
    assert {k: body[k] for k in ("kind", "redemption", "card", "unit", "exponent")} == {
        "kind": "redeem",
        "redemption": None,
        "card": card.number,
        "unit": "BONUS",
        "exponent": 2,
    }
    assert (body["amount"], body["refunded"], body["operation_id"]) == (
        "3000.00",
        "0.00",
        "folio-7-payment-1",
    )
    again = redeem(client, card.number, "3000.00", headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    problem(redeem(client, card.number, "2999.00", headers=headers), 409, "idempotency_conflict")
    ref = body["ref"]
    assert client.get(f"{API}/redemptions/{ref}").json() == body

    back = client.post(
        f"{API}/redemptions/{ref}/refunds", json={"amount": "1000.00"}, headers=key()
    )
    assert back.status_code == 201, back.text
    assert (back.json()["kind"], back.json()["redemption"], back.json()["amount"]) == (
        "refund",
        ref,
        "1000.00",
    )
    problem(redeem(client, card.number, "3000.00", headers=headers), 409, "redemption_refunded")
    rest = client.post(f"{API}/redemptions/{ref}/refunds", headers=key())
    assert rest.status_code == 201 and rest.json()["amount"] == "2000.00"
    problem(
        client.post(f"{API}/redemptions/{ref}/refunds", json={"amount": "0.01"}, headers=key()),
        422,
        "refund_too_large",
    )
    assert client.get(f"{API}/redemptions/{ref}").json()["refunded"] == "3000.00"
    # A superscript one is a digit to str.isdigit, not to int: it was a 500 (schemathesis).
    problem(client.get(f"{API}/redemptions/¹"), 404, "redemption_not_found")
    assert client.get(f"{API}/cards/{card.number}").json()["balances"][0]["balance"] == "5000.00"
    units = client.get(f"{API}/units")
    assert units.json() == {"units": [{"unit": "BONUS", "exponent": 2, "name": "бонусов"}]}
    hotel.assert_clean()


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"amount": "5000.01"}, 422, "insufficient_points"),
        ({"amount": "1.001"}, 422, "amount_too_precise"),
        ({"amount": "-1.00"}, 422, "amount_not_positive"),
        ({"amount": "1e3"}, 422, "invalid_amount"),
        ({"unit": "MILES"}, 422, "unknown_unit"),
        ({"unit": "RUB"}, 422, "points_unit_mismatch"),
        ({"card": "0000000000"}, 404, "card_not_found"),
        ({"description": "x" * 201}, 422, "invalid_request"),
        ({"headers": {"X-Nothing": "1"}}, 400, "idempotency_key_required"),
        ({"headers": {"Idempotency-Key": "k" * 101}}, 422, "invalid_redemption"),
    ],
)
def test_a_refused_redemption_says_why_and_takes_nothing(
    hotel: Hotel, client: TestClient, change: dict[str, Any], status: int, code: str
) -> None:
    card = hotel.card(5000_00)
    fields = {"card": card.number, "amount": "10.00", **change}
    problem(redeem(client, fields.pop("card"), fields.pop("amount"), **fields), status, code)
    assert hotel.get(card).available_minor == 5000_00


def test_only_a_terminal_key_may_call(hotel: Hotel, client: TestClient) -> None:
    card = hotel.card(100_00)
    anonymous = TestClient(app_for(hotel.engine))
    problem(anonymous.get(f"{API}/cards/{card.number}"), 401, "not_authenticated")

    def token(conn: Any) -> str:
        owner = create_user(
            conn,
            tenant_id=hotel.t,
            login=f"owner-{uuid.uuid4().hex[:6]}",
            password="long enough 1",
            role="owner",
            actor=hotel.actor,
        )
        return issue_staff_token(conn, user=owner, actor=hotel.actor)[0]

    staff = {"Authorization": f"Bearer {hotel.tx(token)}"}
    problem(anonymous.get(f"{API}/cards/{card.number}", headers=staff), 403, "forbidden")


def test_another_tenants_or_terminals_key_sees_nothing(
    hotel: Hotel, client: TestClient, engine: Engine
) -> None:
    card = hotel.card(100_00)
    ref = redeem(client, card.number, "10.00").json()["ref"]
    other_tenant = hotel.tx(
        lambda c: create_tenant(
            c, slug=f"p-{uuid.uuid4().hex[:10]}", name="Соседний отель", actor=hotel.actor
        )
    )
    other = make_hotel(engine, other_tenant, hotel.actor)
    outsider = TestClient(
        app_for(engine), headers={"Authorization": f"Bearer {other.terminal_key}"}
    )
    problem(outsider.get(f"{API}/cards/{card.number}"), 404, "card_not_found")
    problem(redeem(outsider, card.number, "1.00"), 404, "card_not_found")
    problem(outsider.get(f"{API}/redemptions/{ref}"), 404, "redemption_not_found")
    problem(
        outsider.post(f"{API}/redemptions/{ref}/refunds", headers=key()),
        404,
        "redemption_not_found",
    )
    # Another terminal of the same hotel sees the card, not the first one's write-offs.
    _, second_key = hotel.tx(
        lambda c: create_terminal(c, tenant_id=hotel.t, name="Бар", actor=hotel.actor)
    )
    bar = TestClient(app_for(engine), headers={"Authorization": f"Bearer {second_key}"})
    assert bar.get(f"{API}/cards/{card.number}").status_code == 200
    problem(bar.get(f"{API}/redemptions/{ref}"), 404, "redemption_not_found")
    assert hotel.get(card).available_minor == 90_00


# Every route of the processing API, with a request that succeeds while loyalty is on.
REQUESTS: list[tuple[str, str, bool]] = [
    ("GET", "/cards/{card}", False),
    ("GET", "/units", False),
    ("POST", "/redemptions", True),
    ("GET", "/redemptions/{ref}", False),
    ("POST", "/redemptions/{ref}/refunds", True),
]


def test_every_route_refuses_while_the_loyalty_module_is_off(
    hotel: Hotel, client: TestClient
) -> None:
    card = hotel.card(100_00)
    ref = redeem(client, card.number, "50.00").json()["ref"]
    paths = {
        (method.upper(), path)
        for path, operations in client.get("/api/v1/openapi.json").json()["paths"].items()
        if path.startswith(API)
        for method in operations
    }
    assert paths == {(m, API + p.replace("{card}", "{number}")) for m, p, _ in REQUESTS}

    def call(method: str, path: str, with_key: bool) -> httpx.Response:
        url = API + path.replace("{card}", card.number).replace("{ref}", ref)
        body: dict[str, str] | None = None
        if method == "POST":
            body = {"amount": "1.00"}
            if not path.endswith("refunds"):
                body |= {"card": card.number, "unit": "BONUS"}
        return client.request(method, url, json=body, headers=key() if with_key else None)

    hotel.tx(lambda c: set_loyalty_enabled(c, tenant_id=hotel.t, enabled=False, actor=hotel.actor))
    for method, path, with_key in REQUESTS:
        problem(call(method, path, with_key), 403, "loyalty_module_disabled")
    hotel.tx(lambda c: set_loyalty_enabled(c, tenant_id=hotel.t, enabled=True, actor=hotel.actor))
    for method, path, with_key in REQUESTS:
        reply = call(method, path, with_key)
        assert reply.status_code in (200, 201), reply.text
