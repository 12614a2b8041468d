"""The processing API (SPEC H-5): other systems pay with a card's points, and the tenant
chooses where its own folios' points live.

``router`` (``/api/v1/processing``) is for terminal keys, like the POS gateway, and is
refused while the tenant's loyalty module is off (``loyalty_module_disabled``, SPEC P-9).
It is what a hotel (this server's own ``ExternalCentreProvider``, or any PMS) calls to
use this server as its loyalty processing centre:

* ``GET /cards/{number}``: holder, status and what the card may spend now, per unit;
* ``POST /redemptions`` with an ``Idempotency-Key``: write points off the card, all or
  nothing; the key names the operation within the terminal (the channel
  ``terminal:<id>``): the same key and body again answer as the first time (200,
  ``Idempotent-Replayed: true``), another body is 409 ``idempotency_conflict``, and
  once points of it were given back, 409 ``redemption_refunded``;
* ``GET /redemptions/{ref}``: a write-off or refund of this terminal;
* ``POST /redemptions/{ref}/refunds`` with an ``Idempotency-Key``: give points back,
  never more than the write-off took (422 ``refund_too_large``);
* ``GET /units``: the point units the tenant keeps (what "test connection" asks).

Amounts are decimal strings in the unit named next to them (``exponent`` says how many
decimals it has). ``ref`` is the decimal id of a write-off or refund.

``centre_router`` (``/api/v1/loyalty-centre``) is for owners and administrators: read,
set, clear and test the tenant's external centre (``kopilka.hotel.loyalty_centre``).
The centre's key is write-only: replies show only ``key_hint``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from kopilka.api.deps import (
    EngineDep,
    IdempotencyKey,
    ManagerPrincipal,
    Principal,
    require_loyalty_enabled,
    require_roles,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.core.money import UnitKind, format_amount, parse_amount
from kopilka.hotel import loyalty_centre as lc
from kopilka.hotel.loyalty_provider import CardBalances, external_provider
from kopilka.ledger.accounts import get_unit, list_units
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import redemptions as rd
from kopilka.loyalty.programs import LoyaltyErrorCode

router = APIRouter(
    prefix=f"{API_PREFIX}/processing",
    tags=["processing"],
    dependencies=[Depends(require_loyalty_enabled)],
)
centre_router = APIRouter(prefix=f"{API_PREFIX}/loyalty-centre", tags=["loyalty centre"])

TerminalPrincipal = Annotated[Principal, Depends(require_roles("terminal"))]
Number = Annotated[str, Path(min_length=1, max_length=64, description="the card's number")]
Ref = Annotated[str, Path(min_length=1, max_length=40, description="a write-off's ref")]
Amount = Annotated[str, Field(min_length=1, max_length=40, examples=["1500.00"])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BalanceOut(Strict):
    unit: str
    exponent: int = Field(description="decimals of the unit")
    balance: str = Field(description="what the card may spend now (active, not held)")


class CardOut(Strict):
    number: str
    holder: str | None
    status: str = Field(description="active, blocked or expired; only an active card pays")
    balances: list[BalanceOut]


class RedeemIn(Strict):
    card: str = Field(min_length=1, max_length=64, description="the card's number")
    unit: str = Field(min_length=1, max_length=16, examples=["BONUS"])
    amount: Amount = Field(description="points to write off, in the unit")
    description: str = Field(
        default="", max_length=rd.MAX_DESCRIPTION, description="what was paid, for the history"
    )


class RefundIn(Strict):
    amount: Amount | None = Field(
        default=None, description="points to give back; none: all not given back yet"
    )


class RedemptionOut(Strict):
    ref: str
    kind: Literal["redeem", "refund"]
    redemption: str | None = Field(description="of a refund: the write-off it gives back to")
    card: str
    unit: str
    exponent: int
    amount: str
    refunded: str = Field(description="of a write-off: points given back so far")
    description: str
    operation_id: str = Field(description="the Idempotency-Key it was made with")
    created_at: datetime


class UnitOut(Strict):
    unit: str
    exponent: int
    name: str


class UnitsOut(Strict):
    units: list[UnitOut]


def redemption_out(r: rd.Redemption) -> RedemptionOut:
    return RedemptionOut(
        ref=r.ref,
        kind="refund" if r.kind == rd.REFUND else "redeem",
        redemption=None if r.parent_id is None else str(r.parent_id),
        card=r.card_number,
        unit=r.unit_code,
        exponent=r.exponent,
        amount=r.fmt(r.amount_minor),
        refunded=r.fmt(r.refunded_minor),
        description=r.description,
        operation_id=r.operation_id,
        created_at=r.created_at,
    )


def _channel(principal: Principal) -> str:
    assert principal.actor.id is not None
    return rd.terminal_channel(int(principal.actor.id))


def _replied(response: Response, replayed: bool) -> None:
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
        response.status_code = status.HTTP_200_OK


@router.get("/cards/{number}", responses=problem_responses(401, 403, 404, 422, 503))
def card(number: Number, principal: TerminalPrincipal, engine: EngineDep) -> CardOut:
    """The card's holder, status and what it may spend now, per point unit
    (``card_not_found`` if there is none)."""
    with read_only(engine) as conn:
        return card_out(rd.card_balances(conn, principal.tenant_id, number))


@router.get("/units", responses=problem_responses(401, 403, 503))
def point_units(principal: TerminalPrincipal, engine: EngineDep) -> UnitsOut:
    """The tenant's point units: a cheap way to see the key and the module accepted."""
    with read_only(engine) as conn:
        found = list_units(conn, principal.tenant_id)
    return UnitsOut(
        units=[
            UnitOut(unit=u.code, exponent=u.exponent, name=u.name)
            for u in found
            if u.kind == UnitKind.POINTS
        ]
    )


