"""Amounts cross to ATOL's decimal roubles and back exactly: never through a float."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.fiscal.adapters import ReceiptToSend
from kopilka.fiscal.atol import (
    dumps_exact,
    from_atol_amount,
    loads_exact,
    parse_settings,
    receipt_body,
    to_atol_amount,
)
from kopilka.fiscal.receipts import MAX_AMOUNT_MINOR
from tests.fiscal.conftest import payload

minor_units = st.integers(min_value=0, max_value=10**15)
exponents = st.integers(min_value=0, max_value=6)


@given(minor_units, exponents)
def test_minor_units_to_atol_decimal_and_back_is_the_identity(amount: int, exponent: int) -> None:
    decimal = to_atol_amount(amount, exponent)
    assert from_atol_amount(decimal, exponent) == amount
    # And through the JSON text the service reads and writes.
    text = dumps_exact({"sum": decimal})
    assert "e" not in text.lower()
    assert from_atol_amount(loads_exact(text)["sum"], exponent) == amount


@given(st.integers(min_value=0, max_value=MAX_AMOUNT_MINOR))
def test_roubles_have_exactly_two_decimals_in_the_json(amount: int) -> None:
    text = dumps_exact(to_atol_amount(amount))
    whole, _, kopecks = text.partition(".")
    assert len(kopecks) == 2 and int(whole) * 100 + int(kopecks) == amount


@pytest.mark.parametrize(
    ("amount", "exponent", "text"),
    [(1050, 2, "10.50"), (0, 2, "0.00"), (1, 2, "0.01"), (1500, 3, "1.500"), (7, 0, "7")],
)
def test_examples(amount: int, exponent: int, text: str) -> None:
    assert dumps_exact(to_atol_amount(amount, exponent)) == text


def test_a_value_more_precise_than_the_unit_is_never_rounded() -> None:
    with pytest.raises(ValueError, match="more than 2 decimals"):
        from_atol_amount(Decimal("10.505"))
    with pytest.raises(ValueError, match="finite"):
        from_atol_amount(Decimal("NaN"))


def test_json_of_nested_values_and_strings() -> None:
    text = dumps_exact({"a": [Decimal("1.10"), 2, None, True, 'чек "1"'], "b": {}})
    assert text == '{"a":[1.10,2,null,true,"чек \\"1\\""],"b":{}}'
    assert loads_exact(text)["a"][0] == Decimal("1.10")
    with pytest.raises(TypeError):
        dumps_exact({"x": 1.5})  # a float is refused, not written


def test_a_whole_body_keeps_every_kopeck() -> None:
    settings = parse_settings(
        {
            "base_url": "https://testonline.atol.ru/possystem/v5/",
            "login": "v5-online-atol-ru",
            "password": "secret",
            "group_code": "v5-online-atol-ru_5179",
            "inn": "5544332219",
            "payment_address": "https://v5.online.atol.ru",
            "sno": "osn",
            "company_email": "hotel@example.ru",
        }
    )
    assert settings.base_url == "https://testonline.atol.ru"  # the API path is added back
    body = payload(("Ужин", 33_333, 3000), payments=(("cash", 49_999), ("deposit", 50_000)))
    sent = ReceiptToSend("sell", "x-1", body, None, "+79123456789", datetime.now(UTC))
    built = loads_exact(dumps_exact(receipt_body(sent, settings)))
    assert built["receipt"]["items"][0]["sum"] == Decimal("999.99")
    assert built["receipt"]["payments"] == [
        {"type": 0, "sum": Decimal("499.99")},
        {"type": 2, "sum": Decimal("500.00")},
    ]
    assert built["receipt"]["total"] == Decimal("999.99")
    assert built["receipt"]["client"] == {"phone": "+79123456789"}
