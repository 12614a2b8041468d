"""A hotel whose guests pay bills with bonus points (seed 000, SPEC H-5): a tenant with
BONUS points (2 decimals), a program whose points live 30 days, a terminal with its key,
and cards issued with points on them."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine
from starlette.exceptions import StarletteDeprecationWarning

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.money import UnitKind
from kopilka.ledger.accounts import create_unit, system_account_id
from kopilka.ledger.posting import post_one, run_transaction, simple_transfer
from kopilka.ledger.verify import verify
from kopilka.loyalty.cards import CardView, get_card, issue_card
from kopilka.loyalty.programs import Program, create_program
from kopilka.tenancy.actions import Tenant, create_terminal

with warnings.catch_warnings():
    # Starlette asks for the httpx2 fork; plain httpx still works and is what we have.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient as TestClient

T = TypeVar("T")
_numbers = itertools.count(1)
_apps: dict[str, Any] = {}


def next_number() -> str:
    return f"55{next(_numbers):011d}"


@dataclass
class Hotel:
    engine: Engine
    tenant: Tenant
    actor: Actor
    program: Program
    terminal_id: int
    terminal_key: str

    @property
    def t(self) -> int:
        return self.tenant.id

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def card(
        self, points_minor: int = 0, *, available_at: datetime | None = None, **holder: Any
    ) -> CardView:
        """A new card with ``points_minor`` points on it (spendable from ``available_at``)."""
        number = next_number()
        card = self.tx(
            lambda c: issue_card(
                c,
                tenant_id=self.t,
                program_id=self.program.id,
                number=number,
                actor=self.actor,
                **holder,
            )
        )
        if points_minor:
            self.fund(card, points_minor, available_at=available_at)
        return self.get(card)

    def fund(
        self, card: CardView, points_minor: int, *, available_at: datetime | None = None
    ) -> None:
        def work(conn: Connection) -> None:
            issuance = system_account_id(
                conn, tenant_id=self.t, unit_code="BONUS", purpose="issuance", actor=self.actor
            )
            post_one(
                conn,
                tenant_id=self.t,
                spec=simple_transfer(
                    f"fund:{card.number}:{next(_numbers)}",
                    debit_account_id=issuance,
                    credit_account_id=card.account_id,
                    amount_minor=points_minor,
                    kind="manual_accrual",
                    available_at=available_at,
                ),
                actor=self.actor,
            )

        self.tx(work)

    def get(self, card: CardView) -> CardView:
        return self.read(lambda c: get_card(c, self.t, card.id))

    def assert_clean(self) -> None:
        problems = self.read(lambda c: verify(c, tenant_id=self.t))
        assert problems == [], problems


def make_hotel(engine: Engine, tenant: Tenant, actor: Actor) -> Hotel:
    def setup(conn: Connection) -> tuple[Program, int, str]:
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
            name="Бонусы Контура",
            unit_code="BONUS",
            actor=actor,
            lifetime_days=30,
        )
        terminal, key = create_terminal(conn, tenant_id=tenant.id, name="Ресепшн", actor=actor)
        return program, terminal.id, key

    program, terminal_id, key = run_transaction(engine, setup)
    return Hotel(engine, tenant, actor, program, terminal_id, key)


@pytest.fixture
def hotel(engine: Engine, tenant: Tenant, actor: Actor) -> Hotel:
    return make_hotel(engine, tenant, actor)


def app_for(engine: Engine) -> Any:
    from kopilka.api.app import create_app

    url = engine.url.render_as_string(hide_password=False)
    if url not in _apps:
        _apps[url] = create_app(url)
    return _apps[url]


@pytest.fixture
def client(hotel: Hotel) -> TestClient:
    """The processing API as the hotel's terminal calls it."""
    return TestClient(
        app_for(hotel.engine), headers={"Authorization": f"Bearer {hotel.terminal_key}"}
    )


@pytest.fixture(scope="session", autouse=True)
def _dispose_apps() -> Iterator[None]:
    yield
    for app in _apps.values():
        app.state.engine.dispose()
    _apps.clear()


@pytest.fixture
def desk(engine: Engine, actor: Actor) -> Any:
    """The web UI of a hotel with one user of each role (``tests.web.conftest.Web``)."""
    import uuid

    from kopilka.tenancy.actions import create_tenant, create_user
    from tests.web.conftest import PASSWORD, ROLES, Web

    with engine.begin() as conn:
        tenant = create_tenant(
            conn, slug=f"d-{uuid.uuid4().hex[:10]}", name="Гостиница «Берёзка»", actor=actor
        )
        users = {
            role: create_user(
                conn,
                tenant_id=tenant.id,
                login=f"{role.replace('_', '')}1",
                password=PASSWORD,
                role=role,
                actor=actor,
            )
            for role in ROLES
        }
        create_unit(
            conn,
            tenant_id=tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=actor,
        )
    return Web(engine, tenant, users)
