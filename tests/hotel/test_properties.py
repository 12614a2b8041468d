"""Any mix of charges, payments, refunds and voids keeps a folio's books straight."""

from __future__ import annotations

from functools import partial
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection

from kopilka.core.errors import KopilkaError
from kopilka.hotel import folios

from .conftest import Resort, lines

amounts = st.integers(min_value=1, max_value=5_000_00)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), amounts, st.just(0)),
        st.tuples(st.just("pay"), amounts, st.integers(min_value=-1, max_value=5)),
        st.tuples(st.just("refund"), amounts, st.integers(min_value=0, max_value=8)),
        st.tuples(st.just("void"), st.just(0), st.integers(min_value=0, max_value=5)),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps)
def test_allocations_balance_and_ledger_agree(resort: Resort, plan: list[Any]) -> None:
    stay = resort.tx(
        lambda c: __import__("kopilka.hotel.stays", fromlist=["x"]).create_stay(
            c,
            tenant_id=resort.t,
            room_id=resort.room_12a,
            arrival=resort.stay.arrival,
            departure=resort.stay.departure,
            guest_ids=[resort.partner.id],
            actor=resort.actor,
        )
    )
    folio_id = stay.folios[0].id
    for n, (action, amount, pick) in enumerate(plan):
        folio = resort.folio(folio_id)
        try:
            resort.tx(partial(_apply, resort, folio, f"{folio_id}-{n}", action, amount, pick))
        except KopilkaError as error:
            assert error.code in {"overpayment", "refund_too_large", "invoice_paid", "invoice_void"}
    folio = resort.folio(folio_id)
    live = [i for i in folio.invoices if i.voided_at is None]
    for invoice in folio.invoices:
        assert 0 <= invoice.paid_minor <= invoice.total_minor
        assert invoice.voided_at is None or invoice.paid_minor == 0
    paid_in = sum(p.amount_minor - p.refunded_minor for p in folio.payments)
    assert sum(r.amount_minor for r in folio.refunds) == sum(
        p.refunded_minor for p in folio.payments
    )
    assert folio.balance_minor == paid_in - sum(i.total_minor for i in live)
    assert sum(i.paid_minor for i in live) + folio.credit_minor == paid_in
    assert folio.credit_minor >= 0
    for payment in folio.payments:
        assert (
            sum(folio.allocations[payment.id].values())
            <= payment.amount_minor - payment.refunded_minor
        )
    resort.assert_clean()


def _apply(
    resort: Resort,
    folio: folios.FolioView,
    operation: str,
    action: str,
    amount: int,
    pick: int,
    c: Connection,
) -> None:
    common: dict[str, Any] = {"tenant_id": resort.t, "actor": resort.actor}
    if action == "charge":
        folios.charge(
            c,
            folio_id=folio.id,
            kind="service",
            description="Услуга",
            lines=lines(("Услуга", amount)),
            operation_id=operation,
            **common,
        )
    elif action == "pay":
        invoice = (
            folio.invoices[pick % len(folio.invoices)].id if pick >= 0 and folio.invoices else None
        )
        folios.pay(
            c,
            folio_id=folio.id,
            payment_type_id=resort.cash,
            amount_minor=amount,
            invoice_id=invoice,
            operation_id=operation,
            **common,
        )
    elif action == "refund" and folio.payments:
        folios.refund(
            c,
            folio_id=folio.id,
            payment_id=folio.payments[pick % len(folio.payments)].id,
            amount_minor=amount,
            payment_type_id=resort.cash,
            direction="cash",
            operation_id=operation,
            **common,
        )
    elif action == "void" and folio.invoices:
        folios.void_invoice(c, invoice_id=folio.invoices[pick % len(folio.invoices)].id, **common)
