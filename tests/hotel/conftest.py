"""A hotel with a restaurant (seeds 000 and 001): a property with rooms 90 and 12A, a
guest checked into room 90, the payment types of the seeds, a POS terminal in the
restaurant, and a loyalty program in whole points whose cards pay folios."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.core.money import UnitKind
from kopilka.hotel import stays
from kopilka.hotel.folios import FolioView, LineIn, get_folio
from kopilka.ledger.accounts import create_unit
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.verify import verify
from kopilka.loyalty.cards import CardView, issue_card
from kopilka.loyalty.documents import accrue_points
from kopilka.loyalty.programs import create_program
from kopilka.payments.codes import add_payment_code
from kopilka.payments.types import PaymentKind, create_payment_type
from kopilka.tenancy.actions import Tenant, create_terminal
from tests.api.conftest import TestClient, _dispose_apps, client

T = TypeVar("T")
_numbers = itertools.count(1)
_ops = itertools.count(1)


def op() -> str:
    return f"op-{next(_ops)}"


@dataclass
class Resort:
    engine: Engine
    tenant: Tenant
    actor: Actor
    property_id: int
    room_90: int
    room_12a: int
    guest: stays.GuestView  # Анна Петрова, checked into room 90
    partner: stays.GuestView  # Иван Петров, with her
    stay: stays.StayView
    cash: int
    card: int
    room_charge: int
    deposit: int
    points: int  # "Бонусные баллы (бонусы)": PTS, rate 1, at most 30 %
    terminal_id: int
    terminal_key: str
    program_id: int

    @property
    def t(self) -> int:
        return self.tenant.id

    @property
    def folio_id(self) -> int:
        return self.stay.folios[0].id

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def folio(self, folio_id: int | None = None) -> FolioView:
        return self.read(lambda c: get_folio(c, self.t, folio_id or self.folio_id))

    def count(self, table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == self.t)
        return int(self.read(lambda c: c.execute(query).scalar_one()))

    def loyalty_card(self, points: int) -> CardView:
        number = f"5{next(_numbers):012d}"

        def work(conn: Connection) -> CardView:
            card = issue_card(
                conn, tenant_id=self.t, program_id=self.program_id, number=number, actor=self.actor
            )
            if points:
                accrue_points(
                    conn,
                    tenant_id=self.t,
                    card_numbers=[number],
                    amount_minor=points,
                    reason="welcome",
                    actor=self.actor,
                    document_id=f"welcome-{number}",
                )
            return card

        return self.tx(work)

    def assert_clean(self) -> None:
        problems = self.read(lambda c: verify(c, tenant_id=self.t))
        assert problems == [], problems


def lines(*pairs: tuple[str, int]) -> list[LineIn]:
    return [LineIn(name, amount) for name, amount in pairs]


@pytest.fixture
def resort(engine: Engine, tenant: Tenant, actor: Actor) -> Resort:
    def setup(conn: Connection) -> dict[str, Any]:
        t = tenant.id
        create_unit(
            conn,
            tenant_id=t,
            code="PTS",
            kind=UnitKind.POINTS,
            name="баллов",
            exponent=0,
            actor=actor,
        )
        program = create_program(
            conn,
            tenant_id=t,
            name="Гость",
            unit_code="PTS",
            actor=actor,
            accrual_bp=500,
            lifetime_days=365,
            max_share_bp=10000,
        )
        prop = stays.create_property(conn, tenant_id=t, name="Отель «Берег»", actor=actor)
        room_90 = stays.create_room(
            conn, tenant_id=t, property_id=prop.id, number="90", actor=actor
        )
        room_12a = stays.create_room(
            conn, tenant_id=t, property_id=prop.id, number="12A", actor=actor
        )
        guest = stays.create_guest(
            conn,
            tenant_id=t,
            full_name="Анна Петрова",
            phone="+7 916 123-45-67",
            email="anna@example.ru",
            actor=actor,
        )
        partner = stays.create_guest(conn, tenant_id=t, full_name="Иван Петров", actor=actor)
        today = utcnow().date()
        stay = stays.create_stay(
            conn,
            tenant_id=t,
            room_id=room_90.id,
            arrival=today,
            departure=today + timedelta(days=3),
            guest_ids=[guest.id, partner.id],
            check_in=True,
            actor=actor,
        )

        def new(name: str, kind: PaymentKind, **fields: Any) -> int:
            return create_payment_type(
                conn, tenant_id=t, name=name, kind=kind, actor=actor, **fields
            ).id

        terminal, key = create_terminal(conn, tenant_id=t, name="Ресторан", actor=actor)
        ids = {
            "cash": new("Наличные", PaymentKind.CASH),
            "card": new("Банковская карта", PaymentKind.CARD),
            "room_charge": new("Закрытие на номер", PaymentKind.ROOM_CHARGE),
            "deposit": new("Депозит", PaymentKind.DEPOSIT),
            "points": new(
                "Бонусные баллы (бонусы)", PaymentKind.POINTS, unit_code="PTS", max_share_bp=3000
            ),
        }
        add_payment_code(
            conn, tenant_id=t, code="12", payment_type_id=ids["room_charge"], actor=actor
        )
        add_payment_code(conn, tenant_id=t, code="13", payment_type_id=ids["deposit"], actor=actor)
        add_payment_code(conn, tenant_id=t, code="1", payment_type_id=ids["cash"], actor=actor)
        return {
            **ids,
            "property_id": prop.id,
            "room_90": room_90.id,
            "room_12a": room_12a.id,
            "guest": guest,
            "partner": partner,
            "stay": stay,
            "terminal_id": terminal.id,
            "terminal_key": key,
            "program_id": program.id,
        }

    made = run_transaction(engine, setup)
    return Resort(engine, tenant, actor, **made)


__all__ = ["TestClient", "_dispose_apps", "client", "date", "lines", "op"]
