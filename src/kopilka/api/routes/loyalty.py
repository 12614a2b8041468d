"""The loyalty back office (SPEC C-1..C-5): programs and tiers, cards, group operations,
manual documents, and the report of cards in debt.

Staff tokens only (terminals use ``/pos``). Owners and administrators manage; cashiers
and front desk may look cards up. Percentages are decimal strings of per cent ("5.00"
is 5 %, two decimals at most), as the POS gateway shows them; money is a decimal string
in the program's currency, points in its point unit. Cards are addressed by their
number in paths; lists give their ids too, for group operations.

A manual document is idempotent by its ``document_id``: the same document again answers
200 with ``Idempotent-Replayed: true`` and changes nothing; the same id with other
content is 409 ``document_conflict``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Connection, Engine, select

from kopilka.api.deps import (
    MAX_ID,
    EngineDep,
    ManagerPrincipal,
    PageDep,
    Principal,
    encode_cursor,
    require_roles,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER
from kopilka.api.schemas import Moment
from kopilka.core.clock import utcnow
from kopilka.core.db import one_of, read_only
from kopilka.core.errors import InvalidInput, KopilkaError, NotFound
from kopilka.core.money import currency_exponent, format_amount, parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.ledger.schema import units
from kopilka.loyalty import cards as card_ops
from kopilka.loyalty import documents as docs
from kopilka.loyalty.card_filters import CardFilter, find_cards, selected_ids
from kopilka.loyalty.cards import LISTED, CardView, chunk_size, find_card, normalise_number
from kopilka.loyalty.program_admin import MAX_DAYS, check_rules, update_program
from kopilka.loyalty.programs import LoyaltyErrorCode as E
from kopilka.loyalty.programs import (
    Program,
    Tier,
    add_tier,
    create_program,
    get_program,
    list_programs,
    rates,
)
from kopilka.loyalty.schema import cards, loyalty_programs
from kopilka.tenancy.actions import get_tenant

router = APIRouter(prefix=f"{API_PREFIX}/loyalty", tags=["loyalty"])
StaffPrincipal = Annotated[
    Principal, Depends(require_roles("owner", "administrator", "cashier", "front_desk"))
]
ProgramId = Annotated[int, Path(ge=1, le=MAX_ID)]
CardNumber = Annotated[str, Path(min_length=1, max_length=64, description="the card's number")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
CardStatus = Literal["active", "blocked", "expired"]
MAX_SELECTED_IDS = 100_000

Percent = Annotated[
    str,
    Field(min_length=1, max_length=12, description='per cent, e.g. "5.00"', examples=["5.00"]),
]
Money = Annotated[
    str,
    Field(
        min_length=1, max_length=40, description="in the program's currency", examples=["500.00"]
    ),
]
Days = Annotated[int, Field(description=f"days, up to {MAX_DAYS}")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _percent(bp: int) -> str:
    return format_amount(bp, 2)


def _bp(text: str, what: str, code: E) -> int:
    """Basis points from per cent text ("5.5" is 550); a bad one is ``code``."""
    try:
        return parse_amount(text, 2)
    except KopilkaError as error:
        raise InvalidInput(code, f"{what}: {error.detail}") from error


def _replayed(response: Response) -> None:
    response.headers[REPLAYED_HEADER] = "true"
    response.status_code = status.HTTP_200_OK


# --------------------------------------------------------------------------- programs


class TierOut(BaseModel):
    id: int
    name: str
    threshold: str = Field(description="accumulation from which the tier applies, in currency")
    discount_percent: str
    accrual_percent: str


class ProgramOut(BaseModel):
    id: int
    name: str
    unit: str
    currency: str
    enabled: bool
    accrual_percent: str
    exclude_points_part: bool
    activation_delay_days: int
    lifetime_days: int | None = Field(description="null: points never expire")
    max_share_percent: str
    min_check: str
    accumulation_window_days: int | None = Field(description="null: all purchases count")
    tiers: list[TierOut]


class ProgramList(BaseModel):
    items: list[ProgramOut]


def tier_out(tier: Tier, program: Program) -> TierOut:
    return TierOut(
        id=tier.id,
        name=tier.name,
        threshold=format_amount(tier.threshold_minor, program.currency_exponent),
        discount_percent=_percent(tier.discount_bp),
        accrual_percent=_percent(tier.accrual_bp),
    )


def program_out(program: Program) -> ProgramOut:
    return ProgramOut(
        id=program.id,
        name=program.name,
        unit=program.unit.code,
        currency=program.currency,
        enabled=program.enabled,
        accrual_percent=_percent(program.accrual_bp),
        exclude_points_part=program.exclude_points_part,
        activation_delay_days=program.activation_delay_days,
        lifetime_days=program.lifetime_days,
        max_share_percent=_percent(program.max_share_bp),
        min_check=format_amount(program.min_check_minor, program.currency_exponent),
        accumulation_window_days=program.accumulation_window_days,
        tiers=[tier_out(t, program) for t in program.tiers],
    )


class ProgramIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    unit: str = Field(min_length=2, max_length=16, description="a point unit of the tenant")
    currency: str | None = Field(
        default=None, min_length=3, max_length=3, description="default: the tenant's"
    )
    accrual_percent: Percent = "0"
    exclude_points_part: bool = Field(
        default=True, description="accrue on the part paid in money only"
    )
    activation_delay_days: Days = 0
    lifetime_days: Days | None = None
    max_share_percent: Percent = "100"
    min_check: Money = "0"
    accumulation_window_days: Days | None = None


@router.get("/programs", responses=problem_responses(401, 403, 503))
def programs_list(principal: StaffPrincipal, engine: EngineDep) -> ProgramList:
    """The tenant's programs by name, each with its tiers."""
    with read_only(engine) as conn:
        return ProgramList(items=[program_out(p) for p in list_programs(conn, principal.tenant_id)])


