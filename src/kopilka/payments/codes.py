"""Payment codes of the terminals (SPEC P-8; seed 001: r_keeper's currency codes).

A POS names how a check was paid by a code of its own: r_keeper sends the code of the
"currency" the cashier pressed (``12`` for "room charge", ``13`` for "deposit"), another
POS may send ``ROOM``. The tenant maps each code to one of its payment types, for all its
terminals or for one terminal only; a terminal's own mapping of a code wins over the
tenant-wide one, so one station may send ``12`` for something else.

Codes are compared without surrounding spaces and without regard to letters' case (kept
upper-cased): ``room`` and ``ROOM`` are one code. A code is 1 to 32 visible characters.

``resolve_payment_code`` is what a terminal's request calls: one query, the terminal's
mapping first. An unknown code is ``unknown_payment_code`` as ``InvalidInput`` (422): the
code is a bad value inside the terminal's request, not a missing resource, and a POS
reads a 404 as "wrong address". A switched-off type is ``payment_type_disabled``
(``Refused``, 422).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, or_, select

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound, Refused
from kopilka.ledger.schema import units
from kopilka.payments.error_codes import PaymentErrorCode as E
from kopilka.payments.schema import payment_codes, payment_types
from kopilka.payments.types import TYPE_COLUMNS, PaymentType, get_payment_type, type_from_row
from kopilka.tenancy.actions import get_terminal
from kopilka.tenancy.audit import record_audit

MAX_CODE = 32


@dataclass(frozen=True, slots=True)
class PaymentCode:
    id: int
    tenant_id: int
    code: str
    terminal_id: int | None  # None: every terminal of the tenant
    payment_type: PaymentType
    created_at: datetime


def normalise_code(code: object) -> str | None:
    """The code as kept (stripped, upper-cased), or None when it cannot be one."""
    if not isinstance(code, str):
        return None
    cleaned = code.strip().upper()
    if not 1 <= len(cleaned) <= MAX_CODE or not cleaned.isprintable():
        return None
    if any(ch.isspace() for ch in cleaned):
        return None
    return cleaned


def _select(tenant_id: int) -> Select[Any]:
    return (
        select(
            payment_codes.c.id.label("code_id"),
            payment_codes.c.code,
            payment_codes.c.terminal_id,
            payment_codes.c.created_at.label("code_created_at"),
            *TYPE_COLUMNS,
        )
        .select_from(payment_codes)
        .join(payment_types, payment_types.c.id == payment_codes.c.payment_type_id)
        .outerjoin(units, units.c.id == payment_types.c.unit_id)
        .where(payment_codes.c.tenant_id == tenant_id)
    )


def _code(row: Any) -> PaymentCode:
    return PaymentCode(
        id=row.code_id,
        tenant_id=row.type_tenant_id,
        code=row.code,
        terminal_id=row.terminal_id,
        payment_type=type_from_row(row),
        created_at=row.code_created_at,
    )


def _order(code: PaymentCode) -> tuple[bool, int, str, int]:
    """Numbers as numbers (2 before 12), then the rest; tenant-wide before a terminal's."""
    number = int(code.code) if code.code.isdecimal() and code.code.isascii() else 0
    return (not code.code.isdecimal(), number, code.code, code.terminal_id or 0)


# --------------------------------------------------------------------------- reading


def resolve_payment_code(
    conn: Connection, *, tenant_id: int, terminal_id: int, code: str
) -> PaymentType:
    """The switched-on payment type ``code`` means at this terminal, in one query.

    The terminal's own mapping wins over the tenant-wide one. Refuses an unmapped code
    (``unknown_payment_code``, InvalidInput) and a switched-off type
    (``payment_type_disabled``, Refused).
    """
    wanted = normalise_code(code)
    row = None
    if wanted is not None:
        row = conn.execute(
            _select(tenant_id)
            .where(
                payment_codes.c.code == wanted,
                or_(
                    payment_codes.c.terminal_id == terminal_id,
                    payment_codes.c.terminal_id.is_(None),
                ),
            )
            # The terminal's own row first (false sorts before true on both databases).
            .order_by(payment_codes.c.terminal_id.is_(None))
            .limit(1)
        ).first()
    if row is None:
        raise InvalidInput(
            E.UNKNOWN_PAYMENT_CODE,
            f"payment code {code!r} is not mapped to a payment type for this terminal; "
            "map it in the settings (payment types)",
            payment_code=str(code)[: MAX_CODE * 2],
        )
    payment_type = type_from_row(row)
    assert row.terminal_id in (None, terminal_id) and payment_type.tenant_id == tenant_id
    if not payment_type.enabled:
        raise Refused(
            E.PAYMENT_TYPE_DISABLED,
            f"payment code {wanted!r} means the payment type {payment_type.name!r}, which is "
            "switched off",
            payment_code=wanted,
            payment_type_id=payment_type.id,
        )
    return payment_type


