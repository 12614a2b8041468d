"""A studio that sells memberships online (seed 004): a tenant with the module on, a 3 %
commission, the sandbox provider, groups and classes; helpers that play the provider's
part by handing the domain the payment the provider vouches for."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine, func, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.verify import verify
from kopilka.memberships import catalogue, sales
from kopilka.memberships.catalogue import OnlineSettings, TypeIn
from kopilka.memberships.providers.base import PaymentState, ProviderPayment
from kopilka.memberships.sales import OrderView
from kopilka.tenancy.actions import Tenant
from tests.mail.conftest import smtp_server  # noqa: F401  (the fixture, for the e-mail tests)

T = TypeVar("T")
_payments = itertools.count(1)


@dataclass
class Studio:
    engine: Engine
    tenant: Tenant
    actor: Actor
    eight: catalogue.TypeView  # "8 занятий в месяц", 4000.00, sold online
    unlimited: catalogue.TypeView  # "Безлимит", 7000.00, sold online
    trial: catalogue.TypeView  # "Пробное", not permanent: not sold online
    yoga: catalogue.GroupView
    dance: catalogue.GroupView
    yoga_class: catalogue.ClassView

    @property
    def t(self) -> int:
        return self.tenant.id

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def checkout(
        self,
        kind: catalogue.TypeView | None = None,
        email: str = "client@example.ru",
        locale: str = "ru",
    ) -> OrderView:
        chosen = kind or self.eight
        order = self.tx(
            lambda c: sales.start_checkout(
                c, tenant_id=self.t, type_id=chosen.id, email=email, locale=locale
            )
        )
        payment = ProviderPayment(
            f"sbx_test_{next(_payments)}",
            PaymentState.PENDING,
            order.total_minor,
            order.currency,
            redirect_url="http://127.0.0.1/sandbox/pay/x",
            order_id=order.id,
        )
        return self.tx(
            lambda c: sales.attach_payment(c, tenant_id=self.t, order_id=order.id, payment=payment)
        )

    def provider_says(self, order: OrderView, state: PaymentState, **kw: Any) -> OrderView:
        payment = ProviderPayment(
            str(order.provider_payment_id),
            state,
            kw.pop("amount_minor", order.total_minor),
            kw.pop("currency", order.currency),
            order_id=kw.pop("order_id", order.id),
        )
        return self.tx(
            lambda c: sales.record_payment(
                c, tenant_id=self.t, provider=order.provider, payment=payment, actor=self.actor
            )
        )

    def count(self, table: Any) -> int:
        query = select(func.count()).select_from(table).where(table.c.tenant_id == self.t)
        return int(self.read(lambda c: c.execute(query).scalar_one()))

    def assert_clean(self) -> None:
        problems = self.read(lambda c: verify(c, tenant_id=self.t))
        assert problems == [], problems


@pytest.fixture
def studio(engine: Engine, tenant: Tenant, actor: Actor) -> Studio:
    def setup(conn: Connection) -> dict[str, Any]:
        t = tenant.id
        catalogue.update_settings(
            conn,
            tenant_id=t,
            settings=OnlineSettings(online_enabled=True, commission_bp=300, provider="sandbox"),
            actor=actor,
        )
        eight = catalogue.create_type(
            conn,
            tenant_id=t,
            data=TypeIn(
                "8 занятий в месяц",
                400_000,
                30,
                classes=8,
                sell_online=True,
                button_text="Купить 8 занятий",
            ),
            actor=actor,
        )
        unlimited = catalogue.create_type(
            conn,
            tenant_id=t,
            data=TypeIn("Безлимит", 700_000, 30, sell_online=True, button_text="Купить безлимит"),
            actor=actor,
        )
        trial = catalogue.create_type(
            conn, tenant_id=t, data=TypeIn("Пробное", 50_000, 7, is_permanent=False), actor=actor
        )
        yoga = catalogue.create_group(conn, tenant_id=t, name="Йога", actor=actor)
        dance = catalogue.create_group(conn, tenant_id=t, name="Танцы", actor=actor)
        yoga_class = catalogue.create_class(
            conn,
            tenant_id=t,
            group_id=yoga.id,
            starts_at=utcnow() + timedelta(days=2),
            minutes=60,
            actor=actor,
        )
        return {
            "eight": eight,
            "unlimited": unlimited,
            "trial": trial,
            "yoga": yoga,
            "dance": dance,
            "yoga_class": yoga_class,
        }

    made = run_transaction(engine, setup)
    return Studio(engine, tenant, actor, **made)
