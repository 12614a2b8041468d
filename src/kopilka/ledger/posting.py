"""Posting: the only code that writes ledger rows.

Design overview
---------------
* An **account** holds one unit (a currency or a tenant's point unit) and a limit policy:
  ``non_negative`` (wallets, certificates), ``credit_limit`` (may go down to
  ``-credit_limit_minor``; the limit changes over time and each change is a row of
  ``account_limits``) or ``unlimited`` (the business's own system accounts).
* A **transfer** is a set of entries whose signed amounts sum to zero per unit. A negative
  entry takes from an account (a *debit*), a positive one adds to it (a *credit*); an
  account's balance is the sum of its entries. Transfers and entries are written once and
  never changed; a correction is a new transfer naming the one it corrects.
* Every transfer carries an **idempotency key**, unique per tenant, and the hash of the
  request. A repeat with the same request returns the first transfer; the same key with
  another request is ``idempotency_conflict``. Only successful postings are remembered: a
  refused request (say, ``insufficient_funds``) may be retried and judged afresh.
* **Limits under concurrency.** Ordinary accounts are locked (``SELECT … FOR UPDATE``) in
  ascending id order before anything is checked, so concurrent spends of one card queue on
  its row and can never overspend, and two transactions can never wait on each other in a
  circle. Their running figures (balance, held, debit total, entry count) live on the row
  and on each entry (``balance_after_minor``), which makes balance-at-a-moment a single
  index probe.
* **Hot accounts** (issuance, revenue, expiry: touched by almost every posting) are never
  locked: their balance is spread over ``balance_shards`` rows and each batch adds its
  delta to one shard picked at random, so postings of different cards do not serialise
  behind one row. Their history is read from periodic ``account_snapshots`` plus the
  entries since. Hot accounts are ``unlimited``; there is no limit to protect.
* **Holds** (``kopilka.ledger.holds``) reserve part of an account's available amount;
  ``held_minor`` on the row is their sum. A capture posts a transfer through this module
  and releases the hold in the same transaction.
* **Lots** (``kopilka.ledger.lots``): on a ``uses_lots`` account every credit is a lot
  with ``available_at`` and ``expires_at``; a debit consumes spendable lots by earliest
  expiry and records each consumption. Expiry writes off the rest by a transfer.
* **Batches.** ``post_transfers`` takes many requests and applies them in one database
  transaction, each judged on its own (one refused request does not spoil the others).
  This is how offline uploads and high rates are served: the cost of a commit is shared.

Lock order, everywhere: ordinary account rows by id, then balance shards by
(account, shard), then inserts. Holds and lots of an account are only touched while
holding that account's row lock.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from kopilka.core.actor import Actor
from kopilka.core.bulk import insert_rows, new_ids, update_rows
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.money import MAX_ABS_MINOR, format_amount
from kopilka.ledger.error_codes import LedgerErrorCode as E
from kopilka.ledger.schema import (
    accounts,
    balance_shards,
    entries,
    hold_resolutions,
    holds,
    lot_consumptions,
    lots,
    transfers,
    units,
)

MAX_ENTRIES = 64
# Picks a hot account's shard: a generator of its own (spreading, not secrecy), so the
# process-wide ``random`` that others seed and test is never drawn from.
_SPREAD = random.Random()  # noqa: S311
MAX_KEY_LENGTH = 200

T = TypeVar("T")


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """One leg of a transfer: ``amount_minor`` < 0 takes from the account, > 0 adds."""

    account_id: int
    amount_minor: int
    # Credits to a lot account: when the lot becomes spendable and when it expires.
    available_at: datetime | None = None
    expires_at: datetime | None = None
    # Debits from a lot account: take from this lot only (reversing an accrual).
    from_lot_id: int | None = None

    def canonical(self) -> str:
        return (
            f"{self.account_id}:{self.amount_minor}:{_iso(self.available_at)}:"
            f"{_iso(self.expires_at)}:{self.from_lot_id}"
        )


@dataclass(frozen=True, slots=True)
class TransferSpec:
    idempotency_key: str
    entries: tuple[EntrySpec, ...]
    kind: str = "transfer"
    description: str = ""
    corrects_transfer_id: int | None = None
    meta: dict[str, Any] | None = None
    # Set only by kopilka.ledger.holds: the hold this transfer captures and what it held.
    hold_id: int | None = None
    release_minor: int = 0

    def request_hash(self) -> str:
        """A digest of everything the request asks for, to tell a replay from a conflict."""
        meta = "" if self.meta is None else json.dumps(self.meta, sort_keys=True, default=str)
        body = "\x1f".join(
            (
                ";".join(e.canonical() for e in self.entries),
                self.kind,
                self.description,
                str(self.corrects_transfer_id),
                str(self.hold_id),
                meta,
            )
        )
        return hashlib.sha256(body.encode()).hexdigest()


def simple_transfer(
    key: str,
    *,
    debit_account_id: int,
    credit_account_id: int,
    amount_minor: int,
    kind: str = "transfer",
    description: str = "",
    meta: dict[str, Any] | None = None,
    available_at: datetime | None = None,
    expires_at: datetime | None = None,
    corrects_transfer_id: int | None = None,
) -> TransferSpec:
    """Move ``amount_minor`` (> 0) from one account to another."""
    if amount_minor <= 0:
        raise InvalidInput(E.AMOUNT_NOT_POSITIVE, "a transfer amount must be greater than zero")
    return TransferSpec(
        idempotency_key=key,
        entries=(
            EntrySpec(debit_account_id, -amount_minor),
            EntrySpec(
                credit_account_id, amount_minor, available_at=available_at, expires_at=expires_at
            ),
        ),
        kind=kind,
        description=description,
        meta=meta,
        corrects_transfer_id=corrects_transfer_id,
    )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class PostedEntry:
    account_id: int
    unit_code: str
    exponent: int
    amount_minor: int
    balance_after_minor: int | None

    @property
    def amount(self) -> str:
        return format_amount(self.amount_minor, self.exponent)


@dataclass(frozen=True, slots=True)
class PostedTransfer:
    id: int
    tenant_id: int
    idempotency_key: str
    kind: str
    description: str
    posted_at: datetime
    corrects_transfer_id: int | None
    hold_id: int | None
    meta: dict[str, Any] | None
    entries: tuple[PostedEntry, ...]
    replayed: bool = False


Outcome = PostedTransfer | KopilkaError


# --------------------------------------------------------------------------- working state


@dataclass(slots=True)
class _Lot:
    id: int
    remaining_minor: int
    available_at: datetime
    expires_at: datetime | None
    changed: bool = False


@dataclass(slots=True)
class _Account:
    id: int
    unit_id: int
    unit_code: str
    exponent: int
    policy: str
    credit_limit_minor: int
    uses_lots: bool
    is_hot: bool
    balance_minor: int = 0
    held_minor: int = 0
    debit_total_minor: int = 0
    entry_count: int = 0
    last_posted_at: datetime | None = None
    created_at: datetime | None = None
    lots: list[_Lot] = field(default_factory=list)
    touched: bool = False

    def spendable_lots_minor(self, now: datetime) -> int:
        return sum(lot.remaining_minor for lot in self.lots if _lot_spendable(lot, now))


def _lot_spendable(lot: _Lot, now: datetime) -> bool:
    return lot.available_at <= now and (lot.expires_at is None or lot.expires_at > now)


@dataclass(slots=True)
class _Planned:
    """A transfer judged good, waiting for the batch's inserts."""

    spec: TransferSpec
    request_hash: str
    entry_rows: list[tuple[Any, ...]]
    new_lots: list[tuple[Any, ...]]
    consumptions: list[tuple[int, int]]  # (lot id, amount)
    result_entries: list[PostedEntry]
    transfer_id: int = 0