def list_payment_codes(
    conn: Connection, tenant_id: int, terminal_id: int | None = None
) -> list[PaymentCode]:
    """Without ``terminal_id``: every mapping of the tenant. With it: the codes as that
    terminal sees them, its own mapping of a code in place of the tenant-wide one.
    Ordered by code (numbers as numbers)."""
    query = _select(tenant_id)
    if terminal_id is not None:
        query = query.where(
            or_(
                payment_codes.c.terminal_id == terminal_id,
                payment_codes.c.terminal_id.is_(None),
            )
        )
    found = [_code(row) for row in conn.execute(query)]
    if terminal_id is not None:
        own = {c.code for c in found if c.terminal_id is not None}
        found = [c for c in found if c.terminal_id is not None or c.code not in own]
        assert len({c.code for c in found}) == len(found), "one mapping per code"
    return sorted(found, key=_order)


def get_payment_code(conn: Connection, tenant_id: int, payment_code_id: int) -> PaymentCode:
    row = conn.execute(_select(tenant_id).where(payment_codes.c.id == payment_code_id)).first()
    if row is None:
        raise NotFound(
            E.PAYMENT_CODE_NOT_FOUND,
            f"payment code mapping {payment_code_id} does not exist",
            payment_code_id=payment_code_id,
        )
    return _code(row)


# --------------------------------------------------------------------------- writing


def add_payment_code(
    conn: Connection,
    *,
    tenant_id: int,
    code: str,
    payment_type_id: int,
    actor: Actor,
    terminal_id: int | None = None,
) -> PaymentCode:
    """Map ``code`` to a payment type, for every terminal (``terminal_id`` None) or for
    one live terminal. A code mapped already in that scope is ``payment_code_exists``:
    remove the old mapping first."""
    wanted = normalise_code(code)
    if wanted is None:
        raise InvalidInput(
            E.INVALID_PAYMENT_CODE,
            f"a payment code is 1 to {MAX_CODE} visible characters without spaces, "
            f"such as 12 or ROOM; not {code!r}",
        )
    payment_type = get_payment_type(conn, tenant_id, payment_type_id)
    if terminal_id is not None and get_terminal(conn, tenant_id, terminal_id).revoked:
        raise InvalidInput(
            E.INVALID_PAYMENT_CODE,
            f"terminal {terminal_id} is revoked; map codes for live terminals only",
            terminal_id=terminal_id,
        )
    scope = (
        payment_codes.c.terminal_id.is_(None)
        if terminal_id is None
        else payment_codes.c.terminal_id == terminal_id
    )
    if conn.execute(
        select(payment_codes.c.id).where(
            payment_codes.c.tenant_id == tenant_id, payment_codes.c.code == wanted, scope
        )
    ).first():
        where = "for every terminal" if terminal_id is None else f"for terminal {terminal_id}"
        raise Conflict(
            E.PAYMENT_CODE_EXISTS,
            f"payment code {wanted!r} is mapped {where} already; remove that mapping first",
            payment_code=wanted,
        )
    code_id = conn.execute(
        payment_codes.insert().returning(payment_codes.c.id),
        {
            "tenant_id": tenant_id,
            "code": wanted,
            "terminal_id": terminal_id,
            "payment_type_id": payment_type.id,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="payment_code.create",
        object_type="payment_code",
        object_id=code_id,
        details={
            "code": wanted,
            "terminal_id": terminal_id,
            "payment_type_id": payment_type.id,
            "payment_type": payment_type.name,
        },
    )
    added = get_payment_code(conn, tenant_id, code_id)
    assert added.code == wanted and added.payment_type.id == payment_type.id
    return added


def remove_payment_code(
    conn: Connection, *, tenant_id: int, payment_code_id: int, actor: Actor
) -> PaymentCode:
    """Remove a mapping (the payment type stays); returns what was removed."""
    removed = get_payment_code(conn, tenant_id, payment_code_id)
    deleted = conn.execute(
        delete(payment_codes).where(
            payment_codes.c.tenant_id == tenant_id, payment_codes.c.id == payment_code_id
        )
    ).rowcount
    if deleted != 1:  # removed meanwhile by someone else
        raise NotFound(
            E.PAYMENT_CODE_NOT_FOUND,
            f"payment code mapping {payment_code_id} does not exist",
            payment_code_id=payment_code_id,
        )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="payment_code.delete",
        object_type="payment_code",
        object_id=payment_code_id,
        details={
            "code": removed.code,
            "terminal_id": removed.terminal_id,
            "payment_type_id": removed.payment_type.id,
        },
    )
    return removed
