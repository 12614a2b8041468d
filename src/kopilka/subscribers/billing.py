"""The subscriber's money: charges, top-ups, blocking, activation (SPEC S-1, S-6).

**Charging.** An active subscriber's ``next_charge_on`` is the first day (in the
tenant's time zone) not yet paid for. When that day comes, its period is charged: the
tariff's price for one day (daily), one month from that day (monthly, on the same day
of each month, the month's last day when shorter) or once (one-time). The charge is a
ledger transfer from the subscriber's account to the tenant's ``sub_revenue`` account
whose idempotency key names the subscriber and the period, so a period is charged once
however often the routine runs; a run after downtime charges each missed period once,
in order. A charge the threshold does not allow is not made: the subscriber is
**blocked** for debt and nothing more is charged while blocked (no service, no charge).

**Unblocking.** A top-up (or a promised payment) that makes the period due affordable
brings the subscriber back: the service restarts on that day, so the charge dates move
by the days spent blocked, and the period starting then is charged at once.

**Promised payments** (``kopilka.subscribers.promised``) raise the account's credit
limit; when one ends (its days are over, or a top-up repaid it), its commission is
charged and the limit returns; a subscriber left below the threshold is blocked.

Every function here works inside the caller's transaction, takes the subscriber's row
lock first, and is safe to call again (what is done is not done twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, Refused
from kopilka.core.idempotency import request_hash
from kopilka.core.money import MAX_ABS_MINOR
from kopilka.events.outbox import emit
from kopilka.ledger.accounts import set_credit_limit
from kopilka.ledger.error_codes import LedgerErrorCode
from kopilka.ledger.posting import post_transfers, run_transaction, simple_transfer
from kopilka.ledger.schema import accounts
from kopilka.subscribers.common import (
    DAILY,
    MONTHLY,
    ONE_TIME,
    OWN_OPERATION_PREFIX,
    PAYMENTS,
    REVENUE,
    Calendar,
    calendar_of,
    operation_id_of,
    period_end,
    system_id,
)
from kopilka.subscribers.error_codes import SubscriberErrorCode as E
from kopilka.subscribers.registry import (
    ACTIVE,
    BLOCKED,
    DISABLED,
    NEW,
    lock_subscriber,
    set_status,
)
from kopilka.subscribers.schema import (
    sub_charges,
    sub_pp_services,
    sub_promised_payments,
    sub_topups,
    subscribers,
)
from kopilka.subscribers.tariffs import TariffView, get_tariff
from kopilka.tenancy.audit import record_audit

MAX_PERIODS_PER_RUN = 5_000  # a catch-up of more than this waits for the next run
LIMIT_REFUSALS = (LedgerErrorCode.CREDIT_LIMIT_EXCEEDED, LedgerErrorCode.INSUFFICIENT_FUNDS)
METHODS = (DAILY, MONTHLY, ONE_TIME)


@dataclass(slots=True)
class Settled:
    """What one settling of a subscriber did."""

    periods_charged: int = 0
    charged_minor: int = 0
    blocked: bool = False
    promised_ended: int = 0
    commission_minor: int = 0


@dataclass(frozen=True, slots=True)
class TopUpView:
    id: int
    subscriber_id: int
    operation_id: str
    amount_minor: int
    method: str
    paid_at: datetime
    transfer_id: int
    replayed: bool = False


@dataclass(slots=True)
class ChargingResult:
    subscribers: int = 0
    periods_charged: int = 0
    charged_minor: int = 0
    blocked: int = 0
    promised_ended: int = 0
    commission_minor: int = 0
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def account_state(conn: Connection, account_id: int) -> tuple[int, int]:
    """The account's balance and credit limit, as they are now in this transaction."""
    row = conn.execute(
        select(accounts.c.balance_minor, accounts.c.credit_limit_minor).where(
            accounts.c.id == account_id
        )
    ).one()
    return int(row.balance_minor), int(row.credit_limit_minor)


def active_promised(conn: Connection, subscriber_id: int) -> list[Any]:
    return list(
        conn.execute(
            select(sub_promised_payments)
            .where(
                sub_promised_payments.c.subscriber_id == subscriber_id,
                sub_promised_payments.c.status == "active",
            )
            .order_by(sub_promised_payments.c.ends_at, sub_promised_payments.c.id)
        )
    )


