"""The Settings tab "r_keeper (FarCards)" (SPEC P-10): an owner connects the restaurant's
r_keeper server to Kopilka on screen, copies the secret and the ``ExtDllHttp.ini`` shown
once, limits the stations and the addresses, maps the balances to Sum2..Sum8 and sets
the discount and bonus numbers per tier; mistakes are shown by their fields and write
nothing; the secret from the screen opens the FarCards door; only owners and
administrators come in, and only to their own company's terminals."""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from kopilka.core.db import read_only
from kopilka.core.errors import KopilkaError
from kopilka.core.money import UnitKind
from kopilka.core.settings import get_settings
from kopilka.farcards.ini import ext_dll_http_ini
from kopilka.farcards.schema import farcards_codes, farcards_terminals
from kopilka.farcards.terminals import (
    FarcardsTerminal,
    authenticate,
    codes_for,
    get_link,
    list_links,
    sub_accounts,
)
from kopilka.ledger.accounts import create_unit
from kopilka.loyalty.cards import issue_card
from kopilka.loyalty.programs import Program, add_tier, create_program, get_program
from kopilka.tenancy.actions import create_tenant, create_terminal, revoke_terminal
from kopilka.tenancy.schema import audit_events
from tests.farcards.conftest import RESTAURANT, STATION, Station, check_buffer
from tests.web.conftest import TestClient, Visitor, Web, text_of
from tests.web.test_cards import ACTOR, field_error

HOME = "/settings/farcards"


def terminal(web: Web, name: str = "r_keeper, main hall") -> int:
    with web.engine.begin() as conn:
        made, _ = create_terminal(conn, tenant_id=web.tenant.id, name=name, actor=ACTOR)
    return made.id


def bonus_program(web: Web) -> Program:
    """BONUS points worth a rouble, 3 % accrual, and a "Gold" tier from 10,000 roubles."""
    with web.engine.begin() as conn:
        create_unit(
            conn,
            tenant_id=web.tenant.id,
            code="BONUS",
            kind=UnitKind.POINTS,
            name="бонусов",
            exponent=2,
            actor=ACTOR,
        )
        program = create_program(
            conn,
            tenant_id=web.tenant.id,
            name="Бонусы",
            unit_code="BONUS",
            accrual_bp=300,
            max_share_bp=5000,
            actor=ACTOR,
        )
        add_tier(
            conn,
            tenant_id=web.tenant.id,
            program_id=program.id,
            name="Золото",
            threshold_minor=10_000_00,
            discount_bp=500,
            accrual_bp=500,
            actor=ACTOR,
        )
        return get_program(conn, web.tenant.id, program.id)


def link_of(web: Web, terminal_id: int) -> FarcardsTerminal | None:
    with read_only(web.engine) as conn:
        return list_links(conn, web.tenant.id).get(terminal_id)


def opens(web: Web, secret: str) -> bool:
    """Whether the FarCards door would let this secret in."""
    with read_only(web.engine) as conn:
        try:
            authenticate(conn, tenant_slug=web.tenant.slug, secret=secret)
        except KopilkaError:
            return False
    return True


def connect(
    visitor: Visitor,
    terminal_id: int,
    *,
    restaurant: str = RESTAURANT,
    stations: str = STATION,
    addresses: str = "",
    new_secret: bool = False,
) -> httpx.Response:
    data = {"restaurant_code": restaurant, "stations": stations, "allowed_ips": addresses}
    if new_secret:
        data["new_secret"] = "y"
    return visitor.post(f"{HOME}/terminals/{terminal_id}", data)


def shown_secret(page: httpx.Response) -> tuple[str, str]:
    """The address and the ini on the page that shows the secret."""
    assert page.status_code == 200, text_of(page.text)[:500]
    address = re.search(r'data-testid="farcards-address">([^<]+)</code>', page.text)
    ini = re.search(r'data-testid="farcards-ini">([^<]+)</pre>', page.text)
    assert address and ini, "the secret is not on the page"
    return html.unescape(address.group(1)), html.unescape(ini.group(1))


def secret_in(address: str) -> str:
    return address.rsplit("/", 1)[1]


def flash_of(visitor: Visitor, reply: httpx.Response) -> str:
    return text_of(visitor.follow(reply).text)


# --------------------------------------------------------------------------- terminals