@router.post(
    "/programs",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def program_create(body: ProgramIn, principal: ManagerPrincipal, engine: EngineDep) -> ProgramOut:
    """SPEC C-4: a program accruing and spending points of a point unit, with its rules."""

    def work(conn: Connection) -> Program:
        currency = body.currency
        if currency is None:
            currency = get_tenant(conn, principal.tenant_id).currency
        currency = currency.strip().upper()
        min_check = _money(body.min_check, currency, "the minimum check", E.INVALID_PROGRAM)
        rules: dict[str, Any] = {
            "accrual_bp": _bp(body.accrual_percent, "the accrual rate", E.INVALID_PROGRAM),
            "exclude_points_part": body.exclude_points_part,
            "activation_delay_days": body.activation_delay_days,
            "lifetime_days": body.lifetime_days,
            "max_share_bp": _bp(body.max_share_percent, "the maximum share", E.INVALID_PROGRAM),
            "min_check_minor": min_check,
            "accumulation_window_days": body.accumulation_window_days,
        }
        check_rules(**rules)
        return create_program(
            conn,
            tenant_id=principal.tenant_id,
            name=body.name,
            unit_code=body.unit,
            currency=currency,
            actor=principal.actor,
            **rules,
        )

    return program_out(run_transaction(engine, work))


def _money(text: str, currency: str, what: str, code: E) -> int:
    exponent = currency_exponent(currency)
    try:
        return parse_amount(text, exponent, unit_code=currency)
    except KopilkaError as error:
        raise InvalidInput(code, f"{what}: {error.detail}") from error


@router.get("/programs/{program_id}", responses=problem_responses(401, 403, 404, 422, 503))
def program_read(program_id: ProgramId, principal: StaffPrincipal, engine: EngineDep) -> ProgramOut:
    with read_only(engine) as conn:
        return program_out(get_program(conn, principal.tenant_id, program_id))


class ProgramPatch(Strict):
    """Only the fields sent change; ``null`` clears the two that may be empty."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = Field(default=None, description="false: the POS refuses the cards")
    accrual_percent: Percent | None = None
    exclude_points_part: bool | None = None
    activation_delay_days: Days | None = None
    lifetime_days: Days | None = Field(default=None, description="null: points never expire")
    max_share_percent: Percent | None = None
    min_check: Money | None = None
    accumulation_window_days: Days | None = Field(
        default=None, description="null: all purchases count"
    )


_NULLABLE = frozenset({"lifetime_days", "accumulation_window_days"})


@router.patch("/programs/{program_id}", responses=problem_responses(401, 403, 404, 409, 422, 503))
def program_update(
    program_id: ProgramId, body: ProgramPatch, principal: ManagerPrincipal, engine: EngineDep
) -> ProgramOut:
    """Change a program's name, switch or rules (its unit and currency stay). Applies from
    now on; cards move to the tiers the new rules give at the next nightly routine."""
    sent = body.model_fields_set
    for field in sorted(sent - _NULLABLE):
        if getattr(body, field) is None:
            raise InvalidInput(E.INVALID_PROGRAM, f"{field} may not be null")

    def work(conn: Connection) -> Program:
        program = get_program(conn, principal.tenant_id, program_id)
        changes: dict[str, Any] = {
            field: getattr(body, field)
            for field in (
                "name",
                "enabled",
                "exclude_points_part",
                "activation_delay_days",
                "lifetime_days",
                "accumulation_window_days",
            )
            if field in sent
        }
        if "accrual_percent" in sent and body.accrual_percent is not None:
            changes["accrual_bp"] = _bp(body.accrual_percent, "the accrual rate", E.INVALID_PROGRAM)
        if "max_share_percent" in sent and body.max_share_percent is not None:
            changes["max_share_bp"] = _bp(
                body.max_share_percent, "the maximum share", E.INVALID_PROGRAM
            )
        if "min_check" in sent and body.min_check is not None:
            changes["min_check_minor"] = _money(
                body.min_check, program.currency, "the minimum check", E.INVALID_PROGRAM
            )
        return update_program(
            conn,
            tenant_id=principal.tenant_id,
            program_id=program.id,
            actor=principal.actor,
            **changes,
        )

    return program_out(run_transaction(engine, work))


class TierIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    threshold: Money = Field(description="accumulation from which the tier applies")
    discount_percent: Percent = "0"
    accrual_percent: Percent = Field(description="the accrual rate on this tier")


@router.post(
    "/programs/{program_id}/tiers",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def tier_create(
    program_id: ProgramId, body: TierIn, principal: ManagerPrincipal, engine: EngineDep
) -> TierOut:
    """SPEC C-3: a tier reached from an accumulation threshold, with its discount and its
    accrual rate. Cards reach it at the POS at once, and in lists after the nightly run."""

    def work(conn: Connection) -> tuple[Tier, Program]:
        program = get_program(conn, principal.tenant_id, program_id)
        tier = add_tier(
            conn,
            tenant_id=principal.tenant_id,
            program_id=program.id,
            name=body.name,
            threshold_minor=_money(
                body.threshold, program.currency, "the threshold", E.INVALID_TIER
            ),
            discount_bp=_bp(body.discount_percent, "the discount", E.INVALID_TIER),
            accrual_bp=_bp(body.accrual_percent, "the accrual rate", E.INVALID_TIER),
            actor=principal.actor,
        )
        return tier, program

    tier, program = run_transaction(engine, work)
    return tier_out(tier, program)


# --------------------------------------------------------------------------- cards


class StaffCardOut(BaseModel):
    id: int
    number: str
    status: str = Field(description="active, blocked or expired (past its date counts)")
    blocked_reason: str | None
    holder_name: str | None
    holder_phone: str | None
    holder_email: str | None
    program_id: int
    program: str
    tier_id: int | None = Field(description="the tier the card's accumulation reaches now")
    tier: str | None
    discount_percent: str
    accrual_percent: str
    unit: str
    balance: str = Field(description="points on the card, in the program's point unit")
    held: str
    available: str = Field(description="points the card may spend now")
    accumulation: str = Field(description="purchases counted for the tier, in the currency")
    currency: str
    checks_count: int
    debt: str
    issued_at: datetime
    expires_at: datetime | None


class StaffCardList(BaseModel):
    items: list[StaffCardOut]
    next_cursor: str | None


def staff_card_out(card: CardView, program: Program, now: datetime) -> StaffCardOut:
    tier, discount_bp, accrual_bp = rates(program, card.accumulation_minor)
    unit = program.unit.exponent
    shown = "expired" if card.status == "active" and card.is_expired(now) else card.status
    return StaffCardOut(
        id=card.id,
        number=card.number,
        status=shown,
        blocked_reason=card.blocked_reason,
        holder_name=card.holder_name,
        holder_phone=card.holder_phone,
        holder_email=card.holder_email,
        program_id=program.id,
        program=program.name,
        tier_id=tier.id if tier else None,
        tier=tier.name if tier else None,
        discount_percent=_percent(discount_bp),
        accrual_percent=_percent(accrual_bp),
        unit=program.unit.code,
        balance=format_amount(card.balance_minor, unit),
        held=format_amount(card.held_minor, unit),
        available=format_amount(card.available_minor, unit),
        accumulation=format_amount(card.accumulation_minor, program.currency_exponent),
        currency=program.currency,
        checks_count=card.checks_count,
        debt=format_amount(card.debt_minor, unit),
        issued_at=card.issued_at,
        expires_at=card.expires_at,
    )


def _card_out(conn: Connection, card: CardView) -> StaffCardOut:
    return staff_card_out(card, get_program(conn, card.tenant_id, card.program_id), utcnow())


class CardIn(Strict):
    program_id: Id
    number: str = Field(min_length=1, max_length=64)
    holder_name: str | None = Field(default=None, max_length=200)
    holder_phone: str | None = Field(default=None, max_length=32)
    holder_email: str | None = Field(default=None, max_length=200)
    expires_at: Moment | None = None


@router.post(
    "/cards",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def card_issue(body: CardIn, principal: ManagerPrincipal, engine: EngineDep) -> StaffCardOut:
    """SPEC C-1: one card with its holder (optional) and expiry (optional)."""

    def work(conn: Connection) -> StaffCardOut:
        card = card_ops.issue_card(
            conn,
            tenant_id=principal.tenant_id,
            program_id=body.program_id,
            number=body.number,
            holder_name=body.holder_name,
            holder_phone=body.holder_phone,
            holder_email=body.holder_email,
            expires_at=body.expires_at,
            actor=principal.actor,
        )
        return _card_out(conn, card)

    return run_transaction(engine, work)


class RangeIn(Strict):
    program_id: Id
    prefix: str = Field(default="", max_length=31, description="digits before the serial")
    first: int = Field(ge=0, le=10**30)
    last: int = Field(ge=0, le=10**30)
    check_digit: bool = Field(default=False, description="append a Luhn check digit")
    width: int | None = Field(
        default=None, ge=1, le=32, description="serial digits (zero-padded); default: those of last"
    )
    expires_at: Moment | None = None


class RangeOut(BaseModel):
    count: int
    first_number: str
    last_number: str
    first_id: int
    last_id: int


@router.post(
    "/cards/range",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def card_range(body: RangeIn, principal: ManagerPrincipal, engine: EngineDep) -> RangeOut:
    """SPEC C-2: issue the cards first..last at once (up to 100,000). All or nothing: if
    any number exists already, nothing is issued (409 ``card_exists`` names them)."""

    def work(conn: Connection) -> RangeOut:
        ids = card_ops.issue_range(
            conn,
            tenant_id=principal.tenant_id,
            program_id=body.program_id,
            prefix=body.prefix,
            first=body.first,
            last=body.last,
            check_digit=body.check_digit,
            width=body.width,
            expires_at=body.expires_at,
            actor=principal.actor,
        )
        numbers = dict(
            conn.execute(
                select(cards.c.id, cards.c.number).where(
                    one_of(conn, cards.c.id, [ids[0], ids[-1]])
                )
            ).all()
        )
        return RangeOut(
            count=len(ids),
            first_number=numbers[ids[0]],
            last_number=numbers[ids[-1]],
            first_id=ids[0],
            last_id=ids[-1],
        )

    return run_transaction(engine, work)


@router.get("/cards", responses=problem_responses(401, 403, 404, 422, 503))
def cards_list(
    principal: StaffPrincipal,
    engine: EngineDep,
    page: PageDep,
    number: Annotated[str | None, Query(max_length=64, description="number prefix")] = None,
    phone: Annotated[
        str | None, Query(max_length=32, description="a phone, or a part of one (its last digits)")
    ] = None,
    name: Annotated[
        str | None, Query(max_length=100, description="a part of the holder's name")
    ] = None,
    program_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: CardStatus | None = None,
    tier_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> StaffCardList:
    """Cards in issue order, searched and filtered (conditions combine)."""
    wanted = CardFilter(number, phone, name, program_id, status, tier_id)
    now = utcnow()
    with read_only(engine) as conn:
        found = find_cards(
            conn,
            principal.tenant_id,
            wanted,
            after_id=page.after_id or 0,
            limit=page.limit + 1,
            now=now,
        )
        more = len(found) > page.limit
        found = found[: page.limit]
        programs = {
            program_id: get_program(conn, principal.tenant_id, program_id)
            for program_id in sorted({card.program_id for card in found})
        }
    return StaffCardList(
        items=[staff_card_out(card, programs[card.program_id], now) for card in found],
        next_cursor=encode_cursor(found[-1].id) if more else None,
    )


@router.get("/cards/{number}", responses=problem_responses(401, 403, 404, 422, 503))
def card_read(number: CardNumber, principal: StaffPrincipal, engine: EngineDep) -> StaffCardOut:
    """A card by its number: holder, status, tier, balances, accumulation."""
    with read_only(engine) as conn:
        return _card_out(conn, find_card(conn, principal.tenant_id, number=number))


class HolderPatch(Strict):
    """Only the fields sent change; ``null`` or ``""`` clears one."""

    holder_name: str | None = Field(default=None, max_length=200)
    holder_phone: str | None = Field(default=None, max_length=32)
    holder_email: str | None = Field(default=None, max_length=200)


@router.patch("/cards/{number}", responses=problem_responses(401, 403, 404, 422, 503))
def card_update_holder(
    number: CardNumber, body: HolderPatch, principal: ManagerPrincipal, engine: EngineDep
) -> StaffCardOut:
    """Change the card's holder: name, phone, e-mail."""

    def work(conn: Connection) -> StaffCardOut:
        card = find_card(conn, principal.tenant_id, number=number)
        sent = body.model_fields_set
        updated = card_ops.update_holder(
            conn,
            tenant_id=principal.tenant_id,
            card_id=card.id,
            name=body.holder_name if "holder_name" in sent else card.holder_name,
            phone=body.holder_phone if "holder_phone" in sent else card.holder_phone,
            email=body.holder_email if "holder_email" in sent else card.holder_email,
            actor=principal.actor,
        )
        return _card_out(conn, updated)

    return run_transaction(engine, work)


# --------------------------------------------------------------------------- group operations


class FilterIn(Strict):
    number: str | None = Field(default=None, max_length=64, description="number prefix")
    phone: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=100)
    program_id: Id | None = None
    status: CardStatus | None = None
    tier_id: Id | None = None

    def card_filter(self) -> CardFilter:
        return CardFilter(
            self.number, self.phone, self.name, self.program_id, self.status, self.tier_id
        )


