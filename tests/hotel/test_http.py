"""The hotel API's doors: who may, what another tenant sees, what bad input gets."""

from __future__ import annotations

from typing import Any

from kopilka.hotel import stays
from kopilka.hotel.schema import hotel_invoices, hotel_payments, hotel_refunds
from kopilka.loyalty.billing import set_loyalty_enabled
from kopilka.tenancy.actions import create_tenant, create_terminal, create_user, issue_staff_token

from .conftest import Resort, TestClient


def token(resort: Resort, role: str, tenant_id: int | None = None) -> dict[str, str]:
    def work(conn: Any) -> str:
        user = create_user(
            conn,
            tenant_id=tenant_id or resort.t,
            login=f"{role}-{tenant_id or resort.t}",
            password="x" * 12,
            role=role,
            actor=resort.actor,
        )
        return issue_staff_token(conn, user=user, actor=resort.actor)[0]

    return {"Authorization": f"Bearer {resort.tx(work)}"}


def problem(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == code, reply.json()


def test_roles(resort: Resort, client: TestClient) -> None:
    cashier = token(resort, "cashier")
    desk = token(resort, "front_desk")
    owner = token(resort, "owner")
    problem(client.get("/api/v1/hotel/stays", headers=cashier), 403, "forbidden")
    assert client.get("/api/v1/hotel/stays", headers=desk).status_code == 200
    body = {"name": "Корпус Б"}
    problem(client.post("/api/v1/hotel/properties", json=body, headers=desk), 403, "forbidden")
    assert client.post("/api/v1/hotel/properties", json=body, headers=owner).status_code == 201
    pos = {"Authorization": f"Bearer {resort.terminal_key}"}
    problem(client.get(f"/api/v1/hotel/folios/{resort.folio_id}", headers=pos), 403, "forbidden")
    problem(client.get("/api/v1/pos/rooms/90/guests", headers=desk), 403, "forbidden")


def test_another_tenant_sees_nothing(resort: Resort, client: TestClient) -> None:
    other = resort.tx(
        lambda c: create_tenant(
            c, slug=f"other-{resort.t}", name="Другой отель", actor=resort.actor
        )
    )
    theirs = token(resort, "owner", other.id)
    problem(
        client.get(f"/api/v1/hotel/folios/{resort.folio_id}", headers=theirs),
        404,
        "folio_not_found",
    )
    problem(
        client.get(f"/api/v1/hotel/stays/{resort.stay.id}", headers=theirs), 404, "stay_not_found"
    )
    assert client.get("/api/v1/hotel/stays?q=90", headers=theirs).json() == {"items": []}
    pay = {"payment_type_id": resort.cash, "amount": "1.00"}
    reply = client.post(
        f"/api/v1/hotel/folios/{resort.folio_id}/payments",
        json=pay,
        headers={**theirs, "Idempotency-Key": "x-1"},
    )
    problem(reply, 404, "folio_not_found")
    _, key = resort.tx(
        lambda c: create_terminal(c, tenant_id=other.id, name="Бар", actor=resort.actor)
    )
    foreign = {"Authorization": f"Bearer {key}"}
    problem(client.get("/api/v1/pos/rooms/90/guests", headers=foreign), 422, "no_guest_in_room")
    assert "Анна" not in client.get("/api/v1/pos/rooms/90/guests", headers=foreign).text
    assert resort.count(hotel_payments) == 0


def test_what_bad_input_gets(resort: Resort, client: TestClient) -> None:
    desk = token(resort, "front_desk")
    base = f"/api/v1/hotel/folios/{resort.folio_id}"

    def post(path: str, body: dict[str, Any], key: str | None = "k") -> Any:
        headers = {**desk, **({"Idempotency-Key": key} if key else {})}
        return client.post(f"{base}{path}", json=body, headers=headers)

    charge = {
        "kind": "service",
        "description": "Спа",
        "lines": [{"name": "Массаж", "amount": "3000.00"}],
    }
    problem(post("/charges", charge, key=None), 400, "idempotency_key_required")
    problem(
        post("/charges", {**charge, "lines": [{"name": "Массаж", "amount": "1.234"}]}),
        422,
        "amount_too_precise",
    )
    problem(
        post("/charges", {**charge, "lines": [{"name": "Массаж", "amount": "1", "quantity": "x"}]}),
        422,
        "invalid_hotel_input",
    )
    problem(post("/charges", {**charge, "unknown": 1}), 422, "invalid_request")
    problem(post("/charges", {**charge, "kind": "pos_order"}), 422, "invalid_request")
    # Points while the guest owes nothing.
    problem(
        client.get(f"{base}/points", params={"card": "1"}, headers=desk), 422, "folio_not_in_debt"
    )
    made = post("/charges", charge, key="c-1")
    assert made.status_code == 201, made.text
    problem(
        post("/charges", {**charge, "description": "Иное"}, key="c-1"),
        409,
        "hotel_operation_conflict",
    )
    # A room charge is no way to pay a folio; points are paid through their own door.
    problem(
        post("/payments", {"payment_type_id": resort.room_charge, "amount": "1.00"}),
        422,
        "payment_type_not_usable",
    )
    problem(
        post("/payments", {"payment_type_id": resort.points, "amount": "1.00"}),
        422,
        "payment_type_not_usable",
    )
    problem(
        post(
            "/payments",
            {"payment_type_id": resort.cash, "amount": "3000.01", "invoice_id": made.json()["id"]},
        ),
        422,
        "overpayment",
    )
    paid = post("/payments", {"payment_type_id": resort.cash, "amount": "1000.00"}, key="p-1")
    assert paid.status_code == 201, paid.text
    refund = {
        "payment_id": paid.json()["id"],
        "amount": "1000.01",
        "payment_type_id": resort.cash,
        "direction": "cash",
    }
    problem(post("/refunds", refund), 422, "refund_too_large")
    problem(post("/refunds", {**refund, "direction": "wallet"}), 422, "invalid_request")
    problem(
        post("/payments", {"payment_type_id": resort.cash, "amount": "0"}),
        422,
        "amount_not_positive",
    )
    assert resort.count(hotel_invoices) == 1 and resort.count(hotel_payments) == 1
    assert resort.count(hotel_refunds) == 0
    # A checked-out stay takes no charges.
    resort.tx(
        lambda c: stays.check_out_stay(
            c, tenant_id=resort.t, stay_id=resort.stay.id, actor=resort.actor
        )
    )
    problem(post("/charges", charge, key="c-2"), 422, "stay_closed")
    resort.assert_clean()


def test_room_charge_works_with_the_loyalty_module_off(resort: Resort, client: TestClient) -> None:
    resort.tx(
        lambda c: set_loyalty_enabled(c, tenant_id=resort.t, enabled=False, actor=resort.actor)
    )
    pos = {"Authorization": f"Bearer {resort.terminal_key}"}
    assert client.get("/api/v1/pos/rooms/90/guests", headers=pos).status_code == 200
    order = {
        "check_id": "R-9",
        "room": "90",
        "guest_id": resort.guest.id,
        "payment_code": "12",
        "lines": [{"name": "Чай", "amount": "150.00"}],
    }
    posted = client.post("/api/v1/pos/room-charges", json=order, headers=pos)
    assert posted.status_code == 201, posted.text
    got = client.get("/api/v1/pos/room-charges/R-9", headers=pos)
    assert got.json()["status"] == "unpaid"
    cancelled = client.post("/api/v1/pos/room-charges/R-9/cancel", headers=pos)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "void"
    problem(
        client.post(
            "/api/v1/pos/room-charges",
            json={**order, "room": "12A", "check_id": "R-10"},
            headers=pos,
        ),
        422,
        "no_guest_in_room",
    )