# --------------------------------------------------------------------------- public entry points


def post_transfers(
    conn: Connection,
    *,
    tenant_id: int,
    specs: Sequence[TransferSpec],
    actor: Actor,
    now: datetime | None = None,
) -> list[Outcome]:
    """Apply ``specs`` inside the caller's transaction; one outcome per spec, in order.

    A refused spec leaves no trace; the others are written. The caller commits, and on a
    retryable database error (see ``run_transaction``) calls again from the start.
    """
    now = as_utc(now) if now is not None else utcnow()
    outcomes: list[Outcome | None] = [None] * len(specs)
    hashes = [spec.request_hash() for spec in specs]

    pending: list[int] = []
    for index, spec in enumerate(specs):
        try:
            _check_shape(spec)
            pending.append(index)
        except KopilkaError as error:
            outcomes[index] = error

    pending = _resolve_known_keys(conn, tenant_id, specs, hashes, pending, outcomes)
    pending = _check_corrected(conn, tenant_id, specs, pending, outcomes)
    if not pending:
        return _finish(outcomes)

    account_ids = sorted({e.account_id for i in pending for e in specs[i].entries})
    debited = {e.account_id for i in pending for e in specs[i].entries if e.amount_minor < 0}
    state = _load_accounts(conn, tenant_id, account_ids, debited, now, actor)
    # Never before the accounts' last posting, nor before they were opened (a back-dated
    # posting lands at the earliest moment that keeps each account's history in order).
    posted_at = max(
        [
            now,
            *(a.last_posted_at for a in state.values() if a.last_posted_at),
            *(as_utc(a.created_at) for a in state.values() if a.created_at),
        ]
    )

    planned: list[tuple[int, _Planned]] = []
    first_by_key: dict[str, int] = {}
    # Lot accounts credited by this batch so far: their new lots exist only once written,
    # so a later spend from one of them is judged after a write, in a batch of its own.
    fresh_lots: set[int] = set()
    rest: list[int] = []
    for position, index in enumerate(pending):
        spec = specs[index]
        if fresh_lots and any(
            e.amount_minor < 0 and e.account_id in fresh_lots for e in spec.entries
        ):
            rest = pending[position:]
            pending = pending[:position]
            break
        first = first_by_key.get(spec.idempotency_key)
        if first is not None:
            # The same key twice in one batch: a replay if the request is the same.
            outcomes[index] = _same_key_in_batch(spec, hashes[index], first, hashes, outcomes)
            continue
        try:
            plan = _judge(spec, hashes[index], state, tenant_id, posted_at)
        except KopilkaError as error:
            outcomes[index] = error
            continue
        first_by_key[spec.idempotency_key] = index
        planned.append((index, plan))
        fresh_lots.update(
            e.account_id
            for e in spec.entries
            if e.amount_minor > 0 and state[e.account_id].uses_lots
        )

    if planned:
        _write(conn, tenant_id, [p for _, p in planned], state, posted_at, actor)
        for index, plan in planned:
            outcomes[index] = _as_posted(plan, tenant_id, posted_at)
        for index in pending:
            if outcomes[index] is None:
                first = first_by_key[specs[index].idempotency_key]
                outcomes[index] = _replayed(outcomes[first])
    if rest:
        later = post_transfers(
            conn, tenant_id=tenant_id, specs=[specs[i] for i in rest], actor=actor, now=now
        )
        for index, outcome in zip(rest, later, strict=True):
            outcomes[index] = outcome
    return _finish(outcomes)