class SelectionIn(Strict):
    """The cards to act on: ``card_ids``, or ``filter`` (as for ``GET /loyalty/cards``,
    at least one condition; up to 100,000 cards)."""

    card_ids: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_SELECTED_IDS)
    filter: FilterIn | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        if (self.card_ids is None) == (self.filter is None):
            raise ValueError("select the cards by card_ids or by filter (one of them)")
        return self


class BlockIn(SelectionIn):
    reason: str = Field(max_length=1000)


class ChangeProgramIn(SelectionIn):
    program_id: Id


class SetExpiryIn(SelectionIn):
    expires_at: Moment | None = Field(description="null: the cards never expire")


class GroupOut(BaseModel):
    selected: int = Field(description="cards in the selection")
    changed: int = Field(description="cards the operation changed (or deleted)")


def _group(
    engine: Engine, principal: Principal, body: SelectionIn, act: Callable[..., int]
) -> GroupOut:
    """Resolve the selection and run ``act`` on it, in one transaction."""

    def work(conn: Connection) -> GroupOut:
        if body.card_ids is not None:
            ids = list(body.card_ids)
        else:
            assert body.filter is not None
            ids = selected_ids(conn, principal.tenant_id, body.filter.card_filter())
        changed = act(conn, tenant_id=principal.tenant_id, card_ids=ids, actor=principal.actor)
        assert 0 <= changed <= len(set(ids))
        return GroupOut(selected=len(set(ids)), changed=changed)

    return run_transaction(engine, work)