def _reload(conn: Connection, subscriber_id: int) -> Any:
    return conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).one()


def period_price(tariff: TariffView) -> int:
    return tariff.price_minor


# --------------------------------------------------------------------------- limits


def sync_limit(
    conn: Connection, row: Any, actor: Actor, now: datetime, reason: str, *, extra: int = 0
) -> int:
    """Set the account's credit limit to the staff's threshold plus the active promised
    payments (plus ``extra``); a recorded change of limit when it differs. The limit."""
    raised = sum(int(p.amount_minor) for p in active_promised(conn, row.id))
    wanted = min(int(row.base_limit_minor) + raised + extra, MAX_ABS_MINOR)
    _, limit = account_state(conn, row.account_id)
    if limit != wanted:
        set_credit_limit(
            conn,
            tenant_id=row.tenant_id,
            account_id=row.account_id,
            credit_limit_minor=wanted,
            reason=reason,
            actor=actor,
            now=now,
        )
    return wanted


# --------------------------------------------------------------------------- charges


def charge(
    conn: Connection,
    row: Any,
    cal: Calendar,
    *,
    kind: str,
    amount_minor: int,
    key: str,
    description: str,
    actor: Actor,
    now: datetime,
    tariff_id: int | None = None,
    promised_payment_id: int | None = None,
    period_start: date | None = None,
    period_stop: date | None = None,
) -> bool:
    """Charge the subscriber (one transfer, one ``sub_charges`` row); False when the
    threshold does not allow it (nothing written). Already charged under ``key``: True."""
    if conn.execute(
        select(sub_charges.c.id).where(
            sub_charges.c.tenant_id == row.tenant_id, sub_charges.c.charge_key == key
        )
    ).first():
        return True
    transfer_id = None
    if amount_minor > 0:
        spec = simple_transfer(
            key,
            debit_account_id=row.account_id,
            credit_account_id=system_id(conn, row.tenant_id, cal, REVENUE, actor),
            amount_minor=amount_minor,
            kind=f"sub_{kind}",
            description=description[:200],
            meta={"subscriber": row.id, "kind": kind},
        )
        (outcome,) = post_transfers(
            conn, tenant_id=row.tenant_id, specs=[spec], actor=actor, now=now
        )
        if isinstance(outcome, KopilkaError):
            if outcome.code in LIMIT_REFUSALS:
                return False
            raise outcome
        transfer_id = outcome.id
    conn.execute(
        sub_charges.insert(),
        {
            "tenant_id": row.tenant_id,
            "subscriber_id": row.id,
            "kind": kind,
            "tariff_id": tariff_id,
            "promised_payment_id": promised_payment_id,
            "period_start": period_start,
            "period_end": period_stop,
            "amount_minor": amount_minor,
            "transfer_id": transfer_id,
            "charged_at": now,
            "description": description[:200],
            "charge_key": key,
        },
    )
    return True


def _charge_period(
    conn: Connection, row: Any, tariff: TariffView, cal: Calendar, actor: Actor, now: datetime
) -> bool:
    """Charge the period starting on ``row.next_charge_on``; move the date on if paid."""
    start: date = row.next_charge_on
    stop = period_end(tariff.charge_method, start, row.charge_day)
    key = (
        f"sub-tariff:{row.id}:once"
        if tariff.charge_method == ONE_TIME
        else f"sub-tariff:{row.id}:{start.isoformat()}"
    )
    what = {
        DAILY: f"{tariff.name}: {start.isoformat()}",
        MONTHLY: f"{tariff.name}: {start.isoformat()} – {stop.isoformat() if stop else ''}",
        ONE_TIME: f"{tariff.name}: one-time",
    }[tariff.charge_method]
    if not charge(
        conn,
        row,
        cal,
        kind="tariff",
        amount_minor=period_price(tariff),
        key=key,
        description=what,
        actor=actor,
        now=now,
        tariff_id=tariff.id,
        period_start=start,
        period_stop=stop,
    ):
        return False
    conn.execute(update(subscribers).where(subscribers.c.id == row.id).values(next_charge_on=stop))
    return True


