"""Changing a program's rules after it was created (SPEC C-4), for the back office.

``create_program`` fixes what cannot change once cards exist: the point unit (the cards'
wallets are in it) and the currency (accumulations and thresholds are in it). Everything
else may change: the name, whether the program is switched on, and its rules. A change
applies from the moment it is made; accruals and lots posted before keep the dates they
were given, and the nightly routine puts cards on the tiers the new rules give.

Limits are checked here for both creating and changing, so a door gets the same code
(``invalid_program``) for every out-of-range rule; the database's CHECKs are the last
line behind them.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from sqlalchemy import Connection, select, update

from kopilka.core.actor import Actor
from kopilka.core.errors import Conflict, InvalidInput, NotFound
from kopilka.core.money import MAX_ABS_MINOR
from kopilka.loyalty.programs import BP, Program, forget_program, get_program
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.schema import loyalty_programs
from kopilka.tenancy.audit import record_audit

# Any period of days longer than a century is a typing error, and would overflow dates.
MAX_DAYS = 36_500
MAX_NAME = 200


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
"""A rule ``update_program`` leaves as it is."""

Keep = Literal[_Unchanged.UNCHANGED]


def _within(value: object, least: int, most: int) -> bool:
    """Whether ``value`` is a whole number (not a bool) from ``least`` to ``most``."""
    return isinstance(value, int) and not isinstance(value, bool) and least <= value <= most


def _bp(value: object, what: str) -> None:
    if not _within(value, 0, BP):
        raise InvalidInput(E.INVALID_PROGRAM, f"{what} is 0 to 100 % (0 to {BP} basis points)")


def _days(value: object, what: str, *, least: int, optional: bool) -> None:
    if value is None and optional:
        return
    if not _within(value, least, MAX_DAYS):
        never = " (or none)" if optional else ""
        raise InvalidInput(E.INVALID_PROGRAM, f"{what} is {least} to {MAX_DAYS} days{never}")


def check_rules(
    *,
    accrual_bp: int,
    exclude_points_part: bool,
    activation_delay_days: int,
    lifetime_days: int | None,
    max_share_bp: int,
    min_check_minor: int,
    accumulation_window_days: int | None,
) -> None:
    """Refuse (``invalid_program``) a rule out of its range."""
    _bp(accrual_bp, "the accrual rate")
    _bp(max_share_bp, "the share of a check payable with points")
    if not isinstance(exclude_points_part, bool):
        raise InvalidInput(E.INVALID_PROGRAM, "exclude_points_part is true or false")
    _days(activation_delay_days, "the activation delay", least=0, optional=False)
    _days(lifetime_days, "the points' lifetime", least=1, optional=True)
    _days(accumulation_window_days, "the accumulation window", least=1, optional=True)
    if not _within(min_check_minor, 0, MAX_ABS_MINOR):
        raise InvalidInput(E.INVALID_PROGRAM, "the minimum check is zero or more")


def _clean_name(name: object) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(cleaned) <= MAX_NAME:
        raise InvalidInput(E.INVALID_PROGRAM, f"a program's name is 1 to {MAX_NAME} characters")
    return cleaned


def update_program(
    conn: Connection,
    *,
    tenant_id: int,
    program_id: int,
    actor: Actor,
    name: str | Keep = UNCHANGED,
    enabled: bool | Keep = UNCHANGED,
    accrual_bp: int | Keep = UNCHANGED,
    exclude_points_part: bool | Keep = UNCHANGED,
    activation_delay_days: int | Keep = UNCHANGED,
    lifetime_days: int | Keep | None = UNCHANGED,
    max_share_bp: int | Keep = UNCHANGED,
    min_check_minor: int | Keep = UNCHANGED,
    accumulation_window_days: int | Keep | None = UNCHANGED,
) -> Program:
    """Change the given rules of a program (the others stay); returns it as changed.

    ``lifetime_days`` and ``accumulation_window_days`` may be set to None (points live
    for ever; accumulation counts every purchase). One audit record names each changed
    rule with its new and its old value; a call that changes nothing writes nothing.
    """
    row = conn.execute(
        select(loyalty_programs)
        .where(loyalty_programs.c.tenant_id == tenant_id, loyalty_programs.c.id == program_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.PROGRAM_NOT_FOUND, f"program {program_id} does not exist")
    asked: dict[str, Any] = {
        "name": name,
        "enabled": enabled,
        "accrual_bp": accrual_bp,
        "exclude_points_part": exclude_points_part,
        "activation_delay_days": activation_delay_days,
        "lifetime_days": lifetime_days,
        "max_share_bp": max_share_bp,
        "min_check_minor": min_check_minor,
        "accumulation_window_days": accumulation_window_days,
    }
    current = {field: getattr(row, field) for field in asked}
    current["enabled"] = bool(current["enabled"])
    current["exclude_points_part"] = bool(current["exclude_points_part"])
    wanted = {f: current[f] if v is UNCHANGED else v for f, v in asked.items()}
    wanted["name"] = _clean_name(wanted["name"])
    if not isinstance(wanted["enabled"], bool):
        raise InvalidInput(E.INVALID_PROGRAM, "enabled is true or false")
    check_rules(**{f: v for f, v in wanted.items() if f not in ("name", "enabled")})

    changed = {f: wanted[f] for f in asked if wanted[f] != current[f]}
    if not changed:
        return get_program(conn, tenant_id, program_id)
    if (
        "name" in changed
        and conn.execute(
            select(loyalty_programs.c.id).where(
                loyalty_programs.c.tenant_id == tenant_id,
                loyalty_programs.c.name == changed["name"],
                loyalty_programs.c.id != program_id,
            )
        ).first()
    ):
        raise Conflict(E.PROGRAM_EXISTS, f"a program named {changed['name']!r} exists already")
    conn.execute(
        update(loyalty_programs).where(loyalty_programs.c.id == program_id).values(**changed)
    )
    forget_program(conn, tenant_id, program_id)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="program.update",
        object_type="program",
        object_id=program_id,
        # Audit details are flat: each rule's new value, and what it was before.
        details={
            **changed,
            **{f"{field}_was": current[field] for field in changed},
        },
    )
    program = get_program(conn, tenant_id, program_id)
    assert program.name == wanted["name"] and program.accrual_bp == wanted["accrual_bp"]
    return program
