"""Holds: reserve, then capture (fully or partly) or void; lapse on their own.

A hold reserves ``amount_minor`` of its debit account: ``accounts.held_minor`` grows by
it and no other spend can use it. It ends exactly once, by a row of ``hold_resolutions``
(the primary key on ``hold_id`` makes a second ending impossible): ``captured`` with a
transfer of at most the held amount (the rest is released), ``voided``, or ``expired``.
A lapsed hold stops holding the moment its ``expires_at`` passes, even before the sweep
(``expire_holds`` and every posting that debits its account) writes its resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import Conflict, InvalidInput, NotFound, Refused
from kopilka.core.idempotency import request_hash as _hash
from kopilka.core.money import format_amount
from kopilka.core.settings import get_settings
from kopilka.ledger.error_codes import LedgerErrorCode as E
from kopilka.ledger.posting import (
    EntrySpec,
    PostedTransfer,
    TransferSpec,
    _check_limit,
    _load_accounts,
    expire_due_holds,
    post_one,
    write_account_state,
)
from kopilka.ledger.schema import accounts, hold_resolutions, holds, units

MAX_HOLD_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class HoldView:
    id: int
    tenant_id: int
    idempotency_key: str
    debit_account_id: int
    credit_account_id: int
    unit_code: str
    exponent: int
    amount_minor: int
    status: str  # pending, captured, voided, expired
    captured_minor: int
    transfer_id: int | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    description: str
    meta: dict[str, Any] | None
    replayed: bool = False

    def fmt(self, amount_minor: int) -> str:
        return format_amount(amount_minor, self.exponent)


def place_hold(
    conn: Connection,
    *,
    tenant_id: int,
    idempotency_key: str,
    debit_account_id: int,
    credit_account_id: int,
    amount_minor: int,
    actor: Actor,
    expires_at: datetime | None = None,
    ttl_seconds: int | None = None,
    description: str = "",
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> HoldView:
    """Reserve ``amount_minor`` of the debit account for a later capture to the credit one.

    The hold ends at ``expires_at``, or ``ttl_seconds`` from now, or after the default
    time. The expiry is part of the request as the caller put it: a retry with the same
    ``ttl_seconds`` is the same request even though "now" has moved on.
    """
    if expires_at is not None and ttl_seconds is not None:
        raise InvalidInput(E.INVALID_EXPIRY, "give an expiry moment or a time to live, not both")
    now = as_utc(now) if now else utcnow()
    if amount_minor <= 0:
        raise InvalidInput(E.AMOUNT_NOT_POSITIVE, "a hold amount must be greater than zero")
    if debit_account_id == credit_account_id:
        raise InvalidInput(E.DUPLICATE_ACCOUNT, "a hold moves between two different accounts")
    asked_expiry = as_utc(expires_at) if expires_at is not None else None
    request_hash = _hash(
        {
            "d": debit_account_id,
            "c": credit_account_id,
            "a": amount_minor,
            "x": description,
            "m": meta,
            # an explicit expiry is part of the request; the default one depends on when
            # the first attempt arrived, so a retry without one still matches
            "e": asked_expiry.isoformat() if asked_expiry is not None else None,
            "t": ttl_seconds,
        }
    )
    # A retry answers as the first attempt did, even after the hold's expiry has passed.
    known = _by_key(conn, tenant_id, idempotency_key)
    if known is not None:
        if known[1] != request_hash:
            raise Conflict(
                E.IDEMPOTENCY_CONFLICT,
                f"idempotency key {idempotency_key!r} was used for another hold",
            )
        return _replay(get_hold(conn, tenant_id, known[0]))
    if asked_expiry is not None:
        expires_at = asked_expiry
    elif ttl_seconds is not None:
        expires_at = now + timedelta(seconds=ttl_seconds)
    else:
        expires_at = now + timedelta(seconds=get_settings().default_hold_ttl_seconds)
    if expires_at <= now or expires_at > now + timedelta(seconds=MAX_HOLD_SECONDS):
        raise InvalidInput(E.INVALID_EXPIRY, "a hold expires after now and within 30 days")

    state = _load_accounts(
        conn,
        tenant_id,
        sorted({debit_account_id, credit_account_id}),
        {debit_account_id},
        now,
        actor,
    )
    for account_id in (debit_account_id, credit_account_id):
        if account_id not in state:
            raise NotFound(
                E.ACCOUNT_NOT_FOUND, f"account {account_id} does not exist", account_id=account_id
            )
    debit, credit = state[debit_account_id], state[credit_account_id]
    if debit.unit_id != credit.unit_id:
        raise InvalidInput(
            E.MIXED_UNITS,
            f"the two accounts hold different units ({debit.unit_code} and {credit.unit_code})",
        )
    if debit.is_hot:
        raise InvalidInput(
            E.INVALID_ACCOUNT, "a hold reserves a customer's account, not a system account"
        )
    _check_limit(debit, amount_minor, EntrySpec(debit_account_id, -amount_minor), now)
    hold_id = conn.execute(
        holds.insert().returning(holds.c.id),
        {
            "tenant_id": tenant_id,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "debit_account_id": debit_account_id,
            "credit_account_id": credit_account_id,
            "unit_id": debit.unit_id,
            "amount_minor": amount_minor,
            "description": description,
            "created_at": now,
            "expires_at": expires_at,
            "actor_type": actor.type.value,
            "actor_id": actor.id,
            "source_ip": actor.source_ip,
            "meta": meta,
        },
    ).scalar_one()
    debit.held_minor += amount_minor
    debit.touched = True
    write_account_state(conn, {debit.id: debit})
    return get_hold(conn, tenant_id, hold_id)


def capture_hold(
    conn: Connection,
    *,
    tenant_id: int,
    hold_id: int,
    idempotency_key: str,
    actor: Actor,
    amount_minor: int | None = None,
    description: str = "",
    meta: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[HoldView, PostedTransfer]:
    """Post the held amount (or less; the rest is released) as a transfer."""
    now = as_utc(now) if now else utcnow()
    hold = _lock_hold(conn, tenant_id, hold_id)
    amount = hold.amount_minor if amount_minor is None else amount_minor
    request_hash = _hash({"capture": hold_id, "a": amount, "x": description, "m": meta})
    if hold.status == "captured" and hold.transfer_id is not None:
        row = conn.execute(
            select(hold_resolutions.c.idempotency_key, hold_resolutions.c.request_hash).where(
                hold_resolutions.c.hold_id == hold_id
            )
        ).one()
        if row.idempotency_key == idempotency_key and row.request_hash == request_hash:
            from kopilka.ledger.posting import get_transfer

            return _replay(hold), _replay_transfer(get_transfer(conn, tenant_id, hold.transfer_id))
    _check_pending(hold, now)
    if amount <= 0:
        raise InvalidInput(E.AMOUNT_NOT_POSITIVE, "a capture amount must be greater than zero")
    if amount > hold.amount_minor:
        raise Refused(
            E.CAPTURE_EXCEEDS_HOLD,
            f"cannot capture {hold.fmt(amount)} {hold.unit_code}: the hold is for "
            f"{hold.fmt(hold.amount_minor)}",
        )
    spec = TransferSpec(
        idempotency_key=idempotency_key,
        entries=(
            EntrySpec(hold.debit_account_id, -amount),
            EntrySpec(hold.credit_account_id, amount),
        ),
        kind="capture",
        description=description or hold.description,
        meta=meta if meta is not None else hold.meta,
        hold_id=hold_id,
        release_minor=hold.amount_minor,
    )
    posted = post_one(conn, tenant_id=tenant_id, spec=spec, actor=actor, now=now)
    if posted.replayed:
        raise Conflict(
            E.IDEMPOTENCY_CONFLICT,
            f"idempotency key {idempotency_key!r} was used for another request",
        )
    _resolve(
        conn,
        tenant_id,
        hold_id,
        "captured",
        amount,
        posted.id,
        idempotency_key,
        request_hash,
        actor,
        now,
    )
    return get_hold(conn, tenant_id, hold_id), posted


def void_hold(
    conn: Connection,
    *,
    tenant_id: int,
    hold_id: int,
    idempotency_key: str | None,
    actor: Actor,
    now: datetime | None = None,
) -> HoldView:
    """Release the whole hold. Voiding a voided hold again answers as the first time."""
    now = as_utc(now) if now else utcnow()
    hold = _lock_hold(conn, tenant_id, hold_id)
    if hold.status == "voided":
        return _replay(hold)
    _check_pending(hold, now)
    state = _load_accounts(conn, tenant_id, [hold.debit_account_id], set(), now, actor)
    debit = state[hold.debit_account_id]
    debit.held_minor -= hold.amount_minor
    assert debit.held_minor >= 0, "voided more than was held"
    debit.touched = True
    write_account_state(conn, {debit.id: debit})
    _resolve(conn, tenant_id, hold_id, "voided", 0, None, idempotency_key, None, actor, now)
    return get_hold(conn, tenant_id, hold_id)


def expire_holds(
    conn: Connection, *, tenant_id: int, actor: Actor, now: datetime | None = None
) -> int:
    """Resolve every lapsed hold of the tenant as expired; returns how many. Idempotent."""
    now = as_utc(now) if now else utcnow()
    account_ids = sorted(
        conn.execute(
            select(holds.c.debit_account_id)
            .outerjoin(hold_resolutions, hold_resolutions.c.hold_id == holds.c.id)
            .where(
                holds.c.tenant_id == tenant_id,
                holds.c.expires_at <= now,
                hold_resolutions.c.hold_id.is_(None),
            )
            .distinct()
        ).scalars()
    )
    if not account_ids:
        return 0
    state = _load_accounts(conn, tenant_id, account_ids, set(), now, actor)
    expired = expire_due_holds(conn, tenant_id, state, account_ids, now, actor)
    write_account_state(conn, state)
    return len(expired)


def get_hold(conn: Connection, tenant_id: int, hold_id: int) -> HoldView:
    row = conn.execute(
        select(
            holds,
            units.c.code.label("unit_code"),
            units.c.exponent,
            hold_resolutions.c.status,
            hold_resolutions.c.amount_minor.label("captured"),
            hold_resolutions.c.transfer_id,
            hold_resolutions.c.resolved_at,
        )
        .join(units, units.c.id == holds.c.unit_id)
        .outerjoin(hold_resolutions, hold_resolutions.c.hold_id == holds.c.id)
        .where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
    ).first()
    if row is None:
        raise NotFound(E.HOLD_NOT_FOUND, f"hold {hold_id} does not exist", hold_id=hold_id)
    return HoldView(
        id=row.id,
        tenant_id=row.tenant_id,
        idempotency_key=row.idempotency_key,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        unit_code=row.unit_code,
        exponent=row.exponent,
        amount_minor=row.amount_minor,
        status=row.status or "pending",
        captured_minor=row.captured or 0,
        transfer_id=row.transfer_id,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        resolved_at=as_utc(row.resolved_at) if row.resolved_at else None,
        description=row.description,
        meta=row.meta,
    )


def _by_key(conn: Connection, tenant_id: int, key: str) -> tuple[int, str] | None:
    row = conn.execute(
        select(holds.c.id, holds.c.request_hash).where(
            holds.c.tenant_id == tenant_id, holds.c.idempotency_key == key
        )
    ).first()
    return None if row is None else (row.id, row.request_hash)


def _lock_hold(conn: Connection, tenant_id: int, hold_id: int) -> HoldView:
    """Lock the hold's debit account (the lock that guards the hold), then read the hold."""
    hold = get_hold(conn, tenant_id, hold_id)
    conn.execute(
        select(accounts.c.id).where(accounts.c.id == hold.debit_account_id).with_for_update()
    ).all()
    return get_hold(conn, tenant_id, hold_id)


