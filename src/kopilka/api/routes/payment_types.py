"""Payment types (SPEC H-3) and the codes terminals send for them (SPEC P-8).

Two routers: ``router`` for staff (``/api/v1/payment-types``, ``/api/v1/payment-codes``;
every staff role reads, owners and administrators change) and ``pos_router`` for
terminals (``/api/v1/pos/payment-codes``: the codes that apply to the calling terminal).
Payment codes are not loyalty's: the terminals' router works whether the tenant's loyalty
module is on or off.

A points type's exchange rate is a decimal string (what one point is worth in the
folio's currency, at most 6 decimals, default ``"1"``); its share payable with points is
per cent as a decimal string (``"30.00"``, at most two decimals, default ``"0"``). The
kind and the unit of a type are fixed once it exists; the other fields change by PATCH.
An unknown code at the terminal is 422 ``unknown_payment_code`` (a bad value in the
request), a switched-off type 422 ``payment_type_disabled``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from kopilka.api.deps import MAX_ID, EngineDep, ManagerPrincipal, Principal, require_roles
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.core.db import read_only
from kopilka.core.errors import InvalidInput
from kopilka.ledger.posting import run_transaction
from kopilka.payments import codes as pc
from kopilka.payments import types as pt
from kopilka.payments.error_codes import PaymentErrorCode as E
from kopilka.tenancy.actions import get_terminal

router = APIRouter(prefix=API_PREFIX, tags=["payment types"])
pos_router = APIRouter(prefix=f"{API_PREFIX}/pos/payment-codes", tags=["pos"])

StaffPrincipal = Annotated[
    Principal, Depends(require_roles("owner", "administrator", "cashier", "front_desk"))
]
TerminalPrincipal = Annotated[Principal, Depends(require_roles("terminal"))]
PaymentTypeId = Annotated[int, Path(ge=1, le=MAX_ID)]
PaymentCodeId = Annotated[int, Path(ge=1, le=MAX_ID)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Rate = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        description="what one point is worth in the folio's currency, at most 6 decimals",
        examples=["1", "0.5"],
    ),
]
Percent = Annotated[
    str,
    Field(
        min_length=1,
        max_length=12,
        description="per cent of what the guest owes, 0 to 100, at most 2 decimals",
        examples=["30.00"],
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- types


class PaymentTypeOut(Strict):
    id: int
    name: str
    kind: pt.PaymentKind
    enabled: bool
    unit: str | None = Field(description="points types: the point unit they spend")
    exchange_rate: str | None = Field(
        description="points types: one point's worth in the folio's currency"
    )
    max_share_percent: str | None = Field(
        description="points types: at most this per cent of what the guest owes"
    )
    created_at: datetime


class PaymentTypeList(Strict):
    items: list[PaymentTypeOut]


def type_out(t: pt.PaymentType) -> PaymentTypeOut:
    return PaymentTypeOut(
        id=t.id,
        name=t.name,
        kind=t.kind,
        enabled=t.enabled,
        unit=None if t.unit is None else t.unit.code,
        exchange_rate=None if t.rate_micro is None else pt.format_rate(t.rate_micro),
        max_share_percent=None if t.max_share_bp is None else pt.format_percent(t.max_share_bp),
        created_at=t.created_at,
    )


class PaymentTypeIn(Strict):
    name: str = Field(min_length=1, max_length=pt.MAX_NAME)
    kind: pt.PaymentKind
    enabled: bool = True
    unit: str | None = Field(
        default=None, min_length=2, max_length=16, description="points types only, required"
    )
    exchange_rate: Rate | None = Field(default=None, description='points types only; "1"')
    max_share_percent: Percent | None = Field(default=None, description='points types only; "0"')


class PaymentTypePatch(Strict):
    """Only the fields sent change; none of them may be null."""

    name: str | None = Field(default=None, min_length=1, max_length=pt.MAX_NAME)
    enabled: bool | None = Field(default=None, description="false: refused wherever named")
    exchange_rate: Rate | None = None
    max_share_percent: Percent | None = None


@router.get("/payment-types", responses=problem_responses(401, 403, 503))
def payment_types_list(principal: StaffPrincipal, engine: EngineDep) -> PaymentTypeList:
    """The tenant's payment types by name, switched off ones too."""
    with read_only(engine) as conn:
        found = pt.list_payment_types(conn, principal.tenant_id)
    return PaymentTypeList(items=[type_out(t) for t in found])