def post_one(
    conn: Connection,
    *,
    tenant_id: int,
    spec: TransferSpec,
    actor: Actor,
    now: datetime | None = None,
) -> PostedTransfer:
    """``post_transfers`` for one spec; a refusal is raised."""
    (outcome,) = post_transfers(conn, tenant_id=tenant_id, specs=[spec], actor=actor, now=now)
    if isinstance(outcome, KopilkaError):
        raise outcome
    return outcome


def run_transaction(engine: Engine, work: Callable[[Connection], T], *, attempts: int = 6) -> T:
    """Run ``work`` in a transaction, again from the start when the database asks for it.

    Retried: a unique-key race (two requests with one idempotency key: the second sees the
    first's row on the next attempt and answers as a replay), a deadlock or serialisation
    failure, a busy SQLite file. Anything else, and our own refusals, go to the caller.
    """
    assert attempts >= 1
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                return work(conn)
        except (IntegrityError, OperationalError, DBAPIError) as error:
            if attempt + 1 >= attempts or not _retryable(error):
                raise
    raise AssertionError("unreachable")


def _retryable(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in {"23505", "40P01", "40001", "55P03"}
    message = str(error.orig).lower()
    return "unique constraint" in message or "database is locked" in message


# --------------------------------------------------------------------------- steps


def _check_shape(spec: TransferSpec) -> None:
    key = spec.idempotency_key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            E.INVALID_IDEMPOTENCY_KEY,
            f"an idempotency key of 1 to {MAX_KEY_LENGTH} characters is required",
        )
    if len(spec.entries) < 2:
        raise InvalidInput(E.TOO_FEW_ENTRIES, "a transfer needs at least two entries")
    if len(spec.entries) > MAX_ENTRIES:
        raise InvalidInput(E.TOO_FEW_ENTRIES, f"a transfer has at most {MAX_ENTRIES} entries")
    seen: set[int] = set()
    for entry in spec.entries:
        if not isinstance(entry.amount_minor, int) or isinstance(entry.amount_minor, bool):
            raise InvalidInput(E.ZERO_AMOUNT, "amounts are whole numbers of minor units")
        if entry.amount_minor == 0:
            raise InvalidInput(E.ZERO_AMOUNT, "an entry of zero moves nothing")
        if abs(entry.amount_minor) > MAX_ABS_MINOR:
            raise InvalidInput(E.AMOUNT_TOO_LARGE, "the amount is too large")
        if entry.account_id in seen:
            raise InvalidInput(
                E.DUPLICATE_ACCOUNT, f"account {entry.account_id} appears twice in one transfer"
            )
        seen.add(entry.account_id)
        if entry.amount_minor < 0 and (entry.available_at or entry.expires_at):
            raise InvalidInput(E.INVALID_LOT, "lot dates belong to credits, not debits")
        if entry.amount_minor > 0 and entry.from_lot_id is not None:
            raise InvalidInput(E.INVALID_LOT, "from_lot_id belongs to debits, not credits")
        if entry.available_at and entry.expires_at and entry.expires_at <= entry.available_at:
            raise InvalidInput(E.INVALID_LOT, "a lot must expire after it becomes available")


