"""Paying a folio with loyalty points (SPEC H-4, seed 000), wherever they live (H-5).

The seed's six steps: the guest owes (the folio's balance is below zero, or nothing may
be paid with points); the staff enter the card number and ask for its balances; per
points payment type the system shows what may be spent: min(the card's balance in that
type's unit, N % of what the guest owes converted at the type's rate), rounded down so
points never pay more than N %; they enter the points to pay, which may not exceed
that; saving writes the points off the card (through the tenant's loyalty provider)
and records a payment on the folio for what the points are worth in money.

With the numbers of the seed: the guest owes 10,000; the card has 5,000 points; the
type pays at most 30 % at a rate of 1: 3,000 may be spent; 3,500 is refused; 3,000 are
paid; the guest owes 7,000.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine

from kopilka.core.actor import Actor
from kopilka.core.errors import InvalidInput, Refused
from kopilka.core.money import format_amount
from kopilka.hotel.error_codes import HotelErrorCode as E
from kopilka.hotel.folios import (
    PaymentView,
    PointsPart,
    _balance,
    _currency,
    _folio_row,
    _known_payment,
    check_amount,
    get_folio,
    operation_id_of,
    pay,
    payment_digest,
    usable_type,
)
from kopilka.hotel.loyalty_provider import CardBalances, LoyaltyProvider, Redemption
from kopilka.ledger.posting import run_transaction
from kopilka.payments.types import PaymentKind, PaymentType, list_payment_types

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PointsOffer:
    """What one points payment type may pay of a folio with a card's points."""

    payment_type: PaymentType
    unit_code: str
    exponent: int
    balance_minor: int  # the card's spendable points in the unit
    cap_minor: int  # the points that may be spent now
    cap_money_minor: int  # what those points pay, in the folio's currency

    def fmt(self, points_minor: int) -> str:
        return format_amount(points_minor, self.exponent)


@dataclass(frozen=True, slots=True)
class Offers:
    card: CardBalances
    owed_minor: int
    currency: str
    exponent: int
    offers: tuple[PointsOffer, ...]


def _not_in_debt(folio_id: int) -> Refused:
    return Refused(
        E.FOLIO_NOT_IN_DEBT,
        f"the guest owes nothing on folio {folio_id}; points pay only what is owed",
        folio_id=folio_id,
    )


def points_offers(
    conn: Connection,
    *,
    tenant_id: int,
    folio_id: int,
    card_number: str,
    provider: LoyaltyProvider,
) -> Offers:
    """Steps 1 to 4: the card's balances and, per switched-on points type, what may be
    spent now. Refused while the guest owes nothing."""
    folio = get_folio(conn, tenant_id, folio_id)
    if folio.owed_minor <= 0:
        raise _not_in_debt(folio_id)
    card = provider.card_balances(card_number)
    offers = []
    for payment_type in list_payment_types(
        conn, tenant_id, kind=PaymentKind.POINTS, enabled_only=True
    ):
        assert payment_type.unit is not None
        held = card.of(payment_type.unit.code)
        balance = held.balance_minor if held is not None and card.status == "active" else 0
        cap = payment_type.points_cap(
            owed_minor=folio.owed_minor, balance_minor=balance, currency_exponent=folio.exponent
        )
        offers.append(
            PointsOffer(
                payment_type,
                payment_type.unit.code,
                payment_type.unit.exponent,
                balance,
                cap,
                payment_type.money_for_points(cap, folio.exponent),
            )
        )
    return Offers(card, folio.owed_minor, folio.currency, folio.exponent, tuple(offers))


