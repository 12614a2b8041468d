"""A tenant's cash registers (SPEC H-6): where its fiscal receipts are printed.

A register has a name (unique in the tenant, whatever its letters' case), an adapter
(``atol_online_v5``), that adapter's settings and an on/off switch. A switched-off
register takes no new receipts; those it accepted before still go out and are still
asked about. The adapter is fixed once the register exists; the name, the switch and the
settings change, each change one audit event.

The password in the settings is a secret: it is kept for the adapter, and nothing else
ever shows it. ``CashRegister.public_settings`` is what screens and the API show
(``password_set`` in its place); the audit trail says only that it changed; ``repr`` of
a register leaves the settings out, so a log line cannot carry it either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from sqlalchemy import Connection, Select, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound
from kopilka.fiscal import adapters
from kopilka.fiscal.error_codes import FiscalErrorCode as E
from kopilka.fiscal.schema import cash_registers
from kopilka.tenancy.audit import record_audit

MAX_NAME = 100


@dataclass(frozen=True, slots=True)
class CashRegister:
    id: int
    tenant_id: int
    name: str
    adapter: str
    enabled: bool
    created_at: datetime
    # With the password: for ``adapters.adapter_for`` only. Never shown, never logged.
    settings: dict[str, Any] = field(repr=False)

    @property
    def public_settings(self) -> dict[str, Any]:
        """The settings without secrets, and ``password_set``."""
        return adapters.public_settings(self.adapter, self.settings)


def _register(row: Any) -> CashRegister:
    return CashRegister(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        adapter=row.adapter,
        enabled=bool(row.enabled),
        created_at=row.created_at,
        settings=dict(row.settings or {}),
    )


def _select(tenant_id: int) -> Select[Any]:
    return select(cash_registers).where(cash_registers.c.tenant_id == tenant_id)


def _not_found(register_id: int) -> NotFound:
    return NotFound(
        E.CASH_REGISTER_NOT_FOUND,
        f"cash register {register_id} does not exist",
        register_id=register_id,
    )


def get_register(conn: Connection, tenant_id: int, register_id: int) -> CashRegister:
    row = conn.execute(_select(tenant_id).where(cash_registers.c.id == register_id)).first()
    if row is None:
        raise _not_found(register_id)
    return _register(row)


def list_registers(
    conn: Connection, tenant_id: int, *, enabled_only: bool = False
) -> list[CashRegister]:
    """The tenant's registers by name (switched on only, if asked)."""
    query = _select(tenant_id).order_by(cash_registers.c.name, cash_registers.c.id)
    if enabled_only:
        query = query.where(cash_registers.c.enabled.is_(True))
    return [_register(row) for row in conn.execute(query)]


def _clean_name(name: object) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(cleaned) <= MAX_NAME:
        raise InvalidInput(
            E.INVALID_CASH_REGISTER,
            f"a cash register's name is 1 to {MAX_NAME} characters",
            field="name",
        )
    return cleaned


def _check_enabled(enabled: object) -> bool:
    if not isinstance(enabled, bool):
        raise InvalidInput(E.INVALID_CASH_REGISTER, "enabled is true or false", field="enabled")
    return enabled


def _name_taken(conn: Connection, tenant_id: int, name: str, but: int | None = None) -> bool:
    """Whether another register of the tenant has this name, in any letters' case (folded
    in Python: SQLite's ``lower`` knows only ASCII, and the names are Russian)."""
    query = select(cash_registers.c.id, cash_registers.c.name).where(
        cash_registers.c.tenant_id == tenant_id
    )
    wanted = name.casefold()
    return any(row.name.casefold() == wanted and row.id != but for row in conn.execute(query))


def _name_conflict(name: str) -> Conflict:
    return Conflict(
        E.CASH_REGISTER_EXISTS, f"a cash register named {name!r} exists already", name=name
    )


