"""The nightly routine of a tenant (SPEC C-8): expire lots and holds, age accumulations,
move tiers, mark expired cards, expire gift certificates (C-9).

Every step computes its result from facts (the lots' dates, the holds' dates, the
purchases of the window, the cards' dates), never from "what happened since the last
run", so running it twice, or late, or after a crash half-way, changes nothing more than
running it once on time.

Accumulation and tiers are set-based statements, one per program (and per tier), so a
million cards cost a handful of statements rather than a million round trips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, func, select, true, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.ledger.holds import expire_holds
from kopilka.ledger.lots import expire_lots
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty.certificates import expire_certificates
from kopilka.loyalty.programs import list_programs
from kopilka.loyalty.schema import card_purchases, cards
from kopilka.tenancy.audit import record_audit

# Called with (steps done, steps in all, what is being done).
NightlyProgress = Callable[[int, int, str], None]
STEPS = ("lots", "holds", "accumulation", "tiers", "cards", "certificates")
CERTIFICATE_BATCH = 500  # certificates expired per transaction


@dataclass(frozen=True, slots=True)
class NightlyReport:
    lots_expired: int
    holds_expired: int
    cards_aged: int  # cards whose accumulation or check count changed
    tiers_moved: int
    cards_expired: int
    certificates_expired: int = 0  # sold gift certificates past their date, rest written off


def run_nightly(
    engine: Engine,
    *,
    tenant_id: int,
    actor: Actor,
    now: datetime | None = None,
    progress: NightlyProgress | None = None,
) -> NightlyReport:
    now = as_utc(now) if now else utcnow()

    def step(done: int) -> None:
        if progress is not None:
            progress(done, len(STEPS), STEPS[done] if done < len(STEPS) else "done")

    step(0)
    lots_expired = expire_lots(engine, tenant_id=tenant_id, actor=actor, now=now)
    step(1)
    holds_expired = run_transaction(
        engine, lambda conn: expire_holds(conn, tenant_id=tenant_id, actor=actor, now=now)
    )
    step(2)
    aged = run_transaction(engine, lambda conn: _age(conn, tenant_id, now))
    step(3)
    moved = run_transaction(engine, lambda conn: _move_tiers(conn, tenant_id))
    step(4)
    expired = run_transaction(
        engine,
        lambda conn: (
            conn.execute(
                update(cards)
                .where(
                    cards.c.tenant_id == tenant_id,
                    cards.c.status == "active",
                    cards.c.expires_at.is_not(None),
                    cards.c.expires_at <= now,
                )
                .values(status="expired")
            ).rowcount
        ),
    )
    step(5)
    certificates_expired = _expire_certificates(engine, tenant_id, actor, now)
    step(6)
    report = NightlyReport(lots_expired, holds_expired, aged, moved, expired, certificates_expired)

    def audit(conn: Connection) -> None:
        record_audit(
            conn,
            tenant_id=tenant_id,
            actor=actor,
            action="nightly.run",
            object_type="tenant",
            object_id=tenant_id,
            details={
                "at": now.isoformat(),
                "lots_expired": lots_expired,
                "holds_expired": holds_expired,
                "cards_aged": aged,
                "tiers_moved": moved,
                "cards_expired": expired,
                "certificates_expired": certificates_expired,
            },
        )

    run_transaction(engine, audit)
    return report


def _expire_certificates(engine: Engine, tenant_id: int, actor: Actor, now: datetime) -> int:
    """Gift certificates past their date (SPEC C-9), in batches of one transaction each.
    Each batch marks its certificates expired, so the next batch (and the next run) does
    not see them again."""
    total = 0
    while True:
        done = run_transaction(
            engine,
            lambda conn: expire_certificates(
                conn, tenant_id=tenant_id, now=now, actor=actor, limit=CERTIFICATE_BATCH
            ),
        )
        total += done
        if done < CERTIFICATE_BATCH:
            return total


def _age(conn: Connection, tenant_id: int, now: datetime) -> int:
    """Accumulation and check count of each card of a program with a window: the
    purchases within the window only."""
    changed = 0
    for program in list_programs(conn, tenant_id):
        if program.accumulation_window_days is None:
            continue
        since = now - timedelta(days=program.accumulation_window_days)
        window = and_(
            card_purchases.c.card_id == cards.c.id,
            card_purchases.c.at > since,
            card_purchases.c.at <= now,
        )
        amount = (
            select(func.coalesce(func.sum(card_purchases.c.amount_minor), 0))
            .where(window)
            .scalar_subquery()
        )
        checks = (
            select(func.coalesce(func.sum(card_purchases.c.checks), 0))
            .where(window)
            .scalar_subquery()
        )
        # Refunds can take a window's sum below zero; accumulation never is.
        amount_floor = (
            func.max(amount, 0) if conn.dialect.name == "sqlite" else func.greatest(amount, 0)
        )
        checks_floor = (
            func.max(checks, 0) if conn.dialect.name == "sqlite" else func.greatest(checks, 0)
        )
        result = conn.execute(
            update(cards)
            .where(
                cards.c.tenant_id == tenant_id,
                cards.c.program_id == program.id,
                (cards.c.accumulation_minor != amount_floor)
                | (cards.c.checks_count != checks_floor),
            )
            .values(accumulation_minor=amount_floor, checks_count=checks_floor)
        )
        changed += result.rowcount
    return changed


def _move_tiers(conn: Connection, tenant_id: int) -> int:
    """Each card on the highest tier its accumulation reaches (or none below the first)."""
    moved = 0
    for program in list_programs(conn, tenant_id):
        bounds = [t.threshold_minor for t in program.tiers]
        # Below the lowest threshold: no tier.
        below = cards.c.accumulation_minor < bounds[0] if bounds else true()
        moved += conn.execute(
            update(cards)
            .where(
                cards.c.tenant_id == tenant_id,
                cards.c.program_id == program.id,
                below,
                cards.c.tier_id.is_not(None),
            )
            .values(tier_id=None)
        ).rowcount
        for n, tier in enumerate(program.tiers):
            upper = bounds[n + 1] if n + 1 < len(bounds) else None
            band = [cards.c.accumulation_minor >= tier.threshold_minor]
            if upper is not None:
                band.append(cards.c.accumulation_minor < upper)
            moved += conn.execute(
                update(cards)
                .where(
                    cards.c.tenant_id == tenant_id,
                    cards.c.program_id == program.id,
                    *band,
                    (cards.c.tier_id.is_(None)) | (cards.c.tier_id != tier.id),
                )
                .values(tier_id=tier.id)
            ).rowcount
    return moved
