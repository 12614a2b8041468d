"""An internet provider (seed 003): a tenant in Moscow's time zone with roubles, and
helpers that act at a named moment, so the seed's dates can be lived through."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.db import read_only
from kopilka.core.money import parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.verify import verify
from kopilka.subscribers import billing, promised
from kopilka.subscribers.billing import ChargingResult, TopUpView
from kopilka.subscribers.common import open_system_accounts
from kopilka.subscribers.promised import PromisedView
from kopilka.subscribers.registry import SubscriberIn, SubscriberView, get_subscriber
from kopilka.subscribers.registry import create_subscriber as _create
from kopilka.subscribers.tariffs import (
    ServiceIn,
    ServiceView,
    TariffIn,
    TariffView,
    create_service,
    create_tariff,
)
from kopilka.tenancy.actions import Tenant

T = TypeVar("T")
MSK = ZoneInfo("Europe/Moscow")
START = datetime(2026, 1, 1, tzinfo=MSK)
_ops = itertools.count(1)
_numbers = itertools.count(1)


def at(
    year: int, month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0
) -> datetime:
    """A moment on Moscow's clock."""
    return datetime(year, month, day, hour, minute, second, tzinfo=MSK)


def rub(amount: int | str) -> int:
    """Roubles in kopecks."""
    return parse_amount(amount, 2) if isinstance(amount, str) else amount * 100


def op() -> str:
    return f"op-{next(_ops)}"


@dataclass
class Isp:
    engine: Engine
    tenant: Tenant
    actor: Actor

    @property
    def t(self) -> int:
        return self.tenant.id

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def tariff(
        self, name: str = "", price: int = 600, method: str = "monthly", **kw: Any
    ) -> TariffView:
        data = TariffIn(name or f"Тариф {next(_numbers)}", rub(price), method, **kw)
        return self.tx(
            lambda c: create_tariff(c, tenant_id=self.t, data=data, actor=self.actor, now=START)
        )

    def service(
        self, amount: int = 600, days: int = 5, method: str = "daily", name: str = "", **kw: Any
    ) -> ServiceView:
        if "connection_price" in kw:
            kw["connection_price_minor"] = rub(kw.pop("connection_price"))
        data = ServiceIn(
            name or f"Обещанный платёж {next(_numbers)}", rub(amount), days, method, **kw
        )
        return self.tx(lambda c: create_service(c, tenant_id=self.t, data=data, actor=self.actor))

    def subscriber(
        self, tariff: TariffView, *, when: datetime = START, threshold: int = 0, **kw: Any
    ) -> SubscriberView:
        data = SubscriberIn(
            kw.pop("account_no", f"A{next(_numbers):05d}"),
            kw.pop("full_name", "Иван Абонентов"),
            tariff.id,
            base_limit_minor=-rub(threshold),  # a threshold of -50 is a limit of 50
            **kw,
        )
        return self.tx(
            lambda c: _create(c, tenant_id=self.t, data=data, actor=self.actor, now=when)
        )

    def get(self, sub: SubscriberView | int) -> SubscriberView:
        sid = sub if isinstance(sub, int) else sub.id
        return self.read(lambda c: get_subscriber(c, self.t, sid))

    def activate(self, sub: SubscriberView, when: datetime, *, by_session: bool = True) -> None:
        self.tx(
            lambda c: billing.activate(
                c,
                tenant_id=self.t,
                subscriber_id=sub.id,
                actor=self.actor,
                by_session=by_session,
                now=when,
            )
        )

    def top_up(
        self, sub: SubscriberView, amount: int, when: datetime, operation_id: str = ""
    ) -> TopUpView:
        return self.tx(
            lambda c: billing.top_up(
                c,
                tenant_id=self.t,
                subscriber_id=sub.id,
                amount_minor=rub(amount),
                operation_id=operation_id or op(),
                actor=self.actor,
                now=when,
            )
        )

    def take(
        self, sub: SubscriberView, service: ServiceView, when: datetime, **kw: Any
    ) -> PromisedView:
        operation_id = kw.pop("operation_id", None) or op()
        return self.tx(
            lambda c: promised.take(
                c,
                tenant_id=self.t,
                subscriber_id=sub.id,
                service_id=service.id,
                operation_id=operation_id,
                actor=self.actor,
                now=when,
                **kw,
            )
        )

    def run(self, when: datetime) -> ChargingResult:
        return billing.run_charging(self.engine, tenant_id=self.t, actor=self.actor, now=when)

    def count(self, table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == self.t)
        return int(self.read(lambda c: c.execute(query).scalar_one()))

    def assert_clean(self) -> None:
        problems = self.read(lambda c: verify(c, tenant_id=self.t))
        assert problems == [], problems


@pytest.fixture
def isp(engine: Engine, tenant: Tenant, actor: Actor) -> Isp:
    def setup(conn: Connection) -> None:
        open_system_accounts(conn, tenant.id, actor, opened_at=START)

    run_transaction(engine, setup)
    return Isp(engine, tenant, actor)
