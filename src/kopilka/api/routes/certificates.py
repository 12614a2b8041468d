"""Gift certificates (SPEC C-9): staff issue, sell, look up, list, block them; terminals
check a balance, pay with a certificate and refund such payments.

Two routers: ``router`` for staff under ``/api/v1/certificates`` and ``pos_router`` for
terminals under ``/api/v1/pos/certificates``. Amounts are decimal strings in the tenant's
currency. A sale is idempotent by its ``Idempotency-Key``; a payment by (terminal,
``operation_id``) for a terminal, by its ``Idempotency-Key`` for staff; a refund by
(payment, ``refund_id``). A replay answers 200 with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from kopilka.api.deps import (
    EngineDep,
    IdempotencyKey,
    ManagerPrincipal,
    PageDep,
    Principal,
    encode_cursor,
    require_loyalty_enabled,
    require_roles,
)
from kopilka.api.problems import problem_responses
from kopilka.api.routes import API_PREFIX
from kopilka.api.routes.transfers import REPLAYED_HEADER
from kopilka.api.schemas import Moment
from kopilka.core.db import read_only
from kopilka.core.money import format_amount, parse_amount
from kopilka.ledger.posting import run_transaction
from kopilka.loyalty import certificates as gc

router = APIRouter(prefix=f"{API_PREFIX}/certificates", tags=["certificates"])
# Certificates go with the loyalty module: off, the terminals' requests are refused (P-9).
pos_router = APIRouter(
    prefix=f"{API_PREFIX}/pos/certificates",
    tags=["pos"],
    dependencies=[Depends(require_loyalty_enabled)],
)
# Who serves certificates at the desk: those who serve cards.
StaffPrincipal = Annotated[Principal, Depends(require_roles("owner", "administrator", "cashier"))]
TerminalPrincipal = Annotated[Principal, Depends(require_roles("terminal"))]
Number = Annotated[str, Path(min_length=1, max_length=64, description="the certificate's number")]
OperationId = Annotated[str, Path(min_length=1, max_length=gc.MAX_OPERATION_ID)]
Amount = Annotated[str, Field(min_length=1, max_length=40, examples=["3000.00"])]
ValidityDays = Annotated[int | None, Field(default=None, ge=1, le=gc.MAX_VALIDITY_DAYS)]
T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CertificateOut(Strict):
    number: str
    status: str = Field(description="issued (not sold), active, blocked or expired")
    blocked_reason: str | None
    currency: str
    nominal: str | None = Field(description="what it was sold for; none until sold")
    balance: str
    validity_days: int | None = Field(description="days it stays valid once sold")
    issued_at: datetime
    sold_at: datetime | None
    expires_at: datetime | None
    expired_at: datetime | None


def certificate_out(c: gc.CertificateView) -> CertificateOut:
    return CertificateOut(
        number=c.number,
        status=c.status,
        blocked_reason=c.blocked_reason,
        currency=c.currency,
        nominal=None if c.nominal_minor is None else c.fmt(c.nominal_minor),
        balance=c.fmt(c.balance_minor),
        validity_days=c.validity_days,
        issued_at=c.issued_at,
        sold_at=c.sold_at,
        expires_at=c.expires_at,
        expired_at=c.expired_at,
    )


class PaymentOut(Strict):
    operation_id: str
    certificate: str
    check_id: str | None
    amount: str
    refunded: str
    balance: str = Field(description="the certificate's balance right after the payment")
    currency: str
    created_at: datetime


def payment_out(p: gc.Payment) -> PaymentOut:
    return PaymentOut(
        operation_id=p.operation_id,
        certificate=p.certificate_number,
        check_id=p.check_id,
        amount=format_amount(p.amount_minor, p.exponent),
        refunded=format_amount(p.refunded_minor, p.exponent),
        balance=format_amount(p.balance_after_minor, p.exponent),
        currency=p.currency,
        created_at=p.created_at,
    )


class RefundIn(Strict):
    refund_id: str = Field(min_length=1, max_length=gc.MAX_OPERATION_ID)
    amount: Amount | None = Field(
        default=None, description="the part of the payment to give back; none: all that is left"
    )


class RefundOut(Strict):
    refund_id: str
    amount: str
    balance: str = Field(description="the certificate's balance right after the refund")
    payment: PaymentOut


def refund_out(r: gc.PaymentRefund) -> RefundOut:
    exponent = r.payment.exponent
    return RefundOut(
        refund_id=r.refund_id,
        amount=format_amount(r.amount_minor, exponent),
        balance=format_amount(r.balance_after_minor, exponent),
        payment=payment_out(r.payment),
    )


def _replied(response: Response, replayed: bool) -> None:
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
        response.status_code = status.HTTP_200_OK


def _amount(conn: Connection, tenant_id: int, number: str, text: str) -> int:
    """``text`` in the certificate's currency, as minor units."""
    certificate = gc.find_certificate(conn, tenant_id, number)
    return parse_amount(text, certificate.exponent, unit_code=certificate.currency, positive=True)