@router.post(
    "/payment-types",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def payment_type_create(
    body: PaymentTypeIn, principal: ManagerPrincipal, engine: EngineDep
) -> PaymentTypeOut:
    """SPEC H-3: a payment type. A points type names its point unit (one type per unit)
    and may set its exchange rate and the share of what a guest owes it may pay."""
    share = None if body.max_share_percent is None else pt.parse_percent(body.max_share_percent)
    created = run_transaction(
        engine,
        lambda conn: pt.create_payment_type(
            conn,
            tenant_id=principal.tenant_id,
            name=body.name,
            kind=body.kind,
            enabled=body.enabled,
            unit_code=body.unit,
            exchange_rate=body.exchange_rate,
            max_share_bp=share,
            actor=principal.actor,
        ),
    )
    return type_out(created)


@router.get(
    "/payment-types/{payment_type_id:int}", responses=problem_responses(401, 403, 404, 422, 503)
)
def payment_type_read(
    payment_type_id: PaymentTypeId, principal: StaffPrincipal, engine: EngineDep
) -> PaymentTypeOut:
    with read_only(engine) as conn:
        return type_out(pt.get_payment_type(conn, principal.tenant_id, payment_type_id))


@router.patch(
    "/payment-types/{payment_type_id:int}",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def payment_type_update(
    payment_type_id: PaymentTypeId,
    body: PaymentTypePatch,
    principal: ManagerPrincipal,
    engine: EngineDep,
) -> PaymentTypeOut:
    """Rename a type, switch it on or off, or change a points type's rate and share."""
    sent = body.model_fields_set
    for field in sorted(sent):
        if getattr(body, field) is None:
            raise InvalidInput(E.INVALID_PAYMENT_TYPE, f"{field} may not be null")
    changes: dict[str, Any] = {f: getattr(body, f) for f in ("name", "enabled", "exchange_rate")}
    changes = {f: v for f, v in changes.items() if f in sent}
    if "max_share_percent" in sent and body.max_share_percent is not None:
        changes["max_share_bp"] = pt.parse_percent(body.max_share_percent)
    updated = run_transaction(
        engine,
        lambda conn: pt.update_payment_type(
            conn,
            tenant_id=principal.tenant_id,
            payment_type_id=payment_type_id,
            actor=principal.actor,
            **changes,
        ),
    )
    return type_out(updated)


# --------------------------------------------------------------------------- codes


class PaymentCodeOut(Strict):
    id: int
    code: str
    terminal_id: int | None = Field(description="null: every terminal of the tenant")
    payment_type_id: int
    payment_type: str = Field(description="the type's name")
    kind: pt.PaymentKind
    enabled: bool = Field(description="whether the type is switched on")
    created_at: datetime


class PaymentCodeList(Strict):
    items: list[PaymentCodeOut]


def code_out(c: pc.PaymentCode) -> PaymentCodeOut:
    return PaymentCodeOut(
        id=c.id,
        code=c.code,
        terminal_id=c.terminal_id,
        payment_type_id=c.payment_type.id,
        payment_type=c.payment_type.name,
        kind=c.payment_type.kind,
        enabled=c.payment_type.enabled,
        created_at=c.created_at,
    )


class PaymentCodeIn(Strict):
    code: str = Field(
        min_length=1,
        max_length=pc.MAX_CODE,
        description="what the POS sends, e.g. an r_keeper currency code; case does not matter",
        examples=["12", "ROOM"],
    )
    payment_type_id: Id
    terminal_id: Id | None = Field(
        default=None, description="this terminal only (its mapping wins); null: every terminal"
    )


@router.get("/payment-codes", responses=problem_responses(401, 403, 404, 422, 503))
def payment_codes_list(
    principal: StaffPrincipal,
    engine: EngineDep,
    terminal_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="the codes as this terminal sees them"),
    ] = None,
) -> PaymentCodeList:
    """Every mapping of the tenant by code; with ``terminal_id``, the codes that apply to
    that terminal (its own mapping of a code in place of the tenant-wide one)."""
    with read_only(engine) as conn:
        if terminal_id is not None:
            get_terminal(conn, principal.tenant_id, terminal_id)
        found = pc.list_payment_codes(conn, principal.tenant_id, terminal_id)
    return PaymentCodeList(items=[code_out(c) for c in found])


@router.post(
    "/payment-codes",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def payment_code_create(
    body: PaymentCodeIn, principal: ManagerPrincipal, engine: EngineDep
) -> PaymentCodeOut:
    """SPEC P-8: map a terminal's payment code to a payment type, for every terminal or for
    one. A code mapped already in that scope is 409 ``payment_code_exists``."""
    added = run_transaction(
        engine,
        lambda conn: pc.add_payment_code(
            conn,
            tenant_id=principal.tenant_id,
            code=body.code,
            payment_type_id=body.payment_type_id,
            terminal_id=body.terminal_id,
            actor=principal.actor,
        ),
    )
    return code_out(added)


@router.delete(
    "/payment-codes/{payment_code_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def payment_code_delete(
    payment_code_id: PaymentCodeId, principal: ManagerPrincipal, engine: EngineDep
) -> Response:
    """Remove a mapping; the payment type stays."""

    def work(conn: Connection) -> None:
        pc.remove_payment_code(
            conn,
            tenant_id=principal.tenant_id,
            payment_code_id=payment_code_id,
            actor=principal.actor,
        )

    run_transaction(engine, work)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------- terminals


class PosPaymentCodeOut(Strict):
    code: str
    scope: Literal["terminal", "tenant"] = Field(
        description="terminal: this terminal's own mapping; tenant: every terminal's"
    )
    payment_type_id: int
    payment_type: str = Field(description="the type's name")
    kind: pt.PaymentKind
    enabled: bool = Field(description="false: a payment by this code is refused")


class PosPaymentCodeList(Strict):
    items: list[PosPaymentCodeOut]


@pos_router.get("", responses=problem_responses(401, 403, 503))
def pos_payment_codes(principal: TerminalPrincipal, engine: EngineDep) -> PosPaymentCodeList:
    """The payment codes this terminal may send, each with the type it means."""
    assert principal.actor.id is not None
    terminal_id = int(principal.actor.id)
    with read_only(engine) as conn:
        found = pc.list_payment_codes(conn, principal.tenant_id, terminal_id)
    return PosPaymentCodeList(
        items=[
            PosPaymentCodeOut(
                code=c.code,
                scope="tenant" if c.terminal_id is None else "terminal",
                payment_type_id=c.payment_type.id,
                payment_type=c.payment_type.name,
                kind=c.payment_type.kind,
                enabled=c.payment_type.enabled,
            )
            for c in found
        ]
    )