def _resolve_known_keys(
    conn: Connection,
    tenant_id: int,
    specs: Sequence[TransferSpec],
    hashes: list[str],
    pending: list[int],
    outcomes: list[Outcome | None],
) -> list[int]:
    keys = sorted({specs[i].idempotency_key for i in pending})
    if not keys:
        return pending
    rows = conn.execute(
        select(transfers.c.id, transfers.c.idempotency_key, transfers.c.request_hash).where(
            transfers.c.tenant_id == tenant_id, one_of(conn, transfers.c.idempotency_key, keys)
        )
    ).all()
    if not rows:
        return pending
    known = {row.idempotency_key: row for row in rows}
    loaded = {t.id: t for t in load_transfers(conn, tenant_id, [r.id for r in rows])}
    still: list[int] = []
    for index in pending:
        row = known.get(specs[index].idempotency_key)
        if row is None:
            still.append(index)
        elif row.request_hash == hashes[index]:
            outcomes[index] = _replayed(loaded[row.id])
        else:
            outcomes[index] = _key_conflict(specs[index].idempotency_key)
    return still


def _check_corrected(
    conn: Connection,
    tenant_id: int,
    specs: Sequence[TransferSpec],
    pending: list[int],
    outcomes: list[Outcome | None],
) -> list[int]:
    """A correction names a transfer of the same tenant; any other id is refused."""
    named = {specs[i].corrects_transfer_id for i in pending} - {None}
    if not named:
        return pending
    found = set(
        conn.execute(
            select(transfers.c.id).where(
                transfers.c.tenant_id == tenant_id, transfers.c.id.in_(named)
            )
        ).scalars()
    )
    kept: list[int] = []
    for index in pending:
        corrected = specs[index].corrects_transfer_id
        if corrected is not None and corrected not in found:
            outcomes[index] = NotFound(
                E.TRANSFER_NOT_FOUND,
                f"transfer {corrected} (named as corrected) does not exist",
                transfer_id=corrected,
            )
        else:
            kept.append(index)
    return kept


def _key_conflict(key: str) -> Conflict:
    return Conflict(
        E.IDEMPOTENCY_CONFLICT,
        f"idempotency key {key!r} was already used for a different request",
        idempotency_key=key,
    )


def _same_key_in_batch(
    spec: TransferSpec, request_hash: str, first: int, hashes: list[str], outcomes: list[Any]
) -> Outcome | None:
    if hashes[first] != request_hash:
        return _key_conflict(spec.idempotency_key)
    return None  # filled in as a replay of the first once it is posted


def _replayed(outcome: Outcome | None) -> Outcome:
    assert outcome is not None
    if isinstance(outcome, PostedTransfer):
        return PostedTransfer(**{**_fields(outcome), "replayed": True})
    return outcome


def _fields(posted: PostedTransfer) -> dict[str, Any]:
    return {name: getattr(posted, name) for name in PostedTransfer.__slots__}


def _finish(outcomes: list[Outcome | None]) -> list[Outcome]:
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


_ACCOUNT_COLUMNS = (
    accounts.c.id,
    accounts.c.unit_id,
    units.c.code.label("unit_code"),
    units.c.exponent,
    accounts.c.policy,
    accounts.c.credit_limit_minor,
    accounts.c.uses_lots,
    accounts.c.is_hot,
    accounts.c.balance_minor,
    accounts.c.held_minor,
    accounts.c.debit_total_minor,
    accounts.c.entry_count,
    accounts.c.last_posted_at,
    accounts.c.created_at,
)


