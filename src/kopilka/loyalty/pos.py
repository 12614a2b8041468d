"""The POS side of loyalty: what a check may do with a card, and applying it (SPEC P-2..P-5).

``quote`` is the arithmetic, pure and shared by calculation and commit, so a terminal is
never told one thing and charged another:

* discount = the card tier's discount of the lines' total;
* due = total - discount; below the program's minimum check nothing is spent or accrued;
* points may pay at most the program's share of ``due`` and at most what the card may
  spend now (the ledger's available balance: spendable lots, minus holds);
* accrual = the tier's rate (or the program's) of the part paid in money — or of all of
  ``due`` when the program does not exclude the part paid with points.

``commit`` records a closed check once per (terminal, check id): the spend and the accrual
are ledger transfers posted together, the money paid feeds the card's accumulation and
its tier. ``refund`` returns the points spent and takes back the points accrued in
proportion to the part refunded, never past the check; what the card no longer has is
recorded as its debt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import as_utc, utcnow
from kopilka.core.db import one_of
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.core.idempotency import request_hash as _hash
from kopilka.core.money import MAX_ABS_MINOR
from kopilka.ledger.accounts import system_account_id
from kopilka.ledger.posting import (
    EntrySpec,
    PostedTransfer,
    TransferSpec,
    post_transfers,
    run_transaction,
    simple_transfer,
)
from kopilka.ledger.schema import lots, transfers
from kopilka.loyalty.cards import CardView, card_for_use, get_card
from kopilka.loyalty.programs import BP, Program, Tier, cached_program, lot_dates, rates
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.schema import card_purchases, cards, pos_checks, pos_refunds
from kopilka.payments.codes import normalise_code, resolve_payment_code
from kopilka.payments.types import PaymentKind

MAX_LINES = 500


@dataclass(frozen=True, slots=True)
class Quote:
    """What a check with this card comes to. Money in currency minor units, points in
    the program's point unit minor units."""

    total_minor: int
    discount_bp: int
    discount_minor: int
    due_minor: int
    eligible: bool  # reaches the program's minimum check
    points_cap_minor: int  # the most points this check may take
    points_minor: int  # points to spend (asked, within the cap)
    points_money_minor: int  # what those points pay
    money_minor: int  # what is left to pay in money
    accrual_bp: int
    accrual_minor: int  # points the check will accrue
    tier: Tier | None