def pay_with_points(
    conn: Connection,
    *,
    tenant_id: int,
    folio_id: int,
    payment_type_id: int,
    card_number: str,
    points_minor: int,
    operation_id: str,
    provider: LoyaltyProvider,
    actor: Actor,
    invoice_id: int | None = None,
    payer: str = "",
    now: datetime | None = None,
) -> PaymentView:
    """Steps 5 and 6: write ``points_minor`` points off the card and record what they
    are worth as a payment on the folio; idempotent by ``operation_id`` (the provider is
    asked with the same id, so a retry never takes the points twice)."""
    operation_id = operation_id_of(operation_id)
    check_amount(points_minor, "the points to pay")
    number = " ".join(card_number.split()) if isinstance(card_number, str) else ""
    if not 1 <= len(number) <= 64:
        raise InvalidInput(E.INVALID_HOTEL_INPUT, "a card number is required")
    payer = " ".join(payer.split())[:200] if isinstance(payer, str) else ""
    digest = payment_digest(folio_id, payment_type_id, points_minor, invoice_id, payer, number)
    folio = _folio_row(conn, tenant_id, folio_id, lock=True)
    known = _known_payment(conn, tenant_id, operation_id, digest)
    if known is not None:
        return known
    payment_type = usable_type(conn, tenant_id, payment_type_id)
    if payment_type.kind != PaymentKind.POINTS or payment_type.unit is None:
        raise Refused(
            E.PAYMENT_TYPE_NOT_USABLE,
            f"{payment_type.name!r} is not a points payment type",
            payment_type_id=payment_type.id,
        )
    currency, exponent = _currency(conn, tenant_id)
    owed = max(0, -_balance(conn, folio.account_id))
    if owed <= 0:
        raise _not_in_debt(folio_id)
    card = provider.card_balances(number)
    held = card.of(payment_type.unit.code)
    balance = held.balance_minor if held is not None and card.status == "active" else 0
    cap = payment_type.points_cap(
        owed_minor=owed, balance_minor=balance, currency_exponent=exponent
    )
    unit = payment_type.unit
    if points_minor > cap:
        raise Refused(
            E.POINTS_ABOVE_CAP,
            f"at most {format_amount(cap, unit.exponent)} {unit.code} may be spent on this folio "
            f"now; {format_amount(points_minor, unit.exponent)} was asked",
            cap=format_amount(cap, unit.exponent),
            unit=unit.code,
        )
    money = payment_type.money_for_points(points_minor, exponent)
    if money <= 0:
        raise InvalidInput(
            E.INVALID_HOTEL_INPUT,
            f"{format_amount(points_minor, unit.exponent)} {unit.code} pay less than the smallest "
            f"coin of {currency}",
        )
    redemption = provider.redeem(
        number=card.number,
        unit_code=unit.code,
        amount_minor=points_minor,
        operation_id=redemption_operation(tenant_id, operation_id),
        description=f"hotel folio {folio_id}",
    )
    return pay(
        conn,
        tenant_id=tenant_id,
        folio_id=folio_id,
        payment_type_id=payment_type.id,
        amount_minor=money,
        operation_id=operation_id,
        actor=actor,
        invoice_id=invoice_id,
        payer=payer or (card.holder or ""),
        now=now,
        points=PointsPart(card.number, unit.code, points_minor, provider.name, redemption.ref),
        digest=digest,
    )


def redemption_operation(tenant_id: int, operation_id: str) -> str:
    """The operation id the provider is asked with for a folio payment's points."""
    return f"folio-payment:{tenant_id}:{operation_id}"[:100]


def points_back(provider: LoyaltyProvider, provider_ref: str, tenant_id: int) -> object:
    """What ``folios.refund`` calls to give a points payment's points back to the card."""

    def give_back(points_minor: int, operation_id: str) -> str:
        done = provider.refund(
            ref=provider_ref,
            amount_minor=points_minor,
            operation_id=f"folio-refund:{tenant_id}:{operation_id}"[:100],
        )
        return done.ref

    return give_back


# --------------------------------------------------------------------------- the provider

_taken: ContextVar[list[tuple[LoyaltyProvider, Redemption]] | None] = ContextVar(
    "points_taken", default=None
)
log = logging.getLogger(__name__)


class _Recording:
    """A provider that notes what an external centre wrote off, so that a folio payment
    whose own write fails can give it back (``with_points_undo``)."""

    def __init__(self, inner: LoyaltyProvider) -> None:
        self.inner = inner
        self.name = inner.name

    def card_balances(self, number: str) -> CardBalances:
        return self.inner.card_balances(number)

    def redeem(
        self, *, number: str, unit_code: str, amount_minor: int, operation_id: str, description: str
    ) -> Redemption:
        done = self.inner.redeem(
            number=number,
            unit_code=unit_code,
            amount_minor=amount_minor,
            operation_id=operation_id,
            description=description,
        )
        noted = _taken.get()
        if noted is not None:
            noted.append((self.inner, done))
        return done

    def refund(self, *, ref: str, amount_minor: int, operation_id: str) -> Redemption:
        return self.inner.refund(ref=ref, amount_minor=amount_minor, operation_id=operation_id)


def tenant_provider(conn: Connection, tenant_id: int, actor: Actor) -> LoyaltyProvider:
    """The tenant's loyalty provider (its external centre, or its own ledger)."""
    from kopilka.hotel.loyalty_provider import provider_for

    provider = provider_for(conn, tenant_id=tenant_id, actor=actor)
    return provider if provider.name == "own" else _Recording(provider)


def with_points_undo(
    engine: Engine, tenant_id: int, actor: Actor, operation_id: str, work: Callable[[Connection], T]
) -> T:
    """Run ``work`` (a folio payment with points) in a transaction; when it fails after an
    external centre wrote points off, give them back, so the card never pays for a
    payment the folio does not show. (The own ledger's write-off is in the transaction
    and goes with it.)"""
    noted: list[tuple[LoyaltyProvider, Redemption]] = []
    token = _taken.set(noted)
    try:
        return run_transaction(engine, work)
    except Exception:
        undone: set[str] = set()
        for provider, done in noted:
            if done.ref in undone:
                continue
            undone.add(done.ref)
            try:
                provider.refund(
                    ref=done.ref,
                    amount_minor=done.amount_minor,
                    operation_id=f"{redemption_operation(tenant_id, operation_id)}:undo"[:100],
                )
            except Exception:  # the centre keeps them; the log says which to return by hand
                log.exception(
                    "points written off at the loyalty centre were not given back",
                    extra={"tenant_id": tenant_id, "ref": done.ref, "points": done.amount_minor},
                )
        raise
    finally:
        _taken.reset(token)
