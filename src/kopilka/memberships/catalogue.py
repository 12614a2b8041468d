"""What a studio sells and to whom (SPEC M-1, M-2, M-5, M-8): the online sale's settings
with the buttons' design, membership types, groups, classes and visitors.

Only **permanent** types may be sold online (seed 004: "Для онлайн продажи доступны только
Постоянные абонементы"); a type sold online has its button's text. The button design is
the tenant's (the nine parameters of M-2) and the public pages follow it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound
from kopilka.core.money import MAX_ABS_MINOR, bp_share, percent_to_bp
from kopilka.loyalty.cards import normalise_phone
from kopilka.memberships.error_codes import MembershipErrorCode as E
from kopilka.memberships.schema import (
    membership_settings,
    membership_types,
    studio_classes,
    studio_groups,
    visitors,
)
from kopilka.tenancy.audit import record_audit

PROVIDERS = ("sandbox", "yookassa", "stripe")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_NAME = 100


def _bad(detail: str, field_name: str) -> InvalidInput:
    return InvalidInput(E.INVALID_MEMBERSHIP_INPUT, detail, field=field_name)


def _int(value: object, field_name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{field_name} must be a whole number from {low} to {high}", field_name)
    return value


def _name(value: object, field_name: str = "name", limit: int = MAX_NAME) -> str:
    text = " ".join(value.split()) if isinstance(value, str) else ""
    if not 1 <= len(text) <= limit:
        raise _bad(f"{field_name}: 1 to {limit} characters", field_name)
    return text


def commission_bp_of(percent: object) -> int:
    """A per cent with at most two decimals ("2.5") in hundredths of a per cent."""
    return percent_to_bp(percent)


def commission_of(price_minor: int, commission_bp: int) -> int:
    """What the client pays on top of the price, half up: 3 % of 4000.00 is 120.00."""
    return bp_share(price_minor, commission_bp)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class ButtonDesign:
    text_color: str = "#ffffff"
    text_size: int = 16
    bold: bool = True
    bg_color: str = "#2f6fdf"
    border_color: str = "#2f6fdf"
    border_width: int = 0
    radius: int = 6
    width: int = 240
    height: int = 48

    def checked(self) -> ButtonDesign:
        for name in ("text_color", "bg_color", "border_color"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _COLOUR.fullmatch(value):
                raise _bad(f"{name} is a colour like #2f6fdf", name)
        _int(self.text_size, "text_size", 8, 72)
        _int(self.border_width, "border_width", 0, 20)
        _int(self.radius, "radius", 0, 100)
        _int(self.width, "width", 40, 1000)
        _int(self.height, "height", 16, 300)
        return ButtonDesign(
            self.text_color.lower(),
            self.text_size,
            bool(self.bold),
            self.bg_color.lower(),
            self.border_color.lower(),
            self.border_width,
            self.radius,
            self.width,
            self.height,
        )

    def css(self) -> str:
        """The button's inline style (every value checked: colours and whole pixels)."""
        return (
            f"display:inline-flex;align-items:center;justify-content:center;"
            f"box-sizing:border-box;text-decoration:none;cursor:pointer;"
            f"color:{self.text_color};font-size:{self.text_size}px;"
            f"font-weight:{'700' if self.bold else '400'};background:{self.bg_color};"
            f"border:{self.border_width}px solid {self.border_color};"
            f"border-radius:{self.radius}px;width:{self.width}px;height:{self.height}px"
        )


@dataclass(frozen=True, slots=True)
class OnlineSettings:
    online_enabled: bool = False
    commission_bp: int = 0
    provider: str = "sandbox"
    provider_config: dict[str, Any] = field(default_factory=dict)
    button: ButtonDesign = field(default_factory=ButtonDesign)