# --------------------------------------------------------------------------- settling


def settle(
    conn: Connection,
    tenant_id: int,
    subscriber_id: int,
    *,
    actor: Actor,
    now: datetime | None = None,
) -> Settled:
    """Bring one subscriber up to ``now``: end the promised payments whose days are over
    and charge the periods due, in the order they fell due; block when a charge cannot be
    made or the balance is below the threshold. Safe to call any number of times."""
    from kopilka.subscribers.promised import end_promised

    moment = as_utc(now) if now else utcnow()
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    cal = calendar_of(conn, tenant_id)
    tariff = get_tariff(conn, tenant_id, row.tariff_id)
    today = cal.day_of(moment)
    done = Settled()
    for _ in range(MAX_PERIODS_PER_RUN):
        row = _reload(conn, subscriber_id)
        ending = next(
            (p for p in active_promised(conn, row.id) if as_utc(p.ends_at) <= moment), None
        )
        due = (
            row.status == ACTIVE and row.next_charge_on is not None and row.next_charge_on <= today
        )
        if ending is not None and (
            not due or as_utc(ending.ends_at) <= cal.start_of(row.next_charge_on)
        ):
            done.commission_minor += end_promised(conn, row, ending, "ended", cal, actor, moment)
            done.promised_ended += 1
            continue
        if not due:
            break
        if _charge_period(conn, row, tariff, cal, actor, moment):
            done.periods_charged += 1
            done.charged_minor += period_price(tariff)
            continue
        set_status(conn, row, BLOCKED, "debt", actor, moment)
        done.blocked = True
    row = _reload(conn, subscriber_id)
    balance, limit = account_state(conn, row.account_id)
    if row.status == ACTIVE and balance < -limit:
        set_status(conn, row, BLOCKED, "debt", actor, moment)
        done.blocked = True
    return done


def _resume_values(
    conn: Connection, tenant_id: int, row: Any, now: datetime
) -> dict[str, Any] | None:
    """What an active subscriber's row would say if the service restarted at ``now``;
    None when the balance does not allow the period due (or is below the threshold)."""
    cal = calendar_of(conn, tenant_id)
    tariff = get_tariff(conn, tenant_id, row.tariff_id)
    today = cal.day_of(now)
    balance, limit = account_state(conn, row.account_id)
    restart = row.next_charge_on
    if restart is not None and restart < today:
        restart = today
    due = restart is not None and restart <= today
    need = period_price(tariff) if due else 0
    if balance < -limit or balance - need < -limit:
        return None
    values: dict[str, Any] = {"next_charge_on": restart}
    if tariff.charge_method == MONTHLY and restart == today and row.next_charge_on != today:
        values["charge_day"] = today.day
    return values


def resume_if_affordable(
    conn: Connection, tenant_id: int, subscriber_id: int, reason: str, actor: Actor, now: datetime
) -> bool:
    """Bring a subscriber blocked for debt back when the balance allows the period due
    (the service restarts today: the charge dates move by the days spent blocked)."""
    row = _reload(conn, subscriber_id)
    if row.status != BLOCKED:
        return False
    values = _resume_values(conn, tenant_id, row, now)
    if values is None:
        return False
    set_status(conn, row, ACTIVE, reason, actor, now, **values)
    return True


# --------------------------------------------------------------------------- top-ups


def _topup_view(row: Any, *, replayed: bool = False) -> TopUpView:
    return TopUpView(
        id=row.id,
        subscriber_id=row.subscriber_id,
        operation_id=row.operation_id,
        amount_minor=int(row.amount_minor),
        method=row.method,
        paid_at=as_utc(row.paid_at),
        transfer_id=row.transfer_id,
        replayed=replayed,
    )


