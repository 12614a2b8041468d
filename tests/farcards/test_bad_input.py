"""Whatever r_keeper (or anyone) sends, the answer is a FarCards failure with a reason the
cashier can read, HTTP 200, a log line, and nothing written."""

from __future__ import annotations

import logging
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import func, select

from kopilka.core.db import read_only
from kopilka.farcards.protocol import MAX_BODY_BYTES
from kopilka.farcards.schema import farcards_calls
from kopilka.farcards.terminals import configure_terminal
from kopilka.ledger.schema import transfers
from kopilka.loyalty.schema import pos_checks

from .conftest import Restaurant, Station, check_buffer, open_restaurant, station_for

GOOD_TX = (
    '<TransactionsEx Card="{card}" Kind="3" Summa="10000" Restaurant="9999" RKDate="1" '
    'RKUni="2" RKCheck="1"/>'
)


def _written(restaurant: Restaurant) -> tuple[int, int, int]:
    tenant = restaurant.tenant.id
    with read_only(restaurant.engine) as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).where(table.c.tenant_id == tenant)).scalar()
            for table in (pos_checks, farcards_calls, transfers)
        )


def _failure(reply: ET.Element) -> tuple[str, str]:
    assert reply.attrib["Result"] == "1"
    if reply.tag == "GetCardInfoEx":
        return "", reply.attrib["ScrMessage"]
    answer = reply.find("TRRESPONSE")
    assert answer is not None
    return answer.attrib["error_code"], answer.attrib["err_text"]


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        (b"<ROOT><Transactions>", "112", "не является корректным XML"),
        ("<ROOT><Transactions/></ROOT>".encode("cp1251"), "133", "нет транзакций"),
        (
            b'<?xml version="1.0" encoding="windows-1251"?><ROOT/>',
            "111",
            "UTF-8",
        ),
        ("<ROOT>Карта</ROOT>".encode("cp1251"), "111", "UTF-8"),
        (
            b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b"<ROOT><Transactions>&b;</Transactions></ROOT>",
            "112",
            "DTD",
        ),
        (
            b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><ROOT>&x;</ROOT>',
            "112",
            "DTD",
        ),
        (b"<ROOT>" + b" " * (MAX_BODY_BYTES + 1) + b"</ROOT>", "110", "слишком большой"),
        (
            GOOD_TX.replace('Kind="3"', 'Kind="3" Bonus="1"'),
            "114",
            "неизвестный атрибут Bonus",
        ),
        (GOOD_TX.replace('Card="{card}"', 'Card="12AB"'), "117", "'12AB'"),
        (GOOD_TX.replace('Restaurant="9999"', 'Restaurant="1"'), "120", "ресторан 1"),
        (GOOD_TX.replace('RKUni="2"', 'RKUni="7"'), "121", "станция 7"),
        (GOOD_TX.replace('Summa="10000"', 'Summa="-10000"'), "131", "неверный знак"),
        (GOOD_TX.replace('Summa="10000"', 'Summa="100.00"'), "116", "не целое"),
        (GOOD_TX.replace('Kind="3"', 'Kind="9"'), "130", "Kind=9"),
        ("<ROOT><Other/></ROOT>", "113", "<Other>"),
    ],
)
def test_bad_transactions_are_refused_with_a_reason(
    restaurant: Restaurant,
    station: Station,
    caplog: pytest.LogCaptureFixture,
    body: str | bytes,
    code: str,
    text: str,
) -> None:
    card = restaurant.card()
    if isinstance(body, str) and body.startswith("<TransactionsEx"):
        sale = check_buffer(chmode=1, lines=[10000], checkguid="{S-1}")
        body = f"<ROOT><Transactions>{body.format(card=card.number)}</Transactions>{sale}</ROOT>"
    with caplog.at_level(logging.WARNING, logger="kopilka.farcards"):
        reply = station.post("TransactionsEx", body)
    got_code, got_text = _failure(reply)
    assert (got_code, text in got_text) == (code, True), got_text
    assert _written(restaurant) == (0, 0, 0)
    assert any(r.message == "farcards refused" for r in caplog.records)
    assert restaurant.secret not in caplog.text


def test_a_lookup_failure_carries_its_reason(restaurant: Restaurant, station: Station) -> None:
    reply = station.post(
        "GetCardInfoEx", '<ROOT><QRY Card="x1" Restaurant="9999" UnitNo="2"/></ROOT>'
    )
    assert _failure(reply)[1] == "Неверный номер карты: 'x1'"
    reply = station.post("GetCardInfoEx", '<ROOT><QRY Card="80000001" Restaurant="9999"/></ROOT>')
    assert "UnitNo" in _failure(reply)[1]


def test_who_may_call(restaurant: Restaurant, station: Station) -> None:
    card = restaurant.card()
    wrong = Station(station.client, f"/farcards/{restaurant.tenant.slug}/kfc_nope")
    assert "ExtDllHttp.ini" in _failure(wrong.lookup(card.number))[1]
    other_tenant = Station(station.client, f"/farcards/someone-else/{restaurant.secret}")
    assert "ExtDllHttp.ini" in _failure(other_tenant.lookup(card.number))[1]
    unknown = station.post("FindEmail", "<ROOT/>")
    assert _failure(unknown)[0] == "103"

    restaurant.tx(
        lambda c: configure_terminal(
            c,
            tenant_id=restaurant.tenant.id,
            terminal_id=restaurant.terminal_id,
            restaurant_code="9999",
            allowed_ips=["10.0.0.0/8"],
            actor=restaurant.actor,
        )
    )
    # The test client calls from "testclient", which is no address of 10.0.0.0/8.
    assert "не разрешены" in _failure(station.lookup(card.number))[1]


def test_a_room_charge_without_its_payment_is_refused_and_writes_nothing(
    restaurant: Restaurant, station: Station
) -> None:
    # The room interface (tests/farcards/test_room_charge.py) charges the check's payment
    # of the sum charged; this check buffer has none.
    card = restaurant.card()
    room = Station(station.client, f"{station.base}/room")
    code, text = _failure(
        room.transactions(
            card.number, [(0, -5000)], rk_check="1", check=check_buffer(chmode=1, lines=[5000])
        )
    )
    assert (code, text) == (
        "155",
        "В чеке нет одной оплаты на 50.00 валютой «Закрытие на номер»",
    )
    assert _written(restaurant) == (0, 0, 0)


def test_english_tenants_read_english(restaurant: Restaurant) -> None:
    english = open_restaurant(restaurant.engine, restaurant.actor, locale="en")
    reply = station_for(english).lookup("12345678")
    assert _failure(reply)[1] == "Card not found"


def test_the_access_log_never_shows_the_secret(restaurant: Restaurant, station: Station) -> None:
    from tests.api.test_ops import capture, release

    card = restaurant.card()
    records = capture("kopilka.api.access")
    try:
        station.lookup(card.number)
    finally:
        release("kopilka.api.access")
    paths = [str(getattr(record, "path", "")) for record in records]
    assert f"/farcards/{restaurant.tenant.slug}/***/GetCardInfoEx" in paths
    assert not any(restaurant.secret in path for path in paths)