def _load_accounts(
    conn: Connection,
    tenant_id: int,
    account_ids: list[int],
    debited: set[int],
    now: datetime,
    actor: Actor,
) -> dict[int, _Account]:
    """Lock the ordinary accounts in id order; read the hot ones without a lock."""
    base = (
        select(*_ACCOUNT_COLUMNS)
        .join(units, units.c.id == accounts.c.unit_id)
        .where(accounts.c.tenant_id == tenant_id, one_of(conn, accounts.c.id, account_ids))
    )
    locked = conn.execute(
        base.where(accounts.c.is_hot.is_(False))
        .order_by(accounts.c.id)
        .with_for_update(of=accounts)
    ).all()
    hot = conn.execute(base.where(accounts.c.is_hot.is_(True))).all()
    # The columns come in the order of _Account's fields.
    state = {row[0]: _Account(*row) for row in (*locked, *hot)}

    sweep = [a.id for a in state.values() if a.id in debited and a.held_minor > 0]
    if sweep:
        expire_due_holds(conn, tenant_id, state, sweep, now, actor)
    lot_ids = [a.id for a in state.values() if a.id in debited and a.uses_lots]
    if lot_ids:
        for row in conn.execute(
            select(
                lots.c.id,
                lots.c.account_id,
                lots.c.remaining_minor,
                lots.c.available_at,
                lots.c.expires_at,
            )
            .where(one_of(conn, lots.c.account_id, lot_ids), lots.c.remaining_minor > 0)
            .order_by(lots.c.account_id, lots.c.id)
        ):
            state[row.account_id].lots.append(
                _Lot(row.id, row.remaining_minor, row.available_at, row.expires_at)
            )
        for account_id in lot_ids:
            state[account_id].lots.sort(key=_lot_order)
    return state


def _lot_order(lot: _Lot) -> tuple[bool, datetime, datetime, int]:
    """Earliest expiry first; lots that never expire last; then oldest first."""
    far = lot.available_at
    return (lot.expires_at is None, lot.expires_at or far, lot.available_at, lot.id)


def expire_due_holds(
    conn: Connection,
    tenant_id: int,
    state: dict[int, _Account],
    account_ids: list[int],
    now: datetime,
    actor: Actor,
) -> list[int]:
    """Resolve as expired every lapsed hold on these (locked) accounts; frees their amount."""
    due = conn.execute(
        select(holds.c.id, holds.c.debit_account_id, holds.c.amount_minor)
        .outerjoin(hold_resolutions, hold_resolutions.c.hold_id == holds.c.id)
        .where(
            holds.c.tenant_id == tenant_id,
            one_of(conn, holds.c.debit_account_id, account_ids),
            holds.c.expires_at <= now,
            hold_resolutions.c.hold_id.is_(None),
        )
        .order_by(holds.c.id)
    ).all()
    if not due:
        return []
    conn.execute(
        hold_resolutions.insert(),
        [
            {
                "hold_id": row.id,
                "tenant_id": tenant_id,
                "status": "expired",
                "amount_minor": 0,
                "resolved_at": now,
                "actor_type": actor.type.value,
                "actor_id": actor.id,
                "source_ip": actor.source_ip,
            }
            for row in due
        ],
    )
    for row in due:
        account = state[row.debit_account_id]
        account.held_minor -= row.amount_minor
        assert account.held_minor >= 0, "held amount went below zero"
        account.touched = True
    return [row.id for row in due]


def _judge(
    spec: TransferSpec,
    request_hash: str,
    state: dict[int, _Account],
    tenant_id: int,
    posted_at: datetime,
) -> _Planned:
    """Check one transfer against the accounts' current figures and apply it to them."""
    missing = [e.account_id for e in spec.entries if e.account_id not in state]
    if missing:
        raise NotFound(
            E.ACCOUNT_NOT_FOUND, f"account {missing[0]} does not exist", account_id=missing[0]
        )
    _check_balanced(spec, state)

    # Check every leg before changing anything, so a refusal leaves the state as it was.
    # (An account appears once per transfer, so the checks do not interact.)
    plan = _Planned(spec, request_hash, [], [], [], [])
    for entry in spec.entries:
        account = state[entry.account_id]
        if entry.amount_minor > 0:
            if (entry.available_at or entry.expires_at) and not account.uses_lots:
                raise InvalidInput(
                    E.INVALID_LOT, f"account {account.id} does not keep lots; drop the lot dates"
                )
        elif not account.is_hot:
            held_after = account.held_minor - _released(spec, entry)
            _check_limit(account, -entry.amount_minor, entry, posted_at, held_after)
    for entry in spec.entries:
        account = state[entry.account_id]
        if entry.amount_minor < 0:
            _take(account, entry, spec, posted_at, plan)
        else:
            _give(account, entry, posted_at, plan)
    return plan


