"""Whole r_keeper conversations with Kopilka as the FarCards server (SPEC P-10).

Amounts in FarCards are kopecks: ``100000`` is 1,000.00 roubles. The program accrues 3 %
of what the guest pays in money and lets points pay at most half of a check.
"""

from __future__ import annotations

from sqlalchemy import func, select

from kopilka.core.db import read_only
from kopilka.farcards.schema import farcards_calls
from kopilka.loyalty.cards import block_cards
from kopilka.loyalty.schema import pos_checks

from .conftest import Restaurant, Station, check_buffer


def _response(reply: object) -> dict[str, str]:
    inner = reply.find("TRRESPONSE")  # type: ignore[attr-defined]
    assert inner is not None
    return dict(inner.attrib)


def _sale(station: Station, card: str, guid: str, lines: list[int], kinds: list[tuple[int, int]]):
    return station.transactions(
        card, kinds, rk_check=guid, check=check_buffer(chmode=1, lines=lines, checkguid=guid)
    )


def test_lookup_shows_holder_codes_balances_and_what_may_be_paid(
    restaurant: Restaurant, station: Station
) -> None:
    card = restaurant.card(holder_name="Ирина Петрова")
    info = station.lookup(card.number)
    assert info.tag == "GetCardInfoEx"
    assert info.attrib["Result"] == "0"
    assert info.attrib["Holder"] == "Ирина Петрова"
    assert (info.attrib["Locked"], info.attrib["StopDate"], info.attrib["Deleted"]) == (
        "0",
        "0",
        "0",
    )
    assert (info.attrib["Bonus"], info.attrib["Discount"]) == ("7", "0")
    assert (info.attrib["Summa"], info.attrib["Sum2"], info.attrib["Sum3"]) == ("0", "0", "0")

    _sale(station, card.number, "{S-1}", [100000], [(3, 100000), (2, 3000)])
    info = station.lookup(card.number)
    assert (info.attrib["Summa"], info.attrib["Sum2"], info.attrib["Sum3"]) == (
        "3000",
        "3000",
        "100000",
    )
    assert "30.00" in info.attrib["PrnMessage"]
    # Points accrued live 30 days: nothing expires within the two-week notice yet.
    assert "ScrMessage" not in info.attrib

    # With the check sent, Summa honours the program's cap: half of a 40.00 check.
    info = station.lookup(card.number, check_buffer(chmode=1, lines=[4000]))
    assert (info.attrib["Summa"], info.attrib["DiscLimit"]) == ("2000", "0")

    restaurant.tx(
        lambda c: block_cards(
            c,
            tenant_id=restaurant.tenant.id,
            card_ids=[card.id],
            reason="утеряна",
            actor=restaurant.actor,
        )
    )
    info = station.lookup(card.number)
    assert (info.attrib["Locked"], info.attrib["WhyLock"], info.attrib["Summa"]) == (
        "1",
        "утеряна",
        "0",
    )

    missing = station.lookup("99999999")
    assert missing.attrib["Result"] == "1"
    assert missing.attrib["ScrMessage"] == "Карта не найдена"


def test_sale_paid_partly_with_points_accrues_by_the_program(
    restaurant: Restaurant, station: Station
) -> None:
    card = restaurant.card()
    first = _sale(station, card.number, "{S-1}", [60000, 40000], [(3, 100000), (2, 3000)])
    assert first.attrib["Result"] == "0"
    assert _response(first)["err_text"] == ""
    assert restaurant.get(card).balance_minor == 3000

    # 400.00: 20.00 in points, 380.00 in money; 3 % of the money is 11.40.
    second = _sale(station, card.number, "{S-2}", [40000], [(0, -2000), (3, 38000), (2, 1140)])
    assert second.attrib["Result"] == "0", _response(second)
    lines = [dict(t.attrib) for t in second.iter("TRANSACTION")]
    assert [(t["value"], t["subaccount"], t["extinfo"]) for t in lines] == [
        ("-2000", "2", "BonusSpent=1"),
        ("1140", "2", "BonusAdded=1"),
    ]
    assert restaurant.get(card).balance_minor == 3000 - 2000 + 1140

    # The POS counted its own bonus (15.00): Kopilka accrues by its rules and warns.
    third = _sale(station, card.number, "{S-3}", [10000], [(3, 10000), (2, 1500)])
    assert third.attrib["Result"] == "0"
    assert _response(third)["error_code"] == "0"
    assert "касса 15.00" in _response(third)["err_text"]
    assert "3.00" in _response(third)["err_text"]
    restaurant.assert_clean()


def test_a_repeated_call_is_applied_once_and_answered_as_the_first_time(
    restaurant: Restaurant, station: Station
) -> None:
    card = restaurant.card()
    body_kinds = [(3, 100000), (2, 3000)]
    first = station.client.post  # the raw replies are compared byte for byte
    check = check_buffer(chmode=1, lines=[100000], checkguid="{S-9}")
    items = "".join(
        f'<TransactionsEx Card="{card.number}" Kind="{k}" Summa="{s}" Restaurant="9999" '
        f'RKDate="46349" RKUni="2" RKCheck="9"/>'
        for k, s in body_kinds
    )
    body = f"<ROOT><Transactions>{items}</Transactions>{check}</ROOT>".encode()
    replies = [first(f"{station.base}/TransactionsEx", content=body) for _ in range(2)]
    assert replies[0].content == replies[1].content
    assert b'Result="0"' in replies[0].content
    assert restaurant.get(card).balance_minor == 3000

    other = station.transactions(card.number, [(3, 90000)], rk_check="9", check=check)
    assert other.attrib["Result"] == "1"
    assert _response(other)["error_code"] == "140"
    assert restaurant.get(card).balance_minor == 3000


