"""Attaching a membership sold online to a visitor (SPEC M-6, seed 004).

The staff find an unattached membership (in the list, or by its number or activation code
typed or scanned into the search field), find the visitor by name or phone (or add one),
choose the groups it admits to, book classes if they wish, set its validity, save. A
membership is attached once; its activation code then counts as used. The visitor's
profile lists the memberships attached to them, refunded ones marked so (M-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import InvalidInput, NotFound, Refused
from kopilka.memberships.catalogue import get_groups, get_type, get_visitor, list_classes
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.schema import (
    membership_bookings,
    membership_groups,
    membership_orders,
    memberships,
)
from kopilka.memberships.schema import membership_types as types_table
from kopilka.tenancy.audit import record_audit

MAX_BOOKINGS = 200


@dataclass(frozen=True, slots=True)
class MembershipView:
    id: int
    number: str
    activation_code: str
    type_id: int
    type_name: str
    validity_days: int
    order_id: int | None
    status: str
    visitor_id: int | None
    valid_from: date | None
    valid_until: date | None
    classes: int | None
    group_ids: tuple[int, ...]
    booked_class_ids: tuple[int, ...]
    sold_at: datetime
    attached_at: datetime | None
    refunded_at: datetime | None
    paid_minor: int | None
    refunded_minor: int | None
    email: str | None


def _query() -> Any:
    return (
        select(
            memberships,
            types_table.c.name.label("type_name"),
            types_table.c.validity_days,
            membership_orders.c.total_minor,
            membership_orders.c.refunded_minor,
            membership_orders.c.email,
        )
        .join(types_table, types_table.c.id == memberships.c.type_id)
        .outerjoin(membership_orders, membership_orders.c.id == memberships.c.order_id)
    )


def _views(conn: Connection, rows: list[Any]) -> list[MembershipView]:
    ids = [r.id for r in rows]
    groups: dict[int, list[int]] = {}
    booked: dict[int, list[int]] = {}
    if ids:
        for link in conn.execute(
            select(membership_groups).where(membership_groups.c.membership_id.in_(ids))
        ):
            groups.setdefault(link.membership_id, []).append(link.group_id)
        for b in conn.execute(
            select(membership_bookings).where(
                membership_bookings.c.membership_id.in_(ids),
                membership_bookings.c.cancelled_at.is_(None),
            )
        ):
            booked.setdefault(b.membership_id, []).append(b.class_id)
    return [
        MembershipView(
            id=r.id,
            number=r.number,
            activation_code=r.activation_code,
            type_id=r.type_id,
            type_name=r.type_name,
            validity_days=r.validity_days,
            order_id=r.order_id,
            status=r.status,
            visitor_id=r.visitor_id,
            valid_from=r.valid_from,
            valid_until=r.valid_until,
            classes=r.classes,
            group_ids=tuple(sorted(groups.get(r.id, []))),
            booked_class_ids=tuple(sorted(booked.get(r.id, []))),
            sold_at=as_utc(r.sold_at),
            attached_at=as_utc(r.attached_at) if r.attached_at else None,
            refunded_at=as_utc(r.refunded_at) if r.refunded_at else None,
            paid_minor=None if r.total_minor is None else int(r.total_minor),
            refunded_minor=None if r.refunded_minor is None else int(r.refunded_minor),
            email=r.email,
        )
        for r in rows
    ]


def get_membership(conn: Connection, tenant_id: int, membership_id: int) -> MembershipView:
    rows = conn.execute(
        _query().where(memberships.c.tenant_id == tenant_id, memberships.c.id == membership_id)
    ).all()
    if not rows:
        raise NotFound(E.MEMBERSHIP_NOT_FOUND, f"membership {membership_id} does not exist")
    return _views(conn, list(rows))[0]


def find_membership(conn: Connection, tenant_id: int, text: str) -> MembershipView:
    """By its number ("M-000031", "31" or "000031") or its activation code, as typed or
    scanned (any case, spaces and dashes ignored in a code)."""
    raw = text.strip() if isinstance(text, str) else ""
    compact = raw.replace(" ", "").replace("-", "").upper()
    candidates = {raw.upper()}
    if compact.isascii() and compact.isdigit() and len(compact) <= 12:
        candidates.add(f"M-{int(compact):06d}")
    if (
        compact.startswith("M")
        and compact[1:].isascii()
        and compact[1:].isdigit()
        and len(compact) <= 13
    ):
        candidates.add(f"M-{int(compact[1:]):06d}")
    rows = conn.execute(
        _query().where(
            memberships.c.tenant_id == tenant_id,
            memberships.c.number.in_(sorted(candidates))
            | (memberships.c.activation_code == compact),
        )
    ).all()
    if not rows:
        raise NotFound(E.MEMBERSHIP_NOT_FOUND, f"no membership has number or code {raw!r}")
    return _views(conn, list(rows))[0]


def list_memberships(
    conn: Connection,
    tenant_id: int,
    *,
    status: str | None = None,
    visitor_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[MembershipView]:
    query = _query().where(memberships.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(memberships.c.status == status)
    if visitor_id is not None:
        query = query.where(memberships.c.visitor_id == visitor_id)
    if after_id is not None:
        query = query.where(memberships.c.id < after_id)
    rows = conn.execute(query.order_by(memberships.c.id.desc()).limit(limit)).all()
    return _views(conn, list(rows))


def attach(
    conn: Connection,
    *,
    tenant_id: int,
    membership_id: int,
    visitor_id: int,
    group_ids: list[int],
    actor: Actor,
    valid_from: date | None = None,
    valid_until: date | None = None,
    class_ids: list[int] | None = None,
    now: datetime | None = None,
) -> MembershipView:
    """Attach an unattached membership to a visitor with its groups, validity (default:
    from today for the type's days) and bookings (classes of the chosen groups)."""
    moment = as_utc(now) if now else utcnow()
    row = conn.execute(
        select(memberships)
        .where(memberships.c.tenant_id == tenant_id, memberships.c.id == membership_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.MEMBERSHIP_NOT_FOUND, f"membership {membership_id} does not exist")
    if row.status == "attached":
        raise Refused(E.CODE_USED, f"membership {row.number} is attached already")
    if row.status != "unattached":
        raise Refused(E.MEMBERSHIP_STATE, f"membership {row.number} is {row.status}")
    visitor = get_visitor(conn, tenant_id, visitor_id)
    if not group_ids:
        raise InvalidInput(
            E.INVALID_MEMBERSHIP_INPUT, "choose at least one group", field="group_ids"
        )
    groups = get_groups(conn, tenant_id, group_ids)
    kind = get_type(conn, tenant_id, row.type_id)
    start = valid_from or moment.date()
    until = valid_until or start + timedelta(days=kind.validity_days - 1)
    if until < start:
        raise InvalidInput(
            E.INVALID_MEMBERSHIP_INPUT, "the validity ends before it starts", field="valid_until"
        )
    wanted = sorted(set(class_ids or []))
    if len(wanted) > MAX_BOOKINGS or (row.classes is not None and len(wanted) > row.classes):
        raise InvalidInput(
            E.INVALID_MEMBERSHIP_INPUT,
            "more classes booked than the membership has",
            field="class_ids",
        )
    classes = list_classes(conn, tenant_id, class_ids=wanted) if wanted else []
    allowed = {g.id for g in groups}
    if len(classes) != len(wanted) or any(c.group_id not in allowed for c in classes):
        raise NotFound(E.CLASS_NOT_FOUND, "a class booked is not one of the chosen groups'")
    conn.execute(
        update(memberships)
        .where(memberships.c.id == row.id)
        .values(
            status="attached",
            visitor_id=visitor.id,
            valid_from=start,
            valid_until=until,
            attached_at=moment,
        )
    )
    conn.execute(
        membership_groups.insert(),
        [{"tenant_id": tenant_id, "membership_id": row.id, "group_id": g.id} for g in groups],
    )
    if classes:
        conn.execute(
            membership_bookings.insert(),
            [
                {
                    "tenant_id": tenant_id,
                    "membership_id": row.id,
                    "class_id": c.id,
                    "created_at": moment,
                }
                for c in classes
            ],
        )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="membership.attach",
        object_type="membership",
        object_id=row.id,
        details={
            "visitor_id": visitor.id,
            "group_ids": [g.id for g in groups],
            "class_ids": wanted,
            "valid_from": start.isoformat(),
            "valid_until": until.isoformat(),
        },
    )
    return get_membership(conn, tenant_id, row.id)