def test_an_owner_connects_a_terminal_and_sees_the_secret_once(web: Web) -> None:
    hall = terminal(web)
    owner = web.sign_in("owner")
    home = owner.get(HOME)
    assert home.status_code == 200
    assert 'data-testid="tab-farcards" aria-current="page"' in home.text
    row = re.search(rf'data-testid="farcards-terminal-{hall}">(.*?)</tr>', home.text, re.S)
    assert row and "Не подключён" in text_of(row.group(1)) and "Подключить" in row.group(1)
    form = owner.get(f"{HOME}/terminals/{hall}")
    assert form.status_code == 200
    assert 'name="new_secret"' not in form.text  # nothing to renew yet

    page = connect(owner, hall, stations="3, 2")
    address, ini = shown_secret(page)
    secret = secret_in(address)
    assert secret.startswith("kfc_")
    assert address == f"http://testserver/farcards/{web.tenant.slug}/{secret}"
    # The same text the CLI prints, built by the same function.
    assert ini == ext_dll_http_ini("http://testserver/", web.tenant.slug, secret)
    assert ini.splitlines() == [
        "[Server]",
        f"Address={address}",
        "GetCardInfoEx=GetCardInfoEx",
        "TransactionsEx=TransactionsEx",
    ]
    said = text_of(page.text)
    assert "Скопируйте его сейчас: больше он показан не будет." in said
    assert "Терминал «r_keeper, main hall» отвечает FarCards r_keeper с новым секретом." in said
    assert opens(web, secret)
    link = link_of(web, hall)
    assert link is not None
    assert (link.restaurant_code, link.station_codes, link.allowed_ips) == (
        RESTAURANT,
        ("2", "3"),
        None,
    )

    # Never again: the tab and the terminal's page show only the secret's prefix.
    for url in (HOME, f"{HOME}/terminals/{hall}"):
        again = owner.get(url)
        assert again.status_code == 200
        assert secret not in again.text and "farcards-ini" not in again.text
        assert f"kfc_{link.secret_prefix}_…" in again.text
    row = re.search(
        rf'data-testid="farcards-terminal-{hall}">(.*?)</tr>', owner.get(HOME).text, re.S
    )
    assert row and text_of(row.group(1)) == (
        f"r_keeper, main hall Подключён kfc_{link.secret_prefix}_… 9999 2, 3 любые Изменить…"
    )
    with read_only(web.engine) as conn:
        actions = conn.execute(
            select(audit_events.c.action).where(audit_events.c.tenant_id == web.tenant.id)
        ).scalars()
        assert "farcards.configure" in set(actions)


