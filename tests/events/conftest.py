"""Events and webhooks on the real databases, delivered to a real receiver on 127.0.0.1.

``hooks`` gives the test a tenant of its own and verbs that read like the examples:
``endpoint`` adds one, ``emit`` writes an event as a domain does (in its own
transaction), ``run`` is one pass of the worker for this tenant only (so tests never
send each other's deliveries), ``at(n)`` a moment n steps ahead, each step longer than
the longest wait between tries, so every delivery tried before is due again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, Engine

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.db import read_only
from kopilka.events import webhooks as wh
from kopilka.events.delivery import DeliveryCounts, deliver_due
from kopilka.events.outbox import emit
from kopilka.ledger.posting import run_transaction
from kopilka.tenancy.actions import Tenant, create_branch, create_tenant, create_user
from tests.events.receiver import Receiver, webhook_receiver
from tests.web.conftest import PASSWORD, ROLES, Web
from tests.web.conftest import _apps as web_apps

T = TypeVar("T")
TIMEOUT = 0.4  # seconds: the worker's timeout in tests (the receiver hangs for longer)
STEP = timedelta(days=2)
# Where deliveries go that a test writes but never sends: nothing listens there, so a
# worker in a later test that tried one would be refused at once, never reach out.
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver(hang_seconds=TIMEOUT * 4) as started:
        yield started


@dataclass
class Hooks:
    engine: Engine
    tenant: Tenant
    actor: Actor
    start: datetime

    def tx(self, work: Callable[[Connection], T]) -> T:
        return run_transaction(self.engine, work)

    def read(self, work: Callable[[Connection], T]) -> T:
        with read_only(self.engine) as conn:
            return work(conn)

    def at(self, steps: int) -> datetime:
        return self.start + steps * STEP

    def endpoint(
        self, url: str, types: Iterable[str] = (), receiver: Receiver | None = None, **fields: Any
    ) -> wh.Endpoint:
        made = self.tx(
            lambda conn: wh.create_endpoint(
                conn,
                tenant_id=self.tenant.id,
                url=url,
                event_types=types,
                actor=self.actor,
                **fields,
            )
        )
        if receiver is not None:
            receiver.secrets.append(made.secret)
        return made

    def emit(
        self, type: str = "promised_payment.taken", subject_id: int = 7, **payload: Any
    ) -> int:
        return self.tx(
            lambda conn: emit(
                conn,
                tenant_id=self.tenant.id,
                type=type,
                subject_type=type.split(".")[0],
                subject_id=subject_id,
                payload=payload or {"subscriber_id": subject_id, "amount": "500.00"},
            )
        )

    def run(self, steps: int = 0, **options: Any) -> DeliveryCounts:
        options.setdefault("timeout_seconds", TIMEOUT)
        return deliver_due(self.engine, now=self.at(steps), tenant_id=self.tenant.id, **options)

    def deliveries(self, **filters: Any) -> list[wh.DeliveryView]:
        return self.read(lambda conn: wh.list_deliveries(conn, self.tenant.id, **filters))

    def delivery(self, delivery_id: int) -> wh.DeliveryView:
        return self.read(lambda conn: wh.get_delivery(conn, self.tenant.id, delivery_id))

    def attempts(self, delivery_id: int) -> list[wh.AttemptView]:
        return self.read(lambda conn: wh.attempts_of(conn, self.tenant.id, [delivery_id]))[
            delivery_id
        ]


@pytest.fixture
def web(engine: Engine, actor: Actor) -> Web:
    """A tenant with a user of each role, for the screens (as ``tests/web``'s fixture)."""
    with engine.begin() as conn:
        tenant = create_tenant(
            conn, slug=f"w-{uuid.uuid4().hex[:10]}", name="Интернет «Ромашка»", actor=actor
        )
        branch_id = create_branch(conn, tenant_id=tenant.id, name="Main office", actor=actor)
        users = {
            role: create_user(
                conn,
                tenant_id=tenant.id,
                login=f"{role.replace('_', '')}1",
                password=PASSWORD,
                role=role,
                full_name=f"{role.title()} Person",
                actor=actor,
            )
            for role in ROLES
        }
    return Web(engine, tenant, users, branch_id)


@pytest.fixture(scope="session", autouse=True)
def _dispose_screen_apps() -> Iterator[None]:
    yield
    for app in web_apps.values():
        app.state.engine.dispose()
    web_apps.clear()


@pytest.fixture
def other_hooks(engine: Engine, actor: Actor) -> Hooks:
    """A second tenant, for isolation tests."""
    with engine.begin() as conn:
        other = create_tenant(
            conn, slug=f"o-{uuid.uuid4().hex[:12]}", name="Other tenant", actor=actor
        )
    return Hooks(engine, other, actor, utcnow() + timedelta(minutes=1))


@pytest.fixture
def hooks(engine: Engine, tenant: Tenant, actor: Actor) -> Hooks:
    # A minute ahead: what the test emits is due at step 0 however long the test takes.
    return Hooks(engine, tenant, actor, utcnow() + timedelta(minutes=1))