def top_up(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    amount_minor: int,
    operation_id: str,
    actor: Actor,
    method: str = "",
    now: datetime | None = None,
) -> TopUpView:
    """Money paid in (a payment channel, the cashier, a bank transfer). It repays the
    active promised payments once the balance is back within the staff's threshold with
    their commission paid, and brings a subscriber blocked for debt back."""
    from kopilka.subscribers.promised import commission_due, end_promised

    moment = as_utc(now) if now else utcnow()
    operation_id = operation_id_of(operation_id)
    if (
        isinstance(amount_minor, bool)
        or not isinstance(amount_minor, int)
        or not 0 < amount_minor <= MAX_ABS_MINOR
    ):
        raise InvalidInput(E.INVALID_SUBSCRIBER_INPUT, "a top-up is more than zero", field="amount")
    method = (method or "").strip()[:32]
    digest = request_hash({"subscriber": subscriber_id, "amount": amount_minor, "method": method})

    def known() -> TopUpView | None:
        row = conn.execute(
            select(sub_topups).where(
                sub_topups.c.tenant_id == tenant_id, sub_topups.c.operation_id == operation_id
            )
        ).first()
        if row is None:
            return None
        if row.request_hash != digest:
            raise operation_conflict(operation_id)
        return _topup_view(row, replayed=True)

    first = known()
    if first is not None:
        return first
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    # A retry that raced its first attempt waited for the lock: the first is done now.
    first = known()
    if first is not None:
        return first
    cal = calendar_of(conn, tenant_id)
    spec = simple_transfer(
        f"sub-topup:{operation_id}",
        debit_account_id=system_id(conn, tenant_id, cal, PAYMENTS, actor),
        credit_account_id=row.account_id,
        amount_minor=amount_minor,
        kind="sub_topup",
        description=f"top-up {row.account_no}" + (f" ({method})" if method else ""),
        meta={"subscriber": row.id, "method": method},
    )
    (outcome,) = post_transfers(conn, tenant_id=tenant_id, specs=[spec], actor=actor, now=moment)
    if isinstance(outcome, KopilkaError):
        if outcome.code == LedgerErrorCode.IDEMPOTENCY_CONFLICT:
            raise operation_conflict(operation_id)
        raise outcome
    if outcome.replayed:
        raise operation_conflict(operation_id)
    topup_id = conn.execute(
        sub_topups.insert().returning(sub_topups.c.id),
        {
            "tenant_id": tenant_id,
            "subscriber_id": row.id,
            "operation_id": operation_id,
            "request_hash": digest,
            "amount_minor": amount_minor,
            "method": method,
            "transfer_id": outcome.id,
            "paid_at": outcome.posted_at,
        },
    ).scalar_one()
    promised = active_promised(conn, row.id)
    if promised:
        balance, _ = account_state(conn, row.account_id)
        owed = sum(commission_due(p, cal, moment) for p in promised)
        if balance - owed >= -int(row.base_limit_minor):
            for p in promised:
                end_promised(conn, _reload(conn, row.id), p, "repaid", cal, actor, moment)
    resume_if_affordable(conn, tenant_id, row.id, "top_up", actor, moment)
    settle(conn, tenant_id, row.id, actor=actor, now=moment)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="subscriber.top_up",
        object_type="subscriber",
        object_id=row.id,
        details={"amount_minor": amount_minor, "operation_id": operation_id, "method": method},
    )
    return _topup_view(conn.execute(select(sub_topups).where(sub_topups.c.id == topup_id)).one())


def operation_conflict(operation_id: str) -> Conflict:
    return Conflict(
        E.SUBSCRIBER_OPERATION_CONFLICT,
        f"operation {operation_id!r} was made already with other content",
        operation_id=operation_id,
    )


# --------------------------------------------------------------------------- lifecycle


