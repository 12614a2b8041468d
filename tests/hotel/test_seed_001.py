"""Seed 001, a restaurant order charged to a room, from order to payment with a receipt
and a refund with a refund receipt (SPEC P-7, P-8, H-2, H-6), over HTTP: the POS with
its terminal key, the front desk with a staff token, receipts through a local server
that behaves as ATOL Online v5 does."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kopilka.core.clock import utcnow
from kopilka.fiscal import receipts as fiscal
from kopilka.fiscal.registers import create_register
from kopilka.tenancy.actions import create_user, issue_staff_token
from tests.fiscal.atol_server import atol_stand_in

from .conftest import Resort, TestClient


def later() -> datetime:
    """A moment when the receipts' next look at the register is due."""
    return utcnow() + timedelta(hours=1)


def staff(resort: Resort, role: str = "front_desk") -> dict[str, str]:
    def work(conn: Any) -> str:
        user = create_user(
            conn,
            tenant_id=resort.t,
            login=f"u-{role}",
            password="x" * 12,
            role=role,
            actor=resort.actor,
        )
        return issue_staff_token(conn, user=user, actor=resort.actor)[0]

    return {"Authorization": f"Bearer {resort.tx(work)}"}


def test_room_charge_from_order_to_payment_and_refund_with_receipts(
    resort: Resort, client: TestClient
) -> None:
    pos = {"Authorization": f"Bearer {resort.terminal_key}"}
    desk = staff(resort)

    # 1-4. At the POS: "Закрытие на номер", room 90, the guests staying there, pick one.
    guests = client.get("/api/v1/pos/rooms/90/guests", headers=pos)
    assert guests.status_code == 200, guests.text
    assert [g["name"] for g in guests.json()["guests"]] == ["Анна Петрова", "Иван Петров"]
    anna = guests.json()["guests"][0]["guest_id"]
    # 5. Close the order on credit: it goes to the guest's folio.
    order = {
        "check_id": "R-1001",
        "room": "90",
        "guest_id": anna,
        "payment_code": "12",
        "closed_at": "2026-11-23T20:15:00+03:00",
        "lines": [
            {"name": "Борщ", "amount": "450.00"},
            {"name": "Котлета по-киевски", "quantity": "2", "price": "390.00", "amount": "780.00"},
        ],
    }
    posted = client.post("/api/v1/pos/room-charges", json=order, headers=pos)
    assert posted.status_code == 201, posted.text
    invoice = posted.json()
    assert invoice["status"] == "unpaid" and invoice["total"] == "1230.00"
    assert invoice["payer"]["full_name"] == "Анна Петрова"
    again = client.post("/api/v1/pos/room-charges", json=order, headers=pos)
    assert again.status_code == 200 and again.json()["id"] == invoice["id"]

    # At the front desk: the order is on the folio as an unpaid invoice with its lines.
    folio = client.get(f"/api/v1/hotel/folios/{resort.folio_id}", headers=desk).json()
    (shown,) = folio["invoices"]
    assert shown["status"] == "unpaid" and shown["check_id"] == "R-1001"
    assert shown["closed_at"].startswith("2026-11-23T17:15:00")
    assert [(x["name"], x["quantity"], x["price"], x["amount"]) for x in shown["lines"]] == [
        ("Борщ", "1", "450.00", "450.00"),
        ("Котлета по-киевски", "2", "390.00", "780.00"),
    ]
    assert folio["owed"] == "1230.00"

    with atol_stand_in(wait_polls=0) as atol:
        register = resort.tx(
            lambda c: create_register(
                c,
                tenant_id=resort.t,
                name="Касса ресепшен",
                settings=atol.register_settings(),
                actor=resort.actor,
            )
        )
        # Payment by card with "print receipt", the copy to the guest's e-mail.
        paid = client.post(
            f"/api/v1/hotel/folios/{resort.folio_id}/payments",
            json={
                "payment_type_id": resort.card,
                "amount": "1230.00",
                "invoice_id": invoice["id"],
                "receipt": {"register_id": register.id, "email": "anna@example.ru"},
            },
            headers={**desk, "Idempotency-Key": "pay-R-1001"},
        )
        assert paid.status_code == 201, paid.text
        payment = paid.json()
        assert payment["receipt"]["status"] == "wait", payment  # accepted by the register
        # Once the register has fiscalised it, the receipt is done.
        fiscal.process_due(resort.engine, later())
        folio = client.get(f"/api/v1/hotel/folios/{resort.folio_id}", headers=desk).json()
        assert folio["invoices"][0]["status"] == "paid" and folio["balance"] == "0.00"
        assert folio["payments"][0]["receipt"]["status"] == "done"
        (sold,) = [d for d in atol.documents.values() if d.operation == "sell"]
        assert sold.body["receipt"]["client"] == {"email": "anna@example.ru"}
        assert [i["name"] for i in sold.body["receipt"]["items"]] == ["Борщ", "Котлета по-киевски"]
        assert Decimal(str(sold.body["receipt"]["total"])) == Decimal("1230.00")
        (card_payment,) = sold.body["receipt"]["payments"]
        assert card_payment["type"] == 1  # electronic: the guest paid by card
        assert Decimal(str(card_payment["sum"])) == Decimal("1230.00")

        # Paid: the POS can no longer cancel it; the hotel refunds.
        cancel = client.post("/api/v1/pos/room-charges/R-1001/cancel", headers=pos)
        assert cancel.status_code == 422 and cancel.json()["code"] == "invoice_paid"

        # Refund with a direction and a payment type, and a refund receipt.
        refund_body = {
            "payment_id": payment["id"],
            "amount": "1230.00",
            "payment_type_id": resort.card,
            "direction": "card",
            "reason": "гость отказался от блюда",
            "receipt": {"register_id": register.id, "email": "anna@example.ru"},
        }
        too_much = client.post(
            f"/api/v1/hotel/folios/{resort.folio_id}/refunds",
            json={**refund_body, "amount": "1230.01"},
            headers={**desk, "Idempotency-Key": "refund-0"},
        )
        assert too_much.status_code == 422 and too_much.json()["code"] == "refund_too_large"
        refunded = client.post(
            f"/api/v1/hotel/folios/{resort.folio_id}/refunds",
            json=refund_body,
            headers={**desk, "Idempotency-Key": "refund-R-1001"},
        )
        assert refunded.status_code == 201, refunded.text
        assert refunded.json()["receipt"]["operation"] == "sell_refund"
        fiscal.process_due(resort.engine, later())
        folio = client.get(f"/api/v1/hotel/folios/{resort.folio_id}", headers=desk).json()
        assert folio["refunds"][0]["receipt"]["status"] == "done"
        assert folio["invoices"][0]["status"] == "unpaid" and folio["owed"] == "1230.00"
        operations = sorted(d.operation for d in atol.documents.values())
        assert operations == ["sell", "sell_refund"]
    resort.assert_clean()


