"""What the subscriber modules share: the tenant's calendar, periods, money helpers."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc
from kopilka.core.errors import InvalidInput
from kopilka.core.money import bp_share, currency_exponent
from kopilka.ledger.accounts import system_account_id
from kopilka.subscribers.error_codes import SubscriberErrorCode as E

DAILY, MONTHLY, ONE_TIME = "daily", "monthly", "one_time"
REVENUE = "sub_revenue"  # what subscribers are charged goes here
PAYMENTS = "sub_payments"  # top-ups come from here (what the payment channels owe)
MAX_OPERATION_ID = 100


@dataclass(frozen=True, slots=True)
class Calendar:
    """The tenant's time zone and currency: days and months are the tenant's."""

    zone: ZoneInfo
    currency: str
    exponent: int

    def day_of(self, moment: datetime) -> date:
        return as_utc(moment).astimezone(self.zone).date()

    def start_of(self, day: date) -> datetime:
        """The first moment of ``day`` in the tenant's zone, as UTC."""
        return datetime.combine(day, time(0), self.zone).astimezone(UTC)

    def month_start(self, moment: datetime) -> datetime:
        return self.start_of(self.day_of(moment).replace(day=1))

    def plus_months(self, moment: datetime, months: int) -> datetime:
        """The same wall-clock time ``months`` later (the month's last day when shorter)."""
        local = as_utc(moment).astimezone(self.zone)
        day = add_months(local.date(), months, local.day)
        return datetime.combine(day, local.timetz().replace(tzinfo=None), self.zone).astimezone(UTC)


def calendar_of(conn: Connection, tenant_id: int) -> Calendar:
    from kopilka.tenancy.actions import get_tenant  # tenancy sits above the ledger

    tenant = get_tenant(conn, tenant_id)
    return Calendar(ZoneInfo(tenant.timezone), tenant.currency, currency_exponent(tenant.currency))


def add_months(day: date, months: int, anchor: int) -> date:
    """``day`` moved by ``months``, on the ``anchor`` day of the month (or the month's
    last day when it is shorter): 31 Jan + 1 = 28/29 Feb, + 2 = 31 Mar."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(anchor, last))


def period_end(method: str, start: date, anchor: int | None) -> date | None:
    """The first day after a period starting on ``start``; None for a one-time charge."""
    if method == DAILY:
        return start + timedelta(days=1)
    if method == MONTHLY:
        return add_months(start, 1, anchor or start.day)
    return None


def commission_of(amount_minor: int, commission_bp: int) -> int:
    """``commission_bp`` hundredths of a per cent of the amount, half up: 1 % of 600.00 is
    6.00."""
    return bp_share(amount_minor, commission_bp)


# The operation ids Kopilka gives what it does by itself (the promised payment opened on
# activation) start with this; a client's may not, so theirs never take ours.
OWN_OPERATION_PREFIX = "#"


def operation_id_of(value: object) -> str:
    """A client's operation id (an Idempotency-Key): 1 to 100 characters, not starting
    with ``#`` (Kopilka's own)."""
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_OPERATION_ID:
        raise InvalidInput(
            E.INVALID_SUBSCRIBER_INPUT, f"an operation id of 1 to {MAX_OPERATION_ID} characters"
        )
    if value.strip().startswith(OWN_OPERATION_PREFIX):
        raise InvalidInput(
            E.INVALID_SUBSCRIBER_INPUT,
            f"operation ids starting with {OWN_OPERATION_PREFIX!r} are the server's own",
        )
    return value.strip()


def system_id(conn: Connection, tenant_id: int, cal: Calendar, purpose: str, actor: Actor) -> int:
    return system_account_id(
        conn, tenant_id=tenant_id, unit_code=cal.currency, purpose=purpose, actor=actor
    )


def open_system_accounts(
    conn: Connection, tenant_id: int, actor: Actor, opened_at: datetime | None = None
) -> None:
    """Open the tenant's subscriber system accounts (as of ``opened_at``, for history
    brought over from another system); they are otherwise opened on first use."""
    from kopilka.ledger.accounts import system_account

    cal = calendar_of(conn, tenant_id)
    for purpose in (REVENUE, PAYMENTS):
        system_account(
            conn,
            tenant_id=tenant_id,
            unit_code=cal.currency,
            purpose=purpose,
            actor=actor,
            opened_at=opened_at,
        )
