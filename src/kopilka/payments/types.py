"""The payment types directory (SPEC H-3; seed 000 "справочник платежей").

A tenant lists how it is paid: cash, a bank card, a bank transfer, a deposit, a charge to
the guest's room, loyalty points, a gift certificate, anything else. Each type has a name
(unique in the tenant, whatever its letters' case) and an on/off switch; a folio payment
or a terminal's payment code names a type, and a switched-off type is refused.

A **points** type spends a point unit of the tenant (bonus points, bonus roubles, BYN
held as points, ...), at most one type per unit, and carries two rules of its own:

* the exchange rate: what one whole point is worth in the folio's currency, an exact
  decimal of at most 6 places (kept as ``rate_micro``, millionths: 1 is 1_000_000), 1 by
  default; never a float;
* "pay with points at most N %" of what the guest owes (basis points, 0 to 10000), 0 by
  default as in the seed, so a new points type pays nothing until someone decides.

The kind and the unit are fixed once a type exists (payments will refer to it); the
name, the switch and the two rules may change, each change one audit event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, Literal

from sqlalchemy import Connection, Select, select, update

from kopilka.core.actor import Actor
from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound
from kopilka.core.money import UnitKind, format_amount, parse_amount
from kopilka.ledger.accounts import UnitView, get_unit
from kopilka.ledger.schema import units
from kopilka.payments.error_codes import PaymentErrorCode as E
from kopilka.payments.schema import payment_types
from kopilka.tenancy.audit import record_audit

BP = 10_000  # basis points in a whole: 3000 is 30 %
RATE_SCALE = 10**6  # rate_micro per 1 of the rate
RATE_DECIMALS = 6
# One point worth more than a million of the currency is a typing error.
MAX_RATE_MICRO = 10**6 * RATE_SCALE
DEFAULT_RATE = Decimal(1)
DEFAULT_MAX_SHARE_BP = 0
MAX_NAME = 100
_RATE_TEXT = re.compile(r"^\d{1,7}(?:\.\d{1,18})?$")


class PaymentKind(StrEnum):
    CASH = "cash"
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"
    DEPOSIT = "deposit"
    ROOM_CHARGE = "room_charge"
    POINTS = "points"
    GIFT_CERTIFICATE = "gift_certificate"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class PaymentType:
    id: int
    tenant_id: int
    name: str
    kind: PaymentKind
    enabled: bool
    # Points types only (None for every other kind).
    unit: UnitView | None
    rate_micro: int | None
    max_share_bp: int | None
    created_at: datetime

    @property
    def is_points(self) -> bool:
        return self.kind == PaymentKind.POINTS

    @property
    def exchange_rate(self) -> Decimal | None:
        """What one whole point is worth in the folio's currency, exactly."""
        return None if self.rate_micro is None else Decimal(self.rate_micro).scaleb(-6)

    def _terms(self) -> tuple[int, int]:
        assert self.is_points and self.unit is not None and self.rate_micro is not None, (
            f"payment type {self.id} is not a points type"
        )
        return self.unit.exponent, self.rate_micro

    def money_for_points(self, points_minor: int, currency_exponent: int) -> int:
        """Currency minor units that ``points_minor`` points pay for, rounded down."""
        unit_exponent, rate_micro = self._terms()
        numerator = points_minor * rate_micro * 10**currency_exponent
        return numerator // (10**unit_exponent * RATE_SCALE)

    def points_for_money(self, money_minor: int, currency_exponent: int) -> int:
        """The most points (unit minor) worth at most ``money_minor``, exactly."""
        unit_exponent, rate_micro = self._terms()
        numerator = money_minor * 10**unit_exponent * RATE_SCALE
        return numerator // (rate_micro * 10**currency_exponent)

    def points_cap(self, *, owed_minor: int, balance_minor: int, currency_exponent: int) -> int:
        """SPEC H-4: the points a guest who owes ``owed_minor`` may pay with, out of a
        card's ``balance_minor``: min(balance, N % of what is owed, converted). Nothing
        while nothing is owed."""
        assert self.max_share_bp is not None, f"payment type {self.id} is not a points type"
        if owed_minor <= 0 or balance_minor <= 0:
            return 0
        share_minor = owed_minor * self.max_share_bp // BP
        cap = min(balance_minor, self.points_for_money(share_minor, currency_exponent))
        assert 0 <= cap <= balance_minor
        return cap


# --------------------------------------------------------------------------- rates, percents


