"""The append-only audit trail: who did what, when, from where.

Ledger transfers, holds and limit changes carry their actor on their own append-only
rows; every other change (users, terminals, accounts, units, settings) writes one row
here, in the same transaction as the change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.tenancy.schema import audit_events


def record_audit(
    conn: Connection,
    *,
    tenant_id: int | None,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: int | str | None,
    details: dict[str, Any] | None = None,
) -> None:
    assert action and "." in action, "actions are named domain.verb"
    conn.execute(
        audit_events.insert(),
        {
            "tenant_id": tenant_id,
            "at": utcnow(),
            "actor_type": actor.type.value,
            "actor_id": actor.id,
            "actor_label": actor.label,
            "source_ip": actor.source_ip,
            "action": action,
            "object_type": object_type,
            "object_id": None if object_id is None else str(object_id),
            "details": _plain(details),
        },
    )


def _plain(details: dict[str, Any] | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return {
        key: (str(value) if not isinstance(value, int | str | bool | None) else value)
        for key, value in details.items()
    }
