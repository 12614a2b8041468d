"""Tariffs, promised payment services and the operator's options (SPEC S-1, S-3 … S-6).

A **tariff** has a price and a charge method: ``daily`` (the price each day),
``monthly`` (the price each month, on the day of the month the subscriber's service
started) or ``one_time`` (once, on activation). "New subscribers get n days to pay"
(``grace_days``) and the promised payment rules of S-4 are the tariff's options:

(a) ``pp_requires_topup``: a top-up since the previous promised payment;
(b) ``pp_once_a_month``: at most one in the current calendar month (it takes priority
    over (e): with (b) set, (e) is not checked);
(c) ``pp_payment_within_days``: a payment within the last n days;
(d) ``pp_charge_within_days``: a non-zero charge within the last n days;
(e) ``pp_max_per_month``: at most N in the current calendar month.

With none set, a promised payment is given no sooner than a month after the previous.

A **promised payment service** raises the subscriber's threshold by its amount (0: by
what is needed to pay the next charge) for ``days`` days; its connection price is
charged when it is taken; its commission (hundredths of a per cent of a fixed amount,
none for the automatic one) is charged when it ends: once for the monthly method, for
each day it was used for the daily method. It may be ordered in the cabinet or not, may
be given on the first session (S-6), and is restricted to the tariffs listed (none
listed: every tariff).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound
from kopilka.core.money import MAX_ABS_MINOR, percent_to_bp
from kopilka.subscribers.common import DAILY, MONTHLY, ONE_TIME
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.schema import (
    sub_pp_service_tariffs,
    sub_pp_services,
    sub_settings,
    sub_tariffs,
)
from kopilka.tenancy.audit import record_audit

MAX_NAME = 100
MAX_DAYS = 366
MAX_RULE_DAYS = 3660
MAX_PER_MONTH = 31
TARIFF_METHODS = (DAILY, MONTHLY, ONE_TIME)
SERVICE_METHODS = (DAILY, MONTHLY)


@dataclass(frozen=True, slots=True)
class TariffView:
    id: int
    name: str
    price_minor: int
    charge_method: str
    grace_days: int
    pp_requires_topup: bool
    pp_once_a_month: bool
    pp_payment_within_days: int | None
    pp_charge_within_days: int | None
    pp_max_per_month: int | None
    is_active: bool

    @property
    def has_pp_rules(self) -> bool:
        return (
            self.pp_requires_topup
            or self.pp_once_a_month
            or self.pp_payment_within_days is not None
            or self.pp_charge_within_days is not None
            or self.pp_max_per_month is not None
        )


@dataclass(frozen=True, slots=True)
class ServiceView:
    id: int
    name: str
    amount_minor: int  # 0: what is needed
    days: int
    connection_price_minor: int
    commission_bp: int
    charge_method: str
    self_service: bool
    on_first_session: bool
    is_active: bool
    tariff_ids: tuple[int, ...]  # empty: every tariff

    @property
    def is_auto(self) -> bool:
        return self.amount_minor == 0

    def allows(self, tariff_id: int) -> bool:
        return not self.tariff_ids or tariff_id in self.tariff_ids


@dataclass(frozen=True, slots=True)
class TariffIn:
    name: str
    price_minor: int
    charge_method: str
    grace_days: int = 0
    pp_requires_topup: bool = False
    pp_once_a_month: bool = False
    pp_payment_within_days: int | None = None
    pp_charge_within_days: int | None = None
    pp_max_per_month: int | None = None
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class ServiceIn:
    name: str
    amount_minor: int
    days: int
    charge_method: str
    connection_price_minor: int = 0
    commission_bp: int = 0
    self_service: bool = False
    on_first_session: bool = False
    is_active: bool = True
    tariff_ids: tuple[int, ...] = ()


def _bad(detail: str, **params: Any) -> InvalidInput:
    return InvalidInput(E.INVALID_SUBSCRIBER_INPUT, detail, **params)


def _name(value: object) -> str:
    name = " ".join(value.split()) if isinstance(value, str) else ""
    if not 1 <= len(name) <= MAX_NAME:
        raise _bad(f"a name of 1 to {MAX_NAME} characters", field="name")
    return name


def _minor(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ABS_MINOR:
        raise _bad(f"{field} must be a whole amount from 0", field=field)
    return value


def _count(value: object, field: str, low: int, high: int, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{field} must be a whole number from {low} to {high}", field=field)
    return value


def _checked_tariff(data: TariffIn) -> dict[str, Any]:
    if data.charge_method not in TARIFF_METHODS:
        raise _bad(
            f"charge method {data.charge_method!r} is not one of {', '.join(TARIFF_METHODS)}",
            field="charge_method",
        )
    return {
        "name": _name(data.name),
        "price_minor": _minor(data.price_minor, "price"),
        "charge_method": data.charge_method,
        "grace_days": _count(data.grace_days, "grace_days", 0, MAX_DAYS),
        "pp_requires_topup": bool(data.pp_requires_topup),
        "pp_once_a_month": bool(data.pp_once_a_month),
        "pp_payment_within_days": _count(
            data.pp_payment_within_days, "pp_payment_within_days", 1, MAX_RULE_DAYS, optional=True
        ),
        "pp_charge_within_days": _count(
            data.pp_charge_within_days, "pp_charge_within_days", 1, MAX_RULE_DAYS, optional=True
        ),
        "pp_max_per_month": _count(
            data.pp_max_per_month, "pp_max_per_month", 0, MAX_PER_MONTH, optional=True
        ),
        "is_active": bool(data.is_active),
    }


def _tariff(row: Any) -> TariffView:
    return TariffView(
        id=row.id,
        name=row.name,
        price_minor=int(row.price_minor),
        charge_method=row.charge_method,
        grace_days=row.grace_days,
        pp_requires_topup=bool(row.pp_requires_topup),
        pp_once_a_month=bool(row.pp_once_a_month),
        pp_payment_within_days=row.pp_payment_within_days,
        pp_charge_within_days=row.pp_charge_within_days,
        pp_max_per_month=row.pp_max_per_month,
        is_active=bool(row.is_active),
    )


def _name_taken(conn: Connection, table: Any, tenant_id: int, name: str, own: int | None) -> bool:
    query = select(table.c.id).where(table.c.tenant_id == tenant_id, table.c.name == name)
    if own is not None:
        query = query.where(table.c.id != own)
    return conn.execute(query).first() is not None


def create_tariff(
    conn: Connection, *, tenant_id: int, data: TariffIn, actor: Actor, now: datetime | None = None
) -> TariffView:
    values = _checked_tariff(data)
    if _name_taken(conn, sub_tariffs, tenant_id, values["name"], None):
        raise Conflict(E.TARIFF_EXISTS, f"a tariff named {values['name']!r} exists already")
    moment = as_utc(now) if now else utcnow()
    tariff_id = conn.execute(
        sub_tariffs.insert().returning(sub_tariffs.c.id),
        {**values, "tenant_id": tenant_id, "created_at": moment, "updated_at": moment},
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="sub_tariff.create",
        object_type="sub_tariff",
        object_id=tariff_id,
        details=values,
    )
    return get_tariff(conn, tenant_id, tariff_id)


def update_tariff(
    conn: Connection, *, tenant_id: int, tariff_id: int, data: TariffIn, actor: Actor
) -> TariffView:
    """A changed price applies from each subscriber's next period."""
    get_tariff(conn, tenant_id, tariff_id)
    values = _checked_tariff(data)
    if _name_taken(conn, sub_tariffs, tenant_id, values["name"], tariff_id):
        raise Conflict(E.TARIFF_EXISTS, f"a tariff named {values['name']!r} exists already")
    conn.execute(
        update(sub_tariffs)
        .where(sub_tariffs.c.tenant_id == tenant_id, sub_tariffs.c.id == tariff_id)
        .values(**values, updated_at=utcnow())
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="sub_tariff.update",
        object_type="sub_tariff",
        object_id=tariff_id,
        details=values,
    )
    return get_tariff(conn, tenant_id, tariff_id)