def _released(spec: TransferSpec, entry: EntrySpec) -> int:
    """What a capture frees on its debit account before it takes the captured amount."""
    if spec.hold_id is not None and entry.account_id == _hold_debit_account(spec):
        return spec.release_minor
    return 0


def _check_balanced(spec: TransferSpec, state: dict[int, _Account]) -> None:
    sums: dict[str, int] = defaultdict(int)
    for entry in spec.entries:
        sums[state[entry.account_id].unit_code] += entry.amount_minor
    if len(sums) > 1 and len(spec.entries) == 2:
        codes = sorted(sums)
        raise InvalidInput(
            E.MIXED_UNITS,
            f"the two accounts hold different units ({codes[0]} and {codes[1]}); "
            "a transfer moves one unit",
        )
    unbalanced = {code: total for code, total in sums.items() if total != 0}
    if unbalanced:
        code, total = sorted(unbalanced.items())[0]
        raise InvalidInput(
            E.UNBALANCED_TRANSFER,
            f"entries in {code} sum to {total} minor units instead of zero",
            unit=code,
        )


def _take(
    account: _Account, entry: EntrySpec, spec: TransferSpec, posted_at: datetime, plan: _Planned
) -> None:
    account.held_minor -= _released(spec, entry)
    assert account.held_minor >= 0, "released more than was held"
    if account.uses_lots:
        plan.consumptions.extend(
            _consume_lots(account, -entry.amount_minor, entry.from_lot_id, posted_at)
        )
    _record(account, entry.amount_minor, posted_at, plan)


def _hold_debit_account(spec: TransferSpec) -> int:
    return next(e.account_id for e in spec.entries if e.amount_minor < 0)


def _check_limit(
    account: _Account, amount: int, entry: EntrySpec, now: datetime, held: int | None = None
) -> None:
    """Refuse taking ``amount`` if it is more than the account has available."""
    held = account.held_minor if held is None else held
    if account.policy == "unlimited":
        return
    if account.uses_lots:
        if entry.from_lot_id is not None:
            lot = next((lot for lot in account.lots if lot.id == entry.from_lot_id), None)
            if lot is None:
                raise NotFound(E.LOT_NOT_FOUND, f"lot {entry.from_lot_id} has nothing left")
            # Taking a named lot (an expiry write-off, a reversed accrual) is bounded by
            # the lot alone: a hold that counted on it fails at capture, never overspends.
            available = lot.remaining_minor
        else:
            available = account.spendable_lots_minor(now) - held
    else:
        floor = -account.credit_limit_minor if account.policy == "credit_limit" else 0
        available = account.balance_minor - held - floor
    if amount > available:
        code = E.CREDIT_LIMIT_EXCEEDED if account.policy == "credit_limit" else E.INSUFFICIENT_FUNDS
        shown = format_amount(max(available, 0), account.exponent)
        raise Refused(
            code,
            f"account {account.id} has {shown} {account.unit_code} available, "
            f"{format_amount(amount, account.exponent)} was asked",
            account_id=account.id,
            available=shown,
        )


def _consume_lots(
    account: _Account, amount: int, from_lot_id: int | None, now: datetime
) -> list[tuple[int, int]]:
    taken: list[tuple[int, int]] = []
    left = amount
    for lot in account.lots:
        if left == 0:
            break
        if from_lot_id is not None and lot.id != from_lot_id:
            continue
        if from_lot_id is None and not _lot_spendable(lot, now):
            continue
        part = min(left, lot.remaining_minor)
        if part <= 0:
            continue
        lot.remaining_minor -= part
        lot.changed = True
        left -= part
        taken.append((lot.id, part))
    assert left == 0, "lots did not cover a debit the limit check allowed"
    return taken