def get_settings(conn: Connection, tenant_id: int) -> OnlineSettings:
    row = conn.execute(
        select(membership_settings).where(membership_settings.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        return OnlineSettings()
    return OnlineSettings(
        online_enabled=bool(row.online_enabled),
        commission_bp=row.commission_bp,
        provider=row.provider,
        provider_config=dict(row.provider_config or {}),
        button=ButtonDesign(
            row.btn_text_color,
            row.btn_text_size,
            bool(row.btn_bold),
            row.btn_bg_color,
            row.btn_border_color,
            row.btn_border_width,
            row.btn_radius,
            row.btn_width,
            row.btn_height,
        ),
    )


def update_settings(
    conn: Connection, *, tenant_id: int, settings: OnlineSettings, actor: Actor
) -> OnlineSettings:
    """Switch the module, set the commission, the provider (its credentials are kept and
    never shown in the audit trail) and the buttons' design."""
    if settings.provider not in PROVIDERS:
        raise _bad(f"the provider is one of {', '.join(PROVIDERS)}", "provider")
    if not isinstance(settings.commission_bp, int) or not 0 <= settings.commission_bp <= 10_000:
        raise InvalidInput(E.INVALID_COMMISSION, "a commission is 0 to 100 %")
    config = settings.provider_config
    if not isinstance(config, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= 500 for k, v in config.items()
    ):
        raise _bad("the provider's settings are names and texts", "provider_config")
    button = settings.button.checked()
    values = {
        "online_enabled": bool(settings.online_enabled),
        "commission_bp": settings.commission_bp,
        "provider": settings.provider,
        "provider_config": config,
        "btn_text_color": button.text_color,
        "btn_text_size": button.text_size,
        "btn_bold": button.bold,
        "btn_bg_color": button.bg_color,
        "btn_border_color": button.border_color,
        "btn_border_width": button.border_width,
        "btn_radius": button.radius,
        "btn_width": button.width,
        "btn_height": button.height,
        "updated_at": utcnow(),
    }
    done = conn.execute(
        update(membership_settings)
        .where(membership_settings.c.tenant_id == tenant_id)
        .values(**values)
    ).rowcount
    if not done:
        conn.execute(membership_settings.insert(), {"tenant_id": tenant_id, **values})
    shown = {k: v for k, v in values.items() if k not in ("provider_config", "updated_at")}
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="membership_settings.update",
        object_type="tenant",
        object_id=tenant_id,
        details={**shown, "provider_config_keys": sorted(config)},
    )
    return get_settings(conn, tenant_id)


# --------------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class TypeView:
    id: int
    name: str
    is_permanent: bool
    price_minor: int
    classes: int | None
    validity_days: int
    sell_online: bool
    button_text: str
    is_active: bool


@dataclass(frozen=True, slots=True)
class TypeIn:
    name: str
    price_minor: int
    validity_days: int
    classes: int | None = None
    is_permanent: bool = True
    sell_online: bool = False
    button_text: str = ""
    is_active: bool = True


def _type(row: Any) -> TypeView:
    return TypeView(
        row.id,
        row.name,
        bool(row.is_permanent),
        int(row.price_minor),
        row.classes,
        row.validity_days,
        bool(row.sell_online),
        row.button_text,
        bool(row.is_active),
    )


def _checked_type(data: TypeIn) -> dict[str, Any]:
    if data.sell_online and not data.is_permanent:
        raise _bad("only permanent membership types are sold online", "sell_online")
    button = " ".join(data.button_text.split()) if isinstance(data.button_text, str) else ""
    if data.sell_online and not 1 <= len(button) <= 100:
        raise _bad("a type sold online has its button's text (1 to 100 characters)", "button_text")
    return {
        "name": _name(data.name),
        "price_minor": _int(data.price_minor, "price", 1, MAX_ABS_MINOR),
        "validity_days": _int(data.validity_days, "validity_days", 1, 3660),
        "classes": None if data.classes is None else _int(data.classes, "classes", 1, 10_000),
        "is_permanent": bool(data.is_permanent),
        "sell_online": bool(data.sell_online),
        "button_text": button[:100],
        "is_active": bool(data.is_active),
    }


def create_type(conn: Connection, *, tenant_id: int, data: TypeIn, actor: Actor) -> TypeView:
    values = _checked_type(data)
    taken = conn.execute(
        select(membership_types.c.id).where(
            membership_types.c.tenant_id == tenant_id, membership_types.c.name == values["name"]
        )
    ).first()
    if taken:
        raise Conflict(E.MEMBERSHIP_TYPE_EXISTS, f"a type named {values['name']!r} exists")
    moment = utcnow()
    type_id = conn.execute(
        membership_types.insert().returning(membership_types.c.id),
        {**values, "tenant_id": tenant_id, "created_at": moment, "updated_at": moment},
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="membership_type.create",
        object_type="membership_type",
        object_id=type_id,
        details=values,
    )
    return get_type(conn, tenant_id, type_id)


def update_type(
    conn: Connection, *, tenant_id: int, type_id: int, data: TypeIn, actor: Actor
) -> TypeView:
    """Memberships sold keep what they were sold with; a changed price applies to the next
    checkout."""
    get_type(conn, tenant_id, type_id)
    values = _checked_type(data)
    taken = conn.execute(
        select(membership_types.c.id).where(
            membership_types.c.tenant_id == tenant_id,
            membership_types.c.name == values["name"],
            membership_types.c.id != type_id,
        )
    ).first()
    if taken:
        raise Conflict(E.MEMBERSHIP_TYPE_EXISTS, f"a type named {values['name']!r} exists")
    conn.execute(
        update(membership_types)
        .where(membership_types.c.id == type_id)
        .values(**values, updated_at=utcnow())
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="membership_type.update",
        object_type="membership_type",
        object_id=type_id,
        details=values,
    )
    return get_type(conn, tenant_id, type_id)


def get_type(conn: Connection, tenant_id: int, type_id: int) -> TypeView:
    row = conn.execute(
        select(membership_types).where(
            membership_types.c.tenant_id == tenant_id, membership_types.c.id == type_id
        )
    ).first()
    if row is None:
        raise NotFound(E.MEMBERSHIP_TYPE_NOT_FOUND, f"membership type {type_id} does not exist")
    return _type(row)


def list_types(conn: Connection, tenant_id: int, *, online_only: bool = False) -> list[TypeView]:
    query = select(membership_types).where(membership_types.c.tenant_id == tenant_id)
    if online_only:
        query = query.where(
            membership_types.c.sell_online.is_(True), membership_types.c.is_active.is_(True)
        )
    return [_type(r) for r in conn.execute(query.order_by(membership_types.c.name))]


# --------------------------------------------------------------------------- groups, classes


@dataclass(frozen=True, slots=True)
class GroupView:
    id: int
    name: str
    is_active: bool


@dataclass(frozen=True, slots=True)
class ClassView:
    id: int
    group_id: int
    group_name: str
    starts_at: datetime
    minutes: int
    capacity: int | None


def create_group(conn: Connection, *, tenant_id: int, name: str, actor: Actor) -> GroupView:
    clean = _name(name)
    taken = conn.execute(
        select(studio_groups.c.id).where(
            studio_groups.c.tenant_id == tenant_id, studio_groups.c.name == clean
        )
    ).first()
    if taken:
        raise Conflict(E.GROUP_EXISTS, f"a group named {clean!r} exists")
    group_id = conn.execute(
        studio_groups.insert().returning(studio_groups.c.id),
        {"tenant_id": tenant_id, "name": clean, "created_at": utcnow()},
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="studio_group.create",
        object_type="studio_group",
        object_id=group_id,
        details={"name": clean},
    )
    return GroupView(group_id, clean, True)


def list_groups(conn: Connection, tenant_id: int) -> list[GroupView]:
    rows = conn.execute(
        select(studio_groups)
        .where(studio_groups.c.tenant_id == tenant_id)
        .order_by(studio_groups.c.name)
    )
    return [GroupView(r.id, r.name, bool(r.is_active)) for r in rows]


def get_groups(conn: Connection, tenant_id: int, group_ids: list[int]) -> list[GroupView]:
    found = {g.id: g for g in list_groups(conn, tenant_id)}
    for group_id in group_ids:
        if group_id not in found:
            raise NotFound(E.GROUP_NOT_FOUND, f"group {group_id} does not exist")
    return [found[g] for g in sorted(set(group_ids))]


def create_class(
    conn: Connection,
    *,
    tenant_id: int,
    group_id: int,
    starts_at: datetime,
    minutes: int,
    actor: Actor,
    capacity: int | None = None,
) -> ClassView:
    (group,) = get_groups(conn, tenant_id, [group_id])
    class_id = conn.execute(
        studio_classes.insert().returning(studio_classes.c.id),
        {
            "tenant_id": tenant_id,
            "group_id": group.id,
            "starts_at": as_utc(starts_at),
            "minutes": _int(minutes, "minutes", 1, 24 * 60),
            "capacity": None if capacity is None else _int(capacity, "capacity", 1, 10_000),
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="studio_class.create",
        object_type="studio_class",
        object_id=class_id,
        details={"group_id": group.id, "starts_at": as_utc(starts_at).isoformat()},
    )
    return list_classes(conn, tenant_id, class_ids=[class_id])[0]


def list_classes(
    conn: Connection,
    tenant_id: int,
    *,
    group_ids: list[int] | None = None,
    class_ids: list[int] | None = None,
    since: datetime | None = None,
) -> list[ClassView]:
    query = (
        select(studio_classes, studio_groups.c.name.label("group_name"))
        .join(studio_groups, studio_groups.c.id == studio_classes.c.group_id)
        .where(studio_classes.c.tenant_id == tenant_id)
    )
    if group_ids is not None:
        query = query.where(studio_classes.c.group_id.in_(group_ids))
    if class_ids is not None:
        query = query.where(studio_classes.c.id.in_(class_ids))
    if since is not None:
        query = query.where(studio_classes.c.starts_at >= as_utc(since))
    rows = conn.execute(query.order_by(studio_classes.c.starts_at, studio_classes.c.id))
    return [
        ClassView(r.id, r.group_id, r.group_name, as_utc(r.starts_at), r.minutes, r.capacity)
        for r in rows
    ]


# --------------------------------------------------------------------------- visitors


@dataclass(frozen=True, slots=True)
class VisitorView:
    id: int
    full_name: str
    phone: str | None
    email: str | None


def create_visitor(
    conn: Connection,
    *,
    tenant_id: int,
    full_name: str,
    actor: Actor,
    phone: str | None = None,
    email: str | None = None,
) -> VisitorView:
    from kopilka.loyalty.cards import normalise_email

    name = _name(full_name, "full_name", 200)
    phone_n = normalise_phone(phone) if phone else None
    email_n = normalise_email(email) if email else None
    visitor_id = conn.execute(
        visitors.insert().returning(visitors.c.id),
        {
            "tenant_id": tenant_id,
            "full_name": name,
            "name_key": name.casefold(),
            "phone": phone_n,
            "email": email_n,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="visitor.create",
        object_type="visitor",
        object_id=visitor_id,
        details={"full_name": name},
    )
    return VisitorView(visitor_id, name, phone_n, email_n)


def get_visitor(conn: Connection, tenant_id: int, visitor_id: int) -> VisitorView:
    row = conn.execute(
        select(visitors).where(visitors.c.tenant_id == tenant_id, visitors.c.id == visitor_id)
    ).first()
    if row is None:
        raise NotFound(E.VISITOR_NOT_FOUND, f"visitor {visitor_id} does not exist")
    return VisitorView(row.id, row.full_name, row.phone, row.email)


def find_visitors(
    conn: Connection, tenant_id: int, text: str, limit: int = 20
) -> list[VisitorView]:
    """By any part of the name (any case, any alphabet) or four or more digits of the
    phone (seed 004: "Имя/Тел. посетителя")."""
    words = " ".join(text.split()) if isinstance(text, str) else ""
    if not words:
        return []
    digits = re.sub(r"\D", "", words)
    condition = visitors.c.name_key.contains(words.casefold(), autoescape=True)
    if len(digits) >= 4:
        condition = condition | visitors.c.phone.contains(digits, autoescape=True)
    rows = conn.execute(
        select(visitors)
        .where(visitors.c.tenant_id == tenant_id, condition)
        .order_by(visitors.c.full_name, visitors.c.id)
        .limit(limit)
    )
    return [VisitorView(r.id, r.full_name, r.phone, r.email) for r in rows]
