"""Promised payments (SPEC S-2 … S-6, seed 003).

Taking one raises the subscriber's threshold by its amount for its days (a recorded
change of the account's credit limit), charges its connection price, and brings a
subscriber blocked for debt back: the tariff keeps being charged into the minus and the
subscriber is not blocked. It ends when its days are over (the first moment of the day
``days`` after the day it was taken, in the tenant's time zone: taken on 2 April for 5
days, it covers 2 … 6 April) or earlier when a top-up repays it; then its commission is
charged and the threshold returns; a subscriber left below it is blocked.

Commission: hundredths of a per cent of a fixed amount (never of the automatic one),
once for the monthly charge method, for each day used for the daily one: 1 % of 600
taken on 2 April and repaid on 3 April is 6 × 2 = 12.

A request is checked in this order, the first refusal answering (each its own code):
the subscriber disabled, not activated; the service switched off, not orderable in the
cabinet (when the cabinet asks), not allowed on the tariff; one already active; the
operator's "only while blocked for debt" (S-5); the tariff's rules of S-4 in the order
(a) top-up since the previous, (b) once this month, (c) a payment within n days, (d) a
non-zero charge within n days, (e) at most N this month ((e) not checked when (b) is
set), or, with none set, a month since the previous; then the amount (a fixed amount
below the tariff's price; an automatic amount when nothing is needed; too little to
bring a blocked subscriber back). The staff may set the S-4 rules aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Refused
from kopilka.core.idempotency import request_hash
from kopilka.core.money import format_amount
from kopilka.events.outbox import emit
from kopilka.subscribers.billing import (
    account_state,
    active_promised,
    charge,
    operation_conflict,
    period_price,
    resume_if_affordable,
    settle,
    sync_limit,
)
from kopilka.subscribers.common import (
    DAILY,
    MONTHLY,
    Calendar,
    calendar_of,
    commission_of,
    operation_id_of,
)
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.registry import (
    BLOCKED,
    DISABLED,
    NEW,
    get_subscriber,
    lock_subscriber,
)
from kopilka.subscribers.schema import (
    sub_charges,
    sub_promised_payments,
    sub_topups,
    subscribers,
)
from kopilka.subscribers.tariffs import (
    ServiceView,
    TariffView,
    get_service,
    get_settings,
    get_tariff,
)
from kopilka.tenancy.audit import record_audit

SOURCES = ("staff", "cabinet", "first_session", "grace")


@dataclass(frozen=True, slots=True)
class PromisedView:
    id: int
    subscriber_id: int
    service_id: int | None
    service_name: str | None
    source: str
    amount_minor: int
    is_auto: bool
    days: int
    connection_price_minor: int
    commission_bp: int
    charge_method: str
    taken_at: datetime
    ends_at: datetime
    status: str
    ended_at: datetime | None
    commission_minor: int | None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    """What taking a service would do now, or why it is refused (the cabinet's button)."""

    service: ServiceView
    amount_minor: int
    connection_price_minor: int
    commission_per_day_minor: int | None  # daily method
    commission_once_minor: int | None  # monthly method
    commission_max_minor: int
    ends_at: datetime
    refusal: Refused | None


def _view(conn: Connection, row: Any, *, replayed: bool = False) -> PromisedView:
    name = None
    if row.service_id is not None:
        name = get_service(conn, row.tenant_id, row.service_id).name
    return PromisedView(
        id=row.id,
        subscriber_id=row.subscriber_id,
        service_id=row.service_id,
        service_name=name,
        source=row.source,
        amount_minor=int(row.amount_minor),
        is_auto=bool(row.is_auto),
        days=row.days,
        connection_price_minor=int(row.connection_price_minor),
        commission_bp=row.commission_bp,
        charge_method=row.charge_method,
        taken_at=as_utc(row.taken_at),
        ends_at=as_utc(row.ends_at),
        status=row.status,
        ended_at=as_utc(row.ended_at) if row.ended_at else None,
        commission_minor=None if row.commission_minor is None else int(row.commission_minor),
        replayed=replayed,
    )


def get_promised(conn: Connection, tenant_id: int, promised_id: int) -> PromisedView:
    from kopilka.core.errors import NotFound

    row = conn.execute(
        select(sub_promised_payments).where(
            sub_promised_payments.c.tenant_id == tenant_id,
            sub_promised_payments.c.id == promised_id,
        )
    ).first()
    if row is None:
        raise NotFound(E.SUBSCRIBER_NOT_FOUND, f"promised payment {promised_id} does not exist")
    return _view(conn, row)


def list_promised(conn: Connection, tenant_id: int, subscriber_id: int) -> list[PromisedView]:
    rows = conn.execute(
        select(sub_promised_payments)
        .where(
            sub_promised_payments.c.tenant_id == tenant_id,
            sub_promised_payments.c.subscriber_id == subscriber_id,
        )
        .order_by(sub_promised_payments.c.taken_at.desc(), sub_promised_payments.c.id.desc())
    )
    return [_view(conn, row) for row in rows]


# --------------------------------------------------------------------------- commission


def days_used(row: Any, cal: Calendar, moment: datetime) -> int:
    """Calendar days (the tenant's) the promised payment was in force on, to ``moment``
    or its end, whichever is sooner: taken 2 April, repaid 3 April: 2."""
    until = min(as_utc(moment), as_utc(row.ends_at))
    used = (cal.day_of(until) - cal.day_of(row.taken_at)).days + 1
    return max(1, min(int(row.days), used))


def commission_due(row: Any, cal: Calendar, moment: datetime) -> int:
    """The commission the promised payment ``row`` would cost if it ended at ``moment``."""
    if row.is_auto or not row.commission_bp:
        return 0
    each = commission_of(int(row.amount_minor), int(row.commission_bp))
    if row.charge_method == DAILY:
        return each * days_used(row, cal, moment)
    return each


def end_promised(
    conn: Connection,
    row: Any,
    promised: Any,
    status: str,
    cal: Calendar,
    actor: Actor,
    now: datetime,
) -> int:
    """End ``promised`` (``ended``: its days are over; ``repaid``: a top-up repaid it):
    charge its commission while the raised threshold still stands (raised further by
    exactly what is missing, if it must be: the commission is owed either way), then
    return the threshold. The commission charged."""
    commission = commission_due(promised, cal, now)
    if commission:
        balance, limit = account_state(conn, row.account_id)
        short = commission - (balance + limit)
        if short > 0:
            sync_limit(
                conn, row, actor, now, f"commission of promised payment {promised.id}", extra=short
            )
        charged = charge(
            conn,
            row,
            cal,
            kind="commission",
            amount_minor=commission,
            key=f"sub-pp-commission:{promised.id}",
            description=f"commission of promised payment {promised.id}",
            actor=actor,
            now=now,
            promised_payment_id=promised.id,
        )
        if not charged:  # cannot happen: the limit was raised to fit it
            raise RuntimeError(f"commission of promised payment {promised.id} refused")
    conn.execute(
        update(sub_promised_payments)
        .where(sub_promised_payments.c.id == promised.id)
        .values(status=status, ended_at=now, commission_minor=commission)
    )
    sync_limit(conn, row, actor, now, f"promised payment {promised.id} {status}")
    emit(
        conn,
        tenant_id=row.tenant_id,
        type="promised_payment.ended",
        subject_type="subscriber",
        subject_id=row.id,
        payload={
            "subscriber_id": row.id,
            "account_no": row.account_no,
            "promised_payment_id": promised.id,
            "how": status,
            "amount": format_amount(int(promised.amount_minor), cal.exponent),
            "commission": format_amount(commission, cal.exponent),
            "unit": cal.currency,
        },
        now=now,
    )
    return commission


# --------------------------------------------------------------------------- rules


def _refuse(code: E, detail: str, **params: Any) -> Refused:
    return Refused(code, detail, **params)


def _previous(conn: Connection, subscriber_id: int) -> list[Any]:
    """The subscriber's promised payments (the tariff's grace is not one), newest first."""
    return list(
        conn.execute(
            select(sub_promised_payments.c.id, sub_promised_payments.c.taken_at)
            .where(
                sub_promised_payments.c.subscriber_id == subscriber_id,
                sub_promised_payments.c.source != "grace",
            )
            .order_by(sub_promised_payments.c.taken_at.desc())
        )
    )


def _check_rules(
    conn: Connection, row: Any, tariff: TariffView, cal: Calendar, now: datetime
) -> None:
    """The tariff's S-4 rules, in their order."""
    previous = _previous(conn, row.id)
    month_start = cal.month_start(now)
    this_month = sum(1 for p in previous if as_utc(p.taken_at) >= month_start)
    if tariff.pp_requires_topup and previous:
        last = as_utc(previous[0].taken_at)
        paid = conn.execute(
            select(func.count())
            .select_from(sub_topups)
            .where(sub_topups.c.subscriber_id == row.id, sub_topups.c.paid_at > last)
        ).scalar_one()
        if not paid:
            raise _refuse(
                E.PP_RULE_NO_TOPUP,
                "the account has not been topped up since the previous promised payment",
            )
    if tariff.pp_once_a_month and this_month:
        raise _refuse(E.PP_RULE_ONCE_A_MONTH, "a promised payment was taken this month already")
    if tariff.pp_payment_within_days is not None:
        since = now - timedelta(days=tariff.pp_payment_within_days)
        paid = conn.execute(
            select(func.count())
            .select_from(sub_topups)
            .where(sub_topups.c.subscriber_id == row.id, sub_topups.c.paid_at >= since)
        ).scalar_one()
        if not paid:
            raise _refuse(
                E.PP_RULE_NO_RECENT_PAYMENT,
                f"no payment in the last {tariff.pp_payment_within_days} days",
                days=tariff.pp_payment_within_days,
            )
    if tariff.pp_charge_within_days is not None:
        since = now - timedelta(days=tariff.pp_charge_within_days)
        charged = conn.execute(
            select(func.count())
            .select_from(sub_charges)
            .where(
                sub_charges.c.subscriber_id == row.id,
                sub_charges.c.amount_minor > 0,
                sub_charges.c.charged_at >= since,
            )
        ).scalar_one()
        if not charged:
            raise _refuse(
                E.PP_RULE_NO_RECENT_CHARGE,
                f"nothing was charged in the last {tariff.pp_charge_within_days} days",
                days=tariff.pp_charge_within_days,
            )
    if (
        not tariff.pp_once_a_month
        and tariff.pp_max_per_month is not None
        and this_month >= tariff.pp_max_per_month
    ):
        raise _refuse(
            E.PP_RULE_MONTHLY_LIMIT,
            f"at most {tariff.pp_max_per_month} promised payments a month",
            limit=tariff.pp_max_per_month,
        )
    if not tariff.has_pp_rules and previous:
        allowed_from = cal.plus_months(as_utc(previous[0].taken_at), 1)
        if now < allowed_from:
            raise _refuse(
                E.PP_RULE_MONTH_SINCE_PREVIOUS,
                f"the next promised payment may be taken from {allowed_from.isoformat()}",
                allowed_from=allowed_from.isoformat(),
            )


def _amount(
    conn: Connection,
    row: Any,
    tariff: TariffView,
    service: ServiceView,
    cal: Calendar,
    now: datetime,
) -> tuple[int, bool]:
    """How much the threshold is raised by, and whether it is the automatic amount."""
    balance, limit = account_state(conn, row.account_id)
    available = balance + limit
    price = period_price(tariff)
    need = price + service.connection_price_minor - available
    if service.is_auto:
        if need <= 0:
            raise _refuse(E.PP_NOT_NEEDED, "the balance covers the next charge: nothing is needed")
        return need, True
    if service.amount_minor < price:
        raise _refuse(
            E.PP_AMOUNT_BELOW_PRICE,
            "the promised payment's amount is below the tariff's price",
            amount=format_amount(service.amount_minor, cal.exponent),
            price=format_amount(price, cal.exponent),
        )
    if row.status == BLOCKED and service.amount_minor < need:
        raise _refuse(
            E.PP_NOT_ENOUGH,
            "the promised payment would not be enough to bring the service back",
            amount=format_amount(service.amount_minor, cal.exponent),
            needed=format_amount(need, cal.exponent),
        )
    return service.amount_minor, False


def check(
    conn: Connection,
    row: Any,
    service: ServiceView,
    *,
    source: str,
    now: datetime,
    ignore_rules: bool = False,
) -> tuple[int, bool]:
    """Refuse a promised payment the way the module's docstring orders it; else the
    amount and whether it is automatic."""
    cal = calendar_of(conn, row.tenant_id)
    tariff = get_tariff(conn, row.tenant_id, row.tariff_id)
    if row.status == DISABLED:
        raise _refuse(E.PP_SUBSCRIBER_DISABLED, "the subscriber is disabled")
    if row.status == NEW:
        raise _refuse(E.PP_NOT_ACTIVATED, "the subscriber's service has not started yet")
    if not service.is_active:
        raise _refuse(E.PP_SERVICE_INACTIVE, f"service {service.name!r} is switched off")
    if source == "cabinet" and not service.self_service:
        raise _refuse(
            E.PP_NOT_SELF_SERVICE, f"service {service.name!r} cannot be ordered in the cabinet"
        )
    if not service.allows(tariff.id):
        raise _refuse(
            E.PP_TARIFF_NOT_ALLOWED, f"service {service.name!r} is not for tariff {tariff.name!r}"
        )
    if active_promised(conn, row.id):
        raise _refuse(E.PP_ALREADY_ACTIVE, "a promised payment is active already")
    if get_settings(conn, row.tenant_id).pp_only_when_blocked and row.status != BLOCKED:
        raise _refuse(
            E.PP_ONLY_WHEN_BLOCKED, "a promised payment is given only while blocked for debt"
        )
    if not ignore_rules:
        _check_rules(conn, row, tariff, cal, now)
    return _amount(conn, row, tariff, service, cal, now)


def ends_at_of(cal: Calendar, taken_at: datetime, days: int) -> datetime:
    return cal.start_of(cal.day_of(taken_at) + timedelta(days=days))


# --------------------------------------------------------------------------- taking


def open_promised(
    conn: Connection,
    row: Any,
    cal: Calendar,
    tariff: TariffView,
    actor: Actor,
    now: datetime,
    *,
    source: str,
    service: ServiceView | None,
    operation_id: str,
    amount: tuple[int, bool] | None = None,
    digest: str = "",
) -> int:
    """Write a promised payment and raise the threshold; charge its connection price;
    bring a blocked subscriber back. ``service`` None: the tariff's grace (S-6)."""
    if service is None:
        days = tariff.grace_days
        each = period_price(tariff)
        value, is_auto = (each * days if tariff.charge_method == DAILY else each), True
        connection, commission_bp, method = 0, 0, tariff.charge_method
        if method not in (DAILY, MONTHLY):
            method = MONTHLY
    else:
        days = service.days
        if amount is None:
            balance, limit = account_state(conn, row.account_id)
            need = period_price(tariff) + service.connection_price_minor - (balance + limit)
            amount = (max(need, 0), True) if service.is_auto else (service.amount_minor, False)
        value, is_auto = amount
        connection, commission_bp, method = (
            service.connection_price_minor,
            service.commission_bp,
            service.charge_method,
        )
    promised_id = conn.execute(
        sub_promised_payments.insert().returning(sub_promised_payments.c.id),
        {
            "tenant_id": row.tenant_id,
            "subscriber_id": row.id,
            "service_id": None if service is None else service.id,
            "operation_id": operation_id,
            "request_hash": digest or request_hash({"source": source}),
            "source": source,
            "amount_minor": value,
            "is_auto": is_auto,
            "days": days,
            "connection_price_minor": connection,
            "commission_bp": 0 if is_auto else commission_bp,
            "charge_method": method,
            "taken_at": now,
            "ends_at": ends_at_of(cal, now, days),
            "status": "active",
        },
    ).scalar_one()
    sync_limit(conn, row, actor, now, f"promised payment {promised_id}")
    if connection and not charge(
        conn,
        row,
        cal,
        kind="connection",
        amount_minor=connection,
        key=f"sub-pp-connection:{promised_id}",
        description=f"promised payment {promised_id}: connection",
        actor=actor,
        now=now,
        promised_payment_id=promised_id,
    ):
        raise _refuse(
            E.PP_CONNECTION_UNAFFORDABLE,
            "the connection price does not fit even under the raised threshold",
        )
    emit(
        conn,
        tenant_id=row.tenant_id,
        type="promised_payment.taken",
        subject_type="subscriber",
        subject_id=row.id,
        payload={
            "subscriber_id": row.id,
            "account_no": row.account_no,
            "promised_payment_id": promised_id,
            "source": source,
            "amount": format_amount(value, cal.exponent),
            "connection_price": format_amount(connection, cal.exponent),
            "unit": cal.currency,
            "days": days,
            "ends_at": ends_at_of(cal, now, days).isoformat(),
        },
        now=now,
    )
    resume_if_affordable(conn, row.tenant_id, row.id, "promised_payment", actor, now)
    return int(promised_id)


def take(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    service_id: int,
    operation_id: str,
    actor: Actor,
    source: str = "staff",
    ignore_rules: bool = False,
    now: datetime | None = None,
) -> PromisedView:
    """Take a promised payment (S-2) by the staff (``source`` staff) or the subscriber
    in the cabinet (``cabinet``). Asked again with the same operation id: the first
    answer, nothing more written."""
    moment = as_utc(now) if now else utcnow()
    if source not in ("staff", "cabinet"):
        raise ValueError(source)
    operation_id = operation_id_of(operation_id)
    digest = request_hash(
        {
            "subscriber": subscriber_id,
            "service": service_id,
            "source": source,
            "ignore": ignore_rules,
        }
    )

    def known() -> PromisedView | None:
        row = conn.execute(
            select(sub_promised_payments).where(
                sub_promised_payments.c.tenant_id == tenant_id,
                sub_promised_payments.c.operation_id == operation_id,
            )
        ).first()
        if row is None:
            return None
        if row.request_hash != digest:
            raise operation_conflict(operation_id)
        return _view(conn, row, replayed=True)

    first = known()
    if first is not None:
        return first
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    # A retry that raced its first attempt waited for the lock: the first is done now.
    first = known()
    if first is not None:
        return first
    settle(conn, tenant_id, subscriber_id, actor=actor, now=moment)
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    service = get_service(conn, tenant_id, service_id)
    amount = check(conn, row, service, source=source, now=moment, ignore_rules=ignore_rules)
    cal = calendar_of(conn, tenant_id)
    tariff = get_tariff(conn, tenant_id, row.tariff_id)
    promised_id = open_promised(
        conn,
        row,
        cal,
        tariff,
        actor,
        moment,
        source=source,
        service=service,
        operation_id=operation_id,
        amount=amount,
        digest=digest,
    )
    settle(conn, tenant_id, subscriber_id, actor=actor, now=moment)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="promised_payment.take",
        object_type="subscriber",
        object_id=subscriber_id,
        details={
            "promised_payment_id": promised_id,
            "service_id": service_id,
            "amount_minor": amount[0],
            "ignore_rules": ignore_rules,
        },
    )
    return get_promised(conn, tenant_id, promised_id)


def offer(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    service_id: int,
    source: str = "cabinet",
    now: datetime | None = None,
) -> Offer:
    """What the button would do: the amount, the prices, the end; or the refusal."""
    moment = as_utc(now) if now else utcnow()
    row = conn.execute(
        select(subscribers).where(
            subscribers.c.tenant_id == tenant_id, subscribers.c.id == subscriber_id
        )
    ).first()
    if row is None:
        get_subscriber(conn, tenant_id, subscriber_id)  # raises not found
    service = get_service(conn, tenant_id, service_id)
    cal = calendar_of(conn, tenant_id)
    refusal: Refused | None = None
    value = service.amount_minor
    try:
        value, _ = check(conn, row, service, source=source, now=moment)
    except Refused as error:
        refusal = error
    each = 0 if service.is_auto else commission_of(value, service.commission_bp)
    daily = service.charge_method == DAILY
    return Offer(
        service=service,
        amount_minor=value,
        connection_price_minor=service.connection_price_minor,
        commission_per_day_minor=each if daily else None,
        commission_once_minor=None if daily else each,
        commission_max_minor=each * service.days if daily else each,
        ends_at=ends_at_of(cal, moment, service.days),
        refusal=refusal,
    )
