import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.core.errors import InvalidInput
from kopilka.core.money import currency_exponent, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "exponent", "minor"),
    [
        ("10.50", 2, 1050),
        ("10.5", 2, 1050),
        ("10", 2, 1000),
        ("0.01", 2, 1),
        ("-3.20", 2, -320),
        ("12", 0, 12),
        ("1.230", 2, 123),
        ("0.001", 3, 1),
    ],
)
def test_parse(text: str, exponent: int, minor: int) -> None:
    assert parse_amount(text, exponent) == minor


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("10.001", "amount_too_precise"),
        ("1e3", "invalid_amount"),
        ("", "invalid_amount"),
        ("10,50", "invalid_amount"),
        (" ", "invalid_amount"),
        ("NaN", "invalid_amount"),
        ("1" * 19, "invalid_amount"),
        ("+5", "invalid_amount"),
    ],
)
def test_parse_refuses(text: str, code: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount(text, 2, unit_code="RUB")
    assert caught.value.code == code


def test_positive_only() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_amount("0.00", 2, positive=True)
    assert caught.value.code == "amount_not_positive"


def test_floats_are_not_amounts() -> None:
    with pytest.raises(InvalidInput):
        parse_amount(10.5, 2)  # type: ignore[arg-type]


def test_iso_exponents() -> None:
    assert currency_exponent("RUB") == 2
    assert currency_exponent("JPY") == 0
    assert currency_exponent("BHD") == 3
    with pytest.raises(InvalidInput) as caught:
        currency_exponent("XYZ")
    assert caught.value.code == "unknown_currency"


@given(st.integers(min_value=-(10**15), max_value=10**15), st.integers(min_value=0, max_value=6))
def test_format_parse_round_trip(minor: int, exponent: int) -> None:
    assert parse_amount(format_amount(minor, exponent), exponent) == minor
