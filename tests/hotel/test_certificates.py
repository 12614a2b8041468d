"""A folio paid with a gift certificate (SPEC H-2): the certificate's money pays, and a
refund goes back onto the certificate."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection

from kopilka.core.errors import InvalidInput, Refused
from kopilka.hotel import folios
from kopilka.loyalty import certificates as gc
from kopilka.payments.types import PaymentKind, create_payment_type

from .conftest import Resort, lines, op


def test_a_gift_certificate_pays_a_folio_and_takes_the_refund_back(resort: Resort) -> None:
    def setup(c: Connection) -> int:
        gc.issue_certificate(c, tenant_id=resort.t, number="900777", actor=resort.actor)
        gc.sell_certificate(
            c,
            tenant_id=resort.t,
            number="900777",
            nominal_minor=5_000_00,
            operation_id="sale-1",
            actor=resort.actor,
        )
        return create_payment_type(
            c,
            tenant_id=resort.t,
            name="Подарочный сертификат",
            kind=PaymentKind.GIFT_CERTIFICATE,
            actor=resort.actor,
        ).id

    type_id = resort.tx(setup)
    resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            kind="service",
            description="Спа",
            lines=lines(("Спа", 8_000_00)),
            operation_id=op(),
            actor=resort.actor,
        )
    )

    def pay(amount: int, certificate: str | None, operation: str) -> folios.PaymentView:
        return resort.tx(
            lambda c: folios.pay(
                c,
                tenant_id=resort.t,
                folio_id=resort.folio_id,
                payment_type_id=type_id,
                amount_minor=amount,
                certificate=certificate,
                operation_id=operation,
                actor=resort.actor,
            )
        )

    with pytest.raises(InvalidInput):
        pay(1_000_00, None, "g-0")
    with pytest.raises(Refused) as caught:
        pay(6_000_00, "900777", "g-1")  # more than it holds: all or nothing
    assert caught.value.code == "insufficient_certificate_balance"
    payment = pay(5_000_00, "900777", "g-2")
    assert (payment.provider, payment.card_number) == ("certificate", "900777")
    assert pay(5_000_00, "900777", "g-2").id == payment.id
    balance = resort.read(lambda c: gc.find_certificate(c, resort.t, "900777").balance_minor)
    assert balance == 0 and resort.folio().owed_minor == 3_000_00
    with pytest.raises(Refused):  # the money goes back the way it came
        resort.tx(
            lambda c: folios.refund(
                c,
                tenant_id=resort.t,
                folio_id=resort.folio_id,
                payment_id=payment.id,
                amount_minor=1_000_00,
                payment_type_id=resort.cash,
                direction="cash",
                operation_id="g-r0",
                actor=resort.actor,
            )
        )
    resort.tx(
        lambda c: folios.refund(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_id=payment.id,
            amount_minor=2_000_00,
            payment_type_id=type_id,
            direction="card",
            operation_id="g-r1",
            actor=resort.actor,
        )
    )
    balance = resort.read(lambda c: gc.find_certificate(c, resort.t, "900777").balance_minor)
    assert balance == 2_000_00 and resort.folio().owed_minor == 5_000_00
    resort.assert_clean()