_GROUP = problem_responses(401, 403, 404, 422, 503)


@router.post("/cards/group/block", responses=_GROUP)
def cards_block(body: BlockIn, principal: ManagerPrincipal, engine: EngineDep) -> GroupOut:
    """SPEC C-2: block the selected cards with a reason (the POS refuses them)."""

    def act(conn: Connection, **common: Any) -> int:
        return card_ops.block_cards(conn, reason=body.reason, **common)

    return _group(engine, principal, body, act)


@router.post("/cards/group/unblock", responses=_GROUP)
def cards_unblock(body: SelectionIn, principal: ManagerPrincipal, engine: EngineDep) -> GroupOut:
    """Unblock the selected blocked cards (expired ones, if past their date)."""
    return _group(engine, principal, body, card_ops.unblock_cards)


@router.post("/cards/group/change-program", responses=_GROUP)
def cards_change_program(
    body: ChangeProgramIn, principal: ManagerPrincipal, engine: EngineDep
) -> GroupOut:
    """Move the selected cards to another program of the same point unit."""

    def act(conn: Connection, **common: Any) -> int:
        return card_ops.change_program(conn, program_id=body.program_id, **common)

    return _group(engine, principal, body, act)


@router.post("/cards/group/set-expiry", responses=_GROUP)
def cards_set_expiry(body: SetExpiryIn, principal: ManagerPrincipal, engine: EngineDep) -> GroupOut:
    """Set the selected cards' expiry: a date passed expires active cards, a date ahead
    (or none) makes expired ones active again; blocked cards stay blocked."""

    def act(conn: Connection, **common: Any) -> int:
        return card_ops.set_expiry(conn, expires_at=body.expires_at, **common)

    return _group(engine, principal, body, act)