def test_cancellation_undoes_the_sale(restaurant: Restaurant, station: Station) -> None:
    card = restaurant.card()
    _sale(station, card.number, "{S-1}", [100000], [(3, 100000)])
    _sale(station, card.number, "{S-2}", [40000], [(0, -2000), (3, 38000)])
    assert restaurant.get(card).balance_minor == 3000 - 2000 + 1140

    cancel = station.transactions(
        card.number,
        [(0, 2000), (3, -38000), (2, -1140)],
        rk_check="{S-2}",
        check=check_buffer(chmode=2, lines=[40000], checkguid="{S-2}"),
    )
    assert cancel.attrib["Result"] == "0", _response(cancel)
    assert [t.attrib["value"] for t in cancel.iter("TRANSACTION")] == ["2000", "-1140"]
    assert restaurant.get(card).balance_minor == 3000

    never = station.transactions(
        card.number,
        [(3, -5000)],
        rk_check="{S-404}",
        check=check_buffer(chmode=2, lines=[5000], checkguid="{S-404}"),
    )
    assert never.attrib["Result"] == "1"
    assert _response(never)["err_text"] == "Отмена: этот чек не проводился в Kopilka"
    restaurant.assert_clean()


def test_return_of_part_of_a_sale_takes_back_its_share(
    restaurant: Restaurant, station: Station
) -> None:
    card = restaurant.card()
    sale = station.transactions(
        card.number,
        [(3, 100000)],
        rk_check="1",
        check=check_buffer(chmode=1, lines=[60000, 40000], checkguid="{S-1}", orderguid="{O-1}"),
    )
    assert sale.attrib["Result"] == "0"
    # The return is a check of its own in the same order: 400.00 of the 1,000.00 back.
    back = station.transactions(
        card.number,
        [(3, -40000)],
        rk_check="2",
        check=check_buffer(chmode=3, lines=[-40000], checkguid="{R-1}", orderguid="{O-1}"),
    )
    assert back.attrib["Result"] == "0", _response(back)
    assert restaurant.get(card).balance_minor == 3000 - 1200
    assert restaurant.get(card).accumulation_minor == 60000

    # The cashier rolls the return back (chmode 4): the refund is taken back, once.
    def rollback() -> object:
        return station.transactions(
            card.number,
            [(3, 40000)],
            rk_check="2",
            check=check_buffer(chmode=4, lines=[40000], checkguid="{R-1}", orderguid="{O-1}"),
        )

    first = rollback()
    assert first.attrib["Result"] == "0", _response(first)
    lines = first.findall(".//TRANSACTION")
    assert [line.attrib["value"] for line in lines] == ["1200"]
    assert restaurant.get(card).balance_minor == 3000
    assert restaurant.get(card).accumulation_minor == 100000
    again = rollback()
    assert again.attrib["Result"] == "0"
    assert restaurant.get(card).balance_minor == 3000
    # The same return made again applies anew.
    back_again = station.transactions(
        card.number,
        [(3, -40000)],
        rk_check="2",
        check=check_buffer(chmode=3, lines=[-40000], checkguid="{R-1}", orderguid="{O-1}"),
    )
    assert back_again.attrib["Result"] == "0", _response(back_again)
    assert restaurant.get(card).balance_minor == 1800
    # Check editing is still refused, with the reason shown.
    edit = station.transactions(
        card.number,
        [(3, 1000)],
        rk_check="4",
        check=check_buffer(chmode=5, lines=[1000], checkguid="{E-1}"),
    )
    assert edit.attrib["Result"] == "1"
    assert "chmode=5" in _response(edit)["err_text"]
    restaurant.assert_clean()


def test_a_rollback_of_a_return_never_posted_is_refused(
    restaurant: Restaurant, station: Station
) -> None:
    card = restaurant.card()
    _sale(station, card.number, "{S-1}", [100000], [(3, 100000)])
    refused = station.transactions(
        card.number,
        [(3, 40000)],
        rk_check="9",
        check=check_buffer(chmode=4, lines=[40000], checkguid="{R-404}"),
    )
    assert refused.attrib["Result"] == "1"
    assert _response(refused)["error_code"] == "141"
    assert restaurant.get(card).balance_minor == 3000


def test_a_refusal_is_shown_to_the_cashier_and_nothing_is_written(
    restaurant: Restaurant, station: Station
) -> None:
    card = restaurant.card()
    _sale(station, card.number, "{S-1}", [100000], [(3, 100000)])
    # 30.00 points on the card, but a 40.00 check may take at most 20.00 of them.
    refused = _sale(station, card.number, "{S-2}", [4000], [(0, -2500), (3, 1500)])
    assert refused.attrib["Result"] == "1"
    answer = _response(refused)
    assert answer["error_code"] == "210"
    assert answer["err_text"] == "Баллами можно оплатить не больше 20.00 по этому чеку"
    assert restaurant.get(card).balance_minor == 3000
    with read_only(restaurant.engine) as conn:
        checks = conn.execute(
            select(func.count()).where(pos_checks.c.tenant_id == restaurant.tenant.id)
        ).scalar()
        calls = conn.execute(
            select(func.count()).where(farcards_calls.c.tenant_id == restaurant.tenant.id)
        ).scalar()
    assert (checks, calls) == (1, 1)