def rate_micro_of(rate: Decimal | str) -> int:
    """The exchange rate in millionths, exactly; refuses (``invalid_exchange_rate``) a
    rate that is not above zero, has more than 6 decimal places, or is above a million.

    Computed on the decimal's digits, never by multiplying: a Decimal product is rounded
    to the context's precision, and would let a too precise rate pass as exact.
    """
    if isinstance(rate, str):
        rate = parse_rate(rate)
    if not isinstance(rate, Decimal) or not rate.is_finite():
        raise InvalidInput(
            E.INVALID_EXCHANGE_RATE, 'the exchange rate is a decimal number such as "1" or "0.5"'
        )
    sign, digits, exponent = rate.as_tuple()
    assert isinstance(exponent, int)  # finite
    number = int("".join(map(str, digits)) or "0")
    if sign or number == 0:
        raise InvalidInput(E.INVALID_EXCHANGE_RATE, "the exchange rate is above zero")
    if exponent + len(digits) > 7:  # at least 10,000,000: refused before any big power
        raise _rate_too_large()
    shift = exponent + RATE_DECIMALS
    if shift >= 0:
        micro = number * 10**shift
    else:
        # More places to drop than digits: it cannot end in that many zeros (and the power
        # stays as small as the number's own digits).
        rest = 1 if -shift > len(digits) else number % 10**-shift
        if rest:
            raise InvalidInput(
                E.INVALID_EXCHANGE_RATE,
                f"the exchange rate has at most {RATE_DECIMALS} decimal places; "
                f"{rate} cannot be kept exactly",
            )
        micro = number // 10**-shift
    if micro > MAX_RATE_MICRO:
        raise _rate_too_large()
    assert 0 < micro <= MAX_RATE_MICRO
    return micro


def _rate_too_large() -> InvalidInput:
    return InvalidInput(
        E.INVALID_EXCHANGE_RATE,
        f"the exchange rate is at most {MAX_RATE_MICRO // RATE_SCALE:,} (a point's worth "
        "in the folio's currency)",
    )


def parse_rate(text: str) -> Decimal:
    """``"0.5"`` -> ``Decimal("0.5")``; digits and one point only (no exponents, signs,
    NaN or infinities). Its range and precision are ``rate_micro_of``'s to judge."""
    if not isinstance(text, str) or not _RATE_TEXT.match(text.strip()):
        raise InvalidInput(
            E.INVALID_EXCHANGE_RATE,
            'the exchange rate is a decimal number above zero, such as "1" or "0.5"',
        )
    return Decimal(text.strip())


def format_rate(rate_micro: int) -> str:
    """``1_000_000`` -> ``"1"``, ``500_000`` -> ``"0.5"``: the rate as people write it."""
    text = format_amount(rate_micro, RATE_DECIMALS)
    return text.rstrip("0").rstrip(".")


def parse_percent(text: str) -> int:
    """Per cent text (``"30"``, ``"12.5"``) in basis points, 0 to 100 %; otherwise
    ``invalid_percent``."""
    try:
        value = parse_amount(text, 2)
    except KopilkaError as error:
        raise InvalidInput(
            E.INVALID_PERCENT,
            "the share payable with points is a per cent from 0 to 100 with at most two "
            f'decimals, such as "30" or "12.5": {error.detail}',
        ) from error
    _check_share(value)
    return value


def format_percent(bp: int) -> str:
    return format_amount(bp, 2)