@router.post("/cards/group/delete-unused", responses=_GROUP)
def cards_delete_unused(
    body: SelectionIn, principal: ManagerPrincipal, engine: EngineDep
) -> GroupOut:
    """Delete the selected cards that were never used (no points, holds or checks ever);
    the others are left as they are."""
    return _group(engine, principal, body, card_ops.delete_unused)


# --------------------------------------------------------------------------- documents


class DocumentIn(Strict):
    document_id: str = Field(
        min_length=1, max_length=docs.MAX_DOCUMENT_ID, description="your id: makes it idempotent"
    )
    cards: list[str] = Field(
        min_length=1, max_length=docs.MAX_CARDS, description="card numbers, each once"
    )
    amount: str = Field(
        min_length=1, max_length=40, description="points to (or from) each card, in the point unit"
    )
    reason: str = Field(max_length=2000)
    unit: str | None = Field(
        default=None, max_length=16, description="if given, must be the cards' point unit"
    )


class AccrualIn(DocumentIn):
    lifetime_days: Days | None = Field(
        default=None,
        description="the points' lifetime from when spendable; null: never expire; "
        "absent: each card's program's",
    )


class DocumentOut(BaseModel):
    document_id: str
    kind: str = Field(description="manual_accrual or manual_write_off")
    unit: str
    amount: str = Field(description="to or from each card")
    total: str
    count: int
    reason: str
    cards: list[str]
    transfer_ids: list[int] = Field(description="one ledger transfer per card, as cards")
    posted_at: datetime