def _check_pending(hold: HoldView, now: datetime) -> None:
    if hold.status == "captured":
        raise Refused(E.HOLD_CAPTURED, f"hold {hold.id} was captured already")
    if hold.status == "voided":
        raise Refused(E.HOLD_VOIDED, f"hold {hold.id} was voided")
    if hold.status == "expired" or hold.expires_at <= now:
        raise Refused(E.HOLD_EXPIRED, f"hold {hold.id} expired at {hold.expires_at.isoformat()}")
    assert hold.status == "pending"


def _resolve(
    conn: Connection,
    tenant_id: int,
    hold_id: int,
    status: str,
    amount_minor: int,
    transfer_id: int | None,
    key: str | None,
    request_hash: str | None,
    actor: Actor,
    now: datetime,
) -> None:
    conn.execute(
        hold_resolutions.insert(),
        {
            "hold_id": hold_id,
            "tenant_id": tenant_id,
            "status": status,
            "amount_minor": amount_minor,
            "transfer_id": transfer_id,
            "idempotency_key": key,
            "request_hash": request_hash,
            "resolved_at": now,
            "actor_type": actor.type.value,
            "actor_id": actor.id,
            "source_ip": actor.source_ip,
        },
    )


def _replay(hold: HoldView) -> HoldView:
    fields = {name: getattr(hold, name) for name in HoldView.__slots__}
    return HoldView(**{**fields, "replayed": True})


def _replay_transfer(posted: PostedTransfer) -> PostedTransfer:
    fields = {name: getattr(posted, name) for name in PostedTransfer.__slots__}
    return PostedTransfer(**{**fields, "replayed": True})