def _check_share(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= BP:
        raise InvalidInput(
            E.INVALID_PERCENT,
            f"the share payable with points is 0 to 100 % (0 to {BP} basis points), not {value!r}",
        )
    return value


def _clean_name(name: object) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(cleaned) <= MAX_NAME:
        raise InvalidInput(
            E.INVALID_PAYMENT_TYPE, f"a payment type's name is 1 to {MAX_NAME} characters"
        )
    return cleaned


def _kind(kind: object) -> PaymentKind:
    try:
        return PaymentKind(str(kind).strip())
    except ValueError as error:
        raise InvalidInput(
            E.INVALID_PAYMENT_TYPE,
            f"a payment type's kind is one of {', '.join(PaymentKind)}, not {kind!r}",
        ) from error


# --------------------------------------------------------------------------- reading

# Every column a PaymentType is made of, labelled so a query may join other tables too.
TYPE_COLUMNS = (
    payment_types.c.id.label("type_id"),
    payment_types.c.tenant_id.label("type_tenant_id"),
    payment_types.c.name.label("type_name"),
    payment_types.c.kind.label("type_kind"),
    payment_types.c.enabled.label("type_enabled"),
    payment_types.c.rate_micro.label("type_rate_micro"),
    payment_types.c.max_share_bp.label("type_max_share_bp"),
    payment_types.c.created_at.label("type_created_at"),
    units.c.id.label("unit_id"),
    units.c.code.label("unit_code"),
    units.c.kind.label("unit_kind"),
    units.c.exponent.label("unit_exponent"),
    units.c.name.label("unit_name"),
)


def type_from_row(row: Any) -> PaymentType:
    """A PaymentType from a row carrying ``TYPE_COLUMNS``."""
    unit = None
    if row.unit_id is not None:
        unit = UnitView(
            row.unit_id, row.unit_code, UnitKind(row.unit_kind), row.unit_exponent, row.unit_name
        )
    return PaymentType(
        id=row.type_id,
        tenant_id=row.type_tenant_id,
        name=row.type_name,
        kind=PaymentKind(row.type_kind),
        enabled=bool(row.type_enabled),
        unit=unit,
        rate_micro=row.type_rate_micro,
        max_share_bp=row.type_max_share_bp,
        created_at=row.type_created_at,
    )


def _select(tenant_id: int) -> Select[Any]:
    return (
        select(*TYPE_COLUMNS)
        .select_from(payment_types)
        .outerjoin(units, units.c.id == payment_types.c.unit_id)
        .where(payment_types.c.tenant_id == tenant_id)
    )


def get_payment_type(conn: Connection, tenant_id: int, payment_type_id: int) -> PaymentType:
    row = conn.execute(_select(tenant_id).where(payment_types.c.id == payment_type_id)).first()
    if row is None:
        raise NotFound(
            E.PAYMENT_TYPE_NOT_FOUND,
            f"payment type {payment_type_id} does not exist",
            payment_type_id=payment_type_id,
        )
    return type_from_row(row)


def list_payment_types(
    conn: Connection,
    tenant_id: int,
    *,
    kind: PaymentKind | None = None,
    enabled_only: bool = False,
) -> list[PaymentType]:
    """The tenant's payment types by name (of one kind, switched on only, if asked)."""
    query = _select(tenant_id).order_by(payment_types.c.name, payment_types.c.id)
    if kind is not None:
        query = query.where(payment_types.c.kind == kind.value)
    if enabled_only:
        query = query.where(payment_types.c.enabled.is_(True))
    return [type_from_row(row) for row in conn.execute(query)]


def _name_taken(conn: Connection, tenant_id: int, name: str, but: int | None = None) -> bool:
    """Whether another type of the tenant has this name, in any letters' case (Python
    folds the case: SQLite's ``lower`` knows only ASCII, and the names are Russian)."""
    query = select(payment_types.c.id, payment_types.c.name).where(
        payment_types.c.tenant_id == tenant_id
    )
    wanted = name.casefold()
    return any(row.name.casefold() == wanted and row.id != but for row in conn.execute(query))


def _conflict_name(name: str) -> Conflict:
    return Conflict(
        E.PAYMENT_TYPE_EXISTS, f"a payment type named {name!r} exists already", name=name
    )


# --------------------------------------------------------------------------- writing


def create_payment_type(
    conn: Connection,
    *,
    tenant_id: int,
    name: str,
    kind: PaymentKind | str,
    actor: Actor,
    enabled: bool = True,
    unit_code: str | None = None,
    exchange_rate: Decimal | str | None = None,
    max_share_bp: int | None = None,
) -> PaymentType:
    """A new payment type. A points type needs ``unit_code`` (a point unit of the tenant
    with no points type yet); its rate defaults to 1 and its share to 0 %. Every other
    kind takes none of the three. Everything is checked before anything is written."""
    name = _clean_name(name)
    payment_kind = _kind(kind)
    if not isinstance(enabled, bool):
        raise InvalidInput(E.INVALID_PAYMENT_TYPE, "enabled is true or false")
    unit: UnitView | None = None
    rate_micro: int | None = None
    if payment_kind == PaymentKind.POINTS:
        if unit_code is None or not unit_code.strip():
            raise InvalidInput(
                E.INVALID_PAYMENT_TYPE, "a points payment type needs the point unit it spends"
            )
        unit = get_unit(conn, tenant_id, unit_code.strip())
        if unit.kind != UnitKind.POINTS:
            raise InvalidInput(
                E.UNIT_NOT_POINTS,
                f"{unit.code} is a currency, not a point unit; a points payment type spends points",
                unit=unit.code,
            )
        rate_micro = rate_micro_of(DEFAULT_RATE if exchange_rate is None else exchange_rate)
        max_share_bp = _check_share(DEFAULT_MAX_SHARE_BP if max_share_bp is None else max_share_bp)
    elif unit_code is not None or exchange_rate is not None or max_share_bp is not None:
        raise InvalidInput(
            E.INVALID_PAYMENT_TYPE,
            f"only a points payment type has a point unit, an exchange rate and a share "
            f"payable with points; a {payment_kind.value} type has none",
        )
    if _name_taken(conn, tenant_id, name):
        raise _conflict_name(name)
    if (
        unit is not None
        and conn.execute(
            select(payment_types.c.id).where(
                payment_types.c.tenant_id == tenant_id, payment_types.c.unit_id == unit.id
            )
        ).first()
    ):
        raise Conflict(
            E.POINTS_TYPE_EXISTS,
            f"the point unit {unit.code} has its payment type already (one per unit)",
            unit=unit.code,
        )
    type_id = conn.execute(
        payment_types.insert().returning(payment_types.c.id),
        {
            "tenant_id": tenant_id,
            "name": name,
            "kind": payment_kind.value,
            "enabled": enabled,
            "unit_id": None if unit is None else unit.id,
            "rate_micro": rate_micro,
            "max_share_bp": max_share_bp,
            "created_at": utcnow(),
        },
    ).scalar_one()
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="payment_type.create",
        object_type="payment_type",
        object_id=type_id,
        details={
            "name": name,
            "kind": payment_kind.value,
            "enabled": enabled,
            "unit": None if unit is None else unit.code,
            "rate": None if rate_micro is None else format_rate(rate_micro),
            "max_share_bp": max_share_bp,
        },
    )
    created = get_payment_type(conn, tenant_id, type_id)
    assert created.name == name and created.kind == payment_kind
    return created


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED
"""A field ``update_payment_type`` leaves as it is."""