def get_tariff(conn: Connection, tenant_id: int, tariff_id: int) -> TariffView:
    row = conn.execute(
        select(sub_tariffs).where(
            sub_tariffs.c.tenant_id == tenant_id, sub_tariffs.c.id == tariff_id
        )
    ).first()
    if row is None:
        raise NotFound(E.TARIFF_NOT_FOUND, f"tariff {tariff_id} does not exist")
    return _tariff(row)


def list_tariffs(conn: Connection, tenant_id: int) -> list[TariffView]:
    rows = conn.execute(
        select(sub_tariffs).where(sub_tariffs.c.tenant_id == tenant_id).order_by(sub_tariffs.c.name)
    )
    return [_tariff(row) for row in rows]


# --------------------------------------------------------------------------- services


def commission_bp_of(percent: object) -> int:
    """A commission given as a per cent ("1", "2.5") in hundredths of a per cent."""
    return percent_to_bp(percent)


def _checked_service(conn: Connection, tenant_id: int, data: ServiceIn) -> dict[str, Any]:
    if data.charge_method not in SERVICE_METHODS:
        raise _bad(
            f"a promised payment is charged {' or '.join(SERVICE_METHODS)}, "
            f"not {data.charge_method!r}",
            field="charge_method",
        )
    if (
        isinstance(data.commission_bp, bool)
        or not isinstance(data.commission_bp, int)
        or not 0 <= data.commission_bp <= 10_000
    ):
        raise InvalidInput(
            E.INVALID_COMMISSION, "the commission must be from 0 to 100 %", field="commission"
        )
    for tariff_id in data.tariff_ids:
        get_tariff(conn, tenant_id, tariff_id)
    return {
        "name": _name(data.name),
        "amount_minor": _minor(data.amount_minor, "amount"),
        "days": _count(data.days, "days", 1, MAX_DAYS),
        "connection_price_minor": _minor(data.connection_price_minor, "connection_price"),
        "commission_bp": data.commission_bp,
        "charge_method": data.charge_method,
        "self_service": bool(data.self_service),
        "on_first_session": bool(data.on_first_session),
        "is_active": bool(data.is_active),
    }


