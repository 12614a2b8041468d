"""Exact amounts: integers in minor units inside, decimal strings at the edges.

A unit is either an ISO 4217 currency (its minor units come from the CLDR data Babel
ships, so ``JPY`` has 0 and ``BHD`` 3) or a tenant's point unit with the number of
decimals the tenant chose. No float ever holds an amount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from babel.numbers import get_currency_precision, list_currencies

from kopilka.core.errors import InvalidInput


class UnitKind(StrEnum):
    CURRENCY = "currency"
    POINTS = "points"


class MoneyErrorCode(StrEnum):
    INVALID_AMOUNT = "invalid_amount"
    AMOUNT_TOO_PRECISE = "amount_too_precise"
    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    UNKNOWN_CURRENCY = "unknown_currency"


_DECIMAL = re.compile(r"^(?P<sign>-)?(?P<whole>\d{1,18})(?:\.(?P<frac>\d{1,18}))?$")
# Amounts beyond this are refused outright: they fit a signed 64-bit column with room for
# sums of many of them.
MAX_ABS_MINOR = 10**15


@dataclass(frozen=True, slots=True)
class Unit:
    code: str
    kind: UnitKind
    exponent: int

    def parse(self, text: str, *, positive: bool = False) -> int:
        return parse_amount(text, self.exponent, unit_code=self.code, positive=positive)

    def format(self, amount_minor: int) -> str:
        return format_amount(amount_minor, self.exponent)


def is_iso_currency(code: str) -> bool:
    return code in _iso_currencies()


def currency_exponent(code: str) -> int:
    if not is_iso_currency(code):
        raise InvalidInput(
            MoneyErrorCode.UNKNOWN_CURRENCY, f"{code!r} is not an ISO 4217 currency code"
        )
    return int(get_currency_precision(code))


_ISO: frozenset[str] | None = None


def _iso_currencies() -> frozenset[str]:
    global _ISO
    if _ISO is None:
        _ISO = frozenset(list_currencies())
    return _ISO


def parse_amount(text: str, exponent: int, *, unit_code: str = "", positive: bool = False) -> int:
    """``"10.50"`` with exponent 2 -> ``1050``; refuses floats' habits and extra digits."""
    if not isinstance(text, str):
        raise InvalidInput(
            MoneyErrorCode.INVALID_AMOUNT,
            f'amount must be a decimal string such as "10.50", not {type(text).__name__}',
        )
    match = _DECIMAL.match(text.strip())
    if match is None:
        raise InvalidInput(
            MoneyErrorCode.INVALID_AMOUNT,
            f"{text!r} is not a decimal amount (digits, an optional point and fraction)",
        )
    frac = match["frac"] or ""
    if len(frac.rstrip("0")) > exponent:
        where = f" in {unit_code}" if unit_code else ""
        raise InvalidInput(
            MoneyErrorCode.AMOUNT_TOO_PRECISE,
            f"{text!r} has more than {exponent} decimal places{where}",
            exponent=exponent,
        )
    frac = frac[:exponent].ljust(exponent, "0")
    minor = int(match["whole"]) * 10**exponent + (int(frac) if frac else 0)
    if match["sign"]:
        minor = -minor
    if abs(minor) > MAX_ABS_MINOR:
        raise InvalidInput(MoneyErrorCode.INVALID_AMOUNT, f"{text!r} is too large")
    if positive and minor <= 0:
        raise InvalidInput(
            MoneyErrorCode.AMOUNT_NOT_POSITIVE, f"amount must be greater than zero, got {text!r}"
        )
    return minor


def format_amount(amount_minor: int, exponent: int) -> str:
    """``1050`` with exponent 2 -> ``"10.50"``; exact for any integer."""
    assert isinstance(amount_minor, int)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exponent)
    if exponent == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{exponent}d}"


# --------------------------------------------------------------------------- per cents

INVALID_COMMISSION = "invalid_commission"  # the code both commissions' refusals share


def percent_to_bp(percent: object) -> int:
    """A commission as a per cent with at most two decimals ("1", "2.5") in hundredths of
    a per cent (basis points); outside 0 to 100 % is ``invalid_commission``."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(str(percent).strip())
    except (InvalidOperation, ValueError) as error:
        raise InvalidInput(
            INVALID_COMMISSION, f"{percent!r} is not a per cent", field="commission"
        ) from error
    if not value.is_finite() or not 0 <= value <= 100 or value != value.quantize(Decimal("0.01")):
        raise InvalidInput(
            INVALID_COMMISSION,
            f"a commission is 0 to 100 % with at most two decimals, not {percent}",
            field="commission",
        )
    return int(value * 100)


def bp_share(amount_minor: int, bp: int) -> int:
    """``bp`` hundredths of a per cent of an amount, rounded half up: 1 % of 600.00 is
    6.00, 3 % of 4000.00 is 120.00."""
    return (amount_minor * bp + 5_000) // 10_000
