"""The POS gateway (SPEC P-1..P-5): terminals look cards up, quote checks, commit them once
and refund them. Only terminal keys may call it: a terminal is who commits a check.

Amounts are decimal strings: check lines in the program's currency, points in its point
unit. A commit is idempotent by (terminal, check id): the same check again answers as the
first time (``Idempotent-Replayed: true``), the same id with other content is 409
``check_conflict``. A refund is idempotent by its own ``refund_id``.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, select

from kopilka.api.deps import EngineDep, Principal, require_loyalty_enabled, require_roles
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER
from kopilka.core.db import one_of, read_only
from kopilka.core.errors import InvalidInput, KopilkaError, NotFound
from kopilka.core.money import format_amount, parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import pos
from kopilka.loyalty.cards import CardView, find_card, normalise_number
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import Program, cached_program, rates
from kopilka.loyalty.schema import cards

# Every card request refuses while the tenant's loyalty module is off (SPEC P-9).
router = APIRouter(
    prefix=f"{API_PREFIX}/pos", tags=["pos"], dependencies=[Depends(require_loyalty_enabled)]
)
TerminalPrincipal = Annotated[Principal, Depends(require_roles("terminal"))]
CheckId = Annotated[str, Path(min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CardOut(Strict):
    number: str
    status: str
    blocked_reason: str | None
    holder_name: str | None
    program: str
    tier: str | None
    discount_percent: str
    accrual_percent: str
    unit: str
    balance: str = Field(description="points on the card, in the program's point unit")
    available: str = Field(description="points the card may spend now")
    accumulation: str = Field(description="purchases counted for the tier, in the currency")
    currency: str
    checks_count: int
    debt: str
    expires_at: datetime | None


def _percent(bp: int) -> str:
    return format_amount(bp, 2)


def card_out(card: CardView, program: Program) -> CardOut:
    tier, discount_bp, accrual_bp = rates(program, card.accumulation_minor)
    unit = program.unit
    return CardOut(
        number=card.number,
        status=card.status,
        blocked_reason=card.blocked_reason,
        holder_name=card.holder_name,
        program=program.name,
        tier=tier.name if tier else None,
        discount_percent=_percent(discount_bp),
        accrual_percent=_percent(accrual_bp),
        unit=unit.code,
        balance=format_amount(card.balance_minor, unit.exponent),
        available=format_amount(card.available_minor, unit.exponent),
        accumulation=format_amount(card.accumulation_minor, program.currency_exponent),
        currency=program.currency,
        checks_count=card.checks_count,
        debt=format_amount(card.debt_minor, unit.exponent),
        expires_at=card.expires_at,
    )


@router.get("/cards/lookup", responses=problem_responses(401, 403, 404, 422, 503))
async def lookup(
    principal: TerminalPrincipal,
    engine: EngineDep,
    number: Annotated[str | None, Query(max_length=64)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
) -> CardOut:
    """SPEC P-2: a card by its number (or its holder's phone): holder, status, tier,
    discount, balances and what may be spent now."""
    if not number and not phone:
        raise InvalidInput(E.INVALID_CARD_NUMBER, "send the card's number or the holder's phone")
    with read_only(engine) as conn:
        card = find_card(conn, principal.tenant_id, number=number, phone=phone)
        program = cached_program(conn, principal.tenant_id, card.program_id)
        return card_out(card, program)


class CheckIn(Strict):
    card: str = Field(min_length=1, max_length=64, description="the card's number")
    lines: list[str] = Field(
        min_length=1, max_length=pos.MAX_LINES, description="line amounts, in the currency"
    )
    total: str | None = Field(default=None, description="the check's total, if the POS states it")
    points: str = Field(default="0", description="points to pay with, in the point unit")


class QuoteOut(Strict):
    card: CardOut
    total: str
    discount_percent: str
    discount: str
    due: str
    points_cap: str = Field(description="the most points this check may take")
    points: str
    points_pay: str = Field(description="what the points pay, in the currency")
    money: str = Field(description="what is left to pay in money")
    accrual: str = Field(description="points the check will accrue")
    currency: str
    unit: str


def _parse_check(body: CheckIn, program: Program) -> tuple[list[int], int | None, int]:
    exponent = program.currency_exponent
    lines = [parse_amount(line, exponent, unit_code=program.currency) for line in body.lines]
    total = (
        None
        if body.total is None
        else parse_amount(body.total, exponent, unit_code=program.currency)
    )
    points = parse_amount(body.points, program.unit.exponent, unit_code=program.unit.code)
    return lines, total, points


def _program_of(conn: Connection, tenant_id: int, number: str) -> Program:
    """The program of the card numbered ``number``: its rules say how to read the check's
    amounts. Only the card's program is read here; the domain reads the card itself."""
    wanted = normalise_number(number)
    program_id = conn.execute(
        select(cards.c.program_id).where(cards.c.tenant_id == tenant_id, cards.c.number == wanted)
    ).scalar()
    if program_id is None:
        raise NotFound(E.CARD_NOT_FOUND, f"no card numbered {wanted}", number=wanted)
    return cached_program(conn, tenant_id, program_id)


@router.post("/calculate", responses=problem_responses(401, 403, 404, 422, 503))
def calculate(body: CheckIn, principal: TerminalPrincipal, engine: EngineDep) -> QuoteOut:
    """SPEC P-3: discount, the points the check may take, the points it will accrue.
    Nothing is written."""
    with read_only(engine) as conn:
        program = _program_of(conn, principal.tenant_id, body.card)
        lines, total, points = _parse_check(body, program)
        card, program, q = pos.calculate(
            conn,
            tenant_id=principal.tenant_id,
            card_number=body.card,
            lines=lines,
            points_asked=points,
            total_minor=total,
        )
    money, unit = program.currency_exponent, program.unit.exponent
    return QuoteOut(
        card=card_out(card, program),
        total=format_amount(q.total_minor, money),
        discount_percent=_percent(q.discount_bp),
        discount=format_amount(q.discount_minor, money),
        due=format_amount(q.due_minor, money),
        points_cap=format_amount(q.points_cap_minor, unit),
        points=format_amount(q.points_minor, unit),
        points_pay=format_amount(q.points_money_minor, money),
        money=format_amount(q.money_minor, money),
        accrual=format_amount(q.accrual_minor, unit),
        currency=program.currency,
        unit=program.unit.code,
    )


class PaymentLineIn(Strict):
    code: str = Field(
        min_length=1,
        max_length=32,
        description="the terminal's payment code (SPEC P-8), mapped to a payment type in the "
        "settings; GET /api/v1/pos/payment-codes lists them",
        examples=["1", "CARD"],
    )
    amount: str = Field(description="in the currency")


class PaymentLineOut(Strict):
    code: str
    payment_type_id: int
    payment_type: str = Field(description="the type's name when the check was committed")
    kind: str
    amount: str


class CommitIn(CheckIn):
    check_id: str = Field(min_length=1, max_length=100)
    closed_at: datetime | None = None
    payments: list[PaymentLineIn] | None = Field(
        default=None,
        max_length=pos.MAX_PAYMENTS,
        description="how the money part was paid, by payment code; when sent, the amounts "
        "add up to exactly the money part (the quote's `money`)",
    )


class CheckOut(Strict):
    check_id: str
    card: str
    status: str
    total: str
    discount: str
    points_pay: str
    money: str
    spent: str
    accrued: str
    refunded: str
    closed_at: datetime
    currency: str
    unit: str
    payments: list[PaymentLineOut] = Field(
        description="how the money part was paid, as the terminal said (empty: not said)"
    )


def check_out(check: pos.CommittedCheck, program: Program) -> CheckOut:
    money, unit = program.currency_exponent, program.unit.exponent
    return CheckOut(
        check_id=check.check_id,
        card=check.card_number,
        status=check.status,
        total=format_amount(check.total_minor, money),
        discount=format_amount(check.discount_minor, money),
        points_pay=format_amount(check.points_money_minor, money),
        money=format_amount(check.money_minor, money),
        spent=format_amount(check.spent_minor, unit),
        accrued=format_amount(check.accrued_minor, unit),
        refunded=format_amount(check.refunded_minor, money),
        closed_at=check.closed_at,
        currency=program.currency,
        unit=program.unit.code,
        payments=[
            PaymentLineOut(
                code=p.code,
                payment_type_id=p.payment_type_id,
                payment_type=p.payment_type,
                kind=p.kind,
                amount=format_amount(p.amount_minor, money),
            )
            for p in check.payments
        ],
    )


def _terminal_id(principal: Principal) -> int:
    assert principal.actor.id is not None
    return int(principal.actor.id)


@router.post(
    "/checks",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def commit(
    body: CommitIn, principal: TerminalPrincipal, engine: EngineDep, response: Response
) -> CheckOut:
    """SPEC P-4: the closed check, recorded once: points spent, points accrued, the
    card's accumulation. Idempotent by (terminal, check id)."""

    def work(conn: Connection) -> tuple[pos.CommittedCheck, Program]:
        program = _program_of(conn, principal.tenant_id, body.card)
        lines, total, points = _parse_check(body, program)
        payments = (
            None
            if body.payments is None
            else [
                (
                    line.code,
                    parse_amount(
                        line.amount,
                        program.currency_exponent,
                        unit_code=program.currency,
                        positive=True,
                    ),
                )
                for line in body.payments
            ]
        )
        check = pos.commit_check(
            conn,
            tenant_id=principal.tenant_id,
            terminal_id=_terminal_id(principal),
            check_id=body.check_id,
            card_number=body.card,
            lines=lines,
            points_minor=points,
            total_minor=total,
            closed_at=body.closed_at,
            actor=principal.actor,
            program=program,
            payments=payments,
        )
        return check, program

    check, program = run_transaction(engine, work)
    if check.replayed:
        response.headers[REPLAYED_HEADER] = "true"
        response.status_code = status.HTTP_200_OK
    return check_out(check, program)


@router.get("/checks/{check_id}", responses=problem_responses(401, 403, 404, 422, 503))
def read_check(check_id: CheckId, principal: TerminalPrincipal, engine: EngineDep) -> CheckOut:
    with read_only(engine) as conn:
        check = pos.get_check(conn, principal.tenant_id, _terminal_id(principal), check_id)
        card = find_card(conn, principal.tenant_id, number=check.card_number)
        return check_out(check, cached_program(conn, principal.tenant_id, card.program_id))


class RefundIn(Strict):
    refund_id: str = Field(min_length=1, max_length=100)
    amount: str | None = Field(
        default=None, description="the part of the check's total to refund; none: all that is left"
    )


class RefundOut(Strict):
    check: CheckOut
    refund_id: str
    amount: str
    points_returned: str
    accrual_reversed: str
    debt: str = Field(description="accrued points the card had spent: owed by the card")


@router.post(
    "/checks/{check_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def refund(
    check_id: CheckId,
    body: RefundIn,
    principal: TerminalPrincipal,
    engine: EngineDep,
    response: Response,
) -> RefundOut:
    """SPEC P-5: refund a part of the check (or all that is left): the points spent come
    back and the points accrued go, in proportion; never past the check."""

    def work(conn: Connection) -> tuple[pos.Refund, Program]:
        check = pos.get_check(conn, principal.tenant_id, _terminal_id(principal), check_id)
        card = find_card(conn, principal.tenant_id, number=check.card_number)
        program = cached_program(conn, principal.tenant_id, card.program_id)
        amount = (
            None
            if body.amount is None
            else parse_amount(
                body.amount, program.currency_exponent, unit_code=program.currency, positive=True
            )
        )
        done = pos.refund_check(
            conn,
            tenant_id=principal.tenant_id,
            terminal_id=_terminal_id(principal),
            check_id=check_id,
            refund_id=body.refund_id,
            amount_minor=amount,
            actor=principal.actor,
        )
        return done, program

    done, program = run_transaction(engine, work)
    return refund_out(done, program, response)


def refund_out(done: pos.Refund, program: Program, response: Response) -> RefundOut:
    if done.replayed:
        response.headers[REPLAYED_HEADER] = "true"
        response.status_code = status.HTTP_200_OK
    unit = program.unit.exponent
    return RefundOut(
        check=check_out(done.check, program),
        refund_id=done.refund_id,
        amount=format_amount(done.amount_minor, program.currency_exponent),
        points_returned=format_amount(done.points_returned_minor, unit),
        accrual_reversed=format_amount(done.accrual_reversed_minor, unit),
        debt=format_amount(done.debt_minor, unit),
    )


@router.post(
    "/checks/{check_id}/refunds/{refund_id}/cancel",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def cancel_refund(
    check_id: CheckId,
    refund_id: Annotated[str, Path(min_length=1, max_length=100)],
    principal: TerminalPrincipal,
    engine: EngineDep,
    response: Response,
) -> RefundOut:
    """Take the check's latest refund back (a return rolled back at the terminal): the
    points it gave back leave the card, the accrual it took back returns, the check and
    the card's accumulation are as before it. Refused (``refund_points_spent``) once the
    card has spent the points given back; ``refund_not_last`` while a later refund of the
    check stands. Again: the same reply, ``Idempotent-Replayed: true``. The figures in
    the reply are those of the refund taken back."""

    def work(conn: Connection) -> tuple[pos.Refund, Program]:
        done = pos.cancel_refund(
            conn,
            tenant_id=principal.tenant_id,
            terminal_id=_terminal_id(principal),
            check_id=check_id,
            refund_id=refund_id,
            actor=principal.actor,
        )
        card = find_card(conn, principal.tenant_id, number=done.check.card_number)
        return done, cached_program(conn, principal.tenant_id, card.program_id)

    done, program = run_transaction(engine, work)
    return refund_out(done, program, response)


class BatchItemIn(Strict):
    check_id: str = Field(min_length=1, max_length=100)
    card: str = Field(min_length=1, max_length=64)
    lines: list[str] = Field(min_length=1, max_length=pos.MAX_LINES)
    total: str | None = None
    points: str = "0"
    closed_at: datetime | None = None


class BatchIn(Strict):
    items: list[dict[str, object]] = Field(
        min_length=1,
        max_length=10_000,
        description="checks closed offline, in the order they were closed; each as for "
        "POST /pos/checks. A malformed item is reported and the others still apply.",
    )


class BatchItemOut(Strict):
    check_id: str
    status: str = Field(description="applied, duplicate (applied before), or refused")
    code: str | None = None
    detail: str | None = None
    debt: str | None = Field(
        default=None, description="points the check took that the card no longer had"
    )


class BatchOut(Strict):
    applied: int
    duplicates: int
    refused: int
    items: list[BatchItemOut]


def _programs_of(
    conn: Connection, tenant_id: int, raws: list[dict[str, object]]
) -> dict[str, Program]:
    """The programs of the batch's cards by card number, in one query for the cards (a
    batch names up to 10,000 of them) and one read per program."""
    numbers = set()
    for raw in raws:
        card = raw.get("card")
        if isinstance(card, str):
            with suppress(KopilkaError):  # refused in its turn, with its reason
                numbers.add(normalise_number(card))
    if not numbers:
        return {}
    found = conn.execute(
        select(cards.c.number, cards.c.program_id).where(
            cards.c.tenant_id == tenant_id, one_of(conn, cards.c.number, sorted(numbers))
        )
    ).all()
    programs = {
        program_id: cached_program(conn, tenant_id, program_id)
        for program_id in {row.program_id for row in found}
    }
    return {row.number: programs[row.program_id] for row in found}


def _batch_item(
    raw: dict[str, object], programs: dict[str, Program]
) -> tuple[pos.BatchItem | KopilkaError, Program | None]:
    check_id = str(raw.get("check_id", ""))[:100]
    try:
        item = BatchItemIn.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return (
            InvalidInput(E.INVALID_CHECK, f"{where}: {first['msg']}", check_id=check_id),
            None,
        )
    try:
        wanted = normalise_number(item.card)
        program = programs.get(wanted)
        if program is None:
            raise NotFound(E.CARD_NOT_FOUND, f"no card numbered {wanted}", number=wanted)
        lines, total, points = _parse_check(
            CheckIn(card=item.card, lines=item.lines, total=item.total, points=item.points),
            program,
        )
    except KopilkaError as error:
        error.params.setdefault("check_id", item.check_id)
        return error, None
    return (
        pos.BatchItem(item.check_id, item.card, lines, points, total, item.closed_at),
        program,
    )


@router.post(
    "/batches",
    status_code=status.HTTP_200_OK,
    responses=problem_responses(401, 403, 422, 503),
)
def upload_batch(body: BatchIn, principal: TerminalPrincipal, engine: EngineDep) -> BatchOut:
    """SPEC P-6: checks a terminal closed while offline. Each is applied once: a check
    already applied is reported as a duplicate; points it took that the card no longer has
    become the card's debt (never dropped); a bad item is reported with its code."""
    parsed: list[pos.BatchItem | KopilkaError] = []
    units: dict[str, int] = {}
    with read_only(engine) as conn:
        programs = _programs_of(conn, principal.tenant_id, body.items)
    for raw in body.items:
        item, program = _batch_item(raw, programs)
        parsed.append(item)
        if program is not None and isinstance(item, pos.BatchItem):
            units[item.check_id] = program.unit.exponent
    results = pos.upload_batch(
        engine,
        tenant_id=principal.tenant_id,
        terminal_id=_terminal_id(principal),
        items=parsed,
        actor=principal.actor,
    )
    out = [
        BatchItemOut(
            check_id=r.check_id,
            status=r.status,
            code=r.code,
            detail=r.detail,
            debt=format_amount(r.debt_minor, units.get(r.check_id, 0)) if r.debt_minor else None,
        )
        for r in results
    ]
    return BatchOut(
        applied=sum(r.status == "applied" for r in results),
        duplicates=sum(r.status == "duplicate" for r in results),
        refused=sum(r.status == "refused" for r in results),
        items=out,
    )
