"""A loyalty purge leaves the hotel's books whole: while folios were paid with the
points going, it is refused and nothing is removed."""

from __future__ import annotations

import pytest

from kopilka.core.errors import Refused
from kopilka.hotel import folios, points
from kopilka.hotel.loyalty_provider import OwnLedgerProvider
from kopilka.loyalty.billing import (
    PurgeConfirmation,
    purge_loyalty,
    request_purge,
    set_loyalty_enabled,
)

from .conftest import Resort, lines, op


def test_a_purge_is_refused_while_folios_were_paid_with_the_points(resort: Resort) -> None:
    card = resort.loyalty_card(5_000)
    resort.tx(
        lambda c: folios.charge(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            kind="accommodation",
            description="Проживание",
            lines=lines(("Ночь", 10_000_00)),
            operation_id=op(),
            actor=resort.actor,
        )
    )
    resort.tx(
        lambda c: points.pay_with_points(
            c,
            tenant_id=resort.t,
            folio_id=resort.folio_id,
            payment_type_id=resort.points,
            card_number=card.number,
            points_minor=1_000,
            operation_id="p-1",
            provider=OwnLedgerProvider(c, tenant_id=resort.t, actor=resort.actor),
            actor=resort.actor,
        )
    )
    resort.tx(
        lambda c: set_loyalty_enabled(c, tenant_id=resort.t, enabled=False, actor=resort.actor)
    )
    token = resort.tx(lambda c: request_purge(c, tenant_id=resort.t, actor=resort.actor)).token
    with pytest.raises(Refused) as caught:
        resort.tx(
            lambda c: purge_loyalty(
                c,
                tenant_id=resort.t,
                confirmation=PurgeConfirmation(token, resort.tenant.slug),
                actor=resort.actor,
            )
        )
    assert caught.value.code == "purge_folio_points"
    folio = resort.folio()
    assert [p.points_minor for p in folio.payments] == [1_000]
    assert folio.owed_minor == 9_000_00
    resort.assert_clean()
