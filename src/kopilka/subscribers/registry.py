"""Subscribers: who they are, their tariff, account, threshold and status (SPEC S-1).

A subscriber's money is one ledger account in the tenant's currency with the
``credit_limit`` policy: its balance is the subscriber's balance and its credit limit is
minus the **disconnection threshold** (a threshold of −300.00 is a credit limit of
300.00; the ledger never lets a charge take the balance below it). The threshold set by
the staff is ``base_limit_minor``; each active promised payment raises the account's
limit by its amount for its days, and every change is a recorded change of limit.

Status: ``new`` (not activated: nothing is charged), ``active``, ``blocked`` (for debt:
the charge due could not be made, or the balance is below the threshold), ``disabled``
(by the staff: nothing is charged, no promised payment). Every change of status is kept
in ``sub_status_changes`` and written as an event ``subscriber.status_changed``
(SPEC X-3) so the network side can act on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, or_, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from kopilka.core.money import MAX_ABS_MINOR, format_amount
from kopilka.events.outbox import emit
from kopilka.ledger.accounts import Policy, create_account
from kopilka.ledger.schema import accounts
from kopilka.loyalty.cards import normalise_email, normalise_phone
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.schema import sub_status_changes, sub_tariffs, subscribers
from kopilka.subscribers.tariffs import get_tariff
from kopilka.tenancy.audit import record_audit

NEW, ACTIVE, BLOCKED, DISABLED = "new", "active", "blocked", "disabled"
MAX_ACCOUNT_NO = 32
MAX_NAME = 200
_ACCOUNT_NO = re.compile(r"^[0-9A-Za-z][0-9A-Za-z\-_/.]*$")
_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class SubscriberView:
    id: int
    account_no: str
    full_name: str
    phone: str | None
    email: str | None
    tariff_id: int
    tariff_name: str
    account_id: int
    status: str
    balance_minor: int
    base_limit_minor: int  # the threshold set by the staff, as a credit limit
    limit_minor: int  # the account's credit limit now (promised payments included)
    activated_at: datetime | None
    next_charge_on: date | None
    charge_day: int | None
    has_password: bool
    created_at: datetime

    @property
    def threshold_minor(self) -> int:
        """The disconnection threshold now: the balance below which service stops."""
        return -self.limit_minor

    @property
    def base_threshold_minor(self) -> int:
        return -self.base_limit_minor

    @property
    def available_minor(self) -> int:
        """What may still be charged before the threshold."""
        return self.balance_minor + self.limit_minor


@dataclass(frozen=True, slots=True)
class SubscriberIn:
    account_no: str
    full_name: str
    tariff_id: int
    phone: str | None = None
    email: str | None = None
    base_limit_minor: int = 0
    password: str | None = None


def _bad(detail: str, **params: Any) -> InvalidInput:
    return InvalidInput(E.INVALID_SUBSCRIBER_INPUT, detail, **params)


def normalise_account_no(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(text) <= MAX_ACCOUNT_NO or not _ACCOUNT_NO.fullmatch(text):
        raise _bad(
            f"an account number of 1 to {MAX_ACCOUNT_NO} letters, digits, '-', '_', '/', '.'",
            field="account_no",
        )
    return text.upper()


def _full_name(value: object) -> str:
    name = " ".join(value.split()) if isinstance(value, str) else ""
    if not 1 <= len(name) <= MAX_NAME:
        raise _bad(f"a name of 1 to {MAX_NAME} characters", field="full_name")
    return name


def _limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ABS_MINOR:
        raise _bad("the threshold must be zero or below", field="threshold")
    return value


def _password(value: str) -> str:
    if not isinstance(value, str) or len(value) < 8 or len(value) > 200:
        raise _bad("a password of 8 to 200 characters", field="password")
    return _hasher.hash(value)


def _contacts(phone: str | None, email: str | None) -> tuple[str | None, str | None]:
    return (
        normalise_phone(phone) if phone else None,
        normalise_email(email) if email else None,
    )


_COLUMNS = (
    subscribers,
    sub_tariffs.c.name.label("tariff_name"),
    accounts.c.balance_minor,
    accounts.c.credit_limit_minor,
)


def _query() -> Any:
    return (
        select(*_COLUMNS)
        .join(sub_tariffs, sub_tariffs.c.id == subscribers.c.tariff_id)
        .join(accounts, accounts.c.id == subscribers.c.account_id)
    )


def _view(row: Any) -> SubscriberView:
    return SubscriberView(
        id=row.id,
        account_no=row.account_no,
        full_name=row.full_name,
        phone=row.phone,
        email=row.email,
        tariff_id=row.tariff_id,
        tariff_name=row.tariff_name,
        account_id=row.account_id,
        status=row.status,
        balance_minor=int(row.balance_minor),
        base_limit_minor=int(row.base_limit_minor),
        limit_minor=int(row.credit_limit_minor),
        activated_at=as_utc(row.activated_at) if row.activated_at else None,
        next_charge_on=row.next_charge_on,
        charge_day=row.charge_day,
        has_password=row.password_hash is not None,
        created_at=as_utc(row.created_at),
    )


def get_subscriber(conn: Connection, tenant_id: int, subscriber_id: int) -> SubscriberView:
    row = conn.execute(
        _query().where(subscribers.c.tenant_id == tenant_id, subscribers.c.id == subscriber_id)
    ).first()
    if row is None:
        raise NotFound(E.SUBSCRIBER_NOT_FOUND, f"subscriber {subscriber_id} does not exist")
    return _view(row)


def find_by_account_no(conn: Connection, tenant_id: int, account_no: str) -> SubscriberView:
    key = account_no.strip().upper() if isinstance(account_no, str) else ""
    row = conn.execute(
        _query().where(subscribers.c.tenant_id == tenant_id, subscribers.c.account_no == key)
    ).first()
    if row is None:
        raise NotFound(E.SUBSCRIBER_NOT_FOUND, f"no subscriber has account number {account_no!r}")
    return _view(row)


def lock_subscriber(conn: Connection, tenant_id: int, subscriber_id: int) -> Any:
    """The subscriber's row, locked for the rest of the transaction (every change of a
    subscriber's money or status takes this lock first)."""
    row = conn.execute(
        select(subscribers)
        .where(subscribers.c.tenant_id == tenant_id, subscribers.c.id == subscriber_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(E.SUBSCRIBER_NOT_FOUND, f"subscriber {subscriber_id} does not exist")
    return row


def list_subscribers(
    conn: Connection,
    tenant_id: int,
    *,
    search: str | None = None,
    status: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[SubscriberView]:
    """Subscribers by id; ``search`` matches the account number, name or phone."""
    query = _query().where(subscribers.c.tenant_id == tenant_id)
    if status:
        query = query.where(subscribers.c.status == status)
    if search and search.strip():
        text = " ".join(search.split())
        digits = re.sub(r"\D", "", text)
        conditions = [
            subscribers.c.account_no == text.upper(),
            subscribers.c.name_key.contains(text.casefold(), autoescape=True),
        ]
        if len(digits) >= 4:
            conditions.append(subscribers.c.phone.contains(digits, autoescape=True))
        query = query.where(or_(*conditions))
    if after_id is not None:
        query = query.where(subscribers.c.id > after_id)
    rows = conn.execute(query.order_by(subscribers.c.id).limit(limit))
    return [_view(row) for row in rows]


def create_subscriber(
    conn: Connection,
    *,
    tenant_id: int,
    data: SubscriberIn,
    actor: Actor,
    now: datetime | None = None,
) -> SubscriberView:
    """A new subscriber, status ``new``: charging starts when it is activated (by its
    first session or by hand)."""
    from kopilka.subscribers.common import calendar_of

    moment = as_utc(now) if now else utcnow()
    account_no = normalise_account_no(data.account_no)
    full_name = _full_name(data.full_name)
    phone, email = _contacts(data.phone, data.email)
    base_limit = _limit(data.base_limit_minor)
    tariff = get_tariff(conn, tenant_id, data.tariff_id)
    if not tariff.is_active:
        raise _bad(f"tariff {tariff.name!r} is switched off", field="tariff_id")
    password_hash = _password(data.password) if data.password else None
    taken = conn.execute(
        select(subscribers.c.id).where(
            subscribers.c.tenant_id == tenant_id, subscribers.c.account_no == account_no
        )
    ).first()
    if taken is not None:
        raise Conflict(
            E.SUBSCRIBER_EXISTS, f"account number {account_no} is taken", account_no=account_no
        )
    cal = calendar_of(conn, tenant_id)
    account = create_account(
        conn,
        tenant_id=tenant_id,
        unit_code=cal.currency,
        kind="subscriber",
        policy=Policy.CREDIT_LIMIT,
        name=f"subscriber {account_no}",
        owner_type="subscriber",
        owner_id=account_no,
        credit_limit_minor=base_limit,
        actor=actor,
        opened_at=moment,
    )
    subscriber_id = conn.execute(
        subscribers.insert().returning(subscribers.c.id),
        {
            "tenant_id": tenant_id,
            "account_no": account_no,
            "full_name": full_name,
            "name_key": full_name.casefold(),
            "phone": phone,
            "email": email,
            "tariff_id": tariff.id,
            "account_id": account.id,
            "base_limit_minor": base_limit,
            "status": NEW,
            "password_hash": password_hash,
            "created_at": moment,
            "updated_at": moment,
        },
    ).scalar_one()
    conn.execute(
        accounts.update().where(accounts.c.id == account.id).values(owner_id=str(subscriber_id))
    )
    record_status(conn, tenant_id, subscriber_id, None, NEW, "created", actor, moment)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="subscriber.create",
        object_type="subscriber",
        object_id=subscriber_id,
        details={"account_no": account_no, "tariff_id": tariff.id, "base_limit_minor": base_limit},
    )
    return get_subscriber(conn, tenant_id, subscriber_id)


def update_contacts(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    full_name: str,
    phone: str | None,
    email: str | None,
    actor: Actor,
) -> SubscriberView:
    lock_subscriber(conn, tenant_id, subscriber_id)
    name = _full_name(full_name)
    phone_n, email_n = _contacts(phone, email)
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(
            full_name=name,
            name_key=name.casefold(),
            phone=phone_n,
            email=email_n,
            updated_at=utcnow(),
        )
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="subscriber.update",
        object_type="subscriber",
        object_id=subscriber_id,
        details={"full_name": name, "phone": phone_n, "email": email_n},
    )
    return get_subscriber(conn, tenant_id, subscriber_id)


def set_password(
    conn: Connection, *, tenant_id: int, subscriber_id: int, password: str, actor: Actor
) -> None:
    """The cabinet's password (set by the staff, or changed by the subscriber)."""
    lock_subscriber(conn, tenant_id, subscriber_id)
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == subscriber_id)
        .values(password_hash=_password(password), updated_at=utcnow())
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="subscriber.set_password",
        object_type="subscriber",
        object_id=subscriber_id,
    )


