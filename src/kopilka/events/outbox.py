"""Writing an event (SPEC X-3) in the caller's transaction, with a delivery row for each
of the tenant's active webhook endpoints that wants its type.

This is an outbox: the event and its deliveries commit or roll back with the change they
tell about, so a receiver never hears of a change that did not happen, nor misses one
that did. Nothing here touches the network; ``kopilka.events.delivery`` sends the
deliveries after the commit.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from kopilka.core.clock import as_utc, utcnow
from kopilka.events.catalogue import EVENT_TYPES
from kopilka.events.schema import events, webhook_deliveries, webhook_endpoints

# The Standard Webhooks spec asks for small payloads (under 20 kB); ids, not documents.
MAX_PAYLOAD_BYTES = 32_000
MAX_SUBJECT_TYPE = 32
MAX_SUBJECT_ID = 64


def emit(
    conn: Connection,
    *,
    tenant_id: int,
    type: str,
    subject_type: str,
    subject_id: int | str,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> int:
    """Record an event; its id. Deliveries are queued for the endpoints that want it.

    ``type`` is one of ``kopilka.events.catalogue.EVENT_TYPES``; ``payload`` a JSON object
    (plain JSON values only: amounts as decimal strings, times as ISO 8601 text); ``now``
    the moment it happened (default: now).
    """
    assert type in EVENT_TYPES, f"add {type!r} to kopilka.events.catalogue first"
    subject = str(subject_id)
    assert 1 <= len(subject_type) <= MAX_SUBJECT_TYPE and 1 <= len(subject) <= MAX_SUBJECT_ID
    assert isinstance(payload, dict), "a payload is a JSON object"
    size = len(json.dumps(payload, ensure_ascii=False).encode())  # TypeError: not JSON
    assert size <= MAX_PAYLOAD_BYTES, f"a payload of {size} bytes is too big for a webhook"
    written = utcnow()
    moment = as_utc(now) if now is not None else written
    event_id = int(
        conn.execute(
            events.insert().returning(events.c.id),
            {
                "tenant_id": tenant_id,
                "type": type,
                "subject_type": subject_type,
                "subject_id": subject,
                "payload": payload,
                "occurred_at": moment,
            },
        ).scalar_one()
    )
    wanted = [
        row.id
        for row in conn.execute(
            select(webhook_endpoints.c.id, webhook_endpoints.c.event_types)
            .where(
                webhook_endpoints.c.tenant_id == tenant_id,
                webhook_endpoints.c.is_active.is_(True),
            )
            .order_by(webhook_endpoints.c.id)
        )
        if not row.event_types or type in row.event_types
    ]
    if wanted:
        conn.execute(
            webhook_deliveries.insert(),
            [
                {
                    "tenant_id": tenant_id,
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "status": "pending",
                    "attempts": 0,
                    # Due at once, whether the event is dated in the past or the future.
                    "next_attempt_at": min(moment, written),
                    "created_at": written,
                }
                for endpoint_id in wanted
            ],
        )
    return event_id