def quote(program: Program, card: CardView, total_minor: int, points_asked: int) -> Quote:
    tier, discount_bp, accrual_bp = rates(program, card.accumulation_minor)
    discount = total_minor * discount_bp // BP
    due = total_minor - discount
    eligible = due > 0 and due >= program.min_check_minor
    cap_money = due * program.max_share_bp // BP if eligible else 0
    cap = max(0, min(card.available_minor, program.points_for_money(cap_money)))
    points = min(max(points_asked, 0), cap)
    points_money = min(program.money_for_points(points), due)
    money = due - points_money
    base = money if program.exclude_points_part else due
    accrual = program.points_for_money(base * accrual_bp // BP) if eligible else 0
    return Quote(
        total_minor=total_minor,
        discount_bp=discount_bp,
        discount_minor=discount,
        due_minor=due,
        eligible=eligible,
        points_cap_minor=cap,
        points_minor=points,
        points_money_minor=points_money,
        money_minor=money,
        accrual_bp=accrual_bp,
        accrual_minor=accrual,
        tier=tier,
    )


def _as_paid(program: Program, card: CardView, total_minor: int, points: int) -> Quote:
    """An offline check as the POS closed it: the points it took count whatever the cap
    and the balance say now (both are reported, neither refuses)."""
    q = quote(program, card, total_minor, 0)
    points_money = min(program.money_for_points(points), q.due_minor)
    money = q.due_minor - points_money
    base = money if program.exclude_points_part else q.due_minor
    accrual = program.points_for_money(base * q.accrual_bp // BP) if q.eligible else 0
    return replace(
        q,
        points_minor=points,
        points_money_minor=points_money,
        money_minor=money,
        accrual_minor=accrual,
    )


def check_total(lines: list[int], total_minor: int | None = None) -> int:
    """The lines' sum; refused if a line is not a positive whole amount, or the stated
    total differs from the lines."""
    if not lines:
        raise InvalidInput(E.INVALID_CHECK, "a check has at least one line")
    if len(lines) > MAX_LINES:
        raise InvalidInput(E.INVALID_CHECK, f"a check has at most {MAX_LINES} lines")
    for number, amount in enumerate(lines, start=1):
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise InvalidInput(E.INVALID_CHECK, f"line {number}: an amount greater than zero")
    total = sum(lines)
    if total > MAX_ABS_MINOR:
        raise InvalidInput(E.INVALID_CHECK, "the check's total is too large")
    if total_minor is not None and total_minor != total:
        raise InvalidInput(
            E.CHECK_LINES_MISMATCH,
            f"the lines add up to {total} but the check says {total_minor}",
            lines_total_minor=total,
            total_minor=total_minor,
        )
    return total


def calculate(
    conn: Connection,
    *,
    tenant_id: int,
    card_number: str,
    lines: list[int],
    points_asked: int = 0,
    total_minor: int | None = None,
    now: datetime | None = None,
) -> tuple[CardView, Program, Quote]:
    """SPEC P-3: discount, the points the check may take, the points it will accrue."""
    now = as_utc(now) if now else utcnow()
    total = check_total(lines, total_minor)
    card = card_for_use(conn, tenant_id, card_number, now=now, lock=False)
    program = _enabled_program(conn, tenant_id, card.program_id)
    return card, program, quote(program, card, total, points_asked)


def _enabled_program(conn: Connection, tenant_id: int, program_id: int) -> Program:
    program = cached_program(conn, tenant_id, program_id)
    if not program.enabled:
        raise Refused(E.LOYALTY_DISABLED, f"the program {program.name!r} is switched off")
    return program


# --------------------------------------------------------------------------- commit


@dataclass(frozen=True, slots=True)
class CommittedCheck:
    id: int
    check_id: str
    card_id: int
    card_number: str
    status: str
    total_minor: int
    discount_minor: int
    points_money_minor: int
    money_minor: int
    spent_minor: int
    accrued_minor: int
    refunded_minor: int
    closed_at: datetime
    replayed: bool = False
    debt_minor: int = 0  # points an offline check took that the card no longer had
    payments: tuple[CheckPayment, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckPayment:
    """A part of a check's money part, paid the way a terminal payment code means
    (SPEC P-8): the type's name and kind as they were when the check was committed."""

    code: str
    payment_type_id: int
    payment_type: str
    kind: str
    amount_minor: int

    def as_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "payment_type_id": self.payment_type_id,
            "payment_type": self.payment_type,
            "kind": self.kind,
            "amount_minor": self.amount_minor,
        }


MAX_PAYMENTS = 20


def check_payments(
    conn: Connection,
    *,
    tenant_id: int,
    terminal_id: int,
    payments: list[tuple[str, int]],
    money_minor: int,
) -> tuple[CheckPayment, ...]:
    """The payments a POS sent for a check's money part, each code mapped to the tenant's
    payment type (refused if unknown or switched off), adding up to exactly the money
    part. Points are no payment line: they are the check's ``points``."""
    if len(payments) > MAX_PAYMENTS:
        raise InvalidInput(E.INVALID_PAYMENT, f"a check has at most {MAX_PAYMENTS} payments")
    found = []
    for code, amount in payments:
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise InvalidInput(
                E.INVALID_PAYMENT,
                f"the payment by {code!r} must be more than zero",
                payment_code=code,
            )
        payment_type = resolve_payment_code(
            conn, tenant_id=tenant_id, terminal_id=terminal_id, code=code
        )
        if payment_type.kind == PaymentKind.POINTS:
            raise InvalidInput(
                E.INVALID_PAYMENT,
                f"payment code {code!r} means points ({payment_type.name!r}); points a check "
                "spends are its 'points', not a payment line",
                payment_code=code,
            )
        found.append(
            CheckPayment(
                normalise_code(code) or code,
                payment_type.id,
                payment_type.name,
                str(payment_type.kind),
                amount,
            )
        )
    paid = sum(p.amount_minor for p in found)
    if paid != money_minor:
        raise InvalidInput(
            E.PAYMENTS_MISMATCH,
            f"the payments add up to {paid}; the check's money part is {money_minor}",
            paid_minor=paid,
            money_minor=money_minor,
        )
    return tuple(found)


def _payments_of(row: Any) -> tuple[CheckPayment, ...]:
    return tuple(
        CheckPayment(
            str(p["code"]),
            int(p["payment_type_id"]),
            str(p["payment_type"]),
            str(p["kind"]),
            int(p["amount_minor"]),
        )
        for p in row.payments or ()
    )


def commit_check(
    conn: Connection,
    *,
    tenant_id: int,
    terminal_id: int,
    check_id: str,
    card_number: str,
    lines: list[int],
    points_minor: int,
    actor: Actor,
    total_minor: int | None = None,
    closed_at: datetime | None = None,
    now: datetime | None = None,
    offline: bool = False,
    program: Program | None = None,
    payments: list[tuple[str, int]] | None = None,
) -> CommittedCheck:
    """SPEC P-4: record a closed check once per (terminal, check id).

    ``program``: the card's program if the caller has read it already (the gateway reads it
    to parse the check's amounts); it is read again only if the card turns out to be on
    another one.

    ``offline``: the check was closed while the terminal could not ask (SPEC P-6). It has
    happened, so it is recorded as it was: the points the POS took are taken as far as the
    card still has them, and the rest becomes the card's debt instead of a refusal.
    """
    now = as_utc(now) if now else utcnow()
    check_id = (check_id or "").strip()
    if not 1 <= len(check_id) <= 100:
        raise InvalidInput(E.INVALID_CHECK, "a check id of 1 to 100 characters is required")
    if not isinstance(points_minor, int) or isinstance(points_minor, bool) or points_minor < 0:
        raise InvalidInput(E.INVALID_CHECK, "points spent are a whole amount, zero or more")
    content: dict[str, Any] = {
        "card": card_number.strip(),
        "lines": lines,
        "points": points_minor,
        "total": total_minor,
    }
    if payments is not None:  # (not in the hash of a check without them, as before)
        content["payments"] = [[str(code).strip().upper(), amount] for code, amount in payments]
    request_hash = _hash(content)
    known = _known_check(conn, tenant_id, terminal_id, check_id)
    if known is not None:
        if known.request_hash != request_hash:
            raise Conflict(
                E.CHECK_CONFLICT,
                f"check {check_id!r} of this terminal was committed with other content",
            )
        return _committed(conn, known, replayed=True)
    total = check_total(lines, total_minor)
    card = card_for_use(conn, tenant_id, card_number, now=now, lock=True)
    if program is None or program.id != card.program_id or program.tenant_id != tenant_id:
        program = _enabled_program(conn, tenant_id, card.program_id)
    elif not program.enabled:
        raise Refused(E.LOYALTY_DISABLED, f"the program {program.name!r} is switched off")
    debt = 0
    if offline:
        q = _as_paid(program, card, total, points_minor)
        debt = q.points_minor - min(q.points_minor, card.available_minor)
        q = replace(q, points_minor=q.points_minor - debt)
    else:
        q = quote(program, card, total, points_minor)
        if points_minor > q.points_cap_minor:
            if points_minor > card.available_minor:
                raise Refused(
                    E.INSUFFICIENT_POINTS,
                    f"the card may spend {card.available_minor} now; {points_minor} was asked",
                    available_minor=card.available_minor,
                )
            raise Refused(
                E.POINTS_OVER_CAP,
                f"this check may take at most {q.points_cap_minor} points; "
                f"{points_minor} was asked",
                cap_minor=q.points_cap_minor,
            )
    paid_by = (
        ()
        if payments is None
        else check_payments(
            conn,
            tenant_id=tenant_id,
            terminal_id=terminal_id,
            payments=payments,
            money_minor=q.money_minor,
        )
    )
    specs = []
    unit = program.unit.code
    if q.points_minor:
        redeemed = system_account_id(
            conn, tenant_id=tenant_id, unit_code=unit, purpose="redeemed", actor=actor
        )
        specs.append(
            simple_transfer(
                f"pos:{terminal_id}:{check_id}:spend",
                debit_account_id=card.account_id,
                credit_account_id=redeemed,
                amount_minor=q.points_minor,
                kind="spend",
                description=f"check {check_id}",
                meta={"check": check_id, "terminal": terminal_id},
            )
        )
    if q.accrual_minor:
        issuance = system_account_id(
            conn, tenant_id=tenant_id, unit_code=unit, purpose="issuance", actor=actor
        )
        available_at, expires_at = lot_dates(program, now)
        specs.append(
            simple_transfer(
                f"pos:{terminal_id}:{check_id}:accrual",
                debit_account_id=issuance,
                credit_account_id=card.account_id,
                amount_minor=q.accrual_minor,
                kind="accrual",
                description=f"{q.accrual_bp / 100:g} % of check {check_id}",
                meta={"check": check_id, "terminal": terminal_id, "rate_bp": q.accrual_bp},
                available_at=available_at,
                expires_at=expires_at,
            )
        )
    # The check's row goes in first: its unique (tenant, terminal, check id) makes a second
    # request for the same check, running at the same moment, wait for this one and then
    # retry (run_transaction) into a replay, instead of meeting its transfers half-way.
    row_id = conn.execute(
        pos_checks.insert().returning(pos_checks.c.id),
        {
            "tenant_id": tenant_id,
            "terminal_id": terminal_id,
            "check_id": check_id,
            "request_hash": request_hash,
            "card_id": card.id,
            "status": "committed",
            "total_minor": total,
            "discount_minor": q.discount_minor,
            "points_minor": q.points_money_minor,
            "money_minor": q.money_minor,
            "accrued_minor": q.accrual_minor,
            "spent_minor": q.points_minor,
            "refunded_minor": 0,
            "debt_minor": debt,
            "spend_transfer_id": None,
            "accrual_transfer_id": None,
            "lines": lines,
            "payments": [p.as_json() for p in paid_by] if payments is not None else None,
            "closed_at": as_utc(closed_at) if closed_at else now,
            "created_at": now,
        },
    ).scalar_one()
    posted = _post(conn, tenant_id, specs, actor, now)
    spend = next((p for p in posted if p.kind == "spend"), None)
    accrual = next((p for p in posted if p.kind == "accrual"), None)
    if spend or accrual:
        conn.execute(
            update(pos_checks)
            .where(pos_checks.c.id == row_id)
            .values(
                spend_transfer_id=spend.id if spend else None,
                accrual_transfer_id=accrual.id if accrual else None,
            )
        )
    _accumulate(conn, tenant_id, card, program, row_id, q.money_minor, 1, now)
    if debt:
        conn.execute(
            update(cards).where(cards.c.id == card.id).values(debt_minor=cards.c.debt_minor + debt)
        )
    return CommittedCheck(
        id=row_id,
        check_id=check_id,
        card_id=card.id,
        card_number=card.number,
        status="committed",
        total_minor=total,
        discount_minor=q.discount_minor,
        points_money_minor=q.points_money_minor,
        money_minor=q.money_minor,
        spent_minor=q.points_minor,
        accrued_minor=q.accrual_minor,
        refunded_minor=0,
        closed_at=as_utc(closed_at) if closed_at else now,
        replayed=False,
        debt_minor=debt,
        payments=paid_by,
    )


def _post(
    conn: Connection, tenant_id: int, specs: list[Any], actor: Actor, now: datetime
) -> list[PostedTransfer]:
    if not specs:
        return []
    outcomes = post_transfers(conn, tenant_id=tenant_id, specs=specs, actor=actor, now=now)
    for outcome in outcomes:
        if isinstance(outcome, KopilkaError):
            raise outcome
    return [o for o in outcomes if isinstance(o, PostedTransfer)]


def _accumulate(
    conn: Connection,
    tenant_id: int,
    card: CardView,
    program: Program,
    pos_check_id: int,
    money_minor: int,
    checks: int,
    now: datetime,
) -> None:
    """The money paid feeds the card's accumulation and check count, and its tier."""
    conn.execute(
        card_purchases.insert(),
        {
            "tenant_id": tenant_id,
            "card_id": card.id,
            "pos_check_id": pos_check_id,
            "amount_minor": money_minor,
            "checks": checks,
            "at": now,
        },
    )
    accumulation = max(0, card.accumulation_minor + money_minor)
    tier = program.tier_for(accumulation)
    conn.execute(
        update(cards)
        .where(cards.c.id == card.id)
        .values(
            accumulation_minor=accumulation,
            checks_count=func.max(cards.c.checks_count + checks, 0)
            if conn.dialect.name == "sqlite"
            else func.greatest(cards.c.checks_count + checks, 0),
            tier_id=tier.id if tier else None,
        )
    )


def _known_check(conn: Connection, tenant_id: int, terminal_id: int, check_id: str) -> Any:
    return conn.execute(
        select(pos_checks).where(
            pos_checks.c.tenant_id == tenant_id,
            pos_checks.c.terminal_id == terminal_id,
            pos_checks.c.check_id == check_id,
        )
    ).first()


def _committed(
    conn: Connection, row: Any, *, replayed: bool, card_number: str | None = None
) -> CommittedCheck:
    if card_number is None:
        card_number = conn.execute(
            select(cards.c.number).where(cards.c.id == row.card_id)
        ).scalar_one()
    return CommittedCheck(
        id=row.id,
        check_id=row.check_id,
        card_id=row.card_id,
        card_number=card_number,
        status=row.status,
        total_minor=row.total_minor,
        discount_minor=row.discount_minor,
        points_money_minor=row.points_minor,
        money_minor=row.money_minor,
        spent_minor=row.spent_minor,
        accrued_minor=row.accrued_minor,
        refunded_minor=row.refunded_minor,
        closed_at=as_utc(row.closed_at),
        replayed=replayed,
        debt_minor=row.debt_minor,
        payments=_payments_of(row),
    )


def get_check(conn: Connection, tenant_id: int, terminal_id: int, check_id: str) -> CommittedCheck:
    row = _known_check(conn, tenant_id, terminal_id, check_id)
    if row is None:
        raise NotFound(E.CHECK_NOT_FOUND, f"check {check_id!r} was not committed here")
    return _committed(conn, row, replayed=False)


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True, slots=True)
class Refund:
    check: CommittedCheck
    refund_id: str
    amount_minor: int
    points_returned_minor: int
    accrual_reversed_minor: int
    debt_minor: int
    replayed: bool = False


def _refund_share(total: int, figure: int, before: int, after: int) -> int:
    """The part of ``figure`` that the refunds from ``before`` to ``after`` (of ``total``)
    carry, cumulative rounding as ``refund_check`` does."""
    return figure * after // total - figure * before // total


def refund_check(
    conn: Connection,
    *,
    tenant_id: int,
    terminal_id: int,
    check_id: str,
    refund_id: str,
    amount_minor: int | None,
    actor: Actor,
    now: datetime | None = None,
) -> Refund:
    """SPEC P-5: refund ``amount_minor`` of the check's total (``None``: all that is left).

    Points spent come back and points accrued are taken back in proportion; rounding is
    cumulative, so refunds in parts add up to exactly the whole. Points accrued that the
    card has spent meanwhile become its debt.
    """
    now = as_utc(now) if now else utcnow()
    refund_id = (refund_id or "").strip()
    if not 1 <= len(refund_id) <= 100:
        raise InvalidInput(E.INVALID_CHECK, "a refund id of 1 to 100 characters is required")
    row = _known_check(conn, tenant_id, terminal_id, check_id)
    if row is None:
        raise NotFound(E.CHECK_NOT_FOUND, f"check {check_id!r} was not committed here")
    request_hash = _hash({"amount": amount_minor})
    done = conn.execute(
        select(pos_refunds).where(
            pos_refunds.c.pos_check_id == row.id, pos_refunds.c.refund_id == refund_id
        )
    ).first()
    if done is not None:
        if done.request_hash != request_hash:
            raise Conflict(E.REFUND_CONFLICT, f"refund {refund_id!r} was made with another amount")
        if done.cancelled_at is not None:
            raise Conflict(
                E.REFUND_CANCELLED,
                f"refund {refund_id!r} of check {check_id!r} was taken back; "
                "refund again under a new refund id",
            )
        return Refund(
            _committed(conn, row, replayed=True),
            refund_id,
            done.amount_minor,
            done.points_returned_minor,
            done.accrual_reversed_minor,
            done.debt_minor,
            replayed=True,
        )
    # The card's row is the lock that orders everything done to its check.
    card = get_card(conn, tenant_id, row.card_id, lock=True)
    row = conn.execute(select(pos_checks).where(pos_checks.c.id == row.id)).one()
    left = row.total_minor - row.refunded_minor
    amount = left if amount_minor is None else amount_minor
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        if left == 0:
            raise Refused(E.REFUND_TOO_LARGE, f"check {check_id!r} is refunded in full already")
        raise InvalidInput(E.INVALID_CHECK, "a refund amount greater than zero is required")
    if amount > left:
        raise Refused(
            E.REFUND_TOO_LARGE,
            f"at most {left} of check {check_id!r} is left to refund; {amount} was asked",
            left_minor=left,
        )
    program = cached_program(conn, tenant_id, card.program_id)
    so_far = conn.execute(
        select(
            func.coalesce(func.sum(pos_refunds.c.points_returned_minor), 0),
            func.coalesce(func.sum(pos_refunds.c.accrual_reversed_minor), 0),
            func.coalesce(func.sum(pos_refunds.c.debt_minor), 0),
        ).where(pos_refunds.c.pos_check_id == row.id, pos_refunds.c.cancelled_at.is_(None))
    ).one()
    refunded_after = row.refunded_minor + amount
    points_back = row.spent_minor * refunded_after // row.total_minor - int(so_far[0])
    accrual_due = (
        row.accrued_minor * refunded_after // row.total_minor - int(so_far[1]) - int(so_far[2])
    )
    unit = program.unit.code
    specs = []
    if points_back > 0:
        _, expires_at = lot_dates(program, now)
        specs.append(
            simple_transfer(
                f"pos:{terminal_id}:{check_id}:refund:{refund_id}:return",
                debit_account_id=system_account_id(
                    conn, tenant_id=tenant_id, unit_code=unit, purpose="redeemed", actor=actor
                ),
                credit_account_id=card.account_id,
                amount_minor=points_back,
                kind="refund",
                description=f"points back for refund {refund_id} of check {check_id}",
                meta={"check": check_id, "refund": refund_id},
                expires_at=expires_at,
            )
        )
    # Taken back first from the lot the check accrued (spendable yet or not), then from
    # what the card may spend; what it no longer has becomes its debt.
    take_lot, take_free = 0, 0
    lot = None
    if accrual_due > 0 and row.accrual_transfer_id is not None:
        lot = conn.execute(
            select(lots.c.id, lots.c.remaining_minor).where(
                lots.c.transfer_id == row.accrual_transfer_id,
                lots.c.account_id == card.account_id,
            )
        ).first()
        if lot is not None:
            take_lot = min(accrual_due, lot.remaining_minor)
    if accrual_due - take_lot > 0:
        take_free = max(0, min(accrual_due - take_lot, card.available_minor + max(points_back, 0)))
    take = take_lot + take_free
    debt = max(0, accrual_due - take)
    if take > 0:
        issuance = system_account_id(
            conn, tenant_id=tenant_id, unit_code=unit, purpose="issuance", actor=actor
        )
        # One transfer per source: a transfer names each account once.
        for part, amount_taken, lot_id in (
            ("reverse", take_lot, lot.id if lot is not None else None),
            ("reverse-rest", take_free, None),
        ):
            if amount_taken <= 0:
                continue
            specs.append(
                TransferSpec(
                    idempotency_key=f"pos:{terminal_id}:{check_id}:refund:{refund_id}:{part}",
                    entries=(
                        EntrySpec(card.account_id, -amount_taken, from_lot_id=lot_id),
                        EntrySpec(issuance, amount_taken),
                    ),
                    kind="accrual_reversal",
                    description=f"accrual taken back: refund {refund_id} of check {check_id}",
                    meta={"check": check_id, "refund": refund_id},
                    corrects_transfer_id=row.accrual_transfer_id,
                )
            )
    posted = _post(conn, tenant_id, specs, actor, now)
    full = refunded_after == row.total_minor
    conn.execute(
        update(pos_checks)
        .where(pos_checks.c.id == row.id)
        .values(refunded_minor=refunded_after, status="refunded" if full else "partly_refunded")
    )
    # The debt an offline check left goes with the part of it refunded: the points it
    # could not take are no longer owed for goods that came back.
    forgiven = _refund_share(row.total_minor, row.debt_minor, row.refunded_minor, refunded_after)
    if debt or forgiven:
        conn.execute(
            update(cards)
            .where(cards.c.id == card.id)
            .values(debt_minor=max(0, card.debt_minor + debt - forgiven))
        )
    conn.execute(
        pos_refunds.insert(),
        {
            "tenant_id": tenant_id,
            "pos_check_id": row.id,
            "refund_id": refund_id,
            "request_hash": request_hash,
            "amount_minor": amount,
            "points_returned_minor": points_back,
            "accrual_reversed_minor": take,
            "debt_minor": debt,
            "transfer_ids": [p.id for p in posted],
            "created_at": now,
        },
    )
    money_back = _refund_share(row.total_minor, row.money_minor, row.refunded_minor, refunded_after)
    _accumulate(conn, tenant_id, card, program, row.id, -money_back, -1 if full else 0, now)
    return Refund(
        _committed(
            conn,
            conn.execute(select(pos_checks).where(pos_checks.c.id == row.id)).one(),
            replayed=False,
        ),
        refund_id,
        amount,
        points_back,
        take,
        debt,
    )


def cancel_refund(
    conn: Connection,
    *,
    tenant_id: int,
    terminal_id: int,
    check_id: str,
    refund_id: str,
    actor: Actor,
    now: datetime | None = None,
) -> Refund:
    """Take back the check's latest refund (a return rolled back at the terminal).

    Everything the refund did is undone by new transfers, each correcting the one it
    undoes: the points it gave back leave the card again (refused if the card has spent
    them meanwhile), the accrual it took back comes back with its lot's dates, the debt
    it added goes and the debt it forgave returns; the check's refunded amount and the
    card's accumulation are as before the refund. Only the latest refund still standing
    can be taken back: refunds in parts are rounded cumulatively. Doing it again answers
    as the first time.
    """
    now = as_utc(now) if now else utcnow()
    row = _known_check(conn, tenant_id, terminal_id, check_id)
    if row is None:
        raise NotFound(E.CHECK_NOT_FOUND, f"check {check_id!r} was not committed here")
    card = get_card(conn, tenant_id, row.card_id, lock=True)
    row = conn.execute(select(pos_checks).where(pos_checks.c.id == row.id)).one()
    refund = conn.execute(
        select(pos_refunds).where(
            pos_refunds.c.pos_check_id == row.id, pos_refunds.c.refund_id == refund_id
        )
    ).first()
    if refund is None:
        raise NotFound(
            E.REFUND_NOT_FOUND, f"check {check_id!r} has no refund {refund_id!r}", refund=refund_id
        )
    result = Refund(
        _committed(conn, row, replayed=refund.cancelled_at is not None),
        refund_id,
        refund.amount_minor,
        refund.points_returned_minor,
        refund.accrual_reversed_minor,
        refund.debt_minor,
        replayed=refund.cancelled_at is not None,
    )
    if refund.cancelled_at is not None:
        return result
    later = conn.execute(
        select(pos_refunds.c.refund_id).where(
            pos_refunds.c.pos_check_id == row.id,
            pos_refunds.c.cancelled_at.is_(None),
            pos_refunds.c.id > refund.id,
        )
    ).first()
    if later is not None:
        raise Refused(
            E.REFUND_NOT_LAST,
            f"refund {later.refund_id!r} of check {check_id!r} came after {refund_id!r}; "
            "take that one back first",
            later=later.refund_id,
        )
    program = cached_program(conn, tenant_id, card.program_id)
    unit = program.unit.code
    key = f"pos:{terminal_id}:{check_id}:refund:{refund_id}:cancel"
    posted_by_kind = {
        t.kind: t
        for t in conn.execute(
            select(transfers.c.id, transfers.c.kind).where(
                one_of(conn, transfers.c.id, [int(i) for i in refund.transfer_ids or [0]])
            )
        )
    }
    specs = []
    returned = posted_by_kind.get("refund")
    if refund.points_returned_minor > 0 and returned is not None:
        if card.available_minor < refund.points_returned_minor:
            raise Refused(
                E.REFUND_POINTS_SPENT,
                f"the refund gave {refund.points_returned_minor} points back and the card may "
                f"spend {card.available_minor} now: they have been spent, so the refund "
                "cannot be taken back",
                available_minor=card.available_minor,
            )
        lot = conn.execute(
            select(lots.c.id, lots.c.remaining_minor).where(
                lots.c.transfer_id == returned.id, lots.c.account_id == card.account_id
            )
        ).first()
        from_lot = min(refund.points_returned_minor, lot.remaining_minor) if lot else 0
        redeemed = system_account_id(
            conn, tenant_id=tenant_id, unit_code=unit, purpose="redeemed", actor=actor
        )
        for part, amount_taken, lot_id in (
            ("return", from_lot, lot.id if lot is not None else None),
            ("return-rest", refund.points_returned_minor - from_lot, None),
        ):
            if amount_taken > 0:
                specs.append(
                    TransferSpec(
                        idempotency_key=f"{key}:{part}",
                        entries=(
                            EntrySpec(card.account_id, -amount_taken, from_lot_id=lot_id),
                            EntrySpec(redeemed, amount_taken),
                        ),
                        kind="refund_cancel",
                        description=f"refund {refund_id} of check {check_id} taken back: "
                        "points given back leave again",
                        meta={"check": check_id, "refund": refund_id},
                        corrects_transfer_id=returned.id,
                    )
                )
    available_at = expires_at = None
    if refund.accrual_reversed_minor > 0:
        accrual = None
        if row.accrual_transfer_id is not None:
            accrual = conn.execute(
                select(lots.c.available_at, lots.c.expires_at).where(
                    lots.c.transfer_id == row.accrual_transfer_id,
                    lots.c.account_id == card.account_id,
                )
            ).first()
        if accrual is not None:
            available_at, expires_at = accrual.available_at, accrual.expires_at
        else:
            available_at, expires_at = lot_dates(program, as_utc(row.created_at))
    # Points whose lot has lapsed meanwhile would have expired on the card: not returned.
    if refund.accrual_reversed_minor > 0 and (expires_at is None or as_utc(expires_at) > now):
        specs.append(
            simple_transfer(
                f"{key}:accrual",
                debit_account_id=system_account_id(
                    conn, tenant_id=tenant_id, unit_code=unit, purpose="issuance", actor=actor
                ),
                credit_account_id=card.account_id,
                amount_minor=refund.accrual_reversed_minor,
                kind="refund_cancel",
                description=f"refund {refund_id} of check {check_id} taken back: "
                "the accrual comes back",
                meta={"check": check_id, "refund": refund_id},
                available_at=available_at,
                expires_at=expires_at,
                corrects_transfer_id=row.accrual_transfer_id,
            )
        )
    posted = _post(conn, tenant_id, specs, actor, now)
    after = row.refunded_minor
    before = after - refund.amount_minor
    forgiven = _refund_share(row.total_minor, row.debt_minor, before, after)
    if refund.debt_minor or forgiven:
        conn.execute(
            update(cards)
            .where(cards.c.id == card.id)
            .values(debt_minor=max(0, card.debt_minor - refund.debt_minor + forgiven))
        )
    conn.execute(
        update(pos_checks)
        .where(pos_checks.c.id == row.id)
        .values(refunded_minor=before, status="partly_refunded" if before else "committed")
    )
    conn.execute(
        update(pos_refunds)
        .where(pos_refunds.c.id == refund.id)
        .values(cancelled_at=now, cancel_transfer_ids=[p.id for p in posted])
    )
    money_back = _refund_share(row.total_minor, row.money_minor, before, after)
    was_full = after == row.total_minor
    _accumulate(conn, tenant_id, card, program, row.id, money_back, 1 if was_full else 0, now)
    return replace(
        result,
        check=_committed(
            conn,
            conn.execute(select(pos_checks).where(pos_checks.c.id == row.id)).one(),
            replayed=False,
        ),
    )


# --------------------------------------------------------------------------- offline


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One check a terminal closed offline, as it uploads it later."""

    check_id: str
    card_number: str
    lines: list[int]
    points_minor: int = 0
    total_minor: int | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    check_id: str
    status: str  # applied, duplicate, refused
    code: str | None = None
    detail: str | None = None
    debt_minor: int = 0
    check: CommittedCheck | None = None


BATCH_CHUNK = 1000  # checks per transaction of an offline batch


def upload_batch(
    engine: Engine,
    *,
    tenant_id: int,
    terminal_id: int,
    items: list[BatchItem | KopilkaError],
    actor: Actor,
    now: datetime | None = None,
) -> list[BatchResult]:
    """SPEC P-6: apply a terminal's offline checks, each once, in order.

    An item already applied (by this upload or an earlier one) is reported ``duplicate``
    and not applied again; a malformed or refused item is reported with its code while the
    rest still apply; points a check took that the card no longer has become its debt.
    Items go in transactions of ``BATCH_CHUNK``, applied set by set
    (``kopilka.loyalty.pos_batch``), which falls back to ``_apply_chunk`` (each item under
    its own savepoint) for a run it cannot apply exactly so.
    """
    from kopilka.loyalty.pos_batch import apply_chunk

    results: list[BatchResult] = []
    for start in range(0, len(items), BATCH_CHUNK):
        chunk = items[start : start + BATCH_CHUNK]
        results.extend(
            run_transaction(
                engine,
                lambda conn, chunk=chunk: apply_chunk(  # type: ignore[misc]
                    conn, tenant_id, terminal_id, chunk, actor, now
                ),
            )
        )
    return results


def _apply_chunk(
    conn: Connection,
    tenant_id: int,
    terminal_id: int,
    chunk: list[BatchItem | KopilkaError],
    actor: Actor,
    now: datetime | None,
) -> list[BatchResult]:
    out: list[BatchResult] = []
    for item in chunk:
        if isinstance(item, KopilkaError):
            check_id = str(item.params.get("check_id", ""))
            out.append(BatchResult(check_id, "refused", item.code, item.detail))
            continue
        savepoint = conn.begin_nested()
        try:
            check = commit_check(
                conn,
                tenant_id=tenant_id,
                terminal_id=terminal_id,
                check_id=item.check_id,
                card_number=item.card_number,
                lines=item.lines,
                points_minor=item.points_minor,
                total_minor=item.total_minor,
                closed_at=item.closed_at,
                actor=actor,
                now=now,
                offline=True,
            )
        except KopilkaError as error:
            savepoint.rollback()
            out.append(BatchResult(item.check_id, "refused", error.code, error.detail))
            continue
        savepoint.commit()
        status = "duplicate" if check.replayed else "applied"
        out.append(BatchResult(item.check_id, status, None, None, check.debt_minor, check))
    return out