def _point_unit(conn: Connection, tenant_id: int, numbers: list[str]) -> tuple[str, int]:
    """The point unit (code, exponent) of the document's cards, to read its amount in;
    a document of cards in several units is refused later, by the document itself."""
    wanted = [normalise_number(n) for n in numbers]
    size = chunk_size(conn)
    for start in range(0, len(wanted), size):
        row = conn.execute(
            select(units.c.code, units.c.exponent)
            .select_from(cards)
            .join(loyalty_programs, loyalty_programs.c.id == cards.c.program_id)
            .join(units, units.c.id == loyalty_programs.c.unit_id)
            .where(
                cards.c.tenant_id == tenant_id,
                one_of(conn, cards.c.number, wanted[start : start + size]),
            )
            .limit(1)
        ).first()
        if row is not None:
            return row.code, row.exponent
    raise NotFound(
        E.CARD_NOT_FOUND,
        f"no such cards: {card_ops.listing(wanted)}; nothing was changed",
        card_numbers=wanted[:LISTED],
        count=len(wanted),
    )


def _document(
    engine: Engine,
    principal: Principal,
    body: DocumentIn,
    response: Response,
    post: Callable[..., docs.Document],
) -> DocumentOut:
    def work(conn: Connection) -> tuple[docs.Document, int]:
        unit, exponent = _point_unit(conn, principal.tenant_id, body.cards)
        if body.unit is not None and body.unit.strip().upper() != unit:
            raise InvalidInput(
                E.INVALID_DOCUMENT, f"the cards keep points in {unit}, not {body.unit}", unit=unit
            )
        amount = parse_amount(body.amount, exponent, unit_code=unit)
        document = post(
            conn,
            tenant_id=principal.tenant_id,
            card_numbers=body.cards,
            amount_minor=amount,
            reason=body.reason,
            document_id=body.document_id,
            actor=principal.actor,
        )
        return document, exponent

    document, exponent = run_transaction(engine, work)
    if document.replayed:
        _replayed(response)
    return DocumentOut(
        document_id=document.document_id,
        kind=document.kind,
        unit=document.unit_code,
        amount=format_amount(document.amount_minor, exponent),
        total=format_amount(document.total_minor, exponent),
        count=document.count,
        reason=document.reason,
        cards=list(document.card_numbers),
        transfer_ids=list(document.transfer_ids),
        posted_at=document.posted_at,
    )


