"""A restaurant on r_keeper with Kopilka as its FarCards server.

The tenant has the loyalty tests' program (BONUS points worth a rouble, 3 % accrual, at
most half a check in points, a 5 % "Gold" tier from 10,000 roubles), a terminal set up
for FarCards as restaurant 9999 / station 2, and ``Sum2`` showing the bonus balance,
``Sum3`` the accumulation. ``Station`` speaks to it as r_keeper would: XML bodies to
``/farcards/<tenant>/<secret>/<function>``.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from defusedxml.ElementTree import fromstring as safe_fromstring
from sqlalchemy import Connection, Engine
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.api.app import create_app
from kopilka.core.actor import Actor
from kopilka.core.money import UnitKind
from kopilka.farcards.terminals import configure_terminal, set_codes, set_sub_account
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.cards import CardView, issue_card
from kopilka.loyalty.programs import add_tier, create_program, get_program
from kopilka.tenancy.actions import create_tenant, create_terminal
from tests.loyalty.conftest import Shop

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx still works and is what we have.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

_numbers = itertools.count(1)
_apps: dict[str, Any] = {}
RESTAURANT, STATION = "9999", "2"


@dataclass
class Restaurant(Shop):
    """The loyalty tests' shop, with its terminal's FarCards secret."""

    secret: str = ""

    def card(self, number: str | None = None, **holder: Any) -> CardView:
        """A card of the program: r_keeper sends card numbers as integers, so 8 digits."""
        number = number or f"8{next(_numbers):07d}"
        return self.tx(
            lambda c: issue_card(
                c,
                tenant_id=self.tenant.id,
                program_id=self.program.id,
                number=number,
                actor=self.actor,
                **holder,
            )
        )


def open_restaurant(engine: Engine, actor: Actor, locale: str = "ru") -> Restaurant:
    def setup(conn: Connection) -> Restaurant:
        tenant = create_tenant(
            conn, slug=f"r-{uuid.uuid4().hex[:12]}", name="Ресторан", actor=actor, locale=locale
        )
        create_unit(
            conn,
            tenant_id=tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=actor,
        )
        program = create_program(
            conn,
            tenant_id=tenant.id,
            name="Бонусы",
            unit_code="BONUS",
            actor=actor,
            accrual_bp=300,
            lifetime_days=30,
            max_share_bp=5000,
        )
        gold = add_tier(
            conn,
            tenant_id=tenant.id,
            program_id=program.id,
            name="Золото",
            threshold_minor=10_000_00,
            discount_bp=500,
            accrual_bp=500,
            actor=actor,
        )
        terminal, key = create_terminal(conn, tenant_id=tenant.id, name="r_keeper", actor=actor)
        _, secret = configure_terminal(
            conn,
            tenant_id=tenant.id,
            terminal_id=terminal.id,
            restaurant_code=RESTAURANT,
            station_codes=[STATION],
            actor=actor,
        )
        assert secret is not None
        set_sub_account(conn, tenant_id=tenant.id, source="BONUS", sub_account=2, actor=actor)
        set_sub_account(
            conn, tenant_id=tenant.id, source="accumulation", sub_account=3, actor=actor
        )
        set_codes(conn, tenant_id=tenant.id, program_id=program.id, actor=actor, bonus_code=7)
        set_codes(
            conn,
            tenant_id=tenant.id,
            program_id=program.id,
            tier_id=gold.id,
            actor=actor,
            discount_code=5,
            bonus_code=8,
        )
        program = get_program(conn, tenant.id, program.id)
        return Restaurant(engine, tenant, actor, program, terminal.id, key, secret)

    return run_transaction(engine, setup)


@pytest.fixture
def restaurant(engine: Engine, actor: Actor) -> Restaurant:
    return open_restaurant(engine, actor)


def app_for(engine: Engine) -> Any:
    url = engine.url.render_as_string(hide_password=False)
    if url not in _apps:
        _apps[url] = create_app(url)
    return _apps[url]


# --------------------------------------------------------------------------- r_keeper


def check_buffer(
    *,
    chmode: int,
    lines: list[int],
    checkguid: str | None = None,
    orderguid: str | None = None,
) -> str:
    data = "".join(
        f'<LINE id="{n}" uni="{n}" code="{n}" quantity="1" price="{s}" sum="{s}" categ="1"/>'
        for n, s in enumerate(lines, start=1)
    )
    guids = (f' checkguid="{checkguid}"' if checkguid else "") + (
        f' orderguid="{orderguid}"' if orderguid else ""
    )
    return (
        f'<INPBUF InpKind="1"><CHECK stationcode="{STATION}" restaurantcode="199999999" '
        f'cashservername="MID1" generateddatetime="2026-11-23T12:00:00" chmode="{chmode}">'
        f'<CHECKDATA ordernum="1/1" checknum="1"{guids}>{data}</CHECKDATA></CHECK></INPBUF>'
    )


@dataclass
class Station:
    """An r_keeper station: what ExtDllHttp.dll would send, and the reply read back."""

    client: TestClient
    base: str

    def post(self, function: str, body: str | bytes) -> ET.Element:
        raw = body.encode() if isinstance(body, str) else body
        reply = self.client.post(f"{self.base}/{function}", content=raw)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("application/xml")
        root = safe_fromstring(reply.content)
        assert root.tag == "ROOT"
        return root[0]

    def lookup(self, card: str, check: str = "") -> ET.Element:
        return self.post(
            "GetCardInfoEx",
            '<?xml version="1.0" encoding="UTF-8"?><ROOT>'
            f'<QRY Card="{card}" Restaurant="{RESTAURANT}" UnitNo="{STATION}">{check}</QRY>'
            "</ROOT>",
        )

    def transactions(
        self, card: str, kinds: list[tuple[int, int]], rk_check: str, check: str = ""
    ) -> ET.Element:
        items = "".join(
            f'<TransactionsEx Card="{card}" Kind="{kind}" Summa="{summa}" '
            f'Restaurant="{RESTAURANT}" RKDate="46349" RKUni="{STATION}" RKCheck="{rk_check}" '
            'VatSumA="0" VatPrcA="2000"/>'
            for kind, summa in kinds
        )
        return self.post(
            "TransactionsEx",
            f'<?xml version="1.0" encoding="UTF-8"?><ROOT><Transactions>{items}</Transactions>'
            f"{check}</ROOT>",
        )


def station_for(restaurant: Restaurant) -> Station:
    client = TestClient(app_for(restaurant.engine))
    return Station(client, f"/farcards/{restaurant.tenant.slug}/{restaurant.secret}")


@pytest.fixture
def station(restaurant: Restaurant) -> Station:
    return station_for(restaurant)
