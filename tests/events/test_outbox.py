"""``emit`` writes an event and its deliveries in the caller's transaction: both or
neither (SPEC X-3, X-2)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, func, select

from kopilka.core.db import read_only
from kopilka.events.feed import list_events
from kopilka.events.outbox import emit
from kopilka.events.schema import events, webhook_deliveries
from tests.events.conftest import NOWHERE, Hooks


def test_an_event_gets_a_delivery_per_active_endpoint_that_wants_it(hooks: Hooks) -> None:
    every = hooks.endpoint(f"{NOWHERE}/all")
    picky = hooks.endpoint(f"{NOWHERE}/pp", ["promised_payment.taken"])
    hooks.endpoint(f"{NOWHERE}/off", is_active=False)
    hooks.endpoint(f"{NOWHERE}/other", ["membership.sold"])
    taken = hooks.emit("promised_payment.taken")
    ended = hooks.emit("promised_payment.ended")
    by_event = {(d.event_id, d.endpoint_id) for d in hooks.deliveries()}
    assert by_event == {(taken, every.id), (taken, picky.id), (ended, every.id)}
    assert all(d.status == "pending" and d.attempts == 0 for d in hooks.deliveries())


def test_an_event_keeps_its_moment_and_payload(hooks: Hooks) -> None:
    moment = datetime(2031, 3, 1, 9, 30, tzinfo=UTC)
    event_id = hooks.tx(
        lambda conn: emit(
            conn,
            tenant_id=hooks.tenant.id,
            type="subscriber.status_changed",
            subject_type="subscriber",
            subject_id=12,
            payload={"subscriber_id": 12, "status": "blocked", "name": "Ирина"},
            now=moment,
        )
    )
    with read_only(hooks.engine) as conn:
        (event,) = list_events(conn, hooks.tenant.id)
    assert event.id == event_id and event.occurred_at == moment
    assert event.subject_type == "subscriber" and event.subject_id == "12"
    assert event.envelope() == {
        "id": f"evt_{event_id}",
        "type": "subscriber.status_changed",
        "occurred_at": "2031-03-01T09:30:00+00:00",
        "tenant": hooks.tenant.slug,
        "data": {"subscriber_id": 12, "status": "blocked", "name": "Ирина"},
    }
    assert "Ирина".encode() in event.body()  # UTF-8, not \\u escapes


def counts_in(conn: Connection, hooks: Hooks) -> tuple[int, int]:
    return (
        conn.execute(
            select(func.count()).where(events.c.tenant_id == hooks.tenant.id)
        ).scalar_one(),
        conn.execute(
            select(func.count()).where(webhook_deliveries.c.tenant_id == hooks.tenant.id)
        ).scalar_one(),
    )


def counts(hooks: Hooks) -> tuple[int, int]:
    with read_only(hooks.engine) as conn:
        return counts_in(conn, hooks)


def activated(conn: Connection, hooks: Hooks) -> int:
    return emit(
        conn,
        tenant_id=hooks.tenant.id,
        type="subscriber.activated",
        subject_type="subscriber",
        subject_id=1,
        payload={"subscriber_id": 1},
    )


class Refusal(Exception):
    pass


def test_an_event_in_a_rolled_back_transaction_leaves_nothing(hooks: Hooks) -> None:
    hooks.endpoint(f"{NOWHERE}/all")
    with hooks.engine.connect() as conn:
        transaction = conn.begin()
        activated(conn, hooks)
        assert counts_in(conn, hooks) == (1, 1)
        transaction.rollback()
    assert counts(hooks) == (0, 0)

    def change_then_refuse(conn: Connection) -> None:
        activated(conn, hooks)
        raise Refusal("the change the event told about was refused")

    with pytest.raises(Refusal):
        hooks.tx(change_then_refuse)
    assert counts(hooks) == (0, 0)
    hooks.tx(lambda conn: activated(conn, hooks))
    assert counts(hooks) == (1, 1)


def test_only_known_types_and_json_payloads_are_emitted(hooks: Hooks) -> None:
    with pytest.raises(AssertionError, match="catalogue"):
        hooks.emit("subscriber.deleted")
    with pytest.raises(TypeError):
        hooks.emit("subscriber.activated", when=datetime.now(UTC))
    assert counts(hooks) == (0, 0)