_DOCUMENT = problem_responses(401, 403, 404, 409, 422, 503)


@router.post("/documents/accruals", status_code=status.HTTP_201_CREATED, responses=_DOCUMENT)
def document_accrual(
    body: AccrualIn, principal: ManagerPrincipal, engine: EngineDep, response: Response
) -> DocumentOut:
    """SPEC C-5: accrue the same points to each card, with a reason; all cards or none.
    The points are a lot dated by each card's program unless ``lifetime_days`` is sent."""
    lifetime: docs.Lifetime = docs.PROGRAM_DEFAULT
    if "lifetime_days" in body.model_fields_set:
        lifetime = body.lifetime_days
        if lifetime is not None and lifetime > MAX_DAYS:
            raise InvalidInput(E.INVALID_DOCUMENT, f"points live at most {MAX_DAYS} days")

    def post(conn: Connection, **document: Any) -> docs.Document:
        return docs.accrue_points(conn, lifetime_days=lifetime, **document)

    return _document(engine, principal, body, response, post)


@router.post("/documents/write-offs", status_code=status.HTTP_201_CREATED, responses=_DOCUMENT)
def document_write_off(
    body: DocumentIn, principal: ManagerPrincipal, engine: EngineDep, response: Response
) -> DocumentOut:
    """SPEC C-5: write the same points off each card, with a reason; refused as a whole
    (``insufficient_points``) if any card may not spend that much now."""
    return _document(engine, principal, body, response, docs.write_off_points)


# --------------------------------------------------------------------------- debts


class CardDebtOut(BaseModel):
    card: str
    holder_name: str | None
    holder_phone: str | None
    program: str
    debt: str
    unit: str


class CardDebtList(BaseModel):
    items: list[CardDebtOut]
    next_cursor: str | None


@router.get("/debts", responses=problem_responses(401, 403, 422, 503))
def card_debts(principal: ManagerPrincipal, engine: EngineDep, page: PageDep) -> CardDebtList:
    """Cards that owe points (SPEC P-6): points offline checks took that the card no
    longer had, and accruals a refund could not take back. By card, in issue order."""
    query = (
        select(
            cards.c.id,
            cards.c.number,
            cards.c.holder_name,
            cards.c.holder_phone,
            cards.c.debt_minor,
            loyalty_programs.c.name.label("program"),
            units.c.code.label("unit"),
            units.c.exponent,
        )
        .join(loyalty_programs, loyalty_programs.c.id == cards.c.program_id)
        .join(units, units.c.id == loyalty_programs.c.unit_id)
        .where(cards.c.tenant_id == principal.tenant_id, cards.c.debt_minor > 0)
        .order_by(cards.c.id)
        .limit(page.limit + 1)
    )
    if page.after_id is not None:
        query = query.where(cards.c.id > page.after_id)
    with read_only(engine) as conn:
        rows = conn.execute(query).all()
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return CardDebtList(
        items=[
            CardDebtOut(
                card=r.number,
                holder_name=r.holder_name,
                holder_phone=r.holder_phone,
                program=r.program,
                debt=format_amount(r.debt_minor, r.exponent),
                unit=r.unit,
            )
            for r in rows
        ],
        next_cursor=encode_cursor(rows[-1].id) if more and rows else None,
    )
