"""What a folio payment's receipt lists passes the fiscal module's checks for any line a
charge may hold: discounted sums, odd quantities, long names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kopilka.fiscal.receipts import check_payload
from kopilka.hotel.receipts import NAME_LIMIT, _item


@given(
    name=st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != ""),
    quantity_milli=st.integers(min_value=1, max_value=10**6),
    amount_minor=st.integers(min_value=1, max_value=10**9),
)
def test_every_line_makes_a_valid_receipt_line(
    name: str, quantity_milli: int, amount_minor: int
) -> None:
    item = _item(name, quantity_milli, amount_minor)
    assert item["amount_minor"] == amount_minor and len(item["name"]) <= NAME_LIMIT
    payload = {
        "items": [item],
        "payments": [{"kind": "card", "amount_minor": amount_minor}],
        "total_minor": amount_minor,
        "exponent": 2,
    }
    check_payload(payload)


def test_a_discounted_line_keeps_its_quantity_at_the_discounted_price() -> None:
    # Two coffees at 320.00 less 10 %: 576.00, so 288.00 each.
    assert _item("Кофе", 2000, 576_00) | {} == {
        "name": "Кофе",
        "price_minor": 288_00,
        "quantity_milli": 2000,
        "amount_minor": 576_00,
        "payment_object": "service",
        "vat": "none",
    }
    assert _item("Порция", 30_000, 10_00)["name"] == "Порция × 30"