def activate(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    actor: Actor,
    by_session: bool = False,
    now: datetime | None = None,
) -> Settled:
    """Start the service (S-6): on the first session the network reports, or by hand.
    The first period is charged at once; a promised payment service "activated after the
    first session" allowed on the tariff, or else the tariff's "new subscribers get n
    days to pay", lets the charge go below the threshold for its days. A session reported
    again later changes nothing."""
    from kopilka.subscribers.promised import open_promised

    moment = as_utc(now) if now else utcnow()
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    if row.status != NEW:
        if by_session:
            return Settled()
        raise Refused(
            E.SUBSCRIBER_STATE,
            f"subscriber {row.account_no} was activated already (status {row.status})",
            status=row.status,
        )
    cal = calendar_of(conn, tenant_id)
    tariff = get_tariff(conn, tenant_id, row.tariff_id)
    today = cal.day_of(moment)
    set_status(
        conn,
        row,
        ACTIVE,
        "first_session" if by_session else "activated",
        actor,
        moment,
        activated_at=moment,
        next_charge_on=today,
        charge_day=today.day if tariff.charge_method == MONTHLY else None,
    )
    emit(
        conn,
        tenant_id=tenant_id,
        type="subscriber.activated",
        subject_type="subscriber",
        subject_id=row.id,
        payload={
            "subscriber_id": row.id,
            "account_no": row.account_no,
            "activated_at": moment.isoformat(),
            "how": "first_session" if by_session else "by_hand",
        },
        now=moment,
    )
    row = _reload(conn, row.id)
    service = conn.execute(
        select(sub_pp_services.c.id)
        .where(
            sub_pp_services.c.tenant_id == tenant_id,
            sub_pp_services.c.on_first_session.is_(True),
            sub_pp_services.c.is_active.is_(True),
        )
        .order_by(sub_pp_services.c.id)
    ).all()
    from kopilka.subscribers.tariffs import get_service

    given = next(
        (s for s in (get_service(conn, tenant_id, x.id) for x in service) if s.allows(tariff.id)),
        None,
    )
    if given is not None:
        open_promised(
            conn,
            row,
            cal,
            tariff,
            actor,
            moment,
            source="first_session",
            service=given,
            operation_id=f"{OWN_OPERATION_PREFIX}activation:{row.id}",
        )
    elif tariff.grace_days > 0:
        open_promised(
            conn,
            row,
            cal,
            tariff,
            actor,
            moment,
            source="grace",
            service=None,
            operation_id=f"{OWN_OPERATION_PREFIX}activation:{row.id}",
        )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="subscriber.activate",
        object_type="subscriber",
        object_id=row.id,
        details={"by_session": by_session},
    )
    return settle(conn, tenant_id, row.id, actor=actor, now=moment)


def disable(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> None:
    """Switch the subscriber off by hand: nothing is charged, promised payments end."""
    from kopilka.subscribers.promised import end_promised

    moment = as_utc(now) if now else utcnow()
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    if row.status == DISABLED:
        return
    settle(conn, tenant_id, subscriber_id, actor=actor, now=moment)
    cal = calendar_of(conn, tenant_id)
    for p in active_promised(conn, subscriber_id):
        end_promised(conn, _reload(conn, subscriber_id), p, "ended", cal, actor, moment)
    set_status(conn, _reload(conn, subscriber_id), DISABLED, "disabled", actor, moment)


def enable(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> None:
    """Switch a disabled subscriber back on: new if never activated, else active when the
    balance allows the period due (the service restarts today), blocked when not."""
    moment = as_utc(now) if now else utcnow()
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    if row.status != DISABLED:
        raise Refused(
            E.SUBSCRIBER_STATE,
            f"subscriber {row.account_no} is {row.status}, not disabled",
            status=row.status,
        )
    if row.activated_at is None:
        set_status(conn, row, NEW, "enabled", actor, moment)
        return
    values = _resume_values(conn, tenant_id, row, moment)
    if values is None:
        set_status(conn, row, BLOCKED, "enabled", actor, moment)
    else:
        set_status(conn, row, ACTIVE, "enabled", actor, moment, **values)
    settle(conn, tenant_id, subscriber_id, actor=actor, now=moment)


def set_threshold(
    conn: Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    base_limit_minor: int,
    actor: Actor,
    now: datetime | None = None,
) -> None:
    """The staff's disconnection threshold (as a credit limit, >= 0); a subscriber below
    it is blocked, one blocked whose due period it now allows comes back."""
    moment = as_utc(now) if now else utcnow()
    if (
        isinstance(base_limit_minor, bool)
        or not isinstance(base_limit_minor, int)
        or not 0 <= base_limit_minor <= MAX_ABS_MINOR
    ):
        raise InvalidInput(
            E.INVALID_SUBSCRIBER_INPUT, "the threshold must be zero or below", field="threshold"
        )
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    conn.execute(
        update(subscribers)
        .where(subscribers.c.id == row.id)
        .values(base_limit_minor=base_limit_minor, updated_at=moment)
    )
    sync_limit(conn, _reload(conn, row.id), actor, moment, "threshold set by the staff")
    resume_if_affordable(conn, tenant_id, row.id, "threshold", actor, moment)
    settle(conn, tenant_id, row.id, actor=actor, now=moment)
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="subscriber.set_threshold",
        object_type="subscriber",
        object_id=row.id,
        details={"base_limit_minor": base_limit_minor},
    )


def change_tariff(
    conn: Connection, *, tenant_id: int, subscriber_id: int, tariff_id: int, actor: Actor
) -> None:
    """A new tariff, charged from the subscriber's next period."""
    row = lock_subscriber(conn, tenant_id, subscriber_id)
    tariff = get_tariff(conn, tenant_id, tariff_id)
    if not tariff.is_active:
        raise InvalidInput(
            E.INVALID_SUBSCRIBER_INPUT, f"tariff {tariff.name!r} is switched off", field="tariff_id"
        )
    values: dict[str, Any] = {"tariff_id": tariff.id, "updated_at": utcnow()}
    if tariff.charge_method == MONTHLY and row.charge_day is None and row.next_charge_on:
        values["charge_day"] = row.next_charge_on.day
    conn.execute(update(subscribers).where(subscribers.c.id == row.id).values(**values))
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="subscriber.change_tariff",
        object_type="subscriber",
        object_id=row.id,
        details={"from": row.tariff_id, "to": tariff.id},
    )