def _set_service_tariffs(
    conn: Connection, tenant_id: int, service_id: int, tariff_ids: tuple[int, ...]
) -> None:
    conn.execute(
        delete(sub_pp_service_tariffs).where(sub_pp_service_tariffs.c.service_id == service_id)
    )
    if tariff_ids:
        conn.execute(
            sub_pp_service_tariffs.insert(),
            [
                {"tenant_id": tenant_id, "service_id": service_id, "tariff_id": t}
                for t in sorted(set(tariff_ids))
            ],
        )


def create_service(
    conn: Connection, *, tenant_id: int, data: ServiceIn, actor: Actor, now: datetime | None = None
) -> ServiceView:
    values = _checked_service(conn, tenant_id, data)
    if _name_taken(conn, sub_pp_services, tenant_id, values["name"], None):
        raise Conflict(E.SERVICE_EXISTS, f"a service named {values['name']!r} exists already")
    moment = as_utc(now) if now else utcnow()
    service_id = conn.execute(
        sub_pp_services.insert().returning(sub_pp_services.c.id),
        {**values, "tenant_id": tenant_id, "created_at": moment, "updated_at": moment},
    ).scalar_one()
    _set_service_tariffs(conn, tenant_id, service_id, data.tariff_ids)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="sub_pp_service.create",
        object_type="sub_pp_service",
        object_id=service_id,
        details={**values, "tariff_ids": sorted(set(data.tariff_ids))},
    )
    return get_service(conn, tenant_id, service_id)