def test_a_register_that_fails_never_undoes_the_payment(resort: Resort, client: TestClient) -> None:
    desk = staff(resort)
    with atol_stand_in() as atol:
        register = resort.tx(
            lambda c: create_register(
                c,
                tenant_id=resort.t,
                name="Касса",
                settings=atol.register_settings(),
                actor=resort.actor,
            )
        )
        atol.fail("500")
        paid = client.post(
            f"/api/v1/hotel/folios/{resort.folio_id}/payments",
            json={
                "payment_type_id": resort.cash,
                "amount": "500.00",
                "receipt": {"register_id": register.id, "phone": "+7 916 123-45-67"},
            },
            headers={**desk, "Idempotency-Key": "advance-1"},
        )
        assert paid.status_code == 201, paid.text
        assert paid.json()["receipt"]["status"] == "pending"
        assert paid.json()["receipt"]["error"]
        folio = client.get(f"/api/v1/hotel/folios/{resort.folio_id}", headers=desk).json()
        assert folio["balance"] == "500.00"  # the payment stands
        atol.fail("normal")
        retried = client.post(
            f"/api/v1/receipts/{paid.json()['receipt']['id']}/retry", headers=desk
        )
        assert retried.status_code == 200, retried.text
        fiscal.process_due(resort.engine, later())
        folio = client.get(f"/api/v1/hotel/folios/{resort.folio_id}", headers=desk).json()
        assert folio["payments"][0]["receipt"]["status"] in ("wait", "done")
    resort.assert_clean()