def _give(account: _Account, entry: EntrySpec, posted_at: datetime, plan: _Planned) -> None:
    if account.uses_lots:
        plan.new_lots.append(
            (
                account.id,
                entry.amount_minor,
                entry.amount_minor,
                as_utc(entry.available_at) if entry.available_at else posted_at,
                as_utc(entry.expires_at) if entry.expires_at else None,
                posted_at,
            )
        )
    _record(account, entry.amount_minor, posted_at, plan)


def _record(account: _Account, amount: int, posted_at: datetime, plan: _Planned) -> None:
    account.balance_minor += amount
    if amount < 0:
        account.debit_total_minor += -amount
    account.entry_count += 1
    account.touched = True
    if account.is_hot:
        plan.entry_rows.append((account.id, account.unit_id, amount, None, None, None))
        after = None
    else:
        plan.entry_rows.append(
            (
                account.id,
                account.unit_id,
                amount,
                account.entry_count,
                account.balance_minor,
                account.debit_total_minor,
            )
        )
        account.last_posted_at = posted_at
        after = account.balance_minor
    plan.result_entries.append(
        PostedEntry(account.id, account.unit_code, account.exponent, amount, after)
    )


_TRANSFER_COLUMNS = (
    "id",
    "tenant_id",
    "idempotency_key",
    "request_hash",
    "kind",
    "description",
    "corrects_transfer_id",
    "hold_id",
    "posted_at",
    "actor_type",
    "actor_id",
    "source_ip",
    "meta",
)
_ENTRY_COLUMNS = (
    "tenant_id",
    "transfer_id",
    "posted_at",
    "account_id",
    "unit_id",
    "amount_minor",
    "account_seq",
    "balance_after_minor",
    "debit_total_after_minor",
)
_LOT_COLUMNS = (
    "tenant_id",
    "transfer_id",
    "account_id",
    "amount_minor",
    "remaining_minor",
    "available_at",
    "expires_at",
    "created_at",
)


def _write(
    conn: Connection,
    tenant_id: int,
    planned: list[_Planned],
    state: dict[int, _Account],
    posted_at: datetime,
    actor: Actor,
) -> None:
    # 1. Ordinary rows are locked already; now the hot shards, in (account, shard) order.
    shard_deltas: dict[int, list[int]] = {}
    for plan in planned:
        for row in plan.entry_rows:
            if row[3] is None:  # no running figures: a hot account
                delta = shard_deltas.setdefault(row[0], [0, 0, 0])
                delta[0] += row[2]
                delta[1] += -row[2] if row[2] < 0 else 0
                delta[2] += 1
    if shard_deltas:
        _add_to_shards(conn, shard_deltas)

    # 2. Transfers (their ids taken up front), then entries, lots and consumptions.
    ids = new_ids(conn, transfers, len(planned))
    transfer_rows = []
    entry_rows = []
    lot_rows = []
    consumption_rows = []
    actor_type = actor.type.value
    for plan, transfer_id in zip(planned, ids, strict=True):
        plan.transfer_id = transfer_id
        spec = plan.spec
        transfer_rows.append(
            (
                transfer_id,
                tenant_id,
                spec.idempotency_key,
                plan.request_hash,
                spec.kind,
                spec.description,
                spec.corrects_transfer_id,
                spec.hold_id,
                posted_at,
                actor_type,
                actor.id,
                actor.source_ip,
                spec.meta,
            )
        )
        for row in plan.entry_rows:
            entry_rows.append((tenant_id, transfer_id, posted_at, *row))
        for lot in plan.new_lots:
            lot_rows.append((tenant_id, transfer_id, *lot))
        for lot_id, amount in plan.consumptions:
            consumption_rows.append((tenant_id, lot_id, transfer_id, amount))
    insert_rows(conn, transfers, _TRANSFER_COLUMNS, transfer_rows)
    insert_rows(conn, entries, _ENTRY_COLUMNS, entry_rows)
    insert_rows(conn, lots, _LOT_COLUMNS, lot_rows)
    insert_rows(
        conn,
        lot_consumptions,
        ("tenant_id", "lot_id", "transfer_id", "amount_minor"),
        consumption_rows,
    )
    write_account_state(conn, state)


def write_account_state(conn: Connection, state: dict[int, _Account]) -> None:
    """Store the running figures of every touched ordinary account and its changed lots."""
    update_rows(
        conn,
        accounts,
        "id",
        ("balance_minor", "held_minor", "debit_total_minor", "entry_count", "last_posted_at"),
        [
            (
                a.balance_minor,
                a.held_minor,
                a.debit_total_minor,
                a.entry_count,
                a.last_posted_at,
                a.id,
            )
            for a in sorted(state.values(), key=lambda a: a.id)
            if a.touched and not a.is_hot
        ],
    )
    update_rows(
        conn,
        lots,
        "id",
        ("remaining_minor",),
        [(lot.remaining_minor, lot.id) for a in state.values() for lot in a.lots if lot.changed],
    )


