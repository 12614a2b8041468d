"""Reading events (SPEC X-3): the feed, and the one shape an event has outside.

Every event goes out as the same JSON object, whether a webhook carries it or the feed
(``GET /api/v1/events``) lists it::

    {"id": "evt_42", "type": "promised_payment.taken",
     "occurred_at": "2026-12-07T08:03:44.032253+00:00", "tenant": "demo",
     "data": {...the payload the domain wrote...}}

``id`` is the event's id as a string (``evt_`` and the number): the ``webhook-id`` of its
deliveries, an idempotency key for receivers, and where the feed resumes
(``?after=evt_42``). Ids grow with time within a tenant, so a receiver that missed
webhooks can read the feed from the last event it has and lose nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, select

from kopilka.core.errors import InvalidInput, NotFound
from kopilka.events.catalogue import check_event_types
from kopilka.events.error_codes import EventErrorCode as E
from kopilka.events.schema import events
from kopilka.tenancy.schema import tenants

EVENT_ID_PREFIX = "evt_"
MAX_FEED_PAGE = 200
_MAX_ID = 2**63 - 1


def event_key(event_id: int) -> str:
    """An event's id as integrators see it: ``evt_42``."""
    assert event_id >= 1
    return f"{EVENT_ID_PREFIX}{event_id}"


def parse_event_key(text: str) -> int:
    """``evt_42`` -> 42; ``invalid_event_id`` for anything else."""
    number = text.removeprefix(EVENT_ID_PREFIX) if text.startswith(EVENT_ID_PREFIX) else ""
    if not (number.isascii() and number.isdigit() and 1 <= int(number) <= _MAX_ID):
        raise InvalidInput(
            E.INVALID_EVENT_ID,
            f"an event id is evt_ and a number, such as evt_42, not {text[:40]!r}",
        )
    return int(number)


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    tenant_id: int
    tenant_slug: str
    type: str
    subject_type: str
    subject_id: str
    payload: dict[str, Any]
    occurred_at: datetime

    @property
    def key(self) -> str:
        return event_key(self.id)

    def envelope(self) -> dict[str, Any]:
        """The event as it goes out (see the module's docstring)."""
        return {
            "id": self.key,
            "type": self.type,
            "occurred_at": self.occurred_at.isoformat(),
            "tenant": self.tenant_slug,
            "data": self.payload,
        }

    def body(self) -> bytes:
        """The envelope as a webhook's body: compact UTF-8 JSON, the same bytes each time
        (the signature covers exactly these)."""
        return json.dumps(self.envelope(), ensure_ascii=False, separators=(",", ":")).encode()


def _select() -> Select[Any]:
    return select(events, tenants.c.slug.label("tenant_slug")).select_from(
        events.join(tenants, tenants.c.id == events.c.tenant_id)
    )


def event_of(row: Any) -> EventView:
    return EventView(
        id=row.id,
        tenant_id=row.tenant_id,
        tenant_slug=row.tenant_slug,
        type=row.type,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        payload=dict(row.payload),
        occurred_at=row.occurred_at,
    )


def get_event(conn: Connection, tenant_id: int, event_id: int) -> EventView:
    row = conn.execute(
        _select().where(events.c.tenant_id == tenant_id, events.c.id == event_id)
    ).first()
    if row is None:
        raise NotFound(
            E.EVENT_NOT_FOUND, f"event {event_key(event_id)} does not exist", event_id=event_id
        )
    return event_of(row)


def list_events(
    conn: Connection,
    tenant_id: int,
    *,
    after_id: int = 0,
    types: Collection[str] = (),
    limit: int = 50,
) -> list[EventView]:
    """The tenant's events after ``after_id``, oldest first, of ``types`` (none: all)."""
    assert 1 <= limit <= MAX_FEED_PAGE + 1 and after_id >= 0
    wanted = check_event_types(types)
    query = (
        _select()
        .where(events.c.tenant_id == tenant_id, events.c.id > after_id)
        .order_by(events.c.id)
        .limit(limit)
    )
    if wanted:
        query = query.where(events.c.type.in_(wanted))
    found = [event_of(row) for row in conn.execute(query)]
    assert all(event.tenant_id == tenant_id for event in found)
    return found