def authenticate(
    conn: Connection, *, tenant_id: int, account_no: str, password: str
) -> SubscriberView:
    """The subscriber whose password this is; one vague error for every kind of failure."""
    refused = Unauthenticated("bad_credentials", "unknown account number or password")
    key = account_no.strip().upper() if isinstance(account_no, str) else ""
    row = conn.execute(
        select(subscribers.c.id, subscribers.c.password_hash).where(
            subscribers.c.tenant_id == tenant_id, subscribers.c.account_no == key
        )
    ).first()
    if row is None or row.password_hash is None:
        _hasher.hash(password or "-")  # the same time as a real check
        raise refused
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError) as error:
        raise refused from error
    return get_subscriber(conn, tenant_id, row.id)


def record_status(
    conn: Connection,
    tenant_id: int,
    subscriber_id: int,
    from_status: str | None,
    to_status: str,
    reason: str,
    actor: Actor,
    moment: datetime,
) -> None:
    """Keep a change of status (the row itself is updated by the caller) and write its
    event."""
    conn.execute(
        sub_status_changes.insert(),
        {
            "tenant_id": tenant_id,
            "subscriber_id": subscriber_id,
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "at": moment,
            "actor_type": actor.type.value,
            "actor_id": actor.id,
        },
    )
    from kopilka.subscribers.common import calendar_of

    row = conn.execute(
        select(subscribers.c.account_no, accounts.c.balance_minor, accounts.c.credit_limit_minor)
        .join(accounts, accounts.c.id == subscribers.c.account_id)
        .where(subscribers.c.id == subscriber_id)
    ).one()
    cal = calendar_of(conn, tenant_id)
    emit(
        conn,
        tenant_id=tenant_id,
        type="subscriber.status_changed",
        subject_type="subscriber",
        subject_id=subscriber_id,
        payload={
            "subscriber_id": subscriber_id,
            "account_no": row.account_no,
            "status": to_status,
            "status_was": from_status,
            "reason": reason,
            "balance": format_amount(int(row.balance_minor), cal.exponent),
            "threshold": format_amount(-int(row.credit_limit_minor), cal.exponent),
            "unit": cal.currency,
        },
        now=moment,
    )


