"""Balances at a moment, turnovers over a period, an account's history.

Ordinary accounts answer from the running figures stored on each entry: the state at a
moment is the last entry at or before it, one index probe, whatever the history's length.
Hot system accounts answer from their latest snapshot before the moment plus the entries
since; ``take_snapshots`` (nightly, or ``kopilka ledger snapshot``) keeps that tail short.
A period is half-open, ``[start, end)``: opening is the state before ``start``, closing
the state before ``end``. Debit turnover is what left the account, credit what came in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, case, func, select

from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import InvalidInput, NotFound
from kopilka.ledger.error_codes import LedgerErrorCode as E
from kopilka.ledger.schema import account_snapshots, accounts, entries, transfers, units

# Snapshots of hot accounts stop this far behind now, so that no posting still in flight
# (its posted_at already chosen, its commit not yet done) can land before a snapshot.
SNAPSHOT_LAG = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class State:
    balance_minor: int
    debit_total_minor: int
    entry_count: int


@dataclass(frozen=True, slots=True)
class Turnover:
    account_ids: tuple[int, ...]
    unit_code: str
    exponent: int
    start: datetime
    end: datetime
    opening_minor: int
    debit_minor: int
    credit_minor: int
    closing_minor: int


@dataclass(frozen=True, slots=True)
class HistoryLine:
    entry_id: int
    transfer_id: int
    posted_at: datetime
    amount_minor: int
    balance_after_minor: int | None
    kind: str
    description: str
    corrects_transfer_id: int | None


@dataclass(frozen=True, slots=True)
class _Meta:
    id: int
    is_hot: bool
    unit_code: str
    exponent: int


def _meta(conn: Connection, tenant_id: int, account_ids: list[int]) -> list[_Meta]:
    rows = conn.execute(
        select(accounts.c.id, accounts.c.is_hot, units.c.code, units.c.exponent)
        .join(units, units.c.id == accounts.c.unit_id)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.id.in_(account_ids))
    ).all()
    found = {row.id: _Meta(row.id, row.is_hot, row.code, row.exponent) for row in rows}
    for account_id in account_ids:
        if account_id not in found:
            raise NotFound(
                E.ACCOUNT_NOT_FOUND, f"account {account_id} does not exist", account_id=account_id
            )
    return [found[a] for a in account_ids]


def state_at(conn: Connection, meta: _Meta, moment: datetime, *, inclusive: bool) -> State:
    """The account's figures after every entry posted at (or, not inclusive, before) moment."""
    moment = as_utc(moment)
    if not meta.is_hot:
        bound = entries.c.posted_at <= moment if inclusive else entries.c.posted_at < moment
        row = conn.execute(
            select(
                entries.c.balance_after_minor,
                entries.c.debit_total_after_minor,
                entries.c.account_seq,
            )
            .where(entries.c.account_id == meta.id, bound)
            .order_by(entries.c.posted_at.desc(), entries.c.account_seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return State(0, 0, 0)
        return State(row[0], row[1], row[2])
    snap_bound = (
        account_snapshots.c.as_of <= moment if inclusive else account_snapshots.c.as_of < moment
    )
    snap = conn.execute(
        select(
            account_snapshots.c.as_of,
            account_snapshots.c.balance_minor,
            account_snapshots.c.debit_total_minor,
            account_snapshots.c.entry_count,
        )
        .where(account_snapshots.c.account_id == meta.id, snap_bound)
        .order_by(account_snapshots.c.as_of.desc())
        .limit(1)
    ).first()
    base = State(0, 0, 0) if snap is None else State(snap[1], snap[2], snap[3])
    tail = _sum_entries(
        conn, meta.id, None if snap is None else as_utc(snap[0]), moment, inclusive=inclusive
    )
    return State(
        base.balance_minor + tail.balance_minor,
        base.debit_total_minor + tail.debit_total_minor,
        base.entry_count + tail.entry_count,
    )


def _sum_entries(
    conn: Connection, account_id: int, after: datetime | None, upto: datetime, *, inclusive: bool
) -> State:
    query = select(
        func.coalesce(func.sum(entries.c.amount_minor), 0),
        func.coalesce(
            func.sum(case((entries.c.amount_minor < 0, -entries.c.amount_minor), else_=0)), 0
        ),
        func.count(),
    ).where(
        entries.c.account_id == account_id,
        entries.c.posted_at <= upto if inclusive else entries.c.posted_at < upto,
    )
    if after is not None:
        query = query.where(entries.c.posted_at > after)
    row = conn.execute(query).one()
    return State(int(row[0]), int(row[1]), int(row[2]))


def balance_at(conn: Connection, tenant_id: int, account_id: int, moment: datetime) -> int:
    (meta,) = _meta(conn, tenant_id, [account_id])
    return state_at(conn, meta, moment, inclusive=True).balance_minor


def turnovers(
    conn: Connection, tenant_id: int, account_ids: list[int], start: datetime, end: datetime
) -> Turnover:
    """Opening, debit, credit and closing of one account or a group of one unit."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise InvalidInput(E.INVALID_PERIOD, "a period ends after it starts")
    if not account_ids:
        raise InvalidInput(E.ACCOUNT_NOT_FOUND, "name at least one account")
    metas = _meta(conn, tenant_id, sorted(set(account_ids)))
    codes = {m.unit_code for m in metas}
    if len(codes) > 1:
        raise InvalidInput(
            E.MIXED_UNITS,
            "a group's turnovers are summed in one unit; "
            f"these accounts hold {', '.join(sorted(codes))}",
        )
    opening = closing = debit = 0
    for meta in metas:
        before = state_at(conn, meta, start, inclusive=False)
        after = state_at(conn, meta, end, inclusive=False)
        opening += before.balance_minor
        closing += after.balance_minor
        debit += after.debit_total_minor - before.debit_total_minor
    credit = closing - opening + debit
    assert debit >= 0 and credit >= 0, "turnovers are never negative"
    return Turnover(
        tuple(m.id for m in metas),
        metas[0].unit_code,
        metas[0].exponent,
        start,
        end,
        opening,
        debit,
        credit,
        closing,
    )


def history(
    conn: Connection,
    tenant_id: int,
    account_id: int,
    *,
    after_entry_id: int = 0,
    limit: int = 50,
    start: datetime | None = None,
    end: datetime | None = None,
    newest_first: bool = False,
    offset: int = 0,
) -> list[HistoryLine]:
    """An account's entries with the running balance after each: oldest first, read on
    with the ``after_entry_id`` cursor; or ``newest_first``, paged by ``offset`` (screens)."""
    _meta(conn, tenant_id, [account_id])
    query = (
        select(
            entries.c.id,
            entries.c.transfer_id,
            entries.c.posted_at,
            entries.c.amount_minor,
            entries.c.balance_after_minor,
            transfers.c.kind,
            transfers.c.description,
            transfers.c.corrects_transfer_id,
        )
        .join(transfers, transfers.c.id == entries.c.transfer_id)
        .where(entries.c.account_id == account_id, entries.c.id > after_entry_id)
        .order_by(entries.c.id.desc() if newest_first else entries.c.id)
        .limit(limit)
        .offset(offset)
    )
    if start is not None:
        query = query.where(entries.c.posted_at >= as_utc(start))
    if end is not None:
        query = query.where(entries.c.posted_at < as_utc(end))
    return [
        HistoryLine(
            r.id,
            r.transfer_id,
            as_utc(r.posted_at),
            r.amount_minor,
            r.balance_after_minor,
            r.kind,
            r.description,
            r.corrects_transfer_id,
        )
        for r in conn.execute(query)
    ]


def take_snapshots(conn: Connection, tenant_id: int, *, as_of: datetime | None = None) -> int:
    """Snapshot every hot account of the tenant as of ``as_of`` (default: now less a lag)."""
    limit = utcnow() - SNAPSHOT_LAG
    as_of = min(as_utc(as_of), limit) if as_of else limit
    hot = conn.execute(
        select(accounts.c.id, accounts.c.is_hot, units.c.code, units.c.exponent)
        .join(units, units.c.id == accounts.c.unit_id)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.is_hot.is_(True))
    ).all()
    made = 0
    for row in hot:
        exists = conn.execute(
            select(account_snapshots.c.id).where(
                account_snapshots.c.account_id == row.id, account_snapshots.c.as_of >= as_of
            )
        ).first()
        if exists:
            continue
        state = state_at(conn, _Meta(row.id, True, row.code, row.exponent), as_of, inclusive=True)
        conn.execute(
            account_snapshots.insert(),
            {
                "tenant_id": tenant_id,
                "account_id": row.id,
                "as_of": as_of,
                "balance_minor": state.balance_minor,
                "debit_total_minor": state.debit_total_minor,
                "entry_count": state.entry_count,
                "created_at": utcnow(),
            },
        )
        made += 1
    return made