def create_register(
    conn: Connection,
    *,
    tenant_id: int,
    name: str,
    settings: Mapping[str, Any],
    actor: Actor,
    adapter: str = adapters.ATOL_ONLINE_V5,
    enabled: bool = True,
) -> CashRegister:
    """A new register with checked settings; everything is checked before anything is
    written (``invalid_register_setting`` names the field at fault)."""
    name = _clean_name(name)
    enabled = _check_enabled(enabled)
    stored = adapters.parse_settings(adapter, settings)
    if _name_taken(conn, tenant_id, name):
        raise _name_conflict(name)
    register_id = conn.execute(
        cash_registers.insert().returning(cash_registers.c.id),
        {
            "tenant_id": tenant_id,
            "name": name,
            "adapter": adapter,
            "settings": stored,
            "enabled": enabled,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="cash_register.create",
        object_type="cash_register",
        object_id=register_id,
        details={
            "name": name,
            "adapter": adapter,
            "enabled": enabled,
            **adapters.public_settings(adapter, stored),
        },
    )
    created = get_register(conn, tenant_id, register_id)
    assert created.name == name and created.settings == stored
    return created


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
"""A field ``update_register`` leaves as it is."""

Keep = Literal[_Unchanged.UNCHANGED]


def update_register(
    conn: Connection,
    *,
    tenant_id: int,
    register_id: int,
    actor: Actor,
    name: str | Keep = UNCHANGED,
    enabled: bool | Keep = UNCHANGED,
    settings: Mapping[str, Any] | Keep = UNCHANGED,
) -> CashRegister:
    """Change the given fields; ``settings`` names only the settings that change (an
    empty password keeps the one there is). One audit event names each changed field
    with its new and old value (the password only as changed); a call that changes
    nothing writes nothing."""
    row = conn.execute(
        _select(tenant_id).where(cash_registers.c.id == register_id).with_for_update()
    ).first()
    if row is None:
        raise _not_found(register_id)
    current = _register(row)
    values: dict[str, Any] = {}
    if name is not UNCHANGED and _clean_name(name) != current.name:
        values["name"] = _clean_name(name)
    if enabled is not UNCHANGED and _check_enabled(enabled) != current.enabled:
        values["enabled"] = enabled
    if settings is not UNCHANGED:
        stored = adapters.parse_settings(current.adapter, settings, current.settings)
        if stored != current.settings:
            values["settings"] = stored
    if not values:
        return current
    if "name" in values and _name_taken(conn, tenant_id, values["name"], but=register_id):
        raise _name_conflict(values["name"])
    conn.execute(update(cash_registers).where(cash_registers.c.id == register_id).values(**values))
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="cash_register.update",
        object_type="cash_register",
        object_id=register_id,
        details=_changes(current, values),
    )
    updated = get_register(conn, tenant_id, register_id)
    assert updated.settings == values.get("settings", current.settings)
    return updated


def _changes(current: CashRegister, values: dict[str, Any]) -> dict[str, Any]:
    """Flat audit details: each changed field's new value and what it was (never the
    password: only that it changed)."""
    details: dict[str, Any] = {}
    for key in ("name", "enabled"):
        if key in values:
            details[key] = values[key]
            details[f"{key}_was"] = getattr(current, key)
    if "settings" in values:
        new = adapters.public_settings(current.adapter, values["settings"])
        old = current.public_settings
        for key in sorted(new):
            if key != "password_set" and new[key] != old.get(key):
                details[key] = new[key]
                details[f"{key}_was"] = old.get(key)
        if values["settings"].get("password") != current.settings.get("password"):
            details["password_changed"] = True
    return details


def set_register_enabled(
    conn: Connection, *, tenant_id: int, register_id: int, enabled: bool, actor: Actor
) -> CashRegister:
    """Switch a register on or off."""
    return update_register(
        conn, tenant_id=tenant_id, register_id=register_id, actor=actor, enabled=enabled
    )