# --------------------------------------------------------------------------- the routine


def due_subscribers(conn: Connection, tenant_id: int, now: datetime) -> list[int]:
    """Who has something to settle at ``now``."""
    cal = calendar_of(conn, tenant_id)
    today = cal.day_of(now)
    ending = select(sub_promised_payments.c.subscriber_id).where(
        sub_promised_payments.c.tenant_id == tenant_id,
        sub_promised_payments.c.status == "active",
        sub_promised_payments.c.ends_at <= now,
    )
    query = (
        select(subscribers.c.id)
        .join(accounts, accounts.c.id == subscribers.c.account_id)
        .where(
            subscribers.c.tenant_id == tenant_id,
            or_(
                and_(
                    subscribers.c.status == ACTIVE,
                    or_(
                        subscribers.c.next_charge_on <= today,
                        accounts.c.balance_minor < -accounts.c.credit_limit_minor,
                    ),
                ),
                subscribers.c.id.in_(ending),
            ),
        )
        .order_by(subscribers.c.id)
    )
    return [int(x) for x in conn.execute(query).scalars()]


def _settle_one(
    tenant_id: int, subscriber_id: int, actor: Actor, moment: datetime, conn: Connection
) -> Settled:
    return settle(conn, tenant_id, subscriber_id, actor=actor, now=moment)


def run_charging(
    engine: Engine,
    *,
    tenant_id: int,
    actor: Actor,
    now: datetime | None = None,
    progress: Any = None,
) -> ChargingResult:
    """The charging routine for one tenant: each subscriber due settled in a transaction
    of its own (one failing does not stop the others; it is reported). Safe to run twice;
    after downtime it charges every missed period once."""
    moment = as_utc(now) if now else utcnow()
    with engine.connect() as conn:
        ids = due_subscribers(conn, tenant_id, moment)
    result = ChargingResult()
    for index, subscriber_id in enumerate(ids, start=1):
        try:
            done = run_transaction(
                engine, partial(_settle_one, tenant_id, subscriber_id, actor, moment)
            )
        except KopilkaError as error:
            result.errors.append(f"subscriber {subscriber_id}: {error.detail}")
            continue
        result.subscribers += 1
        result.periods_charged += done.periods_charged
        result.charged_minor += done.charged_minor
        result.blocked += int(done.blocked)
        result.promised_ended += done.promised_ended
        result.commission_minor += done.commission_minor
        if progress is not None:
            progress(index, len(ids))
    return result
