"""Point lots: each accrual is a lot; expiry writes off what is left by a transfer.

Lots are created and consumed by ``kopilka.ledger.posting`` (credits to and debits from a
``uses_lots`` account). This module reads them and runs the expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import Connection, Engine, select

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.errors import KopilkaError
from kopilka.ledger.accounts import system_account
from kopilka.ledger.posting import EntrySpec, TransferSpec, post_transfers, run_transaction
from kopilka.ledger.schema import accounts, lots, units

EXPIRY_BATCH = 500


@dataclass(frozen=True, slots=True)
class LotView:
    id: int
    account_id: int
    transfer_id: int
    amount_minor: int
    remaining_minor: int
    available_at: datetime
    expires_at: datetime | None


def account_lots(
    conn: Connection, tenant_id: int, account_id: int, *, open_only: bool = True
) -> list[LotView]:
    query = select(lots).where(lots.c.tenant_id == tenant_id, lots.c.account_id == account_id)
    if open_only:
        query = query.where(lots.c.remaining_minor > 0)
    rows = conn.execute(query.order_by(lots.c.id)).all()
    return [
        LotView(
            r.id,
            r.account_id,
            r.transfer_id,
            r.amount_minor,
            r.remaining_minor,
            as_utc(r.available_at),
            as_utc(r.expires_at) if r.expires_at else None,
        )
        for r in rows
    ]


def expire_lots(
    engine: Engine,
    *,
    tenant_id: int,
    actor: Actor,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write off the rest of every lapsed lot, in batches; returns how many lots.

    Each write-off's idempotency key names its lot, so a second run (or two running at
    once) writes nothing more.
    """
    now = as_utc(now) if now else utcnow()
    with engine.connect() as conn:
        due = conn.execute(
            select(lots.c.id, lots.c.account_id, lots.c.remaining_minor, units.c.code)
            .join(accounts, accounts.c.id == lots.c.account_id)
            .join(units, units.c.id == accounts.c.unit_id)
            .where(
                lots.c.tenant_id == tenant_id, lots.c.remaining_minor > 0, lots.c.expires_at <= now
            )
            .order_by(lots.c.id)
        ).all()
    if not due:
        return 0

    def expiry_account(conn: Connection, code: str) -> int:
        return system_account(
            conn, tenant_id=tenant_id, unit_code=code, purpose="expired", actor=actor
        ).id

    expiry_accounts = {
        code: run_transaction(engine, partial(expiry_account, code=code))
        for code in sorted({row.code for row in due})
    }
    done = 0
    for start in range(0, len(due), EXPIRY_BATCH):
        chunk = due[start : start + EXPIRY_BATCH]
        specs = [
            TransferSpec(
                idempotency_key=f"lot-expiry:{row.id}:{row.remaining_minor}",
                entries=(
                    EntrySpec(row.account_id, -row.remaining_minor, from_lot_id=row.id),
                    EntrySpec(expiry_accounts[row.code], row.remaining_minor),
                ),
                kind="expiry",
                description=f"lot {row.id} expired",
                meta={"lot_id": row.id},
            )
            for row in chunk
        ]
        outcomes = run_transaction(
            engine,
            partial(post_transfers, tenant_id=tenant_id, specs=specs, actor=actor, now=now),
        )
        # A lot partly spent between our read and the write-off changes the request;
        # that lot is picked up, with its new remainder, by the next run.
        done += sum(1 for o in outcomes if not isinstance(o, KopilkaError))
        if progress:
            progress(min(start + EXPIRY_BATCH, len(due)), len(due))
    return done