Keep = Literal[_Unchanged.UNCHANGED]


def update_payment_type(
    conn: Connection,
    *,
    tenant_id: int,
    payment_type_id: int,
    actor: Actor,
    name: str | Keep = UNCHANGED,
    enabled: bool | Keep = UNCHANGED,
    exchange_rate: Decimal | str | Keep = UNCHANGED,
    max_share_bp: int | Keep = UNCHANGED,
) -> PaymentType:
    """Change the given fields of a type (the others stay); returns it as changed.

    The rate and the share belong to points types only. One audit event names each
    changed field with its new and its old value; a call that changes nothing writes
    nothing.
    """
    row = conn.execute(
        select(payment_types)
        .where(payment_types.c.tenant_id == tenant_id, payment_types.c.id == payment_type_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(
            E.PAYMENT_TYPE_NOT_FOUND,
            f"payment type {payment_type_id} does not exist",
            payment_type_id=payment_type_id,
        )
    is_points = row.kind == PaymentKind.POINTS
    if not is_points and (exchange_rate is not UNCHANGED or max_share_bp is not UNCHANGED):
        raise InvalidInput(
            E.INVALID_PAYMENT_TYPE,
            f"only a points payment type has an exchange rate and a share payable with "
            f"points; {row.name!r} is a {row.kind} type",
        )
    current: dict[str, Any] = {
        "name": row.name,
        "enabled": bool(row.enabled),
        "rate_micro": row.rate_micro,
        "max_share_bp": row.max_share_bp,
    }
    wanted = dict(current)
    if name is not UNCHANGED:
        wanted["name"] = _clean_name(name)
    if enabled is not UNCHANGED:
        if not isinstance(enabled, bool):
            raise InvalidInput(E.INVALID_PAYMENT_TYPE, "enabled is true or false")
        wanted["enabled"] = enabled
    if exchange_rate is not UNCHANGED:
        wanted["rate_micro"] = rate_micro_of(exchange_rate)
    if max_share_bp is not UNCHANGED:
        wanted["max_share_bp"] = _check_share(max_share_bp)
    changed = {field: wanted[field] for field in current if wanted[field] != current[field]}
    if not changed:
        return get_payment_type(conn, tenant_id, payment_type_id)
    if "name" in changed and _name_taken(conn, tenant_id, changed["name"], but=payment_type_id):
        raise _conflict_name(changed["name"])
    conn.execute(
        update(payment_types).where(payment_types.c.id == payment_type_id).values(**changed)
    )
    record_audit(
        conn,
        tenant_id=tenant_id,
        actor=actor,
        action="payment_type.update",
        object_type="payment_type",
        object_id=payment_type_id,
        # Flat details: each field's new value, and what it was before.
        details={**changed, **{f"{field}_was": current[field] for field in changed}},
    )
    updated = get_payment_type(conn, tenant_id, payment_type_id)
    assert updated.name == wanted["name"] and updated.rate_micro == wanted["rate_micro"]
    return updated
