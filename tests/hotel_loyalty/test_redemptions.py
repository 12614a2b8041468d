"""Points written off a card to pay a hotel bill, and given back (SPEC H-5, L-3, L-4, L-7).

The numbers of seed 000: the card has 5,000 bonus points; the guest pays 3,000 of a bill
with them; 2,000 are left.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, func, select

from kopilka.core.clock import utcnow
from kopilka.core.errors import Conflict, InvalidInput, KopilkaError, NotFound, Refused
from kopilka.ledger.accounts import get_account, system_account_id
from kopilka.ledger.holds import place_hold
from kopilka.ledger.posting import get_transfer
from kopilka.ledger.schema import lots
from kopilka.loyalty import redemptions as rd
from kopilka.loyalty.card_history import card_history
from kopilka.loyalty.cards import CardView, block_cards, set_expiry
from kopilka.loyalty.program_admin import update_program
from kopilka.loyalty.schema import loyalty_redemptions

from .conftest import Hotel

FOLIO = rd.FOLIO_CHANNEL


def op() -> str:
    return f"op-{uuid.uuid4().hex[:12]}"


def redeem(hotel: Hotel, card: CardView, amount_minor: int, **fields: Any) -> rd.Redemption:
    request: dict[str, Any] = {
        "tenant_id": hotel.t,
        "number": card.number,
        "unit_code": "BONUS",
        "amount_minor": amount_minor,
        "channel": FOLIO,
        "operation_id": op(),
        "description": "hotel folio 7, room 305",
        "actor": hotel.actor,
        **fields,
    }
    return hotel.tx(lambda c: rd.redeem(c, **request))


def refund(hotel: Hotel, ref: str, amount_minor: int | None, **fields: Any) -> rd.Redemption:
    request: dict[str, Any] = {
        "tenant_id": hotel.t,
        "channel": FOLIO,
        "ref": ref,
        "amount_minor": amount_minor,
        "operation_id": op(),
        "actor": hotel.actor,
        **fields,
    }
    return hotel.tx(lambda c: rd.refund_redemption(c, **request))


def available(hotel: Hotel, card: CardView) -> int:
    return hotel.get(card).available_minor


def redeemed_total(hotel: Hotel) -> int:
    def work(conn: Connection) -> int:
        account_id = system_account_id(
            conn, tenant_id=hotel.t, unit_code="BONUS", purpose="redeemed", actor=hotel.actor
        )
        return get_account(conn, hotel.t, account_id).balance_minor

    return hotel.tx(work)


def rows(hotel: Hotel) -> int:
    return int(
        hotel.read(
            lambda c: c.execute(
                select(func.count())
                .select_from(loyalty_redemptions)
                .where(loyalty_redemptions.c.tenant_id == hotel.t)
            ).scalar_one()
        )
    )


def test_a_guest_pays_3000_of_a_bill_with_5000_points(hotel: Hotel) -> None:
    card = hotel.card(5000_00, holder_name="Анна Петрова")
    seen = hotel.read(lambda c: rd.card_balances(c, hotel.t, card.number))
    assert (seen.number, seen.holder, seen.status) == (card.number, "Анна Петрова", "active")
    assert seen.balances == (rd.UnitBalance("BONUS", 2, 5000_00),)

    paid = redeem(hotel, card, 3000_00)

    assert (paid.kind, paid.amount_minor, paid.refunded_minor, paid.replayed) == (
        "redeem",
        3000_00,
        0,
        False,
    )
    assert (paid.unit_code, paid.exponent, paid.fmt(paid.amount_minor)) == ("BONUS", 2, "3000.00")
    assert paid.ref == str(paid.id) and paid.card_number == card.number
    assert available(hotel, card) == 2000_00
    assert redeemed_total(hotel) == 3000_00
    transfer = hotel.read(lambda c: get_transfer(c, hotel.t, paid.transfer_id or 0))
    assert transfer.kind == "spend"  # the card's reports count it as spent
    history = hotel.read(lambda c: card_history(c, hotel.t, card.id, newest_first=True))
    line = history.items[0]
    assert (line.kind, line.amount_minor, line.balance_after_minor) == (
        "redemption",
        -3000_00,
        2000_00,
    )
    assert line.title == "3000.00 paid with points (hotel folio): hotel folio 7, room 305"
    assert line.details["redemption_id"] == paid.id and line.details["channel"] == "folio"
    hotel.assert_clean()


def test_the_same_operation_again_takes_nothing_more(hotel: Hotel) -> None:
    card = hotel.card(5000_00)
    first = redeem(hotel, card, 1000_00, operation_id="pay-1")
    again = redeem(hotel, card, 1000_00, operation_id="pay-1")

    assert again.replayed and again.id == first.id and again.transfer_id == first.transfer_id
    assert available(hotel, card) == 4000_00
    with pytest.raises(Conflict) as conflict:
        redeem(hotel, card, 1500_00, operation_id="pay-1")
    assert conflict.value.code == "idempotency_conflict"
    with pytest.raises(Conflict):
        redeem(hotel, card, 1000_00, operation_id="pay-1", description="another bill")
    # Operation ids are the channel's own: a terminal's "pay-1" is another operation.
    other = redeem(hotel, card, 1000_00, operation_id="pay-1", channel="terminal:99")
    assert other.id != first.id and not other.replayed
    assert available(hotel, card) == 3000_00
    # A replay answers even after the card was blocked.
    hotel.tx(
        lambda c: block_cards(
            c, tenant_id=hotel.t, card_ids=[card.id], reason="lost", actor=hotel.actor
        )
    )
    assert redeem(hotel, card, 1000_00, operation_id="pay-1").replayed
    hotel.assert_clean()


@pytest.mark.parametrize(
    ("case", "error", "code"),
    [
        ("insufficient", Refused, "insufficient_points"),
        ("blocked", Refused, "card_blocked"),
        ("expired", Refused, "card_expired"),
        ("other unit", Refused, "points_unit_mismatch"),
        ("unknown unit", Refused, "points_unit_mismatch"),
        ("program off", Refused, "loyalty_disabled"),
        ("no such card", NotFound, "card_not_found"),
        ("not a number", InvalidInput, "invalid_card_number"),
        ("zero", InvalidInput, "invalid_amount"),
        ("long operation id", InvalidInput, "invalid_redemption"),
        ("long description", InvalidInput, "invalid_redemption"),
    ],
)
def test_a_refused_write_off_takes_nothing(
    hotel: Hotel, case: str, error: type[KopilkaError], code: str
) -> None:
    card = hotel.card(500_00)
    fields: dict[str, Any] = {"operation_id": "pay-refused"}
    amount = 300_00
    if case == "insufficient":
        amount = 500_01
    elif case == "blocked":
        hotel.tx(
            lambda c: block_cards(
                c, tenant_id=hotel.t, card_ids=[card.id], reason="stolen", actor=hotel.actor
            )
        )
    elif case == "expired":
        hotel.tx(
            lambda c: set_expiry(
                c,
                tenant_id=hotel.t,
                card_ids=[card.id],
                expires_at=utcnow() + timedelta(seconds=1),
                actor=hotel.actor,
            )
        )
        fields["now"] = utcnow() + timedelta(minutes=1)
    elif case == "other unit":
        fields["unit_code"] = "RUB"
    elif case == "unknown unit":
        fields["unit_code"] = "MILES"
    elif case == "program off":
        hotel.tx(
            lambda c: update_program(
                c,
                tenant_id=hotel.t,
                program_id=hotel.program.id,
                enabled=False,
                actor=hotel.actor,
            )
        )
    elif case == "no such card":
        fields["number"] = "99999999"
    elif case == "not a number":
        fields["number"] = "ABC"
    elif case == "zero":
        amount = 0
    elif case == "long operation id":
        fields["operation_id"] = "x" * 101
    elif case == "long description":
        fields["description"] = "x" * 201

    with pytest.raises(error) as refused:
        redeem(hotel, card, amount, **fields)

    assert refused.value.code == code, refused.value
    assert rows(hotel) == 0 and available(hotel, card) == 500_00
    hotel.assert_clean()


def test_a_refused_operation_may_be_asked_again_and_is_judged_afresh(hotel: Hotel) -> None:
    card = hotel.card(100_00)
    with pytest.raises(Refused) as refused:
        redeem(hotel, card, 300_00, operation_id="pay-2")
    assert refused.value.params["available"] == "100.00"
    hotel.fund(card, 200_00)
    paid = redeem(hotel, card, 300_00, operation_id="pay-2")
    assert not paid.replayed and available(hotel, card) == 0


def test_points_not_active_yet_and_held_do_not_pay(hotel: Hotel) -> None:
    card = hotel.card(1000_00)
    hotel.fund(card, 500_00, available_at=utcnow() + timedelta(days=7))

    def hold(conn: Connection) -> None:
        place_hold(
            conn,
            tenant_id=hotel.t,
            idempotency_key=f"hold:{card.number}",
            debit_account_id=card.account_id,
            credit_account_id=system_account_id(
                conn, tenant_id=hotel.t, unit_code="BONUS", purpose="redeemed", actor=hotel.actor
            ),
            amount_minor=200_00,
            ttl_seconds=600,
            actor=hotel.actor,
        )

    hotel.tx(hold)
    seen = hotel.read(lambda c: rd.card_balances(c, hotel.t, card.number))
    assert seen.balances[0].balance_minor == 800_00  # 1,500 on the card
    with pytest.raises(Refused):
        redeem(hotel, card, 800_01)
    redeem(hotel, card, 800_00)
    assert available(hotel, card) == 0
    hotel.assert_clean()


def test_refunds_never_give_back_more_than_was_taken(hotel: Hotel) -> None:
    card = hotel.card(5000_00)
    paid = redeem(hotel, card, 3000_00, operation_id="pay-3000")

    part = refund(hotel, paid.ref, 1000_00, operation_id="back-1")
    # The write-off asked again now: not "taken" while some of it is back on the card.
    with pytest.raises(Conflict) as given_back:
        redeem(hotel, card, 3000_00, operation_id="pay-3000")
    assert given_back.value.code == "redemption_refunded"
    assert given_back.value.params["refunded"] == "1000.00"
    assert (part.kind, part.parent_id, part.amount_minor) == ("refund", paid.id, 1000_00)
    assert available(hotel, card) == 3000_00
    with pytest.raises(Refused) as too_much:
        refund(hotel, paid.ref, 2000_01)
    assert too_much.value.code == "refund_too_large"
    assert too_much.value.params["left"] == "2000.00"
    assert refund(hotel, paid.ref, 1000_00, operation_id="back-1").replayed
    with pytest.raises(Conflict):
        refund(hotel, paid.ref, 500_00, operation_id="back-1")
    rest = refund(hotel, paid.ref, None)
    assert rest.amount_minor == 2000_00
    with pytest.raises(Refused):
        refund(hotel, paid.ref, 1)
    after = hotel.read(lambda c: rd.get_redemption(c, hotel.t, channel=FOLIO, ref=paid.ref))
    assert after.refunded_minor == after.amount_minor == 3000_00
    assert available(hotel, card) == 5000_00 and redeemed_total(hotel) == 0

    # Each give-back names the write-off it corrects and comes back as a fresh lot.
    transfer = hotel.read(lambda c: get_transfer(c, hotel.t, part.transfer_id or 0))
    assert (transfer.kind, transfer.corrects_transfer_id) == ("refund", paid.transfer_id)
    lot = hotel.read(
        lambda c: c.execute(
            select(lots.c.amount_minor, lots.c.expires_at).where(
                lots.c.transfer_id == part.transfer_id
            )
        ).one()
    )
    assert lot.amount_minor == 1000_00 and lot.expires_at is not None
    history = hotel.read(lambda c: card_history(c, hotel.t, card.id, newest_first=True))
    assert [i.kind for i in history.items[:3]] == [
        "redemption_refund",
        "redemption_refund",
        "redemption",
    ]
    assert history.items[0].title == f"2000.00 given back: write-off {paid.id} (hotel folio)"
    hotel.assert_clean()


def test_a_refund_names_a_write_off_of_its_own_channel(hotel: Hotel) -> None:
    card = hotel.card(1000_00)
    paid = redeem(hotel, card, 500_00)
    given = refund(hotel, paid.ref, 100_00)
    for ref, channel in ((paid.ref, "terminal:5"), (given.ref, FOLIO), ("nonsense", FOLIO)):
        with pytest.raises(NotFound) as missing:
            refund(hotel, ref, 100_00, channel=channel)
        assert missing.value.code == "redemption_not_found"


def test_a_blocked_card_still_gets_its_points_back(hotel: Hotel) -> None:
    card = hotel.card(1000_00)
    paid = redeem(hotel, card, 600_00)
    hotel.tx(
        lambda c: block_cards(
            c, tenant_id=hotel.t, card_ids=[card.id], reason="lost", actor=hotel.actor
        )
    )
    refund(hotel, paid.ref, None)
    assert hotel.get(card).balance_minor == 1000_00


def test_another_tenants_cards_and_write_offs_do_not_exist(hotel: Hotel, engine: Any) -> None:
    from kopilka.tenancy.actions import create_tenant

    from .conftest import make_hotel

    card = hotel.card(1000_00)
    paid = redeem(hotel, card, 100_00)
    other_tenant = hotel.tx(
        lambda c: create_tenant(
            c, slug=f"x-{uuid.uuid4().hex[:10]}", name="Другой отель", actor=hotel.actor
        )
    )
    other = make_hotel(engine, other_tenant, hotel.actor)
    with pytest.raises(NotFound):
        other.read(lambda c: rd.card_balances(c, other.t, card.number))
    with pytest.raises(NotFound):
        refund(other, paid.ref, 100_00)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    taken=st.integers(min_value=1, max_value=10_000),
    asked=st.lists(st.one_of(st.none(), st.integers(min_value=1, max_value=6_000)), max_size=6),
)
def test_whatever_is_asked_back_the_card_ends_where_the_ledger_says(
    hotel: Hotel, taken: int, asked: list[int | None]
) -> None:
    card = hotel.card(10_000)
    paid = redeem(hotel, card, taken)
    given_back = 0
    for amount in asked:
        left = taken - given_back
        try:
            done = refund(hotel, paid.ref, amount)
        except Refused as error:
            assert error.code == "refund_too_large"
            assert left == 0 or (amount is not None and amount > left)
            continue
        assert done.amount_minor == (left if amount is None else amount)
        given_back += done.amount_minor
    after = hotel.read(lambda c: rd.get_redemption(c, hotel.t, channel=FOLIO, ref=paid.ref))
    assert after.refunded_minor == given_back <= taken
    assert available(hotel, card) == 10_000 - taken + given_back


def test_removing_the_loyalty_data_takes_the_write_offs_with_it(hotel: Hotel) -> None:
    from kopilka.loyalty.billing import (
        PurgeConfirmation,
        purge_loyalty,
        request_purge,
        set_loyalty_enabled,
    )

    card = hotel.card(1000_00)
    paid = redeem(hotel, card, 600_00)
    refund(hotel, paid.ref, 100_00)
    refund(hotel, paid.ref, 200_00)
    hotel.tx(lambda c: set_loyalty_enabled(c, tenant_id=hotel.t, enabled=False, actor=hotel.actor))
    asked = hotel.tx(lambda c: request_purge(c, tenant_id=hotel.t, actor=hotel.actor))
    report = hotel.tx(
        lambda c: purge_loyalty(
            c,
            tenant_id=hotel.t,
            confirmation=PurgeConfirmation(asked.token, hotel.tenant.slug),
            actor=hotel.actor,
        )
    )
    assert report.removed["loyalty_redemptions"] == 3
    assert rows(hotel) == 0
    hotel.assert_clean()