def set_status(
    conn: Connection,
    row: Any,
    to_status: str,
    reason: str,
    actor: Actor,
    moment: datetime,
    **values: Any,
) -> None:
    """Move a locked subscriber ``row`` to ``to_status`` (with other column ``values``)."""
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == row.id)
        .values(status=to_status, updated_at=moment, **values)
    )
    if to_status != row.status:
        record_status(conn, row.tenant_id, row.id, row.status, to_status, reason, actor, moment)


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One line of a subscriber's history, newest first: money in (``amount_minor`` > 0),
    money out (< 0), a promised payment taken or ended, a change of status (no amount)."""

    at: datetime
    kind: str  # top_up, tariff, connection, commission, promised_taken, promised_ended, status
    description: str
    amount_minor: int | None
    details: dict[str, Any]


def history(
    conn: Connection, tenant_id: int, subscriber_id: int, *, limit: int = 100
) -> list[HistoryLine]:
    """What happened to the subscriber's account, newest first (at most ``limit`` of
    each kind are read, then the newest ``limit`` kept)."""
    from kopilka.subscribers.schema import sub_charges, sub_promised_payments, sub_topups

    lines: list[HistoryLine] = []
    for row in conn.execute(
        select(sub_topups)
        .where(sub_topups.c.tenant_id == tenant_id, sub_topups.c.subscriber_id == subscriber_id)
        .order_by(sub_topups.c.paid_at.desc(), sub_topups.c.id.desc())
        .limit(limit)
    ):
        lines.append(
            HistoryLine(
                as_utc(row.paid_at),
                "top_up",
                row.method,
                int(row.amount_minor),
                {"operation_id": row.operation_id},
            )
        )
    for row in conn.execute(
        select(sub_charges, sub_tariffs.c.name.label("tariff_name"))
        .outerjoin(sub_tariffs, sub_tariffs.c.id == sub_charges.c.tariff_id)
        .where(sub_charges.c.tenant_id == tenant_id, sub_charges.c.subscriber_id == subscriber_id)
        .order_by(sub_charges.c.charged_at.desc(), sub_charges.c.id.desc())
        .limit(limit)
    ):
        lines.append(
            HistoryLine(
                as_utc(row.charged_at),
                row.kind,
                row.description,
                -int(row.amount_minor),
                {
                    "period_start": row.period_start.isoformat() if row.period_start else None,
                    "period_end": row.period_end.isoformat() if row.period_end else None,
                    "promised_payment_id": row.promised_payment_id,
                    "tariff_id": row.tariff_id,
                    "tariff": row.tariff_name,
                },
            )
        )
    for row in conn.execute(
        select(sub_promised_payments)
        .where(
            sub_promised_payments.c.tenant_id == tenant_id,
            sub_promised_payments.c.subscriber_id == subscriber_id,
        )
        .order_by(sub_promised_payments.c.taken_at.desc(), sub_promised_payments.c.id.desc())
        .limit(limit)
    ):
        details = {
            "promised_payment_id": row.id,
            "amount_minor": int(row.amount_minor),
            "days": row.days,
            "ends_at": as_utc(row.ends_at).isoformat(),
            "source": row.source,
        }
        lines.append(HistoryLine(as_utc(row.taken_at), "promised_taken", "", None, details))
        if row.ended_at is not None:
            lines.append(
                HistoryLine(
                    as_utc(row.ended_at),
                    "promised_ended",
                    row.status,
                    None,
                    {**details, "how": row.status, "commission_minor": row.commission_minor},
                )
            )
    for row in conn.execute(
        select(sub_status_changes)
        .where(
            sub_status_changes.c.tenant_id == tenant_id,
            sub_status_changes.c.subscriber_id == subscriber_id,
        )
        .order_by(sub_status_changes.c.at.desc(), sub_status_changes.c.id.desc())
        .limit(limit)
    ):
        lines.append(
            HistoryLine(
                as_utc(row.at),
                "status",
                row.reason,
                None,
                {"from": row.from_status, "to": row.to_status, "reason": row.reason},
            )
        )
    order = {"status": 0, "promised_ended": 1, "promised_taken": 2}
    lines.sort(key=lambda x: (x.at, -order.get(x.kind, 3)), reverse=True)
    return lines[:limit]