@router.post(
    "/redemptions",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def redeem(
    body: RedeemIn,
    principal: TerminalPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> RedemptionOut:
    """Write ``amount`` points off the card, all or nothing. Refused (422) with
    ``card_blocked``, ``card_expired``, ``points_unit_mismatch``, ``loyalty_disabled``
    (the program is off) or ``insufficient_points``; then nothing is taken."""
    if len(key) > rd.MAX_OPERATION_ID:
        raise InvalidInput(
            LoyaltyErrorCode.INVALID_REDEMPTION,
            f"an Idempotency-Key here has at most {rd.MAX_OPERATION_ID} characters",
        )

    def work(conn: Connection) -> rd.Redemption:
        unit = get_unit(conn, principal.tenant_id, body.unit)
        return rd.redeem(
            conn,
            tenant_id=principal.tenant_id,
            number=body.card,
            unit_code=unit.code,
            amount_minor=parse_amount(
                body.amount, unit.exponent, unit_code=unit.code, positive=True
            ),
            channel=_channel(principal),
            operation_id=key,
            description=body.description,
            actor=principal.actor,
        )

    done = run_transaction(engine, work)
    _replied(response, done.replayed)
    return redemption_out(done)


@router.get("/redemptions/{ref}", responses=problem_responses(401, 403, 404, 422, 503))
def read_redemption(ref: Ref, principal: TerminalPrincipal, engine: EngineDep) -> RedemptionOut:
    """A write-off or refund this terminal made."""
    with read_only(engine) as conn:
        return redemption_out(
            rd.get_redemption(conn, principal.tenant_id, channel=_channel(principal), ref=ref)
        )


@router.post(
    "/redemptions/{ref}/refunds",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def refund(
    ref: Ref,
    principal: TerminalPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
    body: RefundIn | None = None,
) -> RedemptionOut:
    """Give points of this terminal's write-off back to the card: a part or all that is
    left, never more than it took (422 ``refund_too_large``)."""
    if len(key) > rd.MAX_OPERATION_ID:
        raise InvalidInput(
            LoyaltyErrorCode.INVALID_REDEMPTION,
            f"an Idempotency-Key here has at most {rd.MAX_OPERATION_ID} characters",
        )
    wanted = body.amount if body is not None else None

    def work(conn: Connection) -> rd.Redemption:
        channel = _channel(principal)
        parent = rd.get_redemption(conn, principal.tenant_id, channel=channel, ref=ref)
        amount = (
            None
            if wanted is None
            else parse_amount(wanted, parent.exponent, unit_code=parent.unit_code, positive=True)
        )
        return rd.refund_redemption(
            conn,
            tenant_id=principal.tenant_id,
            channel=channel,
            ref=ref,
            amount_minor=amount,
            operation_id=key,
            actor=principal.actor,
        )

    done = run_transaction(engine, work)
    _replied(response, done.replayed)
    return redemption_out(done)


# --------------------------------------------------------------------------- the centre


class CentreOut(Strict):
    mode: Literal["own", "external"] = Field(
        description="own: folios are paid with this server's cards; external: with the "
        "centre's (when it is switched on)"
    )
    base_url: str | None
    key_hint: str | None = Field(description="enough of the key to tell which it is")
    timeout_ms: int | None
    enabled: bool | None
    updated_at: datetime | None


class CentreIn(Strict):
    base_url: str = Field(min_length=1, max_length=lc.MAX_URL, examples=["https://centre.example"])
    api_key: str | None = Field(
        default=None,
        max_length=lc.MAX_KEY,
        description="the key presented to the centre (for a Kopilka centre: one of its "
        "terminal keys); none keeps the key set before",
    )
    timeout_ms: int = Field(default=lc.DEFAULT_TIMEOUT_MS)
    enabled: bool = True


class CheckIn(Strict):
    card: str | None = Field(
        default=None, max_length=64, description="a card to look up at the centre as well"
    )


class CheckOut(Strict):
    units: list[UnitOut]
    card: CardOut | None


def centre_out(view: lc.CentreView | None) -> CentreOut:
    if view is None:
        return CentreOut(
            mode="own", base_url=None, key_hint=None, timeout_ms=None, enabled=None, updated_at=None
        )
    return CentreOut(
        mode="external",
        base_url=view.base_url,
        key_hint=view.key_hint,
        timeout_ms=view.timeout_ms,
        enabled=view.enabled,
        updated_at=view.updated_at,
    )


def card_out(card: CardBalances | rd.CardPoints) -> CardOut:
    return CardOut(
        number=card.number,
        holder=card.holder,
        status=card.status,
        balances=[
            BalanceOut(
                unit=b.unit_code,
                exponent=b.exponent,
                balance=format_amount(b.balance_minor, b.exponent),
            )
            for b in card.balances
        ],
    )


@centre_router.get("", responses=problem_responses(401, 403, 503))
def read_centre(principal: ManagerPrincipal, engine: EngineDep) -> CentreOut:
    """Where the company's folios take their points from."""
    with read_only(engine) as conn:
        return centre_out(lc.centre_view(conn, principal.tenant_id))


@centre_router.put("", responses=problem_responses(401, 403, 422, 503))
def set_centre(body: CentreIn, principal: ManagerPrincipal, engine: EngineDep) -> CentreOut:
    """Pay folios with the points of an external centre (``invalid_centre_url``,
    ``invalid_centre_key``, ``invalid_centre_timeout`` when a field is wrong)."""
    return centre_out(
        run_transaction(
            engine,
            lambda conn: lc.set_centre(
                conn,
                tenant_id=principal.tenant_id,
                base_url=body.base_url,
                api_key=body.api_key,
                timeout_ms=body.timeout_ms,
                enabled=body.enabled,
                actor=principal.actor,
            ),
        )
    )


@centre_router.delete("", responses=problem_responses(401, 403, 503))
def clear_centre(principal: ManagerPrincipal, engine: EngineDep) -> CentreOut:
    """Back to the company's own cards; the centre's settings and key are forgotten."""
    run_transaction(
        engine,
        lambda conn: lc.clear_centre(conn, tenant_id=principal.tenant_id, actor=principal.actor),
    )
    return centre_out(None)


@centre_router.post("/check", responses=problem_responses(401, 403, 404, 422, 503))
def check_centre(
    principal: ManagerPrincipal, engine: EngineDep, body: CheckIn | None = None
) -> CheckOut:
    """Test the connection: ask the centre for its point units (and the card, if one is
    named). 404 ``loyalty_centre_not_set`` without a centre; 503
    ``loyalty_centre_unavailable`` when it does not answer or refuses the key."""
    with read_only(engine) as conn:
        centre = lc.get_centre(conn, principal.tenant_id)
        if centre is None:
            raise lc.centre_not_set()
        provider = external_provider(conn, centre)
    found = provider.check((body.card or None) if body is not None else None)
    return CheckOut(
        units=[UnitOut(unit=u.unit_code, exponent=u.exponent, name=u.name) for u in found.units],
        card=None if found.card is None else card_out(found.card),
    )
