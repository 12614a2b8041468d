"""Paying a folio with the points of an external processing centre (SPEC H-5; seed 000's
"Kontur"): here the centre is a second Kopilka server in a process of its own on
loopback. A centre that fails is shown clearly and writes nothing on the folio."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, select

from kopilka.core.errors import KopilkaError, Refused, Unavailable
from kopilka.core.money import UnitKind
from kopilka.hotel import folios, points
from kopilka.hotel.loyalty_centre import set_centre
from kopilka.hotel.schema import hotel_payments
from kopilka.ledger.accounts import create_unit
from kopilka.loyalty.cards import get_card
from kopilka.payments.types import PaymentKind, create_payment_type
from tests.hotel_loyalty.centre import Centre, free_port, running_centre

from .conftest import Resort, lines, op


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    with running_centre(tmp_path_factory.mktemp("centre")) as running:
        yield running


def kontur(resort: Resort, centre: Centre, url: str | None = None) -> int:
    """The hotel pays with the centre's BONUS (bonus roubles, 2 decimals), at most 30 %."""

    def work(conn: Connection) -> int:
        create_unit(
            conn,
            tenant_id=resort.t,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусных рублей",
            exponent=2,
            actor=resort.actor,
        )
        set_centre(
            conn,
            tenant_id=resort.t,
            base_url=url or centre.url,
            api_key=centre.key,
            timeout_ms=3000,
            actor=resort.actor,
        )
        return create_payment_type(
            conn,
            tenant_id=resort.t,
            name="Бонусные баллы Контур (бонусы)",
            kind=PaymentKind.POINTS,
            unit_code="BONUS",
            max_share_bp=3000,
            actor=resort.actor,
        ).id

    return resort.tx(work)


def owes(resort: Resort, amount: int) -> None:
    resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            kind="accommodation",
            description="Проживание",
            lines=lines(("Проживание", amount)),
            operation_id=op(),
            actor=resort.actor,
        )
    )


def pay(resort: Resort, type_id: int, number: str, points_minor: int, operation: str) -> Any:
    return points.with_points_undo(
        resort.engine,
        resort.t,
        resort.actor,
        operation,
        lambda c: points.pay_with_points(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=type_id,
            card_number=number,
            points_minor=points_minor,
            operation_id=operation,
            provider=points.tenant_provider(c, resort.t, resort.actor),
            actor=resort.actor,
        ),
    )


def centre_balance(centre: Centre, card_id: int) -> int:
    from kopilka.core.db import read_only

    with read_only(centre.engine) as conn:
        return get_card(conn, centre.tenant.id, card_id).balance_minor


def test_seed_000_with_the_centres_points(resort: Resort, centre: Centre) -> None:
    # One centre serves the SQLite and PostgreSQL runs under one key: ids must not meet.
    run = uuid.uuid4().hex[:8]
    type_id = kontur(resort, centre)
    card = centre.card(5_000_00)
    owes(resort, 10_000_00)
    offers = resort.read(
        lambda c: points.points_offers(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            card_number=card.number,
            provider=points.tenant_provider(c, resort.t, resort.actor),
        )
    )
    (offer,) = [o for o in offers.offers if o.payment_type.id == type_id]
    assert (offer.balance_minor, offer.cap_minor) == (5_000_00, 3_000_00)
    with pytest.raises(Refused) as caught:
        pay(resort, type_id, card.number, 3_500_00, f"kontur-1-{run}")
    assert caught.value.code == "points_above_cap"
    payment = pay(resort, type_id, card.number, 3_000_00, f"kontur-2-{run}")
    assert (payment.provider, payment.amount_minor) == ("external", 3_000_00)
    assert resort.folio().owed_minor == 7_000_00
    assert centre_balance(centre, card.id) == 2_000_00
    # Refunded at the front desk: the centre gives the points back.
    resort.tx(
        lambda c: folios.refund(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_id=payment.id,
            amount_minor=3_000_00,
            payment_type_id=type_id,
            direction="card",
            operation_id=f"kontur-back-{run}",
            actor=resort.actor,
            points_back=points.points_back(
                points.tenant_provider(c, resort.t, resort.actor),
                payment.provider_ref or "",
                resort.t,
            ),
        )
    )
    assert centre_balance(centre, card.id) == 5_000_00
    assert resort.folio().owed_minor == 10_000_00
    resort.assert_clean()
    centre.assert_clean()


def test_a_centre_nobody_answers_at_writes_nothing(resort: Resort, centre: Centre) -> None:
    # One centre serves the SQLite and PostgreSQL runs under one key: ids must not meet.
    run = uuid.uuid4().hex[:8]
    type_id = kontur(resort, centre, url=f"http://127.0.0.1:{free_port()}")
    owes(resort, 10_000_00)
    with pytest.raises(Unavailable) as caught:
        pay(resort, type_id, "7700000000001", 1_000_00, f"kontur-3-{run}")
    assert caught.value.code == "loyalty_centre_unavailable" and caught.value.status == 503
    assert centre.key not in caught.value.detail
    assert resort.folio().payments == () and resort.folio().owed_minor == 10_000_00
    resort.assert_clean()


def test_a_folio_write_that_fails_gives_the_points_back(resort: Resort, centre: Centre) -> None:
    """The centre took the points, then the folio's own write failed: they go back."""
    # One centre serves the SQLite and PostgreSQL runs under one key: ids must not meet.
    run = uuid.uuid4().hex[:8]
    type_id = kontur(resort, centre)
    card = centre.card(5_000_00)
    owes(resort, 10_000_00)

    def then_fail(c: Connection) -> None:
        points.pay_with_points(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=type_id,
            card_number=card.number,
            points_minor=1_000_00,
            operation_id=f"kontur-4-{run}",
            provider=points.tenant_provider(c, resort.t, resort.actor),
            actor=resort.actor,
        )
        assert centre_balance(centre, card.id) == 4_000_00  # taken at the centre
        raise KopilkaError("boom", "the folio's write failed")

    with pytest.raises(KopilkaError, match="failed"):
        points.with_points_undo(resort.engine, resort.t, resort.actor, f"kontur-4-{run}", then_fail)
    assert centre_balance(centre, card.id) == 5_000_00
    found = resort.read(
        lambda c: c.execute(
            select(hotel_payments.c.id).where(hotel_payments.c.tenant_id == resort.t)
        ).all()
    )
    assert found == []
    centre.assert_clean()