def _terminal_id(principal: Principal) -> int:
    assert principal.actor.id is not None
    return int(principal.actor.id)


def _write(engine: EngineDep, work: Callable[[Connection], T]) -> T:
    return run_transaction(engine, work)


# --------------------------------------------------------------------------- staff


class IssueIn(Strict):
    number: str = Field(min_length=1, max_length=64)
    validity_days: ValidityDays = None


@router.post(
    "", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403, 409, 422, 503)
)
def issue(body: IssueIn, principal: ManagerPrincipal, engine: EngineDep) -> CertificateOut:
    """A new certificate, not sold yet (nothing on it)."""
    return certificate_out(
        _write(
            engine,
            lambda conn: gc.issue_certificate(
                conn,
                tenant_id=principal.tenant_id,
                number=body.number,
                validity_days=body.validity_days,
                actor=principal.actor,
            ),
        )
    )


class RangeIn(Strict):
    prefix: str = Field(default="", max_length=30)
    first: int = Field(ge=0)
    last: int = Field(ge=0)
    check_digit: bool = False
    width: int | None = Field(default=None, ge=1, le=32)
    validity_days: ValidityDays = None


class RangeOut(Strict):
    count: int
    first_number: str
    last_number: str


@router.post(
    "/ranges",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def issue_range(body: RangeIn, principal: ManagerPrincipal, engine: EngineDep) -> RangeOut:
    """Certificates ``first``..``last`` at once (at most 100,000), numbered as cards are:
    prefix, serial, optional Luhn digit. All or nothing."""

    def work(conn: Connection) -> RangeOut:
        ids = gc.issue_certificate_range(
            conn,
            tenant_id=principal.tenant_id,
            prefix=body.prefix,
            first=body.first,
            last=body.last,
            check_digit=body.check_digit,
            width=body.width,
            validity_days=body.validity_days,
            actor=principal.actor,
        )
        first = gc.get_certificate(conn, principal.tenant_id, ids[0]).number
        last = gc.get_certificate(conn, principal.tenant_id, ids[-1]).number
        return RangeOut(count=len(ids), first_number=first, last_number=last)

    return _write(engine, work)


class CertificateList(Strict):
    items: list[CertificateOut]
    next_cursor: str | None


@router.get("", responses=problem_responses(401, 403, 422, 503))
def list_certificates(
    principal: StaffPrincipal,
    engine: EngineDep,
    page: PageDep,
    status_: Annotated[
        Literal["issued", "active", "blocked", "expired"] | None, Query(alias="status")
    ] = None,
    number: Annotated[
        str | None, Query(max_length=64, description="numbers starting with this")
    ] = None,
) -> CertificateList:
    """The tenant's certificates in issue order, by pages."""
    with read_only(engine) as conn:
        found = gc.list_certificates(
            conn,
            principal.tenant_id,
            after_id=page.after_id or 0,
            limit=page.limit + 1,
            status=status_,
            number_prefix=number,
        )
    more = len(found) > page.limit
    found = found[: page.limit]
    return CertificateList(
        items=[certificate_out(c) for c in found],
        next_cursor=encode_cursor(found[-1].id) if more and found else None,
    )


@router.get("/{number}", responses=problem_responses(401, 403, 404, 422, 503))
def read(number: Number, principal: StaffPrincipal, engine: EngineDep) -> CertificateOut:
    """The certificate whatever its status, with its balance."""
    with read_only(engine) as conn:
        return certificate_out(gc.find_certificate(conn, principal.tenant_id, number))


class SaleIn(Strict):
    nominal: Amount
    expires_at: Moment | None = Field(
        default=None, description="when it expires; default: its validity from now, if any"
    )
    validity_days: ValidityDays = None


@router.post(
    "/{number}/sale",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def sell(
    number: Number,
    body: SaleIn,
    principal: StaffPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> CertificateOut:
    """Sell (activate) the certificate: its nominal goes onto it. Once: another sale is
    409 ``already_sold``; this sale again (same key, same body) answers as the first."""

    def work(conn: Connection) -> gc.Sale:
        return gc.sell_certificate(
            conn,
            tenant_id=principal.tenant_id,
            number=number,
            nominal_minor=_amount(conn, principal.tenant_id, number, body.nominal),
            operation_id=key,
            expires_at=body.expires_at,
            validity_days=body.validity_days,
            actor=principal.actor,
        )

    sale = _write(engine, work)
    _replied(response, sale.replayed)
    return certificate_out(sale.certificate)


class BlockIn(Strict):
    reason: str = Field(min_length=1, max_length=200)


@router.post("/{number}/block", responses=problem_responses(401, 403, 404, 422, 503))
def block(
    number: Number, body: BlockIn, principal: ManagerPrincipal, engine: EngineDep
) -> CertificateOut:
    """Block it with a reason: it can be neither sold nor paid with until unblocked."""
    return certificate_out(
        _write(
            engine,
            lambda conn: gc.block_certificate(
                conn,
                tenant_id=principal.tenant_id,
                number=number,
                reason=body.reason,
                actor=principal.actor,
            ),
        )
    )


@router.post("/{number}/unblock", responses=problem_responses(401, 403, 404, 422, 503))
def unblock(number: Number, principal: ManagerPrincipal, engine: EngineDep) -> CertificateOut:
    return certificate_out(
        _write(
            engine,
            lambda conn: gc.unblock_certificate(
                conn, tenant_id=principal.tenant_id, number=number, actor=principal.actor
            ),
        )
    )


class StaffPaymentIn(Strict):
    amount: Amount
    check_id: str | None = Field(default=None, min_length=1, max_length=gc.MAX_OPERATION_ID)


@router.post(
    "/{number}/payments",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
def staff_pay(
    number: Number,
    body: StaffPaymentIn,
    principal: StaffPrincipal,
    key: IdempotencyKey,
    engine: EngineDep,
    response: Response,
) -> PaymentOut:
    """Pay with the certificate at the desk; the ``Idempotency-Key`` names the payment."""
    payment = _write(engine, lambda conn: _pay(conn, principal, number, body, key, None))
    _replied(response, payment.replayed)
    return payment_out(payment)


@router.post(
    "/{number}/payments/{operation_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def staff_refund(
    number: Number,
    operation_id: OperationId,
    body: RefundIn,
    principal: StaffPrincipal,
    engine: EngineDep,
    response: Response,
) -> RefundOut:
    """Give back (a part of) a desk payment to the certificate."""
    done = _write(engine, lambda conn: _refund(conn, principal, number, operation_id, body, None))
    _replied(response, done.replayed)
    return refund_out(done)


def _pay(
    conn: Connection,
    principal: Principal,
    number: str,
    body: StaffPaymentIn,
    operation_id: str,
    terminal_id: int | None,
) -> gc.Payment:
    return gc.pay_with_certificate(
        conn,
        tenant_id=principal.tenant_id,
        number=number,
        amount_minor=_amount(conn, principal.tenant_id, number, body.amount),
        operation_id=operation_id,
        check_id=body.check_id,
        terminal_id=terminal_id,
        actor=principal.actor,
    )


def _refund(
    conn: Connection,
    principal: Principal,
    number: str,
    operation_id: str,
    body: RefundIn,
    terminal_id: int | None,
) -> gc.PaymentRefund:
    amount = (
        None if body.amount is None else _amount(conn, principal.tenant_id, number, body.amount)
    )
    return gc.refund_payment(
        conn,
        tenant_id=principal.tenant_id,
        number=number,
        operation_id=operation_id,
        refund_id=body.refund_id,
        amount_minor=amount,
        terminal_id=terminal_id,
        actor=principal.actor,
    )


# --------------------------------------------------------------------------- terminals


class BalanceOut(Strict):
    number: str
    status: str
    balance: str
    currency: str
    expires_at: datetime | None


@pos_router.get("/{number}", responses=problem_responses(401, 403, 404, 422, 503))
def balance(number: Number, principal: TerminalPrincipal, engine: EngineDep) -> BalanceOut:
    """What the certificate may pay now; an unsold, blocked or expired one is refused
    with its own code (``certificate_not_sold``, ``certificate_blocked``,
    ``certificate_expired``)."""
    with read_only(engine) as conn:
        c = gc.certificate_for_use(conn, principal.tenant_id, number)
    return BalanceOut(
        number=c.number,
        status=c.status,
        balance=c.fmt(c.balance_minor),
        currency=c.currency,
        expires_at=c.expires_at,
    )


class PosPaymentIn(StaffPaymentIn):
    operation_id: str = Field(
        min_length=1,
        max_length=gc.MAX_OPERATION_ID,
        description="the terminal's id for this payment: a retry sends the same",
    )


@pos_router.post(
    "/{number}/payments",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def pos_pay(
    number: Number,
    body: PosPaymentIn,
    principal: TerminalPrincipal,
    engine: EngineDep,
    response: Response,
) -> PaymentOut:
    """Pay ``amount`` with the certificate: a part of its balance or all of it, never more
    (422 ``insufficient_certificate_balance``). Once per (terminal, ``operation_id``)."""
    terminal_id = _terminal_id(principal)
    payment = _write(
        engine,
        lambda conn: _pay(conn, principal, number, body, body.operation_id, terminal_id),
    )
    _replied(response, payment.replayed)
    return payment_out(payment)


@pos_router.post(
    "/{number}/payments/{operation_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def pos_refund(
    number: Number,
    operation_id: OperationId,
    body: RefundIn,
    principal: TerminalPrincipal,
    engine: EngineDep,
    response: Response,
) -> RefundOut:
    """Give back (a part of) this terminal's payment to the certificate; refunds of one
    payment never add up to more than it (422 ``refund_too_large``)."""
    terminal_id = _terminal_id(principal)
    done = _write(
        engine,
        lambda conn: _refund(conn, principal, number, operation_id, body, terminal_id),
    )
    _replied(response, done.replayed)
    return refund_out(done)