def test_the_public_address_setting_wins_over_the_screens_address(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    hall = terminal(web)
    owner = web.sign_in("owner")
    monkeypatch.setenv("KOPILKA_PUBLIC_URL", "https://kopilka.example/")
    get_settings.cache_clear()
    try:
        address, ini = shown_secret(connect(owner, hall))
    finally:
        monkeypatch.delenv("KOPILKA_PUBLIC_URL")
        get_settings.cache_clear()
    assert address.startswith(f"https://kopilka.example/farcards/{web.tenant.slug}/kfc_")
    assert f"Address={address}" in ini.splitlines()


def test_stations_and_addresses_are_edited_and_mistakes_shown_by_their_fields(web: Web) -> None:
    hall = terminal(web)
    owner = web.sign_in("owner")
    secret = secret_in(shown_secret(connect(owner, hall, addresses="192.168.10.0/24"))[0])
    before = link_of(web, hall)
    form = owner.get(f"{HOME}/terminals/{hall}")
    assert 'value="9999"' in form.text and 'value="192.168.10.0/24"' in form.text
    assert 'name="new_secret"' in form.text

    bad_network = connect(owner, hall, stations="2, 5", addresses="192.168.10.0/24, 10.0.0.300")
    assert bad_network.status_code == 422
    assert field_error(bad_network.text, "allowed_ips") == (
        "«10.0.0.300» — не адрес и не сеть; пишите их как 192.168.10.5 или 192.168.10.0/24."
    )
    assert 'value="2, 5"' in bad_network.text  # what was typed comes back
    bad_station = connect(owner, hall, stations="2 касса")
    assert field_error(bad_station.text, "stations") == (
        "«касса» — не код станции: нужно от 1 до 32 латинских букв, цифр, _ или -."
    )
    no_restaurant = connect(owner, hall, restaurant="")
    assert no_restaurant.status_code == 422
    assert field_error(no_restaurant.text, "restaurant_code")
    spaced = connect(owner, hall, restaurant="99 99")
    assert field_error(spaced.text, "restaurant_code") == (
        "Код ресторана — это от 1 до 32 латинских букв, цифр, _ или -."
    )
    assert link_of(web, hall) == before  # nothing written

    saved = connect(owner, hall, stations="5; 2", addresses="192.168.10.7\n10.1.0.0/16")
    assert "Настройки FarCards терминала «r_keeper, main hall» сохранены; секрет прежний." in (
        flash_of(owner, saved)
    )
    link = link_of(web, hall)
    assert link is not None
    assert (link.station_codes, link.allowed_ips) == (
        ("2", "5"),
        ("10.1.0.0/16", "192.168.10.7/32"),
    )
    assert opens(web, secret)
    anywhere = connect(owner, hall, stations="", addresses="  ")
    assert anywhere.status_code == 303
    link = link_of(web, hall)
    assert link is not None and (link.station_codes, link.allowed_ips) == (None, None)

    renewed = connect(owner, hall, new_secret=True)
    fresh = secret_in(shown_secret(renewed)[0])
    assert fresh != secret and opens(web, fresh) and not opens(web, secret)


def test_errors_speak_the_users_language(web: Web) -> None:
    hall = terminal(web)
    english = web.sign_in("owner")
    english.post("/language", {"locale": "en", "next": "/"})
    page = english.get(HOME)
    assert "Not connected" in text_of(page.text) and "Sub-accounts" in text_of(page.text)
    bad = connect(english, hall, addresses="10.0.0.0/33")
    assert field_error(bad.text, "allowed_ips") == (
        "“10.0.0.0/33” is neither an address nor a network; write them as 192.168.10.5 "
        "or 192.168.10.0/24."
    )
    first = secret_in(shown_secret(connect(english, hall))[0])
    renewed = connect(english, hall, new_secret=True)
    assert "Copy it now; it is not shown again." in text_of(renewed.text)
    assert opens(web, secret_in(shown_secret(renewed)[0])) and not opens(web, first)


def test_a_revoked_terminal_is_not_connected(web: Web) -> None:
    hall = terminal(web)
    with web.engine.begin() as conn:
        revoke_terminal(conn, tenant_id=web.tenant.id, terminal_id=hall, actor=ACTOR)
    owner = web.sign_in("owner")
    assert f'data-testid="farcards-edit-{hall}"' not in owner.get(HOME).text
    refused = connect(owner, hall)
    assert refused.status_code == 422
    assert "Этот терминал отключён; добавьте новый и подключите его." in text_of(refused.text)
    assert link_of(web, hall) is None


# --------------------------------------------------------------------------- what lookups show


def test_sub_accounts_are_mapped_each_balance_once(web: Web) -> None:
    bonus_program(web)
    owner = web.sign_in("owner")
    home = owner.get(HOME)
    assert 'name="sub-sum2"' in home.text and 'name="sub-sum8"' in home.text
    assert "бонусов (BONUS)" in home.text and "Накопление покупок для уровня" in home.text

    def mapped() -> dict[str, int]:
        with read_only(web.engine) as conn:
            return sub_accounts(conn, web.tenant.id)

    reply = owner.post(f"{HOME}/sub-accounts", {"sub-sum2": "BONUS", "sub-sum3": "accumulation"})
    assert "Субсчета сохранены." in flash_of(owner, reply)
    assert mapped() == {"BONUS": 2, "accumulation": 3}
    page = owner.get(HOME).text
    assert re.search(r'<option selected value="BONUS">|<option value="BONUS" selected>', page)

    twice = owner.post(f"{HOME}/sub-accounts", {"sub-sum2": "BONUS", "sub-sum4": "BONUS"})
    assert twice.status_code == 422
    assert field_error(twice.text, "sub-sum4") == "Этот остаток уже показан в Sum2."
    unknown = owner.post(f"{HOME}/sub-accounts", {"sub-sum5": "NOPE"})
    assert unknown.status_code == 422 and field_error(unknown.text, "sub-sum5")
    assert mapped() == {"BONUS": 2, "accumulation": 3}

    swapped = owner.post(f"{HOME}/sub-accounts", {"sub-sum2": "accumulation", "sub-sum3": "BONUS"})
    assert swapped.status_code == 303
    assert mapped() == {"accumulation": 2, "BONUS": 3}
    assert owner.post(f"{HOME}/sub-accounts", {"sub-sum2": ""}).status_code == 303
    assert mapped() == {}


def test_discount_and_bonus_numbers_per_program_and_tier(web: Web) -> None:
    program = bonus_program(web)
    gold = program.tiers[0]
    owner = web.sign_in("owner")
    url = f"{HOME}/programs/{program.id}"
    form = owner.get(url)
    assert form.status_code == 200
    assert f'name="tier{gold.id}-own"' in form.text and 'name="program-bonus"' in form.text

    def codes(tier_id: int | None) -> tuple[int | None, int | None]:
        with read_only(web.engine) as conn:
            return codes_for(conn, web.tenant.id, program.id, tier_id)

    tier = f"tier{gold.id}"
    reply = owner.post(
        url,
        {"program-bonus": "7", f"{tier}-own": "y", f"{tier}-discount": "5", f"{tier}-bonus": "8"},
    )
    assert "Номера r_keeper программы «Бонусы» сохранены." in flash_of(owner, reply)
    assert (codes(None), codes(gold.id)) == ((None, 7), (5, 8))
    table = re.findall(
        r'data-testid="farcards-codes-[\d-]+">(.*?)</tr>', owner.get(HOME).text, re.S
    )
    assert [text_of(cells).removesuffix(" Изменить…") for cells in table] == [
        "Бонусы Все карты программы — 7",
        "Уровень «Золото» 5 8",
    ]

    zero = owner.post(
        url,
        {"program-discount": "0", "program-bonus": "9", f"{tier}-own": "y", f"{tier}-bonus": "8"},
    )
    assert zero.status_code == 422
    assert field_error(zero.text, "program-discount") == (
        "Введите целое число от 1 до 2147483647 или оставьте поле пустым."
    )
    huge = owner.post(
        url, {"program-bonus": "7", f"{tier}-own": "y", f"{tier}-bonus": "2147483648"}
    )
    assert field_error(huge.text, f"{tier}-bonus").startswith("Введите целое число")
    words = owner.post(url, {"program-bonus": "семь"})
    assert words.status_code == 422 and field_error(words.text, "program-bonus")
    unticked = owner.post(url, {"program-bonus": "7", f"{tier}-discount": "6"})
    assert field_error(unticked.text, f"{tier}-own") == (
        "Отметьте, чтобы дать уровню эти номера, или очистите их."
    )
    assert (codes(None), codes(gold.id)) == ((None, 7), (5, 8))  # nothing written

    # Unticked and empty: the tier's cards get the program's numbers again.
    assert owner.post(url, {"program-bonus": "7"}).status_code == 303
    assert (codes(None), codes(gold.id)) == ((None, 7), (None, 7))
    assert "(как у программы)" in text_of(owner.get(HOME).text)
    # Ticked and empty: none for the tier, whatever the program's.
    assert owner.post(url, {"program-bonus": "7", f"{tier}-own": "y"}).status_code == 303
    assert codes(gold.id) == (None, None)
    # The program's numbers cleared: its row goes; the tier keeps its own (none).
    assert owner.post(url, {f"{tier}-own": "y"}).status_code == 303
    with read_only(web.engine) as conn:
        rows = conn.execute(
            select(farcards_codes.c.tier_id).where(farcards_codes.c.program_id == program.id)
        ).all()
    assert [r.tier_id for r in rows] == [gold.id]
    assert owner.get(f"{HOME}/programs/{10**12}").status_code == 404
    assert owner.get(f"{HOME}/programs/abc").status_code == 404


# --------------------------------------------------------------------------- who comes in


def test_administrators_come_in_and_till_staff_do_not(web: Web) -> None:
    hall = terminal(web)
    program = bonus_program(web)
    admin = web.sign_in("administrator")
    assert admin.get(HOME).status_code == 200
    assert connect(admin, hall).status_code == 200
    for role in ("cashier", "front_desk"):
        visitor = web.sign_in(role)
        assert 'data-testid="tab-farcards"' not in visitor.get("/").text
        for url in (HOME, f"{HOME}/terminals/{hall}", f"{HOME}/programs/{program.id}"):
            page = visitor.get(url)
            assert page.status_code == 403, url
            assert 'data-testid="error-page"' in page.text
        assert connect(visitor, hall, new_secret=True).status_code == 403
        sub = visitor.post(f"{HOME}/sub-accounts", {"sub-sum2": "BONUS"})
        assert sub.status_code == 403
    with read_only(web.engine) as conn:
        assert sub_accounts(conn, web.tenant.id) == {}
        count = conn.execute(
            select(func.count())
            .select_from(farcards_terminals)
            .where(farcards_terminals.c.tenant_id == web.tenant.id)
        ).scalar_one()
    assert count == 1


def test_another_companys_terminal_and_program_are_not_found(web: Web) -> None:
    with web.engine.begin() as conn:
        other = create_tenant(conn, slug=f"o-{uuid.uuid4().hex[:10]}", name="Other", actor=ACTOR)
        theirs, _ = create_terminal(conn, tenant_id=other.id, name="Their till", actor=ACTOR)
        create_unit(conn, tenant_id=other.id, code="PTS", kind=UnitKind.POINTS, actor=ACTOR)
        their_program = create_program(
            conn, tenant_id=other.id, name="Theirs", unit_code="PTS", actor=ACTOR
        )
    owner = web.sign_in("owner")
    assert owner.get(f"{HOME}/terminals/{theirs.id}").status_code == 404
    assert connect(owner, theirs.id).status_code == 404
    assert owner.get(f"{HOME}/programs/{their_program.id}").status_code == 404
    assert (
        owner.post(f"{HOME}/programs/{their_program.id}", {"program-bonus": "7"}).status_code == 404
    )
    assert owner.get(f"{HOME}/terminals/abc").status_code == 404
    with read_only(web.engine) as conn:
        assert list_links(conn, other.id) == {}
        try:
            get_link(conn, other.id, theirs.id)
        except KopilkaError as error:
            assert error.code == "farcards_not_configured"
        assert codes_for(conn, other.id, their_program.id, None) == (None, None)
    assert f"farcards-terminal-{theirs.id}" not in owner.get(HOME).text


# --------------------------------------------------------------------------- end to end


def test_the_secret_shown_on_the_screen_opens_the_farcards_door(web: Web) -> None:
    """Set up on screen only; then r_keeper, from the allowed network, looks a card up and
    posts a sale with the address from the ini, and sees what the screen set."""
    program = bonus_program(web)
    with web.engine.begin() as conn:
        card = issue_card(
            conn,
            tenant_id=web.tenant.id,
            program_id=program.id,
            number="80000001",
            holder_name="Ирина Петрова",
            actor=ACTOR,
        )
    hall = terminal(web)
    owner = web.sign_in("owner")
    address, ini = shown_secret(connect(owner, hall, addresses="192.168.10.0/24"))
    owner.post(f"{HOME}/sub-accounts", {"sub-sum2": "BONUS", "sub-sum3": "accumulation"})
    owner.post(f"{HOME}/programs/{program.id}", {"program-bonus": "7"})

    configured = next(line for line in ini.splitlines() if line.startswith("Address="))
    path = urlsplit(configured.removeprefix("Address=")).path
    station = Station(TestClient(web.app(), client=("192.168.10.5", 50000)), path)
    info = station.lookup(card.number)
    assert info.tag == "GetCardInfoEx"
    assert info.attrib["Result"] == "0", info.attrib
    assert (info.attrib["Holder"], info.attrib["Bonus"], info.attrib["Sum2"]) == (
        "Ирина Петрова",
        "7",
        "0",
    )
    sale = station.transactions(
        card.number,
        [(3, 100000), (2, 3000)],
        rk_check="{S-1}",
        check=check_buffer(chmode=1, lines=[100000], checkguid="{S-1}"),
    )
    assert sale.attrib["Result"] == "0", sale.attrib
    info = station.lookup(card.number)
    assert (info.attrib["Sum2"], info.attrib["Sum3"]) == ("3000", "100000")

    # From outside the allowed network, or with the secret renewed on screen: refused.
    outside = Station(TestClient(web.app(), client=("10.9.9.9", 50000)), path)
    assert outside.lookup(card.number).attrib["Result"] == "1"
    shown_secret(connect(owner, hall, addresses="192.168.10.0/24", new_secret=True))
    assert station.lookup(card.number).attrib["Result"] == "1"
    assert address.endswith(path)
