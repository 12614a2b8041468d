"""One evening at the restaurant, told twice: through the JSON gateway by one tenant and
through FarCards by another. Both must leave the same ledger, account by account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from kopilka.core.db import read_only
from kopilka.ledger.accounts import get_account
from kopilka.ledger.schema import accounts, entries, transfers

from .conftest import Restaurant, TestClient, app_for, check_buffer, open_restaurant, station_for


def _ledger(restaurant: Restaurant) -> list[tuple[Any, ...]]:
    """Every account of the tenant with its balance and its entries, in posting order;
    ids and times left out, since they differ between any two tenants."""
    tenant = restaurant.tenant.id
    out = []
    with read_only(restaurant.engine) as conn:
        rows = conn.execute(select(accounts).where(accounts.c.tenant_id == tenant)).all()
        for row in rows:
            posted = conn.execute(
                select(entries.c.amount_minor, transfers.c.kind)
                .join(transfers, transfers.c.id == entries.c.transfer_id)
                .where(entries.c.account_id == row.id)
                .order_by(entries.c.id)
            ).all()
            out.append(
                (
                    row.code,
                    row.kind,
                    row.owner_type,
                    row.owner_id,
                    get_account(conn, tenant, row.id).balance_minor,
                    tuple((p.kind, p.amount_minor) for p in posted),
                )
            )
    return sorted(out, key=repr)


def test_json_gateway_and_farcards_leave_the_same_ledger(restaurant: Restaurant) -> None:
    by_json, by_farcards = restaurant, open_restaurant(restaurant.engine, restaurant.actor)
    number = "80009999"
    for one in (by_json, by_farcards):
        one.card(number=number)

    # Through the JSON gateway: a sale, a sale partly paid with points, half of it back.
    api = TestClient(
        app_for(by_json.engine), headers={"Authorization": f"Bearer {by_json.terminal_key}"}
    )
    for body in (
        {"check_id": "A", "card": number, "lines": ["600.00", "400.00"]},
        {"check_id": "B", "card": number, "lines": ["400.00"], "points": "20.00"},
    ):
        assert api.post("/api/v1/pos/checks", json=body).status_code == 201
    refund = api.post("/api/v1/pos/checks/B/refunds", json={"refund_id": "R", "amount": "200.00"})
    assert refund.status_code == 201, refund.text

    # Through FarCards: the same three, as r_keeper sends them.
    station = station_for(by_farcards)
    replies = [
        station.transactions(
            number,
            [(3, 100000), (2, 3000)],
            rk_check="1",
            check=check_buffer(chmode=1, lines=[60000, 40000], checkguid="{A}"),
        ),
        station.transactions(
            number,
            [(0, -2000), (3, 38000), (2, 1140)],
            rk_check="2",
            check=check_buffer(chmode=1, lines=[40000], checkguid="{B}", orderguid="{O-B}"),
        ),
        station.transactions(
            number,
            [(0, 1000), (3, -19000), (2, -570)],
            rk_check="3",
            check=check_buffer(chmode=3, lines=[-20000], checkguid="{R}", orderguid="{O-B}"),
        ),
    ]
    assert [r.attrib["Result"] for r in replies] == ["0", "0", "0"]

    ledger = _ledger(by_farcards)
    assert ledger == _ledger(by_json)
    card = next(a for a in ledger if a[3] == number)
    assert card[4] == 3000 - 2000 + 1140 + 1000 - 570
    by_json.assert_clean()
    by_farcards.assert_clean()