def update_service(
    conn: Connection, *, tenant_id: int, service_id: int, data: ServiceIn, actor: Actor
) -> ServiceView:
    """Promised payments already taken keep the terms they were taken on."""
    get_service(conn, tenant_id, service_id)
    values = _checked_service(conn, tenant_id, data)
    if _name_taken(conn, sub_pp_services, tenant_id, values["name"], service_id):
        raise Conflict(E.SERVICE_EXISTS, f"a service named {values['name']!r} exists already")
    conn.execute(
        update(sub_pp_services)
        .where(sub_pp_services.c.tenant_id == tenant_id, sub_pp_services.c.id == service_id)
        .values(**values, updated_at=utcnow())
    )
    _set_service_tariffs(conn, tenant_id, service_id, data.tariff_ids)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="sub_pp_service.update",
        object_type="sub_pp_service",
        object_id=service_id,
        details={**values, "tariff_ids": sorted(set(data.tariff_ids))},
    )
    return get_service(conn, tenant_id, service_id)


def _services(conn: Connection, tenant_id: int, where: Any) -> list[ServiceView]:
    rows = conn.execute(
        select(sub_pp_services)
        .where(sub_pp_services.c.tenant_id == tenant_id, where)
        .order_by(sub_pp_services.c.name)
    ).all()
    links: dict[int, list[int]] = {}
    if rows:
        for link in conn.execute(
            select(sub_pp_service_tariffs.c.service_id, sub_pp_service_tariffs.c.tariff_id).where(
                sub_pp_service_tariffs.c.service_id.in_([r.id for r in rows])
            )
        ):
            links.setdefault(link.service_id, []).append(link.tariff_id)
    return [
        ServiceView(
            id=row.id,
            name=row.name,
            amount_minor=int(row.amount_minor),
            days=row.days,
            connection_price_minor=int(row.connection_price_minor),
            commission_bp=row.commission_bp,
            charge_method=row.charge_method,
            self_service=bool(row.self_service),
            on_first_session=bool(row.on_first_session),
            is_active=bool(row.is_active),
            tariff_ids=tuple(sorted(links.get(row.id, []))),
        )
        for row in rows
    ]


def get_service(conn: Connection, tenant_id: int, service_id: int) -> ServiceView:
    found = _services(conn, tenant_id, sub_pp_services.c.id == service_id)
    if not found:
        raise NotFound(E.SERVICE_NOT_FOUND, f"promised payment service {service_id} does not exist")
    return found[0]


def list_services(conn: Connection, tenant_id: int) -> list[ServiceView]:
    return _services(conn, tenant_id, sub_pp_services.c.id.isnot(None))


# --------------------------------------------------------------------------- operator


@dataclass(frozen=True, slots=True)
class Settings:
    pp_only_when_blocked: bool = False


def get_settings(conn: Connection, tenant_id: int) -> Settings:
    row = conn.execute(select(sub_settings).where(sub_settings.c.tenant_id == tenant_id)).first()
    return Settings() if row is None else Settings(bool(row.pp_only_when_blocked))


def update_settings(
    conn: Connection, *, tenant_id: int, pp_only_when_blocked: bool, actor: Actor
) -> Settings:
    values = {"pp_only_when_blocked": bool(pp_only_when_blocked), "updated_at": utcnow()}
    done = conn.execute(
        update(sub_settings).where(sub_settings.c.tenant_id == tenant_id).values(**values)
    ).rowcount
    if not done:
        conn.execute(sub_settings.insert(), {"tenant_id": tenant_id, **values})
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="sub_settings.update",
        object_type="tenant",
        object_id=tenant_id,
        details={"pp_only_when_blocked": bool(pp_only_when_blocked)},
    )
    return get_settings(conn, tenant_id)