def _add_to_shards(conn: Connection, deltas: dict[int, list[int]]) -> None:
    shard_count = _shard_counts(conn, list(deltas))
    rows = []
    for account_id in sorted(deltas):
        balance, debits, count = deltas[account_id]
        shard = _SPREAD.randrange(shard_count[account_id])
        rows.append((balance, debits, count, account_id, shard))
    update_rows(
        conn,
        balance_shards,
        "account_id",
        ("balance_minor", "debit_total_minor", "entry_count"),
        rows,
        increment=True,
        extra_key="shard",
    )


_SHARD_COUNTS: dict[tuple[str, int], int] = {}


def _shard_counts(conn: Connection, account_ids: Iterable[int]) -> dict[int, int]:
    """How many shards each hot account has (fixed at creation, so cached per database)."""
    where = str(conn.engine.url)
    wanted = [a for a in account_ids if (where, a) not in _SHARD_COUNTS]
    if wanted:
        for row in conn.execute(
            select(balance_shards.c.account_id, func.count())
            .where(one_of(conn, balance_shards.c.account_id, wanted))
            .group_by(balance_shards.c.account_id)
        ):
            _SHARD_COUNTS[(where, row[0])] = row[1]
    counts = {a: _SHARD_COUNTS.get((where, a), 0) for a in account_ids}
    assert all(n > 0 for n in counts.values()), "a hot account without balance shards"
    return counts


def forget_shard_counts() -> None:
    """Drop the cache (tests that recreate a database call this)."""
    _SHARD_COUNTS.clear()


def _as_posted(plan: _Planned, tenant_id: int, posted_at: datetime) -> PostedTransfer:
    return PostedTransfer(
        id=plan.transfer_id,
        tenant_id=tenant_id,
        idempotency_key=plan.spec.idempotency_key,
        kind=plan.spec.kind,
        description=plan.spec.description,
        posted_at=posted_at,
        corrects_transfer_id=plan.spec.corrects_transfer_id,
        hold_id=plan.spec.hold_id,
        meta=plan.spec.meta,
        entries=tuple(plan.result_entries),
    )


# --------------------------------------------------------------------------- reading back


def load_transfers(
    conn: Connection, tenant_id: int, transfer_ids: Sequence[int]
) -> list[PostedTransfer]:
    """Transfers with their entries, in the order of ``transfer_ids``; unknown ids skipped."""
    if not transfer_ids:
        return []
    heads = {
        row.id: row
        for row in conn.execute(
            select(transfers).where(
                transfers.c.tenant_id == tenant_id, one_of(conn, transfers.c.id, list(transfer_ids))
            )
        )
    }
    legs: dict[int, list[PostedEntry]] = defaultdict(list)
    for row in conn.execute(
        select(
            entries.c.transfer_id,
            entries.c.account_id,
            units.c.code,
            units.c.exponent,
            entries.c.amount_minor,
            entries.c.balance_after_minor,
        )
        .join(units, units.c.id == entries.c.unit_id)
        .where(one_of(conn, entries.c.transfer_id, list(heads)))
        .order_by(entries.c.id)
    ):
        legs[row.transfer_id].append(
            PostedEntry(
                row.account_id, row.code, row.exponent, row.amount_minor, row.balance_after_minor
            )
        )
    result = []
    for transfer_id in transfer_ids:
        head = heads.get(transfer_id)
        if head is None:
            continue
        result.append(
            PostedTransfer(
                id=head.id,
                tenant_id=head.tenant_id,
                idempotency_key=head.idempotency_key,
                kind=head.kind,
                description=head.description,
                posted_at=as_utc(head.posted_at),
                corrects_transfer_id=head.corrects_transfer_id,
                hold_id=head.hold_id,
                meta=head.meta,
                entries=tuple(legs[head.id]),
            )
        )
    return result


def get_transfer(conn: Connection, tenant_id: int, transfer_id: int) -> PostedTransfer:
    found = load_transfers(conn, tenant_id, [transfer_id])
    if not found:
        raise NotFound(E.TRANSFER_NOT_FOUND, f"transfer {transfer_id} does not exist")
    return found[0]


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None
