"""Seed 000, paying a hotel bill with loyalty points, step by step with the seed's own
numbers (SPEC H-4): the guest owes 10,000; the card has 5,000 points; the points type
pays at most 30 %; 3,000 may be spent; 3,500 is refused; 3,000 are paid; the guest owes
7,000. Through the domain and through HTTP, on the tenant's own loyalty ledger."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from kopilka.core.errors import Refused
from kopilka.hotel import folios, points
from kopilka.hotel.loyalty_provider import OwnLedgerProvider
from kopilka.hotel.schema import hotel_payments
from kopilka.loyalty.cards import get_card
from kopilka.loyalty.schema import loyalty_redemptions
from kopilka.tenancy.actions import create_user, issue_staff_token

from .conftest import Resort, TestClient, lines, op


def owes_ten_thousand(resort: Resort) -> folios.InvoiceView:
    return resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            kind="accommodation",
            description="Проживание по заявке",
            lines=lines(("Проживание, 2 ночи", 10_000_00)),
            operation_id=op(),
            actor=resort.actor,
        )
    )


def test_the_six_steps_in_the_domain(resort: Resort) -> None:
    card = resort.loyalty_card(5_000)

    # Not in debt yet: the system does not let points pay.
    with pytest.raises(Refused) as caught:
        resort.read(
            lambda c: points.points_offers(
                c,
                tenant_id=resort.t,
                folio_id=resort.folio_id,
                card_number=card.number,
                provider=OwnLedgerProvider(c, tenant_id=resort.t, actor=resort.actor),
            )
        )
    assert caught.value.code == "folio_not_in_debt"

    owes_ten_thousand(resort)
    assert resort.folio().balance_minor == -10_000_00

    # Steps 1-4: the card, "ask", per type what may be spent.
    offers = resort.read(
        lambda c: points.points_offers(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            card_number=card.number,
            provider=OwnLedgerProvider(c, tenant_id=resort.t, actor=resort.actor),
        )
    )
    (offer,) = offers.offers
    assert offer.payment_type.name == "Бонусные баллы (бонусы)"
    assert (offer.balance_minor, offer.cap_minor, offer.cap_money_minor) == (5_000, 3_000, 3_000_00)

    def pay(amount: int, operation: str) -> folios.PaymentView:
        return resort.tx(
            lambda c: points.pay_with_points(
                c,
                tenant_id=resort.t,
                folio_id=resort.folio_id,
                payment_type_id=resort.points,
                card_number=card.number,
                points_minor=amount,
                operation_id=operation,
                provider=OwnLedgerProvider(c, tenant_id=resort.t, actor=resort.actor),
                actor=resort.actor,
            )
        )

    # Step 5: more than may be spent is refused, and nothing is written.
    with pytest.raises(Refused) as caught:
        pay(3_500, "points-1")
    assert caught.value.code == "points_above_cap" and "3000 PTS" in caught.value.detail
    assert resort.count(hotel_payments) == 0 and resort.count(loyalty_redemptions) == 0

    # Step 6: save; the payment is on the folio, the points are off the card.
    payment = pay(3_000, "points-2")
    assert (payment.amount_minor, payment.points_minor, payment.provider) == (
        3_000_00,
        3_000,
        "own",
    )
    assert pay(3_000, "points-2").id == payment.id  # a double click pays once
    folio = resort.folio()
    assert folio.balance_minor == -7_000_00 and folio.owed_minor == 7_000_00
    assert [p.payment_name for p in folio.payments] == ["Бонусные баллы (бонусы)"]
    assert resort.read(lambda c: get_card(c, resort.t, card.id)).balance_minor == 2_000
    resort.assert_clean()

    # A refund of part of it gives the points back to the card, in proportion.
    give_back = resort.tx(
        lambda c: folios.refund(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_id=payment.id,
            amount_minor=1_000_00,
            payment_type_id=resort.points,
            direction="card",
            operation_id="points-back",
            actor=resort.actor,
            points_back=points.points_back(
                OwnLedgerProvider(c, tenant_id=resort.t, actor=resort.actor),
                payment.provider_ref or "",
                resort.t,
            ),
        )
    )
    assert give_back.points_minor == 1_000
    assert resort.read(lambda c: get_card(c, resort.t, card.id)).balance_minor == 3_000
    assert resort.folio().balance_minor == -8_000_00
    resort.assert_clean()


def test_the_six_steps_over_http(resort: Resort, engine: Any, client: TestClient) -> None:
    card = resort.loyalty_card(5_000)
    invoice = owes_ten_thousand(resort)
    with engine.begin() as conn:
        user = create_user(
            conn,
            tenant_id=resort.t,
            login="desk",
            password="x" * 12,
            role="front_desk",
            actor=resort.actor,
        )
        token, _ = issue_staff_token(conn, user=user, actor=resort.actor)
    auth = {"Authorization": f"Bearer {token}"}
    base = f"/api/v1/hotel/folios/{resort.folio_id}"

    asked = client.get(f"{base}/points", params={"card": card.number}, headers=auth)
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert body["owed"] == "10000.00" and body["card_status"] == "active"
    assert body["offers"] == [
        {
            "payment_type_id": resort.points,
            "payment_type": "Бонусные баллы (бонусы)",
            "unit": "PTS",
            "balance": "5000",
            "may_spend": "3000",
            "pays": "3000.00",
            "max_share_percent": "30.00",
            "exchange_rate": "1",
        }
    ]
    pay = {"card": card.number, "payment_type_id": resort.points, "points": "3500"}
    refused = client.post(
        f"{base}/points/payments", json=pay, headers={**auth, "Idempotency-Key": "p-1"}
    )
    assert refused.status_code == 422 and refused.json()["code"] == "points_above_cap"
    assert refused.headers["content-type"].startswith("application/problem+json")
    pay["points"] = "3000"
    paid = client.post(
        f"{base}/points/payments", json=pay, headers={**auth, "Idempotency-Key": "p-2"}
    )
    assert paid.status_code == 201, paid.text
    assert paid.json()["amount"] == "3000.00" and paid.json()["points"] == "3000"
    again = client.post(
        f"{base}/points/payments", json=pay, headers={**auth, "Idempotency-Key": "p-2"}
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    folio = client.get(base, headers=auth).json()
    assert folio["owed"] == "7000.00" and folio["balance"] == "-7000.00"
    assert [p["payment_name"] for p in folio["payments"]] == ["Бонусные баллы (бонусы)"]
    assert folio["invoices"][0]["id"] == invoice.id
    assert folio["invoices"][0]["status"] == "partly_paid"
    count = resort.read(
        lambda c: c.execute(
            select(hotel_payments.c.id).where(hotel_payments.c.tenant_id == resort.t)
        ).all()
    )
    assert len(count) == 1
    resort.assert_clean()
